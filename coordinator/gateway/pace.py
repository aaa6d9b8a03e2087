"""Pace steering: when a device that was not selected should come back.

A round takes K = goal x over-selection devices, and a new round opens every T seconds
(the round period: the median time between the task's last round openings; the
selection window S until there are two). A population of P devices can then give each
device a turn every P / K rounds; asking for ``SAFETY`` times what the rounds take::

    W = clamp(P * T / (SAFETY * K), min_retry_s, max_retry_s)
    retry_at = now + W * U(0.5, 1.5)          (uniform jitter: no thundering herd)

Devices come back at P / W = SAFETY * K / T per second, and the ones that find no round
selecting wait in a long poll and are woken when the next one opens. Spreading returns
over the selection window instead (W = P * S / (SAFETY * K)) sent a device away for
longer than a round lasts when S was long: with P = K = 100 and S = 30 s, a device that
finished early was told to come back in 10-30 s, each round waited for it, and rounds of
8 s of training took 18 s.

P is the number of devices of the population present: checked in and not yet overdue (each
is due back at the retry time it was given, or its round's deadline, plus a grace; see
``due_back``), never the registered count.
An ineligible device retries after ``ineligible_retry_s`` (jittered the same way):
its state (charging, Wi-Fi, idle) changes slowly. With no task to serve, devices come
back after ``max_retry_s``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

SAFETY = 1.5


@dataclass(frozen=True)
class PaceConfig:
    min_retry_s: float = 1.0
    max_retry_s: float = 600.0
    ineligible_retry_s: float = 300.0


def retry_window(population_size: int, round_period_s: float, needed: int, cfg: PaceConfig) -> float:
    if needed <= 0:
        return cfg.max_retry_s
    window = population_size * round_period_s / (SAFETY * needed)
    return min(max(window, cfg.min_retry_s), cfg.max_retry_s)


def round_period(opened_at: list[float], fallback_s: float) -> float:
    """The median time between consecutive round openings, or ``fallback_s`` with fewer than two."""
    times = sorted(opened_at)
    gaps = sorted(b - a for a, b in zip(times, times[1:]))
    return gaps[len(gaps) // 2] if gaps else fallback_s


def jittered(now: float, window: float, rng: random.Random) -> float:
    # rng.uniform(0.5, 1.5), bit for bit, without its Python-level call (every no-slot check-in draws one).
    return now + window * (0.5 + rng.random())


# The count reads every present device's index entry: at a million devices about 300,000, some
# 20 ms; once a second that was a fifth of a simulated million-device run and a steady 2% of a
# served core. The population present moves by a fraction of a percent in 10 s.
INPUTS_TTL_S = 10.0
PERIOD_ROUNDS = 6  # the round period is the median gap between the last openings
# A device is present until the time it was told to come back (or its round's deadline) plus
# this grace, and this share of the wait: past it without a check-in, it stops counting.
PRESENCE_GRACE_S = 10.0
PRESENCE_GRACE = 0.25


def due_back(now: float, back: float) -> float:
    """When a device answered at ``now`` and told to come back at ``back`` is overdue."""
    return back + max(PRESENCE_GRACE_S, PRESENCE_GRACE * (back - now))


class PaceSteering:
    """Pace steering's answer for a task: the retry window of ``retry_window`` and its inputs
    (devices of the population present, the task's round period), worked out together at most
    once every INPUTS_TTL_S per task. A COUNT(*) on every no-slot check-in was the check-in
    path's largest cost; working the window out again on every one was a quarter of the
    answer after that. Counting the devices merely seen in the last max_retry_s instead had a
    fleet's leftovers of earlier runs stretch every retry time past the selection window.

    ``wanted(task)``: how many devices the task's round (or version) takes; fixed per task."""

    def __init__(self, store, cfg: PaceConfig, wanted):
        self.store, self.cfg, self.wanted = store, cfg, wanted
        self._cache: dict[str, tuple[float, tuple[int, float], float]] = {}  # task -> (when, inputs, window)

    def window(self, task, now: float) -> float:
        """How long a device with no slot is sent away for, before jitter."""
        return self._counted(task, now)[2]

    def inputs(self, task, now: float) -> tuple[int, float]:
        """(devices of the population present, the task's round period)."""
        return self._counted(task, now)[1]

    def _counted(self, task, now: float) -> tuple[float, tuple[int, float], float]:
        """(when counted, inputs, window), counted again once INPUTS_TTL_S has passed."""
        cached = self._cache.get(task.task_id)
        if cached is None or now - cached[0] >= INPUTS_TTL_S:
            opened = [r.opened_at for r in self.store.recent_rounds(task.task_id, PERIOD_ROUNDS)]
            inputs = (self.store.count_present(now, task.population),
                      round_period(opened, task.config.selection_window_s))
            cached = self._cache[task.task_id] = (now, inputs, retry_window(*inputs, self.wanted(task), self.cfg))
        return cached
