"""`fedge simulate` at population scale: each scenario is one `fedge simulate` run in its own
process (so its peak memory is its own), printing the simulation's own summary: virtual hours,
wall time, device requests and events per second, check-ins, rounds, peak memory.

    python bench/simulate_scale.py [--scenario 1m-2h 1m-24h 100k-train] [--seed 0]

Scenarios (the phones' default population: a diurnal charging window per time zone; every
device trains for --train-time 120 s x lognormal(1) of its speed, so a round lasts minutes as
on phones; pace steering on; goal 100 reports a round):
  1m-2h       1,000,000 devices, 2 virtual hours, system-only (updates of the right size and codec)
  1m-2h-cap1h the same with pace steering's cap at an hour (`--max-retry-s 3600`, 600 s by default)
  1m-24h      1,000,000 devices, a virtual day, system-only, the cap at an hour
  100k-train  100,000 devices, real LiteRT training of digits_mlp (digits x100, IID) for 100 rounds
  100k-1h     100,000 devices, 1 virtual hour, system-only: device requests per second of one simulation
  100k-1h-x2  the same under seeds 0 and 1 at once (`--seeds 2 --jobs 2`): a simulation is one
              process, so on 2 cores a sweep of two is how both work
  1m-2h-x2    1m-2h under two seeds at once
  100k-6h-x2  100,000 devices, 6 virtual hours, two seeds at once (the pool's start-up a smaller share)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from machine import cpu_name

SCENARIOS = {
    "1m-2h": (["--devices", "1000000", "--hours", "2", "--system-only"], 100_000),
    "1m-2h-cap1h": (["--devices", "1000000", "--hours", "2", "--system-only", "--max-retry-s", "3600"], 100_000),
    "1m-24h": (["--devices", "1000000", "--hours", "24", "--system-only", "--max-retry-s", "3600"], 100_000),
    "100k-1h": (["--devices", "100000", "--hours", "1", "--system-only"], 100_000),
    "100k-1h-x2": (["--devices", "100000", "--hours", "1", "--system-only", "--seeds", "2", "--jobs", "2"], 100_000),
    "1m-2h-x2": (["--devices", "1000000", "--hours", "2", "--system-only", "--seeds", "2", "--jobs", "2"], 100_000),
    "100k-6h-x2": (["--devices", "100000", "--hours", "6", "--system-only", "--seeds", "2", "--jobs", "2"], 100_000),
    "100k-train": (["--devices", "100000", "--hours", "48", "--dataset", "digits:x100", "--partition", "iid"], 100),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", nargs="+", choices=sorted(SCENARIOS), default=["1m-2h", "100k-train"])
    ap.add_argument("--model", default="bench_out/models/digits_mlp.tflite",
                    help="the exported digits_mlp (exported with `fedge export --zoo digits_mlp` if absent)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not os.path.exists(args.model):
        from async_bench import zoo_model

        zoo_model("digits_mlp", os.path.dirname(args.model) or ".")
    print(f"CPU: {cpu_name()}", flush=True)
    for name in args.scenario:
        flags, rounds = SCENARIOS[name]
        with tempfile.TemporaryDirectory() as tmp:
            task = os.path.join(tmp, "task.toml")
            with open(task, "w") as f:
                f.write(f"rounds = {rounds}\ngoal_count = 100\ncodec = \"q8\"\n")
            cmd = [sys.executable, "-m", "fedge", "simulate", "--model", args.model, "--train-time", "120",
                   "--speed", "lognormal:1", "--task-config", task, "--seed", str(args.seed), "--no-progress",
                   "--out", os.path.join(tmp, "out")] + flags
            started = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        lines = [line for line in out.splitlines() if not line.startswith(("history:", "per seed:"))]
        print(f"\n== {name} ({time.perf_counter() - started:.0f} s in all, start-up and data included)")
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
