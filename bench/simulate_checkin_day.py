"""Check-ins per second over a simulated day, pace steering on and off, and who takes part.

A population with the default diurnal availability (a nightly charging window per device,
spread over seven time zones) runs a long task for --hours virtual hours in
`fedge simulate --system-only`, twice: with the coordinator's pace steering, and with
steering off (every device polls every --fixed-retry-s, the naive client). Bonawitz et al.
(2019) show steering flattening the check-in peaks of such a population; this measures it
on fedge's own coordinator.

    python bench/simulate_checkin_day.py [--devices 10000] [--hours 24] [--fixed-retry-s 60]
        [--max-retry-s 600]

--max-retry-s is steering's cap (the coordinator's `max_retry_s`): at a million devices the
steering formula asks for a window of days, so the cap sets the load unless it is that long.

Prints per mode the check-ins per second by hour after the first (mean, lowest, peak; the first
hour holds every available device's first check-in), the rounds committed, and who the model
is trained on: the share of uploads by device speed quartile, by the quartile of the device's
nightly window (hours a night it is charging, idle and on Wi-Fi) and by time zone;
writes the hourly curves to --out/checkins_by_hour.png and .json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from async_bench import cpu_name, zoo_model


def run_one(args, model: bytes, fixed_retry_s: float, max_retry_s: float) -> dict:
    from simulation.population import Population, read_population
    from simulation.run import SimConfig, Simulation

    population = Population.sample(read_population(None), args.devices, np.random.default_rng([args.seed, 0]))
    task = {"rounds": 1_000_000, "goal_count": args.goal, "over_selection": 1.3, "selection_window_s": 120.0,
            "report_deadline_s": 900.0, "eligibility": "charging and unmetered and idle", "codec": "q8",
            "epochs": 1}
    cfg = SimConfig(devices=args.devices, hours=args.hours, seed=args.seed, system_only=True,
                    train_time_s=args.train_time, progress=False, fixed_retry_s=fixed_retry_s,
                    max_retry_s=max_retry_s)
    started = time.perf_counter()
    sim = Simulation(cfg, model, task, population)
    history = sim.run()
    wall = time.perf_counter() - started
    per_hour = np.array([sim.stats.checkins_by_hour.get(h, 0) for h in range(int(args.hours))]) / 3600.0
    uploads = sim.stats.uploads_by_device

    def shares(groups: np.ndarray, n: int) -> list[float]:
        return [float(uploads[groups == g].sum() / max(1, uploads.sum())) for g in range(n)]

    quartile = np.digitize(population.example_s, np.quantile(population.example_s, [0.25, 0.5, 0.75]))
    share = shares(quartile, 4)
    # Availability class: how many hours a night the device is charging, idle and on Wi-Fi.
    window = np.digitize(population.night_hours, np.quantile(population.night_hours, [0.25, 0.5, 0.75]))
    zones = np.unique(population.tz_h)
    by_zone = dict(zip((f"{z:+g}" for z in zones), shares(np.searchsorted(zones, population.tz_h), len(zones))))
    return {"per_hour": per_hour, "committed": sum(r.state == "committed" for r in history), "wall_s": wall,
            "events": sim.queue.processed, "share_by_speed": share, "checkins": sim.stats.checkins,
            "share_by_window": shares(window, 4), "share_by_timezone": by_zone}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--goal", type=int, default=100)
    ap.add_argument("--train-time", type=float, default=120.0, help="virtual seconds of training at 1x speed")
    ap.add_argument("--fixed-retry-s", type=float, default=60.0, help="steering off: every device polls this often")
    ap.add_argument("--max-retry-s", type=float, default=600.0, help="steering on: the cap on its window")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench_out/simulate_checkin_day")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = zoo_model("digits_mlp", "bench_out/models")
    print(f"CPU: {cpu_name()}; {args.devices:,} devices, {args.hours:g} virtual hours, diurnal availability, "
          f"goal {args.goal}, {args.train_time:g} s of training x lognormal speeds")
    results = {}
    for mode, fixed in ((f"steering on (cap {args.max_retry_s:g} s)", 0.0),
                        (f"off (every {args.fixed_retry_s:g} s)", args.fixed_retry_s)):
        r = results[mode] = run_one(args, model, fixed, args.max_retry_s)
        rate = r["per_hour"][1:]  # the first hour holds every available device's first check-in
        print(f"{mode:28s}: check-ins/s after the first hour: mean {rate.mean():8.1f}, min {rate.min():8.1f}, "
              f"peak {rate.max():8.1f} (peak/mean {rate.max() / max(rate.mean(), 1e-9):.2f}); first hour "
              f"{r['per_hour'][0]:.1f}; {r['checkins']:,} check-ins, {r['committed']} rounds; uploads by speed "
              f"quartile (fastest first) {', '.join(f'{s:.0%}' for s in r['share_by_speed'])}, by nightly "
              f"window quartile (shortest first) {', '.join(f'{s:.0%}' for s in r['share_by_window'])}, by UTC "
              f"offset {', '.join(f'{z} {s:.0%}' for z, s in r['share_by_timezone'].items())}; "
              f"{r['events']:,} events in {r['wall_s']:.0f} s")
    (out / "checkins_by_hour.json").write_text(json.dumps(
        {mode: {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()}
         for mode, r in results.items()}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for mode, r in results.items():
        ax.plot(np.arange(len(r["per_hour"])), r["per_hour"], "o-", markersize=3, label=mode)
    ax.set(xlabel="virtual hour (UTC)", ylabel="check-ins per second", yscale="log",
           title=f"{args.devices:,} devices over a day: check-ins per second")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "checkins_by_hour.png", dpi=110)
    print(f"plot: {out / 'checkins_by_hour.png'}")


if __name__ == "__main__":
    main()
