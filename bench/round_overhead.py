"""Round overhead of the whole protocol: round wall time divided by the pure compute of
the same LiteRT train steps (every participating device's epoch, run back to back,
divided across the same number of workers). Goal: <= 1.15.

    python bench/round_overhead.py [--model emnist_cnn|digits_mlp] [--devices 100] [--examples 320] [--rounds 5]

Each device holds --examples examples; every device takes part in every round (goal =
devices). emnist_cnn (default): synthetic 28x28 images, 62 classes, an 11-15 ms train
step here, a phone-sized round. digits_mlp: digits with small noise, a 0.04 ms step, so
the round is almost all protocol: its ratio only measures the fixed per-device cost.
The fixed protocol cost per round (wall minus compute) is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fedge.local_coordinator import LocalCoordinator


def pure_compute(model: bytes, shards, workers: int, repeats: int) -> list[float]:
    """Seconds for every device's epoch through the same interpreters, back to back on the
    same number of workers (after a warm-up), ``repeats`` times."""
    from device_runtime.litert_model import LocalModel

    models = [LocalModel(model) for _ in range(workers)]
    weights = models[0].get_weights()
    chunks = [shards[i::workers] for i in range(workers)]

    def work(i: int) -> None:
        m = models[i]
        for sx, sy in chunks[i]:
            m.set_weights(weights)
            m.train(sx, sy, 1, 0.05, np.random.default_rng(i))

    times = []
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, range(workers)))  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(work, range(workers)))
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--examples", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--model", choices=["emnist_cnn", "digits_mlp"], default="emnist_cnn")
    args = parser.parse_args()
    from device_runtime.fleet.datasets import FederatedData, load_digits_pool
    from device_runtime.fleet.emulator import Fleet, FleetConfig

    with tempfile.TemporaryDirectory() as tmp:
        model_path = os.path.join(tmp, "m.tflite")
        subprocess.run([sys.executable, "-m", "fedge", "export", "--zoo", args.model, "-o", model_path,
                        "--parity-steps", "0"], check=True, capture_output=True)
        model = open(model_path, "rb").read()
        rng = np.random.default_rng(0)
        shards = []
        if args.model == "digits_mlp":
            x, x_te, y, y_te = load_digits_pool(0)
            for _ in range(args.devices):
                idx = rng.integers(0, len(x), args.examples)
                shards.append(((x[idx] + rng.normal(0, 0.02, (args.examples, 64))).astype(np.float32), y[idx]))
            data = FederatedData("digits+noise", shards, x_te, y_te, 10)
        else:
            for _ in range(args.devices):
                shards.append((rng.random((args.examples, 28, 28, 1), dtype=np.float32),
                               rng.integers(0, 62, args.examples).astype(np.int32)))
            data = FederatedData("synthetic-28x28", shards, shards[0][0][:64], shards[0][1][:64], 62)
        token = secrets.token_urlsafe(8)
        # The coordinator's own pace steering: devices that finished early wait in a long poll
        # and are woken when the next round opens, rather than polling (which would take CPU
        # from the training workers on the same cores).
        with LocalCoordinator(os.path.join(tmp, "c.db"), token, ("--checkin-rate", "1000")) as server:
            url = server.url
            cfg = FleetConfig(coordinator=url, admin_token=token, devices=args.devices, dropout=0.0,
                              slow_fraction=0.0, workers=args.workers, progress=False, holdout=0.0)
            task = {"rounds": args.rounds, "goal_count": args.devices, "over_selection": 1.0,
                    "selection_window_s": 30.0, "report_deadline_s": 60.0, "epochs": 1, "learning_rate": 0.05,
                    "codec": "q8"}
            fleet = Fleet(cfg, data)
            compute_before = pure_compute(model, shards, args.workers, repeats=2)
            history = asyncio.run(fleet.run(model, task))
    compute_after = pure_compute(model, shards, args.workers, repeats=2)
    computes = compute_before + compute_after
    compute = float(np.median(computes))
    walls = [r.duration_s for r in history if r.state == "committed"]
    print(f"{args.devices} devices x {args.examples} examples, 1 epoch, {args.workers} workers, "
          f"{len(walls)} rounds committed")
    print(f"pure compute per round {compute:.3f} s (median of {len(computes)}, before and after the fleet: "
          f"{', '.join(f'{c:.2f}' for c in computes)}); round wall time median {np.median(walls):.3f} s "
          f"(min {min(walls):.3f}, max {max(walls):.3f})")
    print(f"fixed protocol cost per round (median wall - compute) {np.median(walls) - compute:.3f} s "
          f"= {(np.median(walls) - compute) / args.devices * 1e3:.2f} ms per device")
    print(f"overhead ratio (median wall / compute) = {np.median(walls) / compute:.2f}   goal <= 1.15")


if __name__ == "__main__":
    main()
