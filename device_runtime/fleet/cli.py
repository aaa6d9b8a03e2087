"""Run N emulated devices against a coordinator, each a real HTTP client with its own
state and data shard. With --model, uploads it and creates the task (admin token
needed: --admin-token or $FEDGE_ADMIN_TOKEN); prints a per-round line, writes
history.csv / history.json / history.png to --out."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--coordinator", required=True,
                        help="coordinator base URL, e.g. http://127.0.0.1:8080; several, comma-separated "
                             "(replicas): devices spread over them and fail over to the next")
    parser.add_argument("--admin-token", default=os.environ.get("FEDGE_ADMIN_TOKEN", ""),
                        help="admin token (default $FEDGE_ADMIN_TOKEN, else the token file next to --db)")
    parser.add_argument("--model", required=True, help="exported .tflite to train")
    parser.add_argument("--devices", type=int, default=100, help="emulated devices (default 100)")
    parser.add_argument("--population", default="fleet",
                        help="the population the devices register in (default fleet; created if missing). Devices "
                             "of earlier runs that stopped checking in stop counting once overdue")
    parser.add_argument("--releases", action="store_true",
                        help="devices take model releases (fedge task release) at check-in, each into "
                             "OUT/releases/deviceN, as `fedge device` does")
    parser.add_argument("--keep-task", action="store_true",
                        help="on a stop (Ctrl-C, SIGTERM), leave the task running (default: cancel it)")
    parser.add_argument("--db", default="fedge.db",
                        help="with no --admin-token or FEDGE_ADMIN_TOKEN, the token file `fedge serve --db DB` "
                             "wrote next to its database is read (default fedge.db)")
    parser.add_argument("--dataset", default="digits", help="digits | synthetic:ALPHA,BETA | emnist:FILE.h5")
    parser.add_argument("--partition", default="dirichlet:0.3",
                        help="iid | dirichlet:ALPHA | labelmix:ALPHA (equal shards, each device's label mix "
                             "~ Dirichlet(ALPHA): for 100,000 devices and more)")
    parser.add_argument("--availability", default="always", help="always | diurnal[:PERIOD_S] | trace:FILE")
    parser.add_argument("--dropout", type=float, default=0.1,
                        help="probability a device vanishes mid-round (default 0.1)")
    parser.add_argument("--speed", default="fixed",
                        help="fixed (10%% of devices 3x slower) | lognormal:SIGMA (each device exp(SIGMA*N(0,1))x "
                             "slower, at least 1x: a heavy tail like real phones)")
    parser.add_argument("--train-time", type=float, default=0.0, metavar="SECONDS",
                        help="emulated phone time of one local training at 1x speed (each device takes it times "
                             "its --speed multiplier, whatever the host); default 0: the host's own compute time")
    parser.add_argument("--stragglers", type=float, default=0.0, metavar="FRACTION",
                        help="each round this fraction of the devices can run only a uniformly random number of "
                             "epochs in [1, epochs] (FedProx's set-up): their work counts with partial_work = true "
                             "in --task-config, else they do not upload")
    parser.add_argument("--codec", default=None,
                        help="(default q8) how updates travel: f32 | q8 | q4 | q8+rot | q4+rot, then optionally +sparse:F (a "
                             "round-shared fraction F of the coordinates, also under --secagg) or +topk:F (the "
                             "largest, with error feedback), e.g. q4+rot+sparse:0.1")
    parser.add_argument("--download-delta-codec", default=None,
                        help="devices holding an earlier checkpoint download fetch the difference in this codec "
                             "(q4+rot, q8; default: off)")
    parser.add_argument("--download-codec", default=None,
                        help="how the checkpoint travels to the devices: f32 (default), or quantized (q8, q4+rot, ...)")
    parser.add_argument("--secagg", choices=["off", "secagg", "secagg+"], default=None,
                        help="secure aggregation: off (default), secagg (all pairs) or secagg+ (O(log n) neighbours)")
    parser.add_argument("--clip-norm", type=float, default=None,
                        help="L2 clip of each update (default: off, or 3.0 with --secagg, which needs one)")
    parser.add_argument("--secagg-phase-s", type=float, default=None,
                        help="deadline of each SecAgg key phase (default 2)")
    parser.add_argument("--attack", default="", choices=["", "sign_flip", "constant", "label_flip"],
                        help="make --attackers of the devices Byzantine (device_runtime.attacks)")
    parser.add_argument("--attackers", type=float, default=0.0, help="fraction of Byzantine devices (with --attack)")
    parser.add_argument("--aggregator", default=None,
                        choices=["fedavg", "trimmed_mean", "median", "krum", "multi_krum"],
                        help="the task's aggregation strategy (default fedavg)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds to run (default 20)")
    parser.add_argument("--goal-count", type=int, default=None, help="reports each round waits for (default 20)")
    parser.add_argument("--epochs", type=int, default=None, help="local epochs per round (default 5)")
    parser.add_argument("--learning-rate", type=float, default=None, help="local learning rate (default 0.05)")
    parser.add_argument("--selection-window-s", type=float, default=None, help="how long a round selects devices (default 2)")
    parser.add_argument("--report-deadline-s", type=float, default=None, help="how long selected devices have to report (default 10)")
    parser.add_argument("--eligibility", default=None, help="which device states may train (default \"charging and unmetered and idle\")")
    parser.add_argument("--workers", type=int, default=None, help="training threads (default: CPU cores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data partition and devices (default 0)")
    parser.add_argument("--out", default="fleet_out", help="folder for history.csv/.json/.png (default fleet_out)")
    parser.add_argument("--retry-for-s", type=float, default=120.0,
                        help="how long each request retries while the coordinator is unreachable or answers 5xx "
                             "(a restart); each device then keeps trying (default 120)")
    parser.add_argument("--task-config", metavar="FILE.toml",
                        help="any task key, as in `fedge task create --config` (the coordinator checks them); "
                             "flags given on the command line win over its keys, as with `fedge serve --config`")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


# The task flags' defaults: a flag left out takes the --task-config file's key, else this.
TASK_FLAG_DEFAULTS = {"rounds": 20, "goal_count": 20, "epochs": 5, "learning_rate": 0.05, "selection_window_s": 2.0,
                      "report_deadline_s": 10.0, "eligibility": "charging and unmetered and idle", "codec": "q8",
                      "download_codec": "f32", "download_delta_codec": "", "secagg": "off", "secagg_phase_s": 2.0,
                      "aggregator": "fedavg", "clip_norm": None}


def task_config_from_args(args) -> dict:
    """The task: the --task-config file's keys, then every task flag given on the command line
    (flags win, as with `fedge serve --config`), then the flags' defaults for keys still unset."""
    config = {"over_selection": 1.3, "batch_size": 32}
    if getattr(args, "task_config", None):
        config.update(read_task_toml(args.task_config))
    config.update({k: getattr(args, k) for k in TASK_FLAG_DEFAULTS if getattr(args, k, None) is not None})
    config = {**{k: v for k, v in TASK_FLAG_DEFAULTS.items() if v is not None}, **config}
    if "clip_norm" not in config:  # SecAgg needs a clip
        config["clip_norm"] = 3.0 if config["secagg"] != "off" else 0.0
    return config


