"""What a committed round records about its reports: pure functions of the stored rows.

A device's claims are bounded here as everywhere: its example count weighs its metrics no
more than its update (max_example_count), and a missing file counts for nothing."""

from __future__ import annotations

import functools
from pathlib import Path

from coordinator.aggregation.evaluation import summarize, summarize_personalized
from coordinator.store.records import UpdateRecord
from coordinator.tasks.config import TaskConfig


def max_dp_sgd_steps(config: TaskConfig, batch_size: int) -> int:
    """The most DP-SGD steps a round's plan allows a device: every epoch over at most
    max_example_count examples in batches of the model's size."""
    return config.epochs * -(-config.max_example_count // max(1, batch_size))


def training_metrics(config: TaskConfig, updates: list[UpdateRecord], bytes_out: int) -> dict:
    cap = config.max_example_count
    metas = [(min(u.examples, cap), u.meta) for u in updates]
    total = sum(n for n, _ in metas) or 1
    # A device's holdout weighs its metrics no more than the plan's example cap either.
    metas = [(n, {**m, "eval_count": min(int(m["eval_count"]), cap)}) for n, m in metas]
    eval_total = sum(m["eval_count"] for _, m in metas)
    out = {"reports": len(metas), "examples": int(sum(n for n, _ in metas)),
           "bytes_in": sum(file_size(u.blob) for u in updates), "bytes_out": bytes_out,
           "train_loss": sum(n * m["train_loss"] for n, m in metas) / total}
    if config.asynchronous and metas:
        stale = [int(m.get("staleness", 0)) for _, m in metas]
        out["staleness_mean"] = sum(stale) / len(stale)
        out["staleness_max"] = max(stale)
        out["staleness_counts"] = {str(v): stale.count(v) for v in sorted(set(stale))}
    if config.dp_sgd_noise_multiplier > 0:
        out.update(dp_sgd_metrics([m for _, m in metas], config.dp_sgd_delta, config))
    if eval_total:
        out["eval_accuracy"] = sum(m["eval_count"] * m["eval_accuracy"] for _, m in metas) / eval_total
        out["eval_loss"] = sum(m["eval_count"] * m["eval_loss"] for _, m in metas) / eval_total
    return out


def dp_sgd_metrics(metas: list[dict], delta: float, config: TaskConfig | None = None) -> dict:
    """Example-level DP-SGD in a round: the largest epsilon one device's data spent in it (by
    the coordinator's accountant, from the steps the device reported) and the largest total a
    device reported by its own ledger (absent where no device accounts for itself).

    With the task's ``config``, a device's claims count only as far as the plan allows: its
    noise at the task's multiplier (a device claiming more gets no smaller epsilon), its steps
    at most the plan's (intake refuses more), and its own ledger at most what every step of
    every round so far would spend at a sampling rate of 1 (the largest any device reaches)."""
    events = [m["dp_sgd"] for m in metas if m.get("dp_sgd")]
    out = {}
    z = config.dp_sgd_noise_multiplier if config is not None else 0.0
    if events:
        out["dp_sgd_round_epsilon"] = max(_example_epsilon(min(e["noise_multiplier"], z) if z else e["noise_multiplier"],
                                                           e["sampling_rate"], e["steps"], delta) for e in events)
    own = [m["dp_sgd_epsilon"] for m in metas if m.get("dp_sgd_epsilon") is not None]
    if own:
        if z and events:
            most_steps = max(e["steps"] for e in events) * max(1, config.rounds)
            own = [min(v, _example_epsilon(z, 1.0, most_steps, delta)) for v in own]
        out["dp_sgd_device_epsilon"] = max(own)
    return out


@functools.lru_cache(maxsize=4096)
def _example_epsilon(noise_multiplier: float, sampling_rate: float, steps: int, delta: float) -> float:
    # Devices of one round share z and mostly their batch and data sizes: few distinct events.
    from coordinator.aggregation.privacy import epsilon

    return epsilon(noise_multiplier, sampling_rate, steps, delta)


def evaluation_metrics(config: TaskConfig, updates: list[UpdateRecord]) -> dict | None:
    """An evaluation round's summary (coordinator.aggregation.evaluation); None: no reports."""
    reports = [(u.examples, float(u.meta["correct"]), float(u.meta["loss_sum"])) for u in updates]
    if not reports:
        return None
    metrics = {"reports": len(reports), **summarize(reports, config.max_example_count)}
    tuned = [(u.examples, float(u.meta["correct"]), float(u.meta["loss_sum"]),
              float(u.meta["personalized_correct"]), float(u.meta["personalized_loss_sum"]))
             for u in updates if u.meta.get("personalized_correct") is not None]
    if tuned:
        metrics.update(summarize_personalized(tuned, config.max_example_count))
    return metrics


def file_size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:  # already discarded: it counts for nothing
        return 0
