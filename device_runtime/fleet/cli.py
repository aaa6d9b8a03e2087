"""Run N emulated devices against a coordinator, each a real HTTP client with its own
state and data shard. With --model, uploads it and creates the task (admin token
needed: --admin-token or $FEDGE_ADMIN_TOKEN); prints a per-round line, writes
history.csv / history.json / history.png to --out."""

from __future__ import annotations

import argparse
import asyncio
import os


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--coordinator", required=True,
                        help="coordinator base URL, e.g. http://127.0.0.1:8080; several, comma-separated "
                             "(replicas): devices spread over them and fail over to the next")
    parser.add_argument("--admin-token", default=os.environ.get("FEDGE_ADMIN_TOKEN", ""))
    parser.add_argument("--model", required=True, help="exported .tflite to train")
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--dataset", default="digits", help="digits | synthetic:ALPHA,BETA | emnist:FILE.h5")
    parser.add_argument("--partition", default="dirichlet:0.3", help="iid | dirichlet:ALPHA")
    parser.add_argument("--availability", default="always", help="always | diurnal[:PERIOD_S] | trace:FILE")
    parser.add_argument("--dropout", type=float, default=0.1, help="probability a device vanishes mid-round")
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
    parser.add_argument("--codec", default="q8",
                        help="how updates travel: f32 | q8 | q4 | q8+rot | q4+rot, then optionally +sparse:F (a "
                             "round-shared fraction F of the coordinates, also under --secagg) or +topk:F (the "
                             "largest, with error feedback), e.g. q4+rot+sparse:0.1")
    parser.add_argument("--download-delta-codec", default="",
                        help="devices holding an earlier checkpoint download fetch the difference in this codec "
                             "(q4+rot, q8; default: off)")
    parser.add_argument("--download-codec", default="f32",
                        help="how the checkpoint travels to the devices: f32, or quantized (q8, q4+rot, ...)")
    parser.add_argument("--secagg", choices=["off", "secagg", "secagg+"], default="off",
                        help="secure aggregation: off, secagg (all pairs) or secagg+ (O(log n) neighbours)")
    parser.add_argument("--clip-norm", type=float, default=None,
                        help="L2 clip of each update (default: off, or 3.0 with --secagg, which needs one)")
    parser.add_argument("--secagg-phase-s", type=float, default=2.0, help="deadline of each SecAgg key phase")
    parser.add_argument("--attack", default="", choices=["", "sign_flip", "constant", "label_flip"],
                        help="make --attackers of the devices Byzantine (device_runtime.attacks)")
    parser.add_argument("--attackers", type=float, default=0.0, help="fraction of Byzantine devices (with --attack)")
    parser.add_argument("--aggregator", default="fedavg",
                        choices=["fedavg", "trimmed_mean", "median", "krum", "multi_krum"],
                        help="the task's aggregation strategy")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--goal-count", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--selection-window-s", type=float, default=2.0)
    parser.add_argument("--report-deadline-s", type=float, default=10.0)
    parser.add_argument("--eligibility", default="charging and unmetered and idle")
    parser.add_argument("--workers", type=int, default=None, help="training threads (default: CPU cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="fleet_out")
    parser.add_argument("--retry-for-s", type=float, default=120.0,
                        help="how long each request retries while the coordinator is unreachable or answers 5xx "
                             "(a restart); each device then keeps trying (default 120)")
    parser.add_argument("--task-config", metavar="FILE.toml",
                        help="any task key, as in `fedge task create --config` (the coordinator checks them); "
                             "its keys override the task flags above")
    parser.add_argument("--no-progress", action="store_true")


def task_config_from_args(args) -> dict:
    config = {
        "rounds": args.rounds, "goal_count": args.goal_count, "over_selection": 1.3,
        "selection_window_s": args.selection_window_s, "report_deadline_s": args.report_deadline_s,
        "eligibility": args.eligibility, "epochs": args.epochs, "batch_size": 32,
        "learning_rate": args.learning_rate, "codec": args.codec, "download_codec": args.download_codec,
        "download_delta_codec": args.download_delta_codec,
        "secagg": args.secagg, "secagg_phase_s": args.secagg_phase_s, "aggregator": args.aggregator,
        "clip_norm": args.clip_norm if args.clip_norm is not None else (3.0 if args.secagg != "off" else 0.0),
    }
    if getattr(args, "task_config", None):
        config.update(read_task_toml(args.task_config))
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


def run(args: argparse.Namespace) -> int:
    from device_runtime.fleet.datasets import load_federated
    from device_runtime.fleet.emulator import Fleet, FleetConfig, format_round, write_history

    if not args.admin_token:
        raise ValueError("the fleet needs the admin token (--admin-token or FEDGE_ADMIN_TOKEN) to create the task")
    with open(args.model, "rb") as f:
        model = f.read()
    if not 0.0 <= args.stragglers <= 1.0:
        raise ValueError("--stragglers is a fraction of the devices, in [0, 1]")
    data = load_federated(args.dataset, args.devices, args.partition, args.seed)
    cfg = FleetConfig(coordinator=args.coordinator, admin_token=args.admin_token, devices=args.devices,
                      dataset=args.dataset, partition=args.partition, availability=args.availability,
                      dropout=args.dropout, speed=args.speed, workers=args.workers, seed=args.seed, out_dir=args.out,
                      progress=not args.no_progress, retry_for_s=args.retry_for_s, attack=args.attack,
                      attackers=args.attackers, train_time_s=args.train_time, stragglers=args.stragglers)
    fleet = Fleet(cfg, data)
    history = asyncio.run(fleet.run(model, task_config_from_args(args), on_round=lambda r: print(format_round(r),
                                                                                              flush=True)))
    up, f32 = fleet.bytes_summary()
    upload = args.codec if args.secagg == "off" else args.secagg
    paths = write_history(history, args.out, title=f"{data.name}, {args.devices} devices, {upload}",
                          evaluations=fleet.evaluations)
    ok = [r for r in history if r.state == "committed"]
    if ok:
        print(f"final global accuracy {ok[-1].global_accuracy:.4f} after {len(ok)} committed rounds")
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
