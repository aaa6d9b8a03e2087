"""The discrete-event queue: events in time order, ties in the order they were scheduled (a
counter, never the event's contents), so a run is a pure function of its seed.

Every simulated device has an event pending (its next check-in, at the latest), so one heap
of all of them holds a million entries at a million devices, and each pop walks twenty levels
of tuples scattered over the memory (cache misses: a sixth of a 100,000-device run). Events
are instead kept in buckets of `BUCKET_S` virtual seconds: the heap holds only the current
bucket's, and a later bucket's events join it (one heapify) when the heap runs dry. The order
is the single heap's exactly: every event of the current bucket or earlier is in the heap,
every other one is later than all of them."""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Any, NamedTuple

BUCKET_S = 1.0  # a tick: about a hundred to a thousand events each at 100,000 to 1,000,000 devices


class Event(NamedTuple):
    """An event's fields. The queue keeps and hands out plain tuples of them (the run loop
    unpacks them; making a named tuple costs 0.15 us more, on the path of every simulated
    event); `pop` names them. A tuple is its own heap entry: tuples compare in C, and ``seq``
    is unique, so the comparison never reaches ``kind`` or ``data``."""

    at: float
    seq: int
    kind: str
    device: int = -1
    data: Any = None


_heappush, _heappop = heapq.heappush, heapq.heappop


class EventQueue:
    def __init__(self, bucket_s: float = BUCKET_S) -> None:
        self.bucket_s = bucket_s
        self._heap: list[tuple] = []  # the events of buckets up to `_current`
        # Buckets are `at // bucket_s`, a whole-valued float.
        self._later: dict[float, list[tuple]] = {}  # bucket -> its events, for buckets after `_current`
        self._later_keys: list[float] = []  # a heap of `_later`'s buckets
        self._current = -math.inf
        self._seq = itertools.count()
        self.processed = 0

    def schedule(self, at: float, kind: str, device: int = -1, data: Any = None) -> None:
        ev = (at, next(self._seq), kind, device, data)
        bucket = at // self.bucket_s
        if bucket <= self._current:
            _heappush(self._heap, ev)
            return
        later = self._later.get(bucket)
        if later is None:
            self._later[bucket] = [ev]
            _heappush(self._later_keys, bucket)
        else:
            later.append(ev)

    def _refill(self) -> bool:
        """Move the next bucket's events into the (empty) heap; False when there are none."""
        if not self._later_keys:
            return False
        self._current = _heappop(self._later_keys)
        self._heap = self._later.pop(self._current)
        heapq.heapify(self._heap)
        return True

    def pop(self) -> Event:
        if not self._heap and not self._refill():
            raise IndexError("pop from an empty event queue")
        self.processed += 1
        return Event._make(_heappop(self._heap))

    def pop_until(self, end: float) -> tuple | None:
        """The next event, a plain tuple of `Event`'s fields, if it is due by ``end`` (the run
        loop's one call per event), else None."""
        heap = self._heap
        if not heap:
            if not self._refill():
                return None
            heap = self._heap
        if heap[0][0] > end:
            return None
        self.processed += 1
        return _heappop(heap)

    def peek_time(self) -> float | None:
        if not self._heap and not self._refill():
            return None
        return self._heap[0][0]

    def waiting(self, kind: str) -> int:
        """Events of this kind still to come (a run that ends may leave uploads on their way)."""
        later = sum(ev[2] == kind for evs in self._later.values() for ev in evs)
        return sum(ev[2] == kind for ev in self._heap) + later

    def __len__(self) -> int:
        return len(self._heap) + sum(map(len, self._later.values()))
