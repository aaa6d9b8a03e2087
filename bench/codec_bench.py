"""Bytes uploaded and final accuracy after 20 rounds of the demo (100 devices, digits,
Dirichlet 0.5, 10% dropout) for float32, 8-bit and 4-bit updates.

    python bench/codec_bench.py [--codecs f32 q8 q4 q4+rot]
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--codecs", nargs="+", default=["f32", "q8", "q4", "q4+rot"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for name in args.codecs:
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([sys.executable, "-m", "fedge", "demo", "--out", tmp, "--codec", name,
                                  "--seed", str(args.seed), "--min-accuracy", "0"],
                                 capture_output=True, text=True, check=True).stdout
            with open(Path(tmp) / "history.csv") as f:
                hist = [r for r in csv.DictReader(f) if r["state"] == "committed"]
        kib = float(re.search(r"bytes uploaded: ([\d.]+) KiB", out).group(1))
        rows.append((name, kib, float(hist[-1]["global_accuracy"]), len(hist)))
    base = next((r[1] for r in rows if r[0] == "f32"), rows[0][1])
    print(f"{'codec':<8} {'KiB up':>9} {'vs f32':>7} {'accuracy':>9} {'rounds':>7}")
    for name, kib, acc, n in rows:
        print(f"{name:<8} {kib:>9.1f} {kib / base:>7.1%} {acc:>9.4f} {n:>7}")


if __name__ == "__main__":
    main()
