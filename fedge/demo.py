"""End to end on one machine: export the zoo digits MLP, start a coordinator, train it
across 100 emulated devices (Dirichlet 0.5 non-IID, 10% dropout, 8-bit updates) for 20
rounds, and compare the global model with a centrally trained copy. Stops all it started."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path

from fedge.local_coordinator import LocalCoordinator

DEFAULT_ROUNDS = 20
DEFAULT_GATE = 0.90  # what 20 rounds of the default demo reach (0.91-0.95)


def accuracy_gate(min_accuracy: float | None, rounds: int) -> float | None:
    """The final accuracy below which the demo fails: the one asked for, else DEFAULT_GATE when
    the demo runs at least its default rounds (fewer rounds reach less: no gate then)."""
    if min_accuracy is not None:
        return min_accuracy
    return DEFAULT_GATE if rounds >= DEFAULT_ROUNDS else None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="folder for the model, database, history and plot")
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help=f"rounds (default {DEFAULT_ROUNDS})")
    parser.add_argument("--goal-count", type=int, default=40)
    parser.add_argument("--codec", default="q8",
                        help="how updates travel: f32, q8, q4, q8+rot, q4+rot, + sparse:F or + topk:F "
                             "(e.g. q4+rot+sparse:0.1: 63x fewer bytes than f32)")
    parser.add_argument("--download-codec", default="f32", help="how the checkpoint travels: f32, q8, q4+rot, ...")
    parser.add_argument("--download-delta-codec", default="",
                        help="devices holding an earlier checkpoint download fetch the difference in this codec "
                             "(q4+rot, q8; default: off)")
    parser.add_argument("--learning-rate", type=float, default=0.08, help="device learning rate")
    parser.add_argument("--epochs", type=int, default=10, help="local epochs per round (default 10)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="the exported model's batch (default 32; DP-SGD's noise per step shrinks with it)")
    parser.add_argument("--dataset", default="digits",
                        help="digits, digits:xN (N-fold augmented: more examples per device), or "
                             "synthetic:ALPHA,BETA (FedProx's Synthetic, with the zoo's synthetic_mlp)")
    parser.add_argument("--secagg", choices=["off", "secagg", "secagg+"], default="off",
                        help="run the rounds with secure aggregation (the coordinator sees only the sum)")
    parser.add_argument("--clip-norm", type=float, default=3.0,
                        help="L2 clip of updates under --secagg or --dp (the initial clip with --dp)")
    parser.add_argument("--dp", action="store_true",
                        help="user-level DP-FedAvg with adaptive clipping; prints epsilon next to accuracy")
    parser.add_argument("--noise-multiplier", type=float, default=0.3, help="DP noise multiplier z (with --dp)")
    parser.add_argument("--dp-target-epsilon", type=float, default=0.0,
                        help="with --dp: the epsilon the task may spend; the coordinator calibrates the noise "
                             "multiplier (instead of --noise-multiplier)")
    parser.add_argument("--dp-delta", type=float, default=1e-3, help="DP delta (with --dp; below 1/devices)")
    parser.add_argument("--dp-fixed-clip", action="store_true",
                        help="with --dp: keep --clip-norm fixed instead of adapting it toward the median norm")
    parser.add_argument("--dp-mode", choices=["central", "distributed"], default="central",
                        help="with --dp: central (the coordinator noises the sum, adaptive clip) or distributed "
                             "(each device adds discrete Gaussian noise before SecAgg masking; fixed clip)")
    parser.add_argument("--dp-sgd", type=float, default=0.0, metavar="Z",
                        help="example-level DP-SGD on every device with noise multiplier Z (the model is exported "
                             "with --dp-sgd; each device accounts what its own data spent)")
    parser.add_argument("--dp-sgd-clip", type=float, default=1.0, help="DP-SGD's per-example clip (with --dp-sgd)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-accuracy", type=float, default=None,
                        help=f"exit non-zero below this final accuracy (default {DEFAULT_GATE} when the demo runs "
                             f"at least its default {DEFAULT_ROUNDS} rounds, else no gate)")


def central_baseline(model_bytes: bytes, data, epochs: int = 60, seed: int = 0) -> float:
    """The same model trained centrally on all devices' training data (LiteRT, same signatures)."""
    import numpy as np

    from device_runtime.litert_model import LocalModel

    model = LocalModel(model_bytes)
    x = np.concatenate([s[0] for s in data.shards])
    y = np.concatenate([s[1] for s in data.shards])
    model.train(x, y, epochs, model.manifest.optimizer["learning_rate"], np.random.default_rng(seed))
    return model.evaluate(data.x_test, data.y_test)[1]


