"""One scenario under several seeds, side by side: `fedge simulate --seeds 8 --jobs 2`.

A single run is one draw of a random curve (who is selected depends on arrival order): the
accuracy after a round spreads by a few points between seeds, so comparing two algorithms or
two populations on one seed each can show a difference that is not there (at 100,000
devices one seed had async 1.11x faster to 0.85; four seeds have it 0.72x). A sweep runs each
seed as its own simulation (the same as `fedge simulate --seed K`, bit for bit) in a pool of
processes, one a core by default, and reports each seed, the mean and spread by round, and
the events per second of the whole pool (a simulation is one process: on a 2-core machine a
sweep of two at a time is how both cores work).

Writes OUT/seed-K/history.* per seed (OUT: --out), and in OUT seeds.csv (a row a seed),
sweep.json (the seeds and the mean/sd of the accuracy by round) and sweep.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

MAX_SEEDS = 1000


def parse_seeds(text: str) -> list[int]:
    """"8" (seeds 0-7), "3-6" (3, 4, 5, 6) or "0,4,9"."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",")]
        elif "-" in text.strip("-"):
            first, last = (int(s) for s in text.split("-", 1))
            seeds = list(range(first, last + 1))
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise ValueError(f"--seeds {text!r}: use a count (8), a range (3-6) or a list (0,4,9)") from None
    if not seeds or len(seeds) > MAX_SEEDS or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r}: 1 to {MAX_SEEDS} distinct seeds, none negative")
    return seeds


def run_sweep(args, seeds: list[int], jobs: int, simulate) -> list[dict]:
    """Each seed's simulation in a pool of ``jobs`` processes; a dict a seed, in seed order.
    ``simulate(args, seed, out, progress)`` runs one (`simulation.cli.simulate`: passed in,
    a module-level function the workers import by name, so this module imports no CLI)."""
    from tqdm import tqdm

    results = {}
    # The flags only (the parsed namespace also carries the command's handler, a module).
    flags = argparse.Namespace(**{k: v for k, v in vars(args).items()
                                  if isinstance(v, (str, int, float, bool, type(None)))})
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_one_seed, simulate, flags, seed): seed for seed in seeds}
        bar = tqdm(total=len(seeds), unit="seed", disable=True if args.no_progress else None, leave=False)
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.update(1)
        bar.close()
    return [results[s] for s in seeds]


def _one_seed(simulate, args, seed: int) -> dict:
    sim, history, wall = simulate(args, seed, Path(args.out) / f"seed-{seed}", progress=False)
    committed = [r for r in history if r.state == "committed"]
    return {"seed": seed, "committed": len(committed), "failed": sum(r.state == "failed" for r in history),
            "final_accuracy": committed[-1].global_accuracy if committed else math.nan,
            "to_target_s": sim.target_reached_s, "events": sim.queue.processed,
            "device_requests": sim.stats.device_requests, "wall_s": wall,
            "virtual_h": sim.clock.elapsed_s / 3600, "uploads": sim.stats.uploads,
            "accuracy_by_round": [(r.round, r.global_accuracy) for r in committed],
            "accuracy_by_hour": [(r.virtual_s / 3600, r.global_accuracy) for r in committed]}


def by_round(results: list[dict]) -> list[dict]:
    """Mean and sample sd of the accuracy after each round, over the seeds that committed it."""
    rounds: dict[int, list[float]] = {}
    for res in results:
        for num, acc in res["accuracy_by_round"]:
            rounds.setdefault(num, []).append(acc)
    out = []
    for num in sorted(rounds):
        values = np.asarray(rounds[num], float)
        out.append({"round": num, "seeds": len(values), "mean": float(np.mean(values)),
                    "sd": float(np.std(values, ddof=1)) if len(values) > 1 else math.nan})
    return out


def write(results: list[dict], out_dir: str, wall_s: float, jobs: int) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fields = ["seed", "committed", "failed", "final_accuracy", "to_target_s", "events", "device_requests", "wall_s",
              "virtual_h", "uploads"]
    with (out / "seeds.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)
    summary = {"wall_s": wall_s, "jobs": jobs, "seeds": [{k: r[k] for k in fields} for r in results],
               "accuracy_by_round": by_round(results)}
    (out / "sweep.json").write_text(json.dumps(summary, indent=1, default=float))
    plot(results, out / "sweep.png")
    return out


def finals(results: list[dict]) -> np.ndarray:
    """The final accuracy of each seed that committed a round (and trained: system-only has none)."""
    values = np.asarray([r["final_accuracy"] for r in results], float)
    return values[np.isfinite(values)]


def report(results: list[dict], wall_s: float, jobs: int, target: float | None) -> list[str]:
    events, requests = sum(r["events"] for r in results), sum(r["device_requests"] for r in results)
    alone = events / max(sum(r["wall_s"] for r in results), 1e-9)
    ok = finals(results)
    lines = [f"{len(results)} simulations on {jobs} process{'es' if jobs > 1 else ''}: {events:,} events in "
             f"{wall_s:.1f} s of wall time ({events / max(wall_s, 1e-9):,.0f} events/s in all; "
             f"{alone:,.0f} per simulation), of which {requests:,} device requests "
             f"({requests / max(wall_s, 1e-9):,.0f}/s in all)",
             "final accuracy by seed: " + ", ".join(f"{r['seed']}: {r['final_accuracy']:.4f} ({r['committed']} rounds)"
                                                     for r in results)]
    if len(ok):
        sd = float(np.std(ok, ddof=1)) if len(ok) > 1 else 0.0
        lines.append(f"final accuracy over seeds: mean {ok.mean():.4f}, sd {sd:.4f}, min {ok.min():.4f}, "
                     f"max {ok.max():.4f}")
    if target is not None:
        times = [r["to_target_s"] for r in results if r["to_target_s"] is not None]
        reached = f"median {np.median(times):.0f}, {min(times):.0f}-{max(times):.0f}" if times else "not reached"
        lines.append(f"virtual seconds to {target:g}: {reached} (reached by {len(times)} of {len(results)} seeds)")
    return lines


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for res in results:
        hours = res["accuracy_by_hour"]
        axes[0].plot([h for h, _ in hours], [a for _, a in hours], lw=0.8, alpha=0.6, label=f"seed {res['seed']}")
    axes[0].set(xlabel="virtual hours", ylabel="global accuracy", title="accuracy by virtual time, each seed")
    if len(results) <= 10:
        axes[0].legend(fontsize=7)
    rows = by_round(results)
    rounds = np.asarray([r["round"] for r in rows])
    mean = np.asarray([r["mean"] for r in rows])
    sd = np.nan_to_num(np.asarray([r["sd"] for r in rows]))
    axes[1].plot(rounds, mean, marker=".", label="mean")
    axes[1].fill_between(rounds, mean - sd, mean + sd, alpha=0.3, label="± 1 sd")
    axes[1].set(xlabel="round", ylabel="global accuracy", title=f"accuracy by round over {len(results)} seeds")
    axes[1].legend(fontsize=8)
    fig.suptitle("fedge simulate --seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
