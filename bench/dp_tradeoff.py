"""Privacy / utility trade-off of user-level DP-FedAvg on the demo task.

Runs `fedge demo --dp` (digits MLP, 100 emulated devices, Dirichlet 0.5, 40 reports per
round, 20 rounds, adaptive clipping toward the median norm) for a few noise
multipliers, and prints final accuracy next to the epsilon the RDP accountant of
dp-accounting reports at delta = 1e-3. Writes dp_tradeoff.md (a table for docs/security.md)
and dp_tradeoff.png to --out.

    python bench/dp_tradeoff.py --noise 0 0.3 0.7 1.0
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.3, 0.7, 1.0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--dp-mode", choices=["central", "distributed"], default="central",
                    help="distributed: devices add discrete Gaussian noise under SecAgg (fixed clip --clip-norm)")
    ap.add_argument("--clip-norm", type=float, default=None, help="the demo's clip (its default: 3.0)")
    ap.add_argument("--out", default="bench_out/dp_tradeoff")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for z in args.noise:
        run_dir = out / f"z{z:g}"
        cmd = [sys.executable, "-m", "fedge", "demo", "--out", str(run_dir), "--rounds", str(args.rounds),
               "--min-accuracy", "0"]
        if z > 0:
            cmd += ["--dp", "--noise-multiplier", str(z), "--dp-mode", args.dp_mode]
        if args.dp_mode == "distributed":
            cmd += ["--secagg", "secagg+"]
        if args.clip_norm is not None:
            cmd += ["--clip-norm", str(args.clip_norm)]
        text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        acc = float(re.search(r"federated global model: ([0-9.]+)", text).group(1))
        eps = re.search(r"epsilon = ([0-9.inf]+)", text)
        with open(run_dir / "history.csv") as f:
            curve = [float(r["global_accuracy"]) for r in csv.DictReader(f) if r["state"] == "committed"]
        rows.append((z, acc, float(eps.group(1)) if eps else float("inf"), curve))
        print(f"noise multiplier {z:4.2f}: accuracy {acc:.4f}  epsilon {rows[-1][2]:.2f}", flush=True)
    table = ["| noise multiplier z | final accuracy | epsilon (delta = 1e-3) |", "|---:|---:|---:|"]
    table += [f"| {z:g} | {acc:.3f} | {'∞ (no DP)' if z == 0 else f'{eps:.1f}'} |" for z, acc, eps, _ in rows]
    (out / "dp_tradeoff.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for z, _, eps, curve in rows:
        ax.plot(range(1, len(curve) + 1), curve, label=f"z={z:g}" + ("" if z == 0 else f", eps={eps:.1f}"))
    ax.set_xlabel("round")
    ax.set_ylabel("global accuracy (held-out digits)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"DP-FedAvg ({args.dp_mode} noise), 100 devices, 40 per round, delta 1e-3")
    fig.tight_layout()
    fig.savefig(out / "dp_tradeoff.png", dpi=110)
    print(f"wrote {out / 'dp_tradeoff.md'} and {out / 'dp_tradeoff.png'}")


if __name__ == "__main__":
    main()