def run(args: argparse.Namespace) -> int:
    from device_runtime.fleet.datasets import load_federated
    from device_runtime.fleet.emulator import Fleet, FleetConfig, format_round, write_history

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not (args.dataset == "digits" or args.dataset.startswith(("digits:x", "synthetic:"))):
        raise SystemExit(f"--dataset {args.dataset}: use digits, digits:xN or synthetic:ALPHA,BETA")
    zoo = "synthetic_mlp" if args.dataset.startswith("synthetic") else "digits_mlp"
    model_path = out / f"{zoo}.tflite"
    print(f"== 1/4 export the zoo {zoo} (builtins-only, parity against Keras)", flush=True)
    subprocess.run([sys.executable, "-m", "fedge", "export", "--zoo", zoo, "-o", str(model_path),
                    "--batch-size", str(args.batch_size), *(["--dp-sgd"] if args.dp_sgd > 0 else [])],
                   check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    model = model_path.read_bytes()
    token = secrets.token_urlsafe(16)
    db = out / "coordinator.db"
    for stale in out.glob("coordinator.db*"):
        if stale.is_file():
            stale.unlink()
    log = open(out / "coordinator.log", "w")
    server = LocalCoordinator(str(db), token, log=log, extra_args=(
        "--min-retry-s", "0.3", "--max-retry-s", "3", "--ineligible-retry-s", "2", "--checkin-rate", "20"))
    url = server.url
    print(f"== 2/4 start the coordinator on {url}", flush=True)
    try:
        server.start()
        if args.dp and args.dp_mode == "distributed" and args.secagg == "off":
            args.secagg = "secagg"  # the devices' noise only protects anyone inside a masked sum
        upload = args.codec if args.secagg == "off" else f"{args.secagg}, masked 8-bit"
        print(f"== 3/4 train across {args.devices} emulated devices (dirichlet:0.5, 10% dropout, {upload})",
              flush=True)
        data = load_federated(args.dataset, args.devices, "dirichlet:0.5", args.seed)
        cfg = FleetConfig(coordinator=url, admin_token=token, devices=args.devices, partition="dirichlet:0.5",
                          dropout=0.1, seed=args.seed, out_dir=str(out), holdout=0.1)
        task = {"rounds": args.rounds, "goal_count": args.goal_count, "over_selection": 1.3,
                "selection_window_s": 2.0, "report_deadline_s": 15.0,
                "eligibility": "charging and unmetered and idle", "epochs": args.epochs, "batch_size": args.batch_size,
                "learning_rate": args.learning_rate, "codec": args.codec, "download_codec": args.download_codec,
                "download_delta_codec": args.download_delta_codec}
        if args.secagg != "off":
            task.update(secagg=args.secagg, clip_norm=args.clip_norm, secagg_phase_s=1.0)
        adaptive = {} if args.dp_fixed_clip else {"dp_target_quantile": 0.5}  # toward the median norm
        noise = ({"dp_target_epsilon": args.dp_target_epsilon} if args.dp_target_epsilon > 0
                 else {"dp_noise_multiplier": args.noise_multiplier})
        if args.dp and args.dp_mode == "distributed":
            task.update(clip_norm=args.clip_norm, dp_mode="distributed", dp_delta=args.dp_delta, **noise, **adaptive)
        elif args.dp:
            task.update(clip_norm=args.clip_norm, dp_delta=args.dp_delta, dp_population=args.devices, **noise,
                        **adaptive)
        if args.dp_sgd > 0:
            task.update(dp_sgd_noise_multiplier=args.dp_sgd, dp_sgd_clip=args.dp_sgd_clip, dp_sgd_delta=1e-5)
        fleet = Fleet(cfg, data)
        history = asyncio.run(fleet.run(model, task, task_id="demo",
                                        on_round=lambda r: print(format_round(r), flush=True)))
    finally:
        server.stop()
        log.close()
    print("== 4/4 results", flush=True)
    paths = write_history(history, out, title=f"fedge demo: {args.dataset}, {args.devices} devices, {upload}")
    committed = [r for r in history if r.state == "committed"]
    final = committed[-1].global_accuracy if committed else 0.0
    central = central_baseline(model, data, seed=args.seed)
    up, f32 = fleet.bytes_summary()
    print(f"federated global model: {final:.4f} test accuracy after {len(committed)} committed rounds")
    if args.dp and committed:
        how = ("noise added on the devices under " + args.secagg if args.dp_mode == "distributed"
               else "noise added by the coordinator")
        how += f", clip {args.clip_norm:g}" if args.dp_fixed_clip else f", adaptive clip now {committed[-1].clip:.3f}"
        z = (f"the noise multiplier the coordinator calibrated for a target of {args.dp_target_epsilon:g}"
             if args.dp_target_epsilon > 0 else f"noise multiplier {args.noise_multiplier}")
        print(f"privacy: user-level (epsilon = {committed[-1].epsilon:.2f}, delta = {args.dp_delta:g}) "
              f"with {z}, {how}")
    if args.secagg != "off" and committed:
        print(f"secagg ring: {committed[-1].modulus_bits} bits per coordinate; the unmasked sums needed at most "
              f"{max(r.sum_bits for r in committed)} bits")
    if args.dp_sgd > 0:
        spent = sorted(d.stats.dp_sgd_epsilon for d in fleet.devices if d.stats.dp_sgd_epsilon > 0)
        if spent:
            print(f"privacy: example-level DP-SGD (noise multiplier {args.dp_sgd:g}, clip {args.dp_sgd_clip:g}); "
                  f"epsilon each device's data spent at delta 1e-5, by its own ledger: median "
                  f"{spent[len(spent) // 2]:.2f}, largest {spent[-1]:.2f} ({len(spent)} devices took part)")
    print(f"central training of the same model: {central:.4f} test accuracy")
    print(f"bytes uploaded: {up / 1024:.1f} KiB = {up / max(f32, 1):.1%} of float32 updates")
    print(fleet.download_summary())
    print(f"plot: {paths['png']}   history: {paths['csv']}")
    gate = accuracy_gate(args.min_accuracy, args.rounds)
    if gate is None:
        print(f"(no accuracy gate: {args.rounds} rounds are fewer than the {DEFAULT_ROUNDS} the {DEFAULT_GATE} gate "
              "is for; --min-accuracy sets one)")
    elif final < gate:
        print(f"FAILED: final accuracy {final:.4f} is below {gate}")
        return 1
    return 0
