"""Simulate a population against the production coordinator on a virtual clock:

    fedge simulate --model digits.tflite --devices 1000 --hours 24 [--population pop.toml]
                   [--task-config task.toml] [--system-only] [--target 0.9] [--out sim_out]

No HTTP and no sleeping: the coordinator's gateway, round driver, round kinds, strategies and
pace steering run on the in-memory store, and each device's check-ins, downloads, training
and uploads are events in virtual time (simulation/run.py). Devices train the exported model
through LiteRT on the fleet's datasets and partitions (`--dataset`, `--partition`), or, with
`--system-only`, upload updates of the right size for population-scale studies. The
population file sets availability (a diurnal cycle per time zone, or a trace), speed, network
and dropout (simulation/population.py lists its keys and defaults).

Writes history.csv/.json (one row per closed round: virtual time, reporters, accuracy, bytes)
and history.png (accuracy and reporters by virtual hour and by round) into --out, prints a
summary, and ends with `final global accuracy X after N committed rounds` and, with
--target, `virtual seconds to ACC: S` (or `not reached`). `--seeds 8 [--jobs 2]` runs the
scenario under each seed side by side and reports the spread (simulation/sweep.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

# The simulation's task defaults: a production-like round (phones take minutes), not the
# emulated fleet's seconds. --task-config keys win.
TASK_DEFAULTS = {"rounds": 20, "goal_count": 20, "over_selection": 1.3, "epochs": 5, "batch_size": 32,
                 "learning_rate": 0.05, "selection_window_s": 120.0, "report_deadline_s": 900.0,
                 "eligibility": "charging and unmetered and idle", "codec": "q8"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="the exported .tflite the devices train")
    parser.add_argument("--devices", type=int, default=100, help="simulated devices (default 100)")
    parser.add_argument("--hours", type=float, default=24.0, help="virtual hours to simulate at most (default 24)")
    parser.add_argument("--population", metavar="FILE.toml", default=None,
                        help="availability, speed, network and dropout models (default: simulation/population.py's)")
    parser.add_argument("--dataset", default="digits", help="digits | digits:xN | synthetic:ALPHA,BETA | emnist:FILE.h5")
    parser.add_argument("--partition", default="dirichlet:0.3",
                        help="iid | dirichlet:ALPHA | labelmix:ALPHA (equal shards, each device's label mix "
                             "~ Dirichlet(ALPHA): for 100,000 devices and more)")
    parser.add_argument("--speed", default=None, help="lognormal:SIGMA (overrides the population file's speed sigma)")
    parser.add_argument("--train-time", type=float, default=0.0, metavar="SECONDS",
                        help="a host-speed device's local training lasts this long, a slower one its slowdown "
                             "max(1, exp(SIGMA x Z)) times longer, as in `fedge fleet` (default: its seconds per "
                             "example x examples x epochs)")
    parser.add_argument("--task-config", metavar="FILE.toml", help="any task key, as in `fedge task create --config`")
    parser.add_argument("--system-only", action="store_true",
                        help="no training: devices upload updates of the right size (population-scale studies)")
    parser.add_argument("--target", type=float, default=None, metavar="ACC",
                        help="report the virtual time at which the global accuracy first reaches ACC")
    parser.add_argument("--max-retry-s", type=float, default=0.0, metavar="SECONDS",
                        help="pace steering's longest 'come back in' (`fedge serve --max-retry-s`; default: "
                             "the coordinator's, 600 s); at a million devices it, not the formula, sets the "
                             "check-in rate")
    parser.add_argument("--fixed-retry-s", type=float, default=0.0, metavar="SECONDS",
                        help="pace steering off: a device not selected comes back after this long (jittered), "
                             "eligible or not (default: steering on)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the population, data and devices (default 0)")
    parser.add_argument("--seeds", metavar="N|A-B|A,B,...", default=None,
                        help="a sweep: the scenario under each of these seeds (8: seeds 0-7), each a simulation "
                             "as --seed would run it, side by side in --jobs processes; per-seed histories in "
                             "OUT/seed-K/, seeds.csv and sweep.png (mean and spread by round) in OUT")
    parser.add_argument("--jobs", type=int, default=0, help="processes for --seeds (default: one a core)")
    parser.add_argument("--out", default="sim_out", help="folder for history.csv/.json/.png (default sim_out)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def task_config(path: str | None) -> dict:
    from device_runtime.fleet.cli import read_task_toml

    return {**TASK_DEFAULTS, **(read_task_toml(path) if path else {})}


def run(args: argparse.Namespace) -> int:
    if args.devices < 1:
        raise SystemExit("fedge simulate: --devices must be at least 1")
    population_settings(args)  # a bad population file or --speed is refused before anything runs
    if args.seeds is not None:
        return run_seeds(args)
    sim, history, wall = simulate(args, args.seed, Path(args.out), progress=not args.no_progress)
    out = Path(args.out)
    print(summary(sim, history, wall))
    print(f"history: {out / 'history.csv'}   plot: {out / 'history.png'}")
    committed = [r for r in history if r.state == "committed"]
    final = committed[-1].global_accuracy if committed else math.nan
    print(f"final global accuracy {final:.4f} after {len(committed)} committed rounds")
    if args.target is not None:
        reached = sim.target_reached_s
        print(f"virtual seconds to {args.target:g}: " + (f"{reached:.0f}" if reached is not None else "not reached"))
    return 0


def population_settings(args: argparse.Namespace) -> dict:
    from simulation.population import read_population

    settings = read_population(args.population)
    if args.speed:
        kind, _, sigma = args.speed.partition(":")
        if kind != "lognormal":
            raise SystemExit(f"fedge simulate: --speed {args.speed!r}: use lognormal:SIGMA")
        settings["speed"].update(model="lognormal", sigma=float(sigma or 1.0))
    return settings


def simulate(args: argparse.Namespace, seed: int, out: Path, progress: bool):
    """One simulation of the scenario under ``seed``, its history written to ``out``:
    (the simulation, its history, wall seconds)."""
    import numpy as np

    from simulation.population import Population
    from simulation.run import SimConfig, Simulation

    model = Path(args.model).read_bytes()
    data = None
    if not args.system_only:
        from device_runtime.fleet.datasets import load_federated

        data = load_federated(args.dataset, args.devices, args.partition, seed)
    population = Population.sample(population_settings(args), args.devices, np.random.default_rng([seed, 0]))
    cfg = SimConfig(devices=args.devices, hours=args.hours, seed=seed, system_only=args.system_only,
                    train_time_s=args.train_time, target=args.target, progress=progress,
                    fixed_retry_s=args.fixed_retry_s, max_retry_s=args.max_retry_s)
    started = time.perf_counter()
    sim = Simulation(cfg, model, task_config(args.task_config), population, data)
    history = sim.run()
    wall = time.perf_counter() - started
    write_outputs(history, out)
    return sim, history, wall


def run_seeds(args: argparse.Namespace) -> int:
    from simulation import sweep

    seeds = sweep.parse_seeds(args.seeds)  # a ValueError: main prints it as one line, exit 1
    if args.jobs < 0:
        raise ValueError("--jobs must be 0 (one a core) or more")
    jobs = max(1, min(args.jobs or os.cpu_count() or 1, len(seeds)))
    started = time.perf_counter()
    results = sweep.run_sweep(args, seeds, jobs, simulate)
    wall = time.perf_counter() - started
    out = sweep.write(results, args.out, wall, jobs)
    print("\n".join(sweep.report(results, wall, jobs, args.target)))
    print(f"per seed: {out}/seed-K/history.csv   sweep: {out / 'seeds.csv'}, {out / 'sweep.png'}")
    finals = sweep.finals(results)  # the mean the report above states, over the seeds that have one
    final = float(finals.mean()) if len(finals) else math.nan
    print(f"final global accuracy {final:.4f} after {min(r['committed'] for r in results)} "
          f"committed rounds (mean of {len(finals) or len(results)} seeds; the fewest rounds)")
    return 0


def summary(sim, history, wall_s: float) -> str:
    s = sim.stats
    committed = sum(r.state == "committed" for r in history)
    failed = sum(r.state == "failed" for r in history)
    took_part = int((s.uploads_by_device > 0).sum())
    refused = ", ".join(f"{k} {v}" for k, v in sorted(s.refused.items())) or "none"
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return "\n".join([
        f"{sim.cfg.devices} devices, {sim.clock.elapsed_s / 3600:.2f} virtual hours in {wall_s:.1f} s of wall time "
        f"({sim.queue.processed / max(wall_s, 1e-9):,.0f} events/s; {sim.queue.processed:,} events, of which "
        f"{s.device_requests:,} device requests: {s.device_requests / max(wall_s, 1e-9):,.0f}/s)",
        f"rounds: {committed} committed, {failed} failed; check-ins {s.checkins:,} "
        f"({s.ineligible_checkins:,} ineligible), assignments {s.assigned:,}, blob downloads {s.downloads:,}, "
        f"uploads {s.uploads:,}, "
        f"dropped {s.dropped:,}, abandoned at the deadline {s.abandoned:,}; refused uploads: {refused}"
        + (f"; upload attempts broken {s.upload_failures:,} (retries of a taken update {s.duplicate_uploads:,})"
           if s.upload_failures else ""),
        f"devices that took part: {took_part:,} of {sim.cfg.devices:,}; bytes up {s.bytes_up / 2**20:.1f} MiB, "
        f"down {s.bytes_down / 2**20:.1f} MiB; LiteRT trainings {s.trainings:,}; peak memory {peak:.0f} MiB",
    ])


def write_outputs(history, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [asdict(r) for r in history]
    fields = list(rows[0]) if rows else ["round", "state", "virtual_s"]
    with (out / "history.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    (out / "history.json").write_text(json.dumps(rows, indent=1, default=float))
    plot(history, out / "history.png")
    return out


def plot(history, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    committed = [r for r in history if r.state == "committed"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    hours = [r.virtual_s / 3600 for r in committed]
    axes[0].plot(hours, [r.global_accuracy for r in committed], marker=".")
    axes[0].set(xlabel="virtual hours", ylabel="global accuracy", title="accuracy by virtual time")
    axes[1].plot([r.round for r in committed], [r.global_accuracy for r in committed], marker=".")
    axes[1].set(xlabel="round", ylabel="global accuracy", title="accuracy by round")
    axes[2].bar([r.round for r in history], [r.reported for r in history],
                color=["tab:blue" if r.state == "committed" else "tab:red" for r in history])
    axes[2].set(xlabel="round", ylabel="reports", title="reports per round (red: failed)")
    fig.suptitle("fedge simulate")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