def read_task_toml(path: str) -> dict:
    """A task config file's keys, as they are: the coordinator checks them when the task is
    created (the device runtime never imports the coordinator) and names the bad key."""
    import tomllib

    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise ValueError(f"cannot read the task config: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    return raw


async def _until_stopped(work):
    """`work`, with SIGTERM stopping it like Ctrl-C: cancelled, its clean-up run, then
    KeyboardInterrupt from asyncio.run."""
    import signal

    loop, me = asyncio.get_running_loop(), asyncio.current_task()
    terminated = []

    def terminate() -> None:
        terminated.append(True)
        me.cancel()

    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        return await work
    except asyncio.CancelledError:
        if terminated:
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def run(args: argparse.Namespace) -> int:
    from device_runtime.fleet.datasets import load_federated
    from device_runtime.fleet.emulator import Fleet, FleetConfig, format_round, write_history

    token_file = Path(args.db + ".admin-token")
    if not args.admin_token and token_file.exists():
        args.admin_token = token_file.read_text().strip()
    if not args.admin_token:
        raise ValueError(f"the fleet needs the admin token to create the task: --admin-token, FEDGE_ADMIN_TOKEN, or "
                         f"run next to the coordinator's database ({token_file} not found; --db names it)")
    with open(args.model, "rb") as f:
        model = f.read()
    if not 0.0 <= args.stragglers <= 1.0:
        raise ValueError("--stragglers is a fraction of the devices, in [0, 1]")
    data = load_federated(args.dataset, args.devices, args.partition, args.seed)
    cfg = FleetConfig(coordinator=args.coordinator, admin_token=args.admin_token, devices=args.devices,
                      dataset=args.dataset, partition=args.partition, availability=args.availability,
                      dropout=args.dropout, speed=args.speed, workers=args.workers, seed=args.seed, out_dir=args.out,
                      progress=not args.no_progress, retry_for_s=args.retry_for_s, attack=args.attack,
                      attackers=args.attackers, train_time_s=args.train_time, stragglers=args.stragglers,
                      population=args.population, keep_task=args.keep_task,
                      releases=args.releases)
    fleet = Fleet(cfg, data)
    task_config = task_config_from_args(args)
    upload = task_config["codec"] if task_config["secagg"] == "off" else task_config["secagg"]
    title = f"{data.name}, {args.devices} devices, {upload}"
    try:
        history = asyncio.run(_until_stopped(fleet.run(model, task_config,
                                                       on_round=lambda r: print(format_round(r), flush=True))))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: what was measured, and where the task stands
        paths = write_history(fleet.history, args.out, title=title + " (stopped)", evaluations=fleet.evaluations)
        committed = sum(r.state == "committed" for r in fleet.history)
        print(f"\nstopped after {_count(committed, 'committed round')}; partial history: {paths['csv']}  "
              f"{paths['json']}  plot: {paths['png']}")
        if fleet.task_id:
            what = ("cancelled" if fleet.task_cancelled else
                    "left running (--keep-task)" if args.keep_task else "could not be cancelled")
            print(f"task {fleet.task_id}: {what}")
        return 130
    up, f32 = fleet.bytes_summary()
    paths = write_history(history, args.out, title=title, evaluations=fleet.evaluations)
    ok = [r for r in history if r.state == "committed"]
    if ok:
        print(f"final global accuracy {ok[-1].global_accuracy:.4f} after {_count(len(ok), 'committed round')}")
        if data.name.startswith("synthetic") and len(data.shards) > 100:
            # Each Synthetic device draws its own model (FedProx paper): with thousands of devices the
            # population shares almost no structure, and one global model stays near chance.
            print(f"  (on {data.name} every device has its own labelling model; with {len(data.shards):,} devices "
                  "a single global model stays near chance: the paper uses 30. Use digits to watch a global "
                  "model learn at this scale.)")
    if fleet.trainer.skipped_late:
        print(f"training jobs dropped because no emulation thread was free in time: {fleet.trainer.skipped_late} "
              f"(more selected devices than --workers {fleet.trainer.workers} can train before the deadline)")
    print(f"uploaded {up / 1024:.1f} KiB ({up / max(f32, 1):.1%} of float32)")
    print(fleet.work_summary())
    print(fleet.download_summary())
    print(fleet.memory_summary())
    print(f"history: {paths['csv']}  {paths['json']}  plot: {paths['png']}")
    return 0
