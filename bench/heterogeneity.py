"""FedProx's synthetic experiments (Li et al., MLSys 2020, section 5), reproduced on fedge.

Synthetic(0,0), (0.5,0.5) and (1,1): 30 devices, 10 per round, E = 20 local epochs, batch
10, learning rate 0.01, multinomial logistic regression (60 features, 10 classes), with 0%
and 90% stragglers (each round a straggler can run only U[1, 20] epochs). Three methods,
as in the paper's figure 1:

- FedAvg: stragglers' partial work is dropped (`partial_work = false`, mu = 0);
- FedProx, mu = 0: partial work counts (`partial_work = true`);
- FedProx, mu = 1: partial work and the proximal term.

Every run is a real `fedge serve` and a fleet of LiteRT devices training the exported model
(`proximal_mu` is an input of its train step). Prints the final global test accuracy and
loss (mean of the last five rounds: the global model on the devices' held-out examples; the
paper plots the training loss, which diverges and oscillates the same way) per dataset,
straggler rate and method, and writes a plot in the paper's layout to --out.

    python bench/heterogeneity.py [--rounds 40] [--datasets synthetic:0,0 synthetic:0.5,0.5 synthetic:1,1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import tempfile
from pathlib import Path

TOKEN = "heterogeneity-bench"
METHODS = {"FedAvg": {"partial_work": False, "proximal_mu": 0.0},
           "FedProx mu=0": {"partial_work": True, "proximal_mu": 0.0},
           "FedProx mu=1": {"partial_work": True, "proximal_mu": 1.0}}


def export_softmax(batch: int, lr: float) -> bytes:
    import keras

    from model_export.exporter import export_model

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((60,)), keras.layers.Dense(10, activation="softmax")], name="mclr")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="sparse_categorical_crossentropy")
    return export_model(model, name="synthetic_mclr", batch_size=batch, parity_steps=0).tflite


def run_one(model: bytes, dataset: str, stragglers: float, method: str, args) -> list:
    from device_runtime.fleet.datasets import load_federated
    from device_runtime.fleet.emulator import Fleet, FleetConfig
    from fedge.local_coordinator import LocalCoordinator

    data = load_federated(dataset, args.devices, "iid", args.seed)
    task = {"rounds": args.rounds, "goal_count": args.per_round, "over_selection": 1.0, "min_reports": 1,
            "selection_window_s": 0.5, "report_deadline_s": args.report_deadline_s, "eligibility": "",
            "epochs": args.epochs, "batch_size": args.batch, "learning_rate": args.lr, "codec": "f32",
            **METHODS[method]}
    with tempfile.TemporaryDirectory() as tmp, LocalCoordinator(os.path.join(tmp, "c.db"), TOKEN,
                                                                ("--checkin-rate", "1000000")) as server:
        cfg = FleetConfig(coordinator=server.url, admin_token=TOKEN, devices=args.devices, dataset=dataset,
                          partition="iid", dropout=0.0, slow_fraction=0.0, stragglers=stragglers, seed=args.seed,
                          progress=False, workers=args.workers, out_dir=tmp)
        return asyncio.run(Fleet(cfg, data).run(model, task))


def plot(results: dict, datasets: list[str], rates: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(rate, what) for rate in rates for what in ("train_loss", "global_accuracy")]
    fig, axes = plt.subplots(len(rows), len(datasets), figsize=(4 * len(datasets), 2.6 * len(rows)), squeeze=False)
    for col, dataset in enumerate(datasets):
        for row, (rate, what) in enumerate(rows):
            ax = axes[row][col]
            for method in METHODS:
                hist = [r for r in results[(dataset, rate, method)] if r["state"] == "committed"]
                ax.plot([r["round"] for r in hist], [r[what] for r in hist], label=method, linewidth=1.5)
            ax.set_title(f"{dataset}, {int(rate * 100)}% stragglers", fontsize=9)
            ax.set_ylabel("global model loss" if what == "train_loss" else "test accuracy", fontsize=8)
            ax.grid(alpha=0.3)
            if what == "global_accuracy":
                ax.set_ylim(0, 1)
            if row == len(rows) - 1:
                ax.set_xlabel("round")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["synthetic:0,0", "synthetic:0.5,0.5", "synthetic:1,1"])
    ap.add_argument("--stragglers", type=float, nargs="+", default=[0.0, 0.9])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--devices", type=int, default=30)
    ap.add_argument("--per-round", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--report-deadline-s", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench_out/heterogeneity")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = export_softmax(args.batch, args.lr)
    print(f"{args.devices} devices, {args.per_round} per round, E={args.epochs}, batch {args.batch}, lr {args.lr}, "
          f"{args.rounds} rounds; {os.cpu_count()} cores")
    print(f"{'dataset':<20} {'stragglers':>10} {'method':<14} {'accuracy':>8} {'loss':>10} {'ok':>4} "
          f"{'reports/round':>13}", flush=True)
    results = {}
    for dataset in args.datasets:
        for rate in args.stragglers:
            for method in METHODS:
                history = run_one(model, dataset, rate, method, args)
                rows = [{"round": r.round, "state": r.state, "train_loss": r.global_loss,
                         "global_accuracy": r.global_accuracy, "reported": r.reported} for r in history]
                results[(dataset, rate, method)] = rows
                ok = [r for r in rows if r["state"] == "committed"]
                tail = ok[-5:]
                acc = sum(r["global_accuracy"] for r in tail) / len(tail) if tail else math.nan
                loss = sum(r["train_loss"] for r in tail) / len(tail) if tail else math.nan
                reports = sum(r["reported"] for r in ok) / len(ok) if ok else 0.0
                print(f"{dataset:<20} {rate:>10.0%} {method:<14} {acc:>8.3f} {loss:>10.3f} {len(ok):>4} "
                      f"{reports:>13.1f}", flush=True)
    (out / "results.json").write_text(json.dumps({f"{d}|{r}|{m}": v for (d, r, m), v in results.items()}, indent=1))
    plot(results, args.datasets, args.stragglers, out / "fedprox_synthetic.png")
    print(f"plot: {out / 'fedprox_synthetic.png'}")


if __name__ == "__main__":
    main()
