"""Privacy / utility trade-off of user-level DP-FedAvg on the demo task.

Runs `fedge demo --dp` (digits MLP, 100 emulated devices, Dirichlet 0.5, 40 reports per
round, 20 rounds, adaptive clipping toward the median norm) for a few noise
multipliers, and prints final accuracy next to the epsilon the RDP accountant of
dp-accounting reports at delta = 1e-3. Writes dp_tradeoff.md (a table for docs/security.md)
and dp_tradeoff.png to --out.

    python bench/dp_tradeoff.py --noise 0 0.3 0.7 1.0

With --dp-sgd the noise is example-level DP-SGD on the devices instead (`fedge demo --dp-sgd Z`),
and epsilon is what one device's data spent, by the devices' own ledgers (median and largest):

    python bench/dp_tradeoff.py --dp-sgd --noise 0 0.7 1.0 --devices 10 --goal-count 8 --epochs 1 --rounds 30

--equal-epsilon E compares central DP (the coordinator's noise, no SecAgg) with distributed DP
(the devices' noise under SecAgg+) at the same target epsilon, both calibrated by the
coordinator: final accuracy, the epsilon each finished task reports, bits per parameter on the
wire, the SecAgg ring's bits and the most bits an unmasked sum needed (never wrapped):

    python bench/dp_tradeoff.py --equal-epsilon 8 --devices 100 [--dataset synthetic:0.5,0.5]

--dp-sgd-epsilon E ... picks each run's noise multiplier instead: the smallest z (dp-accounting's
RDP accountant) with which the device holding the fewest training examples, taking part in
every round, spends at most E at delta 1e-5; every other device spends less.

    python bench/dp_tradeoff.py --dp-sgd --dp-sgd-epsilon 1 3 8 --devices 10 --goal-count 8 --epochs 1 \
        --rounds 30 --dp-sgd-clip 4
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
    ap.add_argument("--fixed-clip", action="store_true", help="keep the clip fixed (default: adaptive, median)")
    ap.add_argument("--dp-sgd", action="store_true", help="example-level DP-SGD on the devices instead")
    ap.add_argument("--dp-sgd-clip", type=float, default=1.0, help="DP-SGD's per-example clip")
    ap.add_argument("--devices", type=int, default=None, help="the demo's devices (its default: 100)")
    ap.add_argument("--goal-count", type=int, default=None, help="reports per round (the demo's default: 40)")
    ap.add_argument("--epochs", type=int, default=None, help="local epochs (the demo's default: 10)")
    ap.add_argument("--out", default="bench_out/dp_tradeoff")
    ap.add_argument("--batch-size", type=int, default=32, help="the demo's --batch-size (the exported batch)")
    ap.add_argument("--learning-rate", type=float, default=None, help="the demo's device learning rate (0.08)")
    ap.add_argument("--dataset", default="digits", help="the demo's --dataset (digits, digits:x4, digits:x8)")
    ap.add_argument("--dp-sgd-epsilon", type=float, nargs="+", default=None,
                    help="with --dp-sgd: target epsilons; each run's z is calibrated so that no device spends more")
    ap.add_argument("--equal-epsilon", type=float, default=0.0,
                    help="instead: central vs distributed DP calibrated to this epsilon (see above)")
    args = ap.parse_args()
    if args.equal_epsilon:
        equal_epsilon(args)
        return
    if args.dp_sgd_epsilon:
        args.noise = [worst_device_noise(eps, args) for eps in args.dp_sgd_epsilon]
        print("calibrated noise multipliers: " + ", ".join(f"epsilon {e:g} -> z {z:.3f}"
                                                         for e, z in zip(args.dp_sgd_epsilon, args.noise)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for z in args.noise:
        run_dir = out / f"z{z:g}"
        cmd = [sys.executable, "-m", "fedge", "demo", "--out", str(run_dir), "--rounds", str(args.rounds),
               "--min-accuracy", "0"]
        for flag, value in (("--devices", args.devices), ("--goal-count", args.goal_count), ("--epochs", args.epochs),
                            ("--dataset", args.dataset), ("--batch-size", args.batch_size),
                            ("--learning-rate", args.learning_rate)):
            if value is not None:
                cmd += [flag, str(value)]
        if z > 0 and args.dp_sgd:
            cmd += ["--dp-sgd", str(z), "--dp-sgd-clip", str(args.dp_sgd_clip)]
        elif z > 0:
            cmd += ["--dp", "--noise-multiplier", str(z), "--dp-mode", args.dp_mode]
            cmd += ["--dp-fixed-clip"] if args.fixed_clip else []
        if args.dp_mode == "distributed" and not args.dp_sgd:
            cmd += ["--secagg", "secagg+"]
        if args.clip_norm is not None:
            cmd += ["--clip-norm", str(args.clip_norm)]
        text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        acc = float(re.search(r"federated global model: ([0-9.]+)", text).group(1))
        eps = re.search(r"largest ([0-9.]+)" if args.dp_sgd else r"epsilon = ([0-9.inf]+)", text)
        median = re.search(r"median ([0-9.]+)", text)
        with open(run_dir / "history.csv") as f:
            curve = [float(r["global_accuracy"]) for r in csv.DictReader(f) if r["state"] == "committed"]
        rows.append((z, acc, float(eps.group(1)) if eps else float("inf"), curve,
                     float(median.group(1)) if median else float("inf")))
        print(f"noise multiplier {z:4.2f}: accuracy {acc:.4f}  epsilon {rows[-1][2]:.2f}", flush=True)
    if args.dp_sgd:
        table = ["| noise multiplier z | final accuracy | example-level epsilon per device, median / largest "
                 "(delta = 1e-5) |", "|---:|---:|---:|"]
        table += [f"| {z:.3g} | {acc:.3f} | {'∞ (no DP)' if z == 0 else f'{med:.1f} / {eps:.1f}'} |"
                  for z, acc, eps, _, med in rows]
    else:
        table = ["| noise multiplier z | final accuracy | epsilon (delta = 1e-3) |", "|---:|---:|---:|"]
        table += [f"| {z:g} | {acc:.3f} | {'∞ (no DP)' if z == 0 else f'{eps:.1f}'} |" for z, acc, eps, _, _ in rows]
    (out / "dp_tradeoff.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for z, _, eps, curve, _ in rows:
        ax.plot(range(1, len(curve) + 1), curve, label=f"z={z:.3g}" + ("" if z == 0 else f", eps={eps:.1f}"))
    ax.set_xlabel("round")
    ax.set_ylabel("global accuracy (held-out digits)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("example-level DP-SGD on the devices (largest epsilon per device, delta 1e-5)" if args.dp_sgd
                 else f"DP-FedAvg ({args.dp_mode} noise), 100 devices, 40 per round, delta 1e-3")
    fig.tight_layout()
    fig.savefig(out / "dp_tradeoff.png", dpi=110)
    print(f"wrote {out / 'dp_tradeoff.md'} and {out / 'dp_tradeoff.png'}")


def equal_epsilon(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for mode in ("central", "distributed"):
        cmd = [sys.executable, "-m", "fedge", "demo", "--out", str(out / mode), "--rounds", str(args.rounds),
               "--min-accuracy", "0", "--dp", "--dp-mode", mode, "--dp-target-epsilon", str(args.equal_epsilon),
               "--dataset", args.dataset]
        for flag, value in (("--devices", args.devices), ("--goal-count", args.goal_count), ("--epochs", args.epochs),
                            ("--learning-rate", args.learning_rate), ("--clip-norm", args.clip_norm)):
            if value is not None:
                cmd += [flag, str(value)]
        cmd += ["--secagg", "secagg+"] if mode == "distributed" else []
        cmd += ["--dp-fixed-clip"] if args.fixed_clip else []
        text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        acc = float(re.search(r"federated global model: ([0-9.]+)", text).group(1))
        eps = float(re.search(r"epsilon = ([0-9.]+)", text).group(1))
        # Of what the devices uploaded, against the float32 updates they stood for: bits a parameter.
        share = float(re.search(r"bytes uploaded: [0-9.]+ KiB = ([0-9.]+)% of float32", text).group(1)) / 100
        ring = re.search(r"secagg ring: (\d+) bits per coordinate; the unmasked sums needed at most (\d+) bits", text)
        rows.append((mode, acc, eps, 32 * share, ring.groups() if ring else ("-", "-")))
        print(f"{mode}: accuracy {acc:.4f}, epsilon {eps:.3f} (target {args.equal_epsilon:g})", flush=True)
    table = [f"| DP ({args.dataset}, {args.devices or 100} devices) | final accuracy | epsilon reported (target "
             f"{args.equal_epsilon:g}) | bits per parameter uploaded | SecAgg ring bits | bits the sums needed |",
             "|---|---:|---:|---:|---:|---:|"]
    table += [f"| {mode} | {acc:.3f} | {eps:.3f} | {bits:.2f} | {ring[0]} | {ring[1]} |"
              for mode, acc, eps, bits, ring in rows]
    (out / "equal_epsilon.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


def worst_device_noise(target: float, args, delta: float = 1e-5) -> float:
    """The smallest z with which the demo's smallest device (fewest training examples after its
    holdout) spends at most `target` if it trains in every round (bisection over dp-accounting)."""
    import math

    from dp_accounting import dp_event, rdp

    from device_runtime.example_store import split_holdout
    from device_runtime.fleet.datasets import load_federated

    data = load_federated(args.dataset, args.devices or 100, "dirichlet:0.5", 0)
    fewest = min(len(split_holdout(x, y, 0.1, i).x_train) for i, (x, y) in enumerate(data.shards))
    q = min(1.0, args.batch_size / fewest)
    steps = (args.rounds or 20) * (args.epochs or 10) * math.ceil(fewest / args.batch_size)

    def spent(z: float) -> float:
        accountant = rdp.RdpAccountant()
        accountant.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(z)), steps)
        return accountant.get_epsilon(delta)

    lo, hi = 0.1, 200.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if spent(mid) > target else (lo, mid)
    return hi


if __name__ == "__main__":
    main()
