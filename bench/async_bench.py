"""Synchronous rounds vs asynchronous buffered aggregation (FedBuff) on the same population.

Same devices, same data shards, same seeds, same heavy-tailed speeds (every device takes
``--train-time`` x exp(sigma N(0,1)) seconds, at least 1x, to train: emulated phone time,
independent of the host), each run against a fresh `fedge serve`:

- sync:  goal_count G, over_selection 1.3: every round waits for its G-th report, and the
         over-selected devices' late work is refused;
- async: concurrency C devices always training, a version every K updates, polynomial
         staleness weighting (1 / (1 + s)^0.5).

    python bench/async_bench.py [--devices 1000] [--datasets digits synthetic:0.5,0.5] [--target 0.9]

Prints per dataset and mode: wall-clock seconds to the target global accuracy (held-out,
evaluated on every committed round/version), the final accuracy (mean of the last three),
updates used, device trainings thrown away (refused as late or stale, or abandoned at the
deadline), versions per minute and the mean staleness; writes history CSVs and an
accuracy-vs-time plot of both modes per dataset to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

TOKEN = "async-bench"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def zoo_model(name: str, folder: str) -> bytes:
    """The zoo model for a dataset (digits: 64 features; Synthetic: 60), exported once."""
    path = Path(folder) / f"{name}.tflite"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "fedge", "export", "--zoo", name, "-o", str(path)],
                       check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True)
    return path.read_bytes()


def task_config(mode: str, args) -> dict:
    common = {"epochs": args.epochs, "batch_size": 16, "learning_rate": args.learning_rate, "codec": "q8",
              "report_deadline_s": args.report_deadline_s, "eligibility": ""}
    if args.server_momentum:
        common["server_optimizer"] = {"name": "fedavgm", "learning_rate": args.server_lr,
                                      "momentum": args.server_momentum}
    elif args.server_lr != 1.0:
        common["server_optimizer"] = {"name": "fedavg", "learning_rate": args.server_lr}
    if mode == "sync":
        return {**common, "rounds": args.rounds, "goal_count": args.goal, "over_selection": 1.3,
                "selection_window_s": args.selection_window_s}
    return {**common, "mode": "async", "rounds": args.rounds, "buffer_size": args.buffer,
            "concurrency": args.concurrency, "max_staleness": args.max_staleness,
            "staleness_weight": args.staleness_weight, "participation_gap": args.participation_gap}


def run_one(model: bytes, dataset: str, mode: str, args, out: Path) -> dict:
    from device_runtime.fleet.datasets import load_federated
    from device_runtime.fleet.emulator import Fleet, FleetConfig, write_history
    from fedge.local_coordinator import LocalCoordinator

    data = load_federated(dataset, args.devices, args.partition, args.seed)
    with tempfile.TemporaryDirectory() as tmp, LocalCoordinator(os.path.join(tmp, "c.db"), TOKEN,
                                                                ("--checkin-rate", "1000000")) as server:
        cfg = FleetConfig(coordinator=server.url, admin_token=TOKEN, devices=args.devices, dataset=dataset,
                          partition=args.partition, dropout=0.0, speed=f"lognormal:{args.sigma}",
                          train_time_s=args.train_time, seed=args.seed, progress=False, workers=args.workers,
                          out_dir=str(out))
        fleet = Fleet(cfg, data)
        history = asyncio.run(fleet.run(model, task_config(mode, args)))
    write_history(history, out / f"{_slug(dataset)}_{mode}", title=f"{dataset}, {args.devices} devices, {mode}")
    ok = [r for r in history if r.state == "committed"]
    reached = next((r.elapsed_s for r in ok if r.global_accuracy >= args.target), math.nan)
    tail = [r.global_accuracy for r in ok[-3:]]
    span = ok[-1].elapsed_s if ok else math.nan
    stale = [r.staleness_mean for r in ok if r.staleness_mean == r.staleness_mean]
    thrown = sum(d.stats.rejected + d.stats.abandoned_deadline for d in fleet.devices)
    return {"dataset": dataset, "mode": mode, "committed": len(ok), "failed": len(history) - len(ok),
            "time_to_target_s": reached, "final_accuracy": sum(tail) / len(tail) if tail else math.nan,
            "updates_used": sum(r.reported for r in ok), "thrown_away": thrown,
            "per_minute": len(ok) / span * 60 if span and span == span else math.nan,
            "staleness_mean": sum(stale) / len(stale) if stale else math.nan, "total_s": span,
            "curve": [(r.elapsed_s, r.global_accuracy) for r in ok]}


def _slug(dataset: str) -> str:
    return dataset.replace(":", "_").replace(",", "_")


def plot(results: list[dict], dataset: str, target: float, path: Path,
         xlabel: str = "seconds since the task started") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        xs, ys = zip(*r["curve"]) if r["curve"] else ((), ())
        ax.plot(xs, ys, "o-", markersize=3, label=f"{r['mode']} ({r['committed']} {'versions' if r['mode'] == 'async' else 'rounds'})")
    ax.axhline(target, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("global accuracy (held-out)")
    ax.set_ylim(0, 1)
    ax.set_title(f"{dataset}: synchronous vs asynchronous")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--datasets", nargs="+", default=["digits:x8", "synthetic:0.5,0.5"])
    ap.add_argument("--partition", default="dirichlet:0.5")
    ap.add_argument("--sigma", type=float, default=1.0, help="lognormal speed spread")
    ap.add_argument("--train-time", type=float, default=2.0, help="seconds of local training at 1x speed")
    ap.add_argument("--goal", type=int, default=100, help="sync goal_count")
    ap.add_argument("--concurrency", type=int, default=130)
    ap.add_argument("--buffer", type=int, default=100, help="async K")
    ap.add_argument("--max-staleness", type=int, default=20)
    ap.add_argument("--staleness-weight", default="polynomial:0.5")
    ap.add_argument("--participation-gap", type=int, default=0,
                    help="async: versions a device sits out after its update is accepted")
    ap.add_argument("--server-lr", type=float, default=1.0, help="server learning rate (both modes)")
    ap.add_argument("--server-momentum", type=float, default=0.0,
                    help="server momentum (FedAvgM) for both modes; 0: plain FedAvg")
    ap.add_argument("--targets", type=float, nargs="*", default=[0.8, 0.85],
                    help="also report the time to these accuracies")
    ap.add_argument("--rounds", type=int, default=40, help="rounds (sync) and versions (async)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--learning-rate", type=float, default=0.05)
    ap.add_argument("--selection-window-s", type=float, default=2.0)
    ap.add_argument("--report-deadline-s", type=float, default=60.0)
    ap.add_argument("--target", type=float, default=0.9)
    ap.add_argument("--modes", nargs="+", default=["sync", "async"], choices=["sync", "async"])
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model-dir", default="bench_out", help="where the zoo models are (exported if missing)")
    ap.add_argument("--out", default="bench_out/async")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{args.devices} devices, {args.partition}, lognormal(sigma={args.sigma}) x {args.train_time:g} s of "
          f"training; sync goal {args.goal} x 1.3, async concurrency {args.concurrency} K {args.buffer}, "
          f"{args.staleness_weight}; server lr {args.server_lr:g} momentum {args.server_momentum:g}; "
          f"{os.cpu_count()} cores, {cpu_name()}", flush=True)
    print(f"{'dataset':<20} {'mode':<6} {'to ' + format(args.target, 'g'):>8} {'final':>6} {'ok':>4} {'fail':>4} "
          f"{'/min':>6} {'updates':>8} {'thrown':>7} {'stale':>6} {'total s':>8}", flush=True)
    summary = []
    for dataset in args.datasets:
        model = zoo_model("synthetic_mlp" if dataset.startswith("synthetic") else "digits_mlp", args.model_dir)
        results = []
        for mode in args.modes:
            r = run_one(model, dataset, mode, args, out)
            results.append(r)
            print(f"{dataset:<20} {mode:<6} {r['time_to_target_s']:>8.1f} {r['final_accuracy']:>6.3f} "
                  f"{r['committed']:>4} {r['failed']:>4} {r['per_minute']:>6.1f} {r['updates_used']:>8} "
                  f"{r['thrown_away']:>7} {r['staleness_mean']:>6.2f} {r['total_s']:>8.1f}", flush=True)
        plot(results, dataset, args.target, out / f"{_slug(dataset)}_sync_vs_async.png")
        for target in args.targets:
            times = {r["mode"]: next((t for t, a in r["curve"] if a >= target), math.nan) for r in results}
            print(f"  time to {target:g}: " + ", ".join(f"{m} {t:.1f} s" for m, t in times.items()), flush=True)
        by_mode = {r["mode"]: r for r in results}
        if {"sync", "async"} <= set(by_mode):
            s, a = by_mode["sync"]["time_to_target_s"], by_mode["async"]["time_to_target_s"]
            if s == s and a == a:
                print(f"  {dataset}: asynchronous reached {args.target:g} {s / a:.2f}x faster", flush=True)
        summary += results
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))


if __name__ == "__main__":
    main()
