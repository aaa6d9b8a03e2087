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

Two more experiments:

    python bench/heterogeneity.py --experiment scaffold         # FedAvg vs FedProx vs SCAFFOLD
    python bench/heterogeneity.py --experiment personalization  # global vs fine-tuned vs personal head

- scaffold: digits (4x augmented) Dirichlet(0.1) (100 devices, an MLP with plain SGD) and Synthetic(1,1)
  (30 devices, the paper's logistic regression); rounds to a target global accuracy and the
  final accuracy, for FedAvg, FedProx mu = 1 and SCAFFOLD.
- personalization: digits (4x augmented) Dirichlet(0.1), 100 devices; per-device accuracy (p10 / p50 / p90,
  federated evaluation on each device's own holdout) of the global model, of the global model
  after 20 local fine-tuning steps, and of a model whose last layer is personal (FedPer).
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


def export_digits_mlp(personal: bool = False) -> bytes:
    import keras

    from model_export.exporter import export_model

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, activation="softmax", name="head")], name="digits_sgd")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="sparse_categorical_crossentropy")
    return export_model(model, name="digits_sgd", batch_size=16, parity_steps=0,
                        personal=("head",) if personal else ()).tflite


def run_fleet(model: bytes, dataset: str, partition: str, devices: int, task: dict, args, stragglers: float = 0.0):
    """(round history, evaluations) of one fleet against a fresh `fedge serve`."""
    from device_runtime.fleet.datasets import load_federated
    from device_runtime.fleet.emulator import Fleet, FleetConfig
    from fedge.local_coordinator import LocalCoordinator

    data = load_federated(dataset, devices, partition, args.seed)
    with tempfile.TemporaryDirectory() as tmp, LocalCoordinator(os.path.join(tmp, "c.db"), TOKEN,
                                                                ("--checkin-rate", "1000000")) as server:
        cfg = FleetConfig(coordinator=server.url, admin_token=TOKEN, devices=devices, dataset=dataset,
                          partition=partition, dropout=0.0, slow_fraction=0.0, stragglers=stragglers,
                          seed=args.seed, progress=False, workers=args.workers, out_dir=tmp)
        fleet = Fleet(cfg, data)
        history = asyncio.run(fleet.run(model, task))
        return history, fleet.evaluations


def scaffold_experiment(args) -> None:
    setups = [("digits:x4", "dirichlet:0.1", 100, export_digits_mlp(), 0.8,
               {"epochs": 5, "batch_size": 16, "learning_rate": 0.05}),
              ("synthetic:1,1", "iid", 30, export_softmax(10, 0.01), 0.6,
               {"epochs": 20, "batch_size": 10, "learning_rate": 0.01})]
    methods = {"FedAvg": {}, "FedProx mu=1": {"proximal_mu": 1.0}, "SCAFFOLD": {"scaffold": True},
               "SCAFFOLD, c moved by |S|/N": {"scaffold": True, "scaffold_population": -1}}
    print(f"{'dataset':<16} {'method':<27} {'target':>6} {'rounds to it':>12} {'final acc':>9} {'ok':>4}", flush=True)
    for dataset, partition, devices, model, target, plan in setups:
        for method, keys in methods.items():
            task = {"rounds": args.rounds, "goal_count": 10, "over_selection": 1.0, "selection_window_s": 0.5,
                    "report_deadline_s": args.report_deadline_s, "eligibility": "", "codec": "f32", **plan, **keys}
            if task.get("scaffold_population") == -1:  # the paper's server step: c += |S|/N mean(dc)
                task["scaffold_population"] = devices
            history, _ = run_fleet(model, dataset, partition, devices, task, args)
            ok = [r for r in history if r.state == "committed"]
            reached = next((r.round for r in ok if r.global_accuracy >= target), None)
            final = sum(r.global_accuracy for r in ok[-5:]) / max(len(ok[-5:]), 1)
            print(f"{dataset:<16} {method:<27} {target:>6.2f} {reached if reached else 'not in ' + str(args.rounds):>12} "
                  f"{final:>9.3f} {len(ok):>4}", flush=True)


def personalization_experiment(args) -> None:
    print(f"{'model':<34} {'p10':>6} {'p50':>6} {'p90':>6} {'mean':>6}", flush=True)
    base = {"rounds": args.rounds, "goal_count": 10, "over_selection": 1.0, "selection_window_s": 0.5,
            "report_deadline_s": args.report_deadline_s, "eligibility": "", "codec": "f32", "epochs": 5,
            "batch_size": 16, "learning_rate": 0.05, "eval_every": args.rounds, "eval_goal_count": 100,
            "personalize_steps": 20}
    for label, model in (("global (shared head)", export_digits_mlp()),
                         ("personal head (FedPer)", export_digits_mlp(personal=True))):
        _, evaluations = run_fleet(model, "digits:x4", "dirichlet:0.1", 100, base, args)
        m = (evaluations[-1].get("metrics") or {}) if evaluations else {}
        if "eval_accuracy_p50" not in m:
            print(f"{label:<34} no evaluation result", flush=True)
            continue
        print(f"{label:<34} {m['eval_accuracy_p10']:>6.3f} {m['eval_accuracy_p50']:>6.3f} "
              f"{m['eval_accuracy_p90']:>6.3f} {m['eval_accuracy']:>6.3f}  ({m['eval_devices']} devices)", flush=True)
        if "personalized_accuracy" in m:
            print(f"{label + ' + 20 fine-tuning steps':<34} {m['personalized_accuracy_p10']:>6.3f} "
                  f"{m['personalized_accuracy_p50']:>6.3f} {m['personalized_accuracy_p90']:>6.3f} "
                  f"{m['personalized_accuracy']:>6.3f}  (lift p50 {m['personalization_lift_p50']:+.3f})",
                  flush=True)


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
    ap.add_argument("--experiment", choices=["fedprox", "scaffold", "personalization"], default="fedprox")
    args = ap.parse_args()
    if args.experiment == "scaffold":
        scaffold_experiment(args)
        return
    if args.experiment == "personalization":
        personalization_experiment(args)
        return
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
