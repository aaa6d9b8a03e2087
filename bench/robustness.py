"""Byzantine robustness: FedAvg against the robust aggregation strategies, under attack.

100 emulated devices on the digits task (Dirichlet 0.5 non-IID, 30 reports per round,
15 rounds, 8-bit updates) through a real `fedge serve`, with 0%, 10% and 20% of the
devices Byzantine (device_runtime.attacks): sign flip x10, a constant update of 100 per
coordinate, or label flipping. Each cell is the global model's final held-out accuracy,
the mean over --seeds (which devices are Byzantine, the data split, who is selected).
Every task has the coordinator's default server-side bound (max_update_norm 100); the
"fedavg + norm bound" row tightens it to the honest updates' scale (--norm-bound).

    python bench/robustness.py [--rounds 15] [--out bench_out/robustness]

Writes robustness.md (the table in docs/security.md) and robustness.csv to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from device_runtime.fleet.datasets import load_federated
from device_runtime.fleet.emulator import Fleet, FleetConfig
from fedge.local_coordinator import LocalCoordinator

STRATEGIES = {  # row label -> task config
    "fedavg": {"aggregator": "fedavg"},
    "fedavg + norm bound": {"aggregator": "fedavg"},  # max_update_norm from --norm-bound
    "trimmed_mean (20%)": {"aggregator": "trimmed_mean", "trim_fraction": 0.2},
    "median": {"aggregator": "median"},
    "krum": {"aggregator": "krum"},
    "multi_krum": {"aggregator": "multi_krum"},
}
CONDITIONS = [("none", 0.0)] + [(a, f) for a in ("sign_flip", "constant", "label_flip") for f in (0.1, 0.2)]


async def one_run(url: str, token: str, model: bytes, data, task_extra: dict, attack: str, fraction: float,
                  args, seed: int, index: int) -> float:
    cfg = FleetConfig(coordinator=url, admin_token=token, devices=args.devices, partition="dirichlet:0.5",
                      dropout=0.0, slow_fraction=0.0, seed=seed, progress=False, population=f"p{index}",
                      attack="" if attack == "none" else attack, attackers=fraction)
    task = {"rounds": args.rounds, "goal_count": args.goal_count, "over_selection": 1.3, "selection_window_s": 2.0,
            "report_deadline_s": 15.0, "epochs": 5, "batch_size": 32, "learning_rate": 0.08, "codec": "q8",
            **task_extra}
    history = await Fleet(cfg, data).run(model, task, task_id=f"r{index}")
    done = [r for r in history if r.state == "committed"]
    return done[-1].global_accuracy if done else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--goal-count", type=int, default=30)
    ap.add_argument("--norm-bound", type=float, default=3.0, help="max_update_norm of the 'norm bound' row")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="bench_out/robustness")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "digits_mlp.tflite"
    if not model_path.exists():
        subprocess.run([sys.executable, "-m", "fedge", "export", "--zoo", "digits_mlp", "-o", str(model_path)],
                       check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True)
    model = model_path.read_bytes()
    data = {seed: load_federated("digits", args.devices, "dirichlet:0.5", seed) for seed in args.seeds}
    token = secrets.token_urlsafe(16)
    for stale in out.glob("bench.db*"):
        if stale.is_file():
            stale.unlink()
    server = LocalCoordinator(str(out / "bench.db"), token, extra_args=(
        "--min-retry-s", "0.3", "--max-retry-s", "3", "--ineligible-retry-s", "2", "--checkin-rate", "20"))
    results: dict[tuple[str, str, float], float] = {}
    runs = 0
    started = time.time()
    with server:
        for i, (label, extra) in enumerate(STRATEGIES.items()):
            extra = {**extra, "max_update_norm": args.norm_bound} if "norm bound" in label else extra
            for attack, fraction in CONDITIONS:
                accs = []
                for seed in args.seeds:
                    runs += 1
                    accs.append(asyncio.run(one_run(server.url, token, model, data[seed], extra, attack, fraction,
                                                    args, seed, runs)))
                results[(label, attack, fraction)] = acc = sum(accs) / len(accs)
                print(f"{label:22s} {attack:10s} {fraction:4.0%}  accuracy {acc:.3f}  "
                      f"({time.time() - started:.0f} s)", flush=True)
    heads = ["no attack"] + [f"{a} {f:.0%}" for a, f in CONDITIONS[1:]]
    table = ["| strategy | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    for label in STRATEGIES:
        table.append(f"| {label} | " + " | ".join(f"{results[(label, a, f)]:.3f}" for a, f in CONDITIONS) + " |")
    (out / "robustness.md").write_text("\n".join(table) + "\n")
    with open(out / "robustness.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["strategy", "attack", "fraction", "accuracy"])
        w.writerows([(k[0], k[1], k[2], v) for k, v in results.items()])
    print("\n".join(table))
    print(f"wrote {out / 'robustness.md'} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
