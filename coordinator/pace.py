"""Pace steering: when a device that was not selected should come back.

A device told "retry in W seconds" makes a population of P devices arrive at about
P / W per second. A round needs K = goal x over-selection devices within its
selection window S; asking for ``SAFETY`` times that rate gives::

    W = clamp(P * S / (SAFETY * K), min_retry_s, max_retry_s)
    retry_at = now + W * U(0.5, 1.5)          (uniform jitter: no thundering herd)

P is the number of devices of the population seen within the last ``max_retry_s``.
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


def retry_window(population_size: int, selection_window_s: float, needed: int, cfg: PaceConfig) -> float:
    if needed <= 0:
        return cfg.max_retry_s
    window = population_size * selection_window_s / (SAFETY * needed)
    return min(max(window, cfg.min_retry_s), cfg.max_retry_s)


def jittered(now: float, window: float, rng: random.Random) -> float:
    return now + window * rng.uniform(0.5, 1.5)
