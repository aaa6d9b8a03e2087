"""When a simulated device's check-in may run: a phone's job scheduler runs it only while the
device is charging, idle and on unmetered Wi-Fi at once. One class for each of the population
file's `[availability] model`s; the simulation asks one of them on every check-in and every
return it schedules, so each keeps its per-device numbers as Python floats (an array.array
item is one; a numpy scalar costs a few times more to index and add)."""

from __future__ import annotations

import math
import random
from array import array

import numpy as np

DAY_S = 86400.0
MODELS = ("diurnal", "always", "trace")  # `[availability] model`: NightlyAvailability, AlwaysAvailable, TraceAvailability


class AlwaysAvailable:
    """model = "always": every device, at any time."""

    def available(self, device: int, elapsed_s: float, rng: random.Random) -> bool:
        return True

    def next_available(self, device: int, elapsed_s: float, rng: random.Random) -> float:
        return elapsed_s


class TraceAvailability:
    """model = "trace": the (start, end) intervals of a trace file, in seconds from the start."""

    def __init__(self, windows: dict[int, list[tuple[float, float]]]):
        self.windows = windows

    def available(self, device: int, elapsed_s: float, rng: random.Random) -> bool:
        return any(a <= elapsed_s < b for a, b in self.windows.get(device, ()))

    def next_available(self, device: int, elapsed_s: float, rng: random.Random) -> float:
        starts = [a for a, b in self.windows.get(device, ()) if b > elapsed_s]
        return max(elapsed_s, min(starts)) if starts else math.inf


class NightlyAvailability:
    """model = "diurnal": a nightly window per device (its time zone, the local hour it opens,
    how long it lasts), and outside it a daytime charge: each hour with chance ``daytime``."""

    def __init__(self, tz_h: np.ndarray, night_start_h: np.ndarray, night_hours: np.ndarray, daytime: float):
        # A device's window as (when it opens in seconds after midnight UTC, its length in
        # seconds), side by side: one cache line and two float operations a check.
        opens_s = np.mod(np.asarray(night_start_h, np.float64) - np.asarray(tz_h, np.float64), 24.0) * 3600.0
        self._window = array("d", np.column_stack([opens_s, np.asarray(night_hours, np.float64) * 3600.0]).tobytes())
        self.daytime = float(daytime)

    def available(self, device: int, elapsed_s: float, rng: random.Random) -> bool:
        """Whether the device is eligible ``elapsed_s`` after the start (midnight UTC)."""
        w, k = self._window, 2 * device
        if (elapsed_s - w[k]) % DAY_S < w[k + 1]:  # into its window: seconds since it last opened
            return True
        return rng.random() < self.daytime

    def next_available(self, device: int, elapsed_s: float, rng: random.Random) -> float:
        """When (seconds from the start) the device next becomes eligible, after ``elapsed_s``:
        its window's next opening, or a daytime charge before that (at a random moment in
        the hour it comes in)."""
        until_night = (self._window[2 * device] - elapsed_s) % DAY_S
        if self.daytime > 0:
            sooner = (geometric(self.daytime, rng) - 1 + rng.random()) * 3600.0
            if sooner < until_night:
                until_night = sooner
        return elapsed_s + (until_night if until_night > 1.0 else 1.0)


def geometric(p: float, rng: random.Random) -> int:
    """Trials up to the first success, each a success with chance ``p`` (0 < p <= 1), from one
    uniform draw (inverting the distribution function)."""
    if p >= 1.0:
        return 1
    return int(math.log1p(-rng.random()) / math.log1p(-p)) + 1
