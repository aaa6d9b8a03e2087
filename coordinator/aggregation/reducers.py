"""Reducers: how a round's accepted updates become one mean delta (the `aggregator` of a task).

A reducer folds each accepted update as it arrives (`fold`) and gives the round's mean
delta at commit (`mean`); it is the first half of an aggregation strategy
(`coordinator.aggregation.strategies`), the server optimizer the second. Every update was already
bounded by the gateway (finite, L2 norm <= the task's `max_update_norm`, weight <=
`max_example_count`) before it reaches a reducer.

- ``fedavg``: the example-weighted mean, streamed: memory O(model) however many report.
- ``trimmed_mean``: per coordinate, the mean after dropping the ``trim_fraction`` largest
  and smallest values (Yin et al. 2018, "Byzantine-robust distributed learning").
- ``median``: the coordinate-wise median (Yin et al. 2018).
- ``krum`` / ``multi_krum``: score each update by the summed squared distances to its
  n - f - 2 nearest others and average the m best (m = 1: Krum; Blanchard et al. 2017,
  "Machine learning with adversaries"; m = n - f: Multi-Krum, El Mhamdi et al. 2018).

The robust strategies keep the round's updates (memory O(reports x model)) and weigh every
device the same: an example count is a device's claim, and must not buy influence. They
need to see single updates, so a task cannot combine them with secure aggregation, and
they are not a sum with bounded sensitivity, so not with DP either (TaskConfig checks).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

ROBUST = ("trimmed_mean", "median", "krum", "multi_krum")
AGGREGATORS = ("fedavg", *ROBUST)


def peak_bytes(aggregator: str, reports: int, parameters: int) -> int:
    """The memory a round's reducer needs at its peak, for `reports` updates of `parameters`
    float32 values: the kept rows, their stacked copy and (trimmed mean, median) a sorted
    copy; Krum adds its n x n float64 distances. FedAvg's running sum: one model."""
    row = 4 * parameters
    if aggregator not in ROBUST:
        return 2 * row
    copies = 3 if aggregator in ("trimmed_mean", "median") else 2
    return copies * reports * row + (8 * reports * reports if aggregator in ("krum", "multi_krum") else 0)


class NothingToAggregate(ValueError):
    """A round with no update (or only zero weights) has no mean."""


class Reducer(ABC):
    count: int = 0

    @abstractmethod
    def fold(self, delta: np.ndarray, weight: float) -> None:
        """Take one accepted update (flat float32) and its weight."""

    @abstractmethod
    def mean(self) -> np.ndarray:
        """The round's aggregate delta (flat float32); raises NothingToAggregate with no updates."""


class WeightedSum(Reducer):
    """FedAvg's streaming example-weighted sum; ``total`` and ``weight`` are what DP noises."""

    def __init__(self, size: int):
        self.total = np.zeros(size, np.float64)
        self._scaled = np.empty(size, np.float64)  # reused: no allocation of the model's size per update
        self.weight = 0.0
        self.count = 0

    def fold(self, delta: np.ndarray, weight: float) -> None:
        np.multiply(delta, weight, out=self._scaled)
        self.total += self._scaled
        self.weight += weight
        self.count += 1

    def fold_sum(self, total: np.ndarray, weight: float, count: int) -> None:
        """Take a sum of ``count`` updates at once (secure aggregation reveals only the sum)."""
        self.total += total
        self.weight += weight
        self.count += count

    def mean(self) -> np.ndarray:
        if self.weight <= 0:
            raise NothingToAggregate("no updates to aggregate")
        return (self.total / self.weight).astype(np.float32)


class Buffered(Reducer):
    """Keeps every update of the round; `combine` sees them as one (n, size) matrix."""

    def __init__(self, size: int):
        self.size = size
        self.rows: list[np.ndarray] = []

    @property
    def count(self) -> int:  # type: ignore[override]
        return len(self.rows)

    def fold(self, delta: np.ndarray, weight: float) -> None:
        self.rows.append(np.asarray(delta, np.float32).copy())

    def mean(self) -> np.ndarray:
        if not self.rows:
            raise NothingToAggregate("no updates to aggregate")
        return self.combine(np.stack(self.rows)).astype(np.float32)

    @abstractmethod
    def combine(self, updates: np.ndarray) -> np.ndarray: ...


class TrimmedMean(Buffered):
    def __init__(self, size: int, trim_fraction: float):
        super().__init__(size)
        self.trim_fraction = trim_fraction

    def combine(self, updates: np.ndarray) -> np.ndarray:
        n = len(updates)
        k = min(int(self.trim_fraction * n), (n - 1) // 2)  # always keep at least one value
        if k == 0:
            return updates.mean(axis=0)
        return np.sort(updates, axis=0)[k:n - k].mean(axis=0)


class Median(Buffered):
    def combine(self, updates: np.ndarray) -> np.ndarray:
        return np.median(updates, axis=0)


class Krum(Buffered):
    """``byzantine`` = f (0: the most Krum tolerates, (n - 3) // 2); ``select`` = m (0: n - f)."""

    def __init__(self, size: int, byzantine: int, select: int):
        super().__init__(size)
        self.byzantine, self.select = byzantine, select

    def combine(self, updates: np.ndarray) -> np.ndarray:
        n = len(updates)
        f = min(self.byzantine or max(0, (n - 3) // 2), max(0, (n - 3) // 2))
        m = min(self.select or n - f, n)
        scores = krum_scores(updates, f)
        best = np.argsort(scores, kind="stable")[:m]
        return updates[best].astype(np.float64).mean(axis=0)


def krum_scores(updates: np.ndarray, byzantine: int) -> np.ndarray:
    """Each update's summed squared distance to its n - f - 2 nearest other updates."""
    n = len(updates)
    x = updates.astype(np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
    np.fill_diagonal(dist, np.inf)
    neighbours = max(1, n - byzantine - 2)
    nearest = np.sort(dist, axis=1)[:, :min(neighbours, n - 1)]
    return nearest.sum(axis=1) if n > 1 else np.zeros(1)


def make_reducer(name: str, size: int, trim_fraction: float = 0.1, krum_byzantine: int = 0,
                 krum_select: int = 0) -> Reducer:
    if name == "fedavg":
        return WeightedSum(size)
    if name == "trimmed_mean":
        return TrimmedMean(size, trim_fraction)
    if name == "median":
        return Median(size)
    if name == "krum":
        return Krum(size, krum_byzantine, 1)
    if name == "multi_krum":
        return Krum(size, krum_byzantine, krum_select)
    raise ValueError(f"unknown aggregator {name!r}; use one of {', '.join(AGGREGATORS)}")
