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
import math
from typing import Any, NamedTuple

BUCKET_S = 1.0  # a tick: about a hundred to a thousand events each at 100,000 to 1,000,000 devices


class Event(NamedTuple):
    """A tuple that is its own heap entry: tuples compare in C, and ``seq`` is unique, so the
    comparison never reaches ``kind`` or ``data`` (one object per event, not two: the queue
    is on the path of every simulated event)."""

    at: float
    seq: int
    kind: str
    device: int = -1
    data: Any = None


# Event(...) runs the named tuple's Python-level __new__ (its defaults); the queue, which
# passes every field, makes the tuple directly.
_new_event = tuple.__new__
_heappush, _heappop = heapq.heappush, heapq.heappop


class EventQueue:
    def __init__(self, bucket_s: float = BUCKET_S) -> None:
        self.bucket_s = bucket_s
        self._heap: list[Event] = []  # the events of buckets up to `_current`
        # Buckets are `at // bucket_s`, a whole-valued float.
        self._later: dict[float, list[Event]] = {}  # bucket -> its events, for buckets after `_current`
        self._later_keys: list[float] = []  # a heap of `_later`'s buckets
        self._current = -math.inf
        self._pending = 0  # events in `_later`
        self._seq = 0
        self.processed = 0

    def schedule(self, at: float, kind: str, device: int = -1, data: Any = None) -> None:
        self._seq += 1
        ev = _new_event(Event, (at, self._seq, kind, device, data))
        bucket = at // self.bucket_s
        if bucket <= self._current:
            _heappush(self._heap, ev)
            return
        later = self._later.get(bucket)
        if later is None:
            self._later[bucket] = later = []
            _heappush(self._later_keys, bucket)
        later.append(ev)
        self._pending += 1

    def _refill(self) -> bool:
        """Move the next bucket's events into the (empty) heap; False when there are none."""
        if not self._later_keys:
            return False
        self._current = _heappop(self._later_keys)
        self._heap = self._later.pop(self._current)
        self._pending -= len(self._heap)
        heapq.heapify(self._heap)
        return True

    def pop(self) -> Event:
        if not self._heap and not self._refill():
            raise IndexError("pop from an empty event queue")
        self.processed += 1
        return _heappop(self._heap)

    def pop_until(self, end: float) -> Event | None:
        """The next event if it is due by ``end`` (the run loop's one call per event), else None."""
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
        return len(self._heap) + self._pending
