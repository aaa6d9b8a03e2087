"""Every device's last_seen and due in arrays: how the in-memory store keeps the two columns
that every check-in rewrites. In SQLite each rewrite is an indexed UPDATE (about 8
microseconds a device, the `devices_due` index that pace steering counts with included: the
largest single cost of a 100,000-device `fedge simulate`); here it is an array store, and
pace steering's count of the devices present is a vectorised comparison (about a millisecond
at a million devices, made once every few seconds)."""

from __future__ import annotations

import threading
from array import array

import numpy as np


class DeviceLiveness:
    def __init__(self, capacity: int = 1024):
        self._slot: dict[str, int] = {}  # device id -> index into the arrays
        self._population: dict[str, int] = {}  # population name -> code
        self._codes = np.zeros(capacity, np.int32)
        # Python arrays, which numpy reads in place for the counts: storing one float into an
        # array.array takes 0.04 us, into a numpy array 0.2 (a touch stores two a device).
        self._last_seen = array("d", bytes(8 * capacity))
        self._due = array("d", bytes(8 * capacity))
        self._lock = threading.Lock()  # the served coordinator touches from its intake thread

    def add(self, devices: list[tuple[str, str, float, float]]) -> None:
        """(device id, population, last_seen, due) of devices just registered (the store has
        refused a batch with an id it holds, or one twice, before this)."""
        if not devices:
            return
        with self._lock:
            n = len(self._slot)
            self._grow(n + len(devices))
            ids, populations, last_seen, due = zip(*devices)
            self._slot.update(zip(ids, range(n, n + len(devices))))
            codes = self._population
            self._codes[n:n + len(devices)] = [codes.setdefault(p, len(codes)) for p in populations]
            self._last_seen[n:n + len(devices)] = array("d", last_seen)
            self._due[n:n + len(devices)] = array("d", due)

    def _grow(self, n: int) -> None:
        if n > len(self._codes):
            size = max(n, 2 * len(self._codes))
            self._codes = np.resize(self._codes, size)
            for times in (self._last_seen, self._due):
                times.frombytes(bytes(8 * (size - len(times))))

    def touch(self, seen: dict[str, tuple[float, float]]) -> None:
        """(last_seen, due) of devices that checked in; ids not registered are ignored (as the
        UPDATE that matches no row)."""
        # Element by element: a tick's few hundred devices cost less so than gathered into
        # index arrays first (half as much at 60 devices, the same at 600).
        with self._lock:  # (a registration may replace the arrays: read them under the lock)
            get, last_seen, due_at = self._slot.get, self._last_seen, self._due
            for device, (t, due) in seen.items():
                k = get(device)
                if k is not None:
                    last_seen[k] = t
                    due_at[k] = due

    def of(self, device_id: str) -> tuple[float, float] | None:
        k = self._slot.get(device_id)
        return None if k is None else (self._last_seen[k], self._due[k])

    def _in(self, population: str, n: int) -> np.ndarray:
        code = self._population.get(population)
        return self._codes[:n] == code if code is not None else np.zeros(n, bool)

    def count_present(self, now: float, population: str) -> int:
        """Devices of the population whose due time has not passed."""
        with self._lock:  # a registration may grow the arrays meanwhile (the served store's threads)
            n = len(self._slot)
            due = np.frombuffer(self._due, np.float64, n)
            return int(np.count_nonzero(self._in(population, n) & (due >= now)))

    def count_seen(self, since: float, population: str | None = None) -> int:
        with self._lock:
            n = len(self._slot)
            seen = np.frombuffer(self._last_seen, np.float64, n) >= since
            return int(np.count_nonzero(seen if population is None else seen & self._in(population, n)))
