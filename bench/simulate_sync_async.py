"""Synchronous rounds vs asynchronous buffered aggregation (FedBuff) in `fedge simulate`: the
production coordinator on virtual time, so the comparison is not bounded by the host
(bench/async_bench.py runs the same study as emulated fleets in real time on 2 cores).

Same devices, data shards, seeds and heavy-tailed speeds in both modes: every device takes
--train-time x max(1, exp(sigma Z)) virtual seconds to train (as `fedge fleet --speed
lognormal:SIGMA --train-time T`); transfers at the default population's bandwidths; always
available (the study is about stragglers, not availability). Task settings as
bench/async_bench.py's (sync: goal G, over-selection 1.3; async: concurrency C, a version every
K updates, polynomial staleness weighting).

    python bench/simulate_sync_async.py [--devices 1000] [--dataset digits:x8] [--target 0.85]
    python bench/simulate_sync_async.py ... --seeds 8 [--jobs 2]   # each mode under 8 seeds

One run per mode is one draw (who is selected depends on arrival order, and an async curve
swings between versions); with --seeds each mode runs under seeds 0..N-1 (population, data
split and devices all drawn from the seed, the same seed in both modes), in --jobs processes,
and the bench prints each seed's figures, their mean and sd, the speed-up seed by seed
(median and range) and the ratio of the means.

Prints, per mode: virtual hours to the target (held-out accuracy of every committed
round/version; first reached, and from when it stays reached), the final accuracy (mean of
the last three), rounds or versions, the events processed and the wall time; the speed-up
of async over sync; writes both accuracy curves by virtual hour to --out/sync_vs_async.png
(and every run's figures and curve to --out/results.json).
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path

import numpy as np

from async_bench import cpu_name, plot, task_config, zoo_model


def run_one(mode: str, args, model: bytes, data) -> dict:
    from simulation.population import Population, read_population
    from simulation.run import SimConfig, Simulation

    settings = read_population(None)
    settings["availability"]["model"] = "always"
    settings["dropout"]["training"] = 0.0
    settings["speed"]["sigma"] = args.sigma
    population = Population.sample(settings, args.devices, np.random.default_rng([args.seed, 0]))
    cfg = SimConfig(devices=args.devices, hours=args.hours, seed=args.seed, train_time_s=args.train_time,
                    target=args.target, progress=False)
    started = time.perf_counter()
    sim = Simulation(cfg, model, task_config(mode, args), population, data)
    history = [r for r in sim.run() if r.state == "committed"]
    wall = time.perf_counter() - started
    tail = [r.global_accuracy for r in history[-3:]]
    below = [r.virtual_s for r in history if not r.global_accuracy >= args.target]
    after = [r.virtual_s for r in history if below and r.virtual_s > below[-1]] if below else \
        [r.virtual_s for r in history[:1]]
    return {"mode": mode, "committed": len(history), "wall_s": wall, "events": sim.queue.processed,
            "hours_to_target": sim.target_reached_s / 3600 if sim.target_reached_s is not None else math.nan,
            # From when every later round/version stays at or above the target (a noisy curve
            # touches it long before it stays there).
            "hours_staying": after[0] / 3600 if after else math.nan,
            "final_accuracy": sum(tail) / len(tail) if tail else math.nan,
            "curve": [(r.virtual_s / 3600, r.global_accuracy) for r in history]}


def mode_settings(mode: str, args) -> argparse.Namespace:
    """The flags as one mode runs them (rounds or versions; the async-only overrides)."""
    settings = argparse.Namespace(**vars(args))
    settings.rounds = args.rounds or (100 if mode == "sync" else 1000)
    if mode == "async":
        for name in ("server_lr", "server_momentum", "learning_rate"):
            if getattr(args, f"async_{name}") is not None:
                setattr(settings, name, getattr(args, f"async_{name}"))
    return settings


def _seeded(mode: str, settings: argparse.Namespace, seed: int) -> dict:
    """One mode under one seed, in a worker process (its own data split)."""
    from device_runtime.fleet.datasets import load_federated

    settings = argparse.Namespace(**{**vars(settings), "seed": seed})
    model = zoo_model("synthetic_mlp" if settings.dataset.startswith("synthetic") else "digits_mlp", "bench_out/models")
    data = load_federated(settings.dataset, settings.devices, settings.partition, seed)
    return {**run_one(mode, settings, model, data), "seed": seed}


def run_seeds(args, modes: dict[str, argparse.Namespace], out: Path) -> None:
    from concurrent.futures import ProcessPoolExecutor

    warnings.simplefilter("ignore", RuntimeWarning)  # the mean of a figure no seed reached is nan, said as such

    seeds = list(range(args.seeds))
    with ProcessPoolExecutor(max_workers=args.jobs or None) as pool:
        futures = {(m, k): pool.submit(_seeded, m, modes[m], k) for m in modes for k in seeds}
        results = {key: f.result() for key, f in futures.items()}
    (out / "results.json").write_text(json.dumps([results[key] for key in futures], indent=1))
    for m in modes:
        rows = [results[(m, k)] for k in seeds]
        for r in rows:
            print(f"{m:5s} seed {r['seed']}: {r['hours_to_target']:.2f} h to {args.target} (stays from "
                  f"{r['hours_staying']:.2f}), final {r['final_accuracy']:.3f}, {r['committed']} committed")
        for key in ("hours_to_target", "hours_staying", "final_accuracy"):
            values = np.asarray([r[key] for r in rows], float)
            print(f"{m:5s} {key}: mean {np.nanmean(values):.3f}, sd {np.nanstd(values, ddof=1):.3f} "
                  f"(over the {int(np.isfinite(values).sum())} of {len(values)} seeds with a value)")
    if len(modes) == 2:
        for key in ("hours_to_target", "hours_staying"):
            ratios = np.asarray([results[("sync", k)][key] / results[("async", k)][key] for k in seeds], float)
            means = (np.nanmean([results[("sync", k)][key] for k in seeds]) /
                     np.nanmean([results[("async", k)][key] for k in seeds]))
            print(f"sync / async, {key}: median {np.nanmedian(ratios):.2f}x over seeds "
                  f"({np.nanmin(ratios):.2f}-{np.nanmax(ratios):.2f}); ratio of the means {means:.2f}x")
    plot_seeds(results, args, out / "sync_vs_async_seeds.png")
    print(f"plot: {out / 'sync_vs_async_seeds.png'}")


def plot_seeds(results: dict, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colors = {"sync": "tab:blue", "async": "tab:orange"}
    for (mode, seed), r in results.items():
        xs, ys = zip(*r["curve"]) if r["curve"] else ((), ())
        ax.plot(xs, ys, color=colors[mode], lw=0.8, alpha=0.6, label=mode if seed == 0 else None)
    ax.axhline(args.target, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="virtual hours", ylabel="global accuracy (held-out)", ylim=(0, 1),
           title=f"{args.devices} devices, {args.dataset}: sync vs async, {args.seeds} seeds each")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--dataset", default="digits:x8")
    ap.add_argument("--partition", default="dirichlet:0.5")
    ap.add_argument("--sigma", type=float, default=1.0, help="lognormal speed spread")
    ap.add_argument("--train-time", type=float, default=60.0, help="virtual seconds of local training at 1x speed")
    ap.add_argument("--hours", type=float, default=48.0, help="virtual hours at most per run")
    ap.add_argument("--goal", type=int, default=100, help="sync goal_count")
    ap.add_argument("--concurrency", type=int, default=130)
    ap.add_argument("--buffer", type=int, default=10, help="async K (FedBuff's setting: small buffers)")
    ap.add_argument("--max-staleness", type=int, default=50)
    ap.add_argument("--staleness-weight", default="polynomial:0.5")
    ap.add_argument("--participation-gap", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=0, help="rounds (sync) / versions (async); 0: 100 and 1,000")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--learning-rate", type=float, default=0.1)
    ap.add_argument("--server-lr", type=float, default=1.0)
    ap.add_argument("--server-momentum", type=float, default=0.0)
    ap.add_argument("--async-server-lr", type=float, help="async only (default --server-lr): FedBuff tunes "
                                                          "the server's step for its small buffers")
    ap.add_argument("--async-server-momentum", type=float, help="async only (default --server-momentum)")
    ap.add_argument("--async-learning-rate", type=float, help="async only: the devices' learning rate "
                                                              "(default --learning-rate)")
    ap.add_argument("--modes", nargs="+", choices=("sync", "async"), default=["sync", "async"])
    ap.add_argument("--report-deadline-s", type=float, default=3600.0)
    ap.add_argument("--selection-window-s", type=float, default=60.0)
    ap.add_argument("--target", type=float, default=0.85)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=1, help="run each mode under seeds 0..N-1 (default: --seed only)")
    ap.add_argument("--jobs", type=int, default=0, help="processes for --seeds (default: one a core)")
    ap.add_argument("--out", default="bench_out/simulate_sync_async")
    args = ap.parse_args()
    from device_runtime.fleet.datasets import load_federated

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.seeds > 1:
        print(f"CPU: {cpu_name()}; {args.devices} devices, {args.dataset} {args.partition}, speeds "
              f"lognormal:{args.sigma} x {args.train_time:g} s of training; target {args.target}; {args.seeds} seeds")
        run_seeds(args, {mode: mode_settings(mode, args) for mode in args.modes}, out)
        return
    model = zoo_model("synthetic_mlp" if args.dataset.startswith("synthetic") else "digits_mlp", "bench_out/models")
    data = load_federated(args.dataset, args.devices, args.partition, args.seed)
    print(f"CPU: {cpu_name()}; {args.devices} devices, {args.dataset} {args.partition}, speeds lognormal:{args.sigma} "
          f"x {args.train_time:g} s of training; target {args.target}")
    results = []
    for mode in args.modes:
        r = run_one(mode, mode_settings(mode, args), model, data)
        results.append(r)
        print(f"{mode:5s}: {r['committed']:4d} {'versions' if mode == 'async' else 'rounds'}, virtual hours to "
              f"{args.target}: {r['hours_to_target']:.2f} (stays from {r['hours_staying']:.2f}), final accuracy "
              f"{r['final_accuracy']:.3f}; "
              f"{r['events']:,} events in {r['wall_s']:.0f} s of wall time")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    if len(results) < 2:
        return
    sync, asyn = results
    if math.isnan(sync["hours_to_target"]) or math.isnan(asyn["hours_to_target"]):
        reached = [r["mode"] for r in results if not math.isnan(r["hours_to_target"])]
        print(f"{args.target} reached by {', '.join(reached) or 'neither mode'} (final accuracy async "
              f"{asyn['final_accuracy']:.3f}, sync {sync['final_accuracy']:.3f})")
    else:
        print(f"async reaches {args.target} {sync['hours_to_target'] / asyn['hours_to_target']:.2f}x sooner than "
              f"sync (virtual time; final accuracy {asyn['final_accuracy']:.3f} vs {sync['final_accuracy']:.3f})")
    plot(results, f"{args.devices} devices, {args.dataset} (virtual time)", args.target, out / "sync_vs_async.png",
         xlabel="virtual hours")
    print(f"plot: {out / 'sync_vs_async.png'}")


if __name__ == "__main__":
    main()
