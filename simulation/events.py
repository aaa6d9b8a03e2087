"""The discrete-event queue: events in time order, ties in the order they were scheduled (a
counter, never the event's contents), so a run is a pure function of its seed."""

from __future__ import annotations

import heapq
from typing import Any, NamedTuple


class Event(NamedTuple):
    """A tuple that is its own heap entry: tuples compare in C, and ``seq`` is unique, so the
    comparison never reaches ``kind`` or ``data`` (one object per event, not two: the queue
    is on the path of every simulated event)."""

    at: float
    seq: int
    kind: str
    device: int = -1
    data: Any = None


class EventQueue:
    def __init__(self) -> None:
        self._heap: list[Event] = []
        self._seq = 0
        self.processed = 0

    def schedule(self, at: float, kind: str, device: int = -1, data: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, Event(at, self._seq, kind, device, data))

    def pop(self) -> Event:
        self.processed += 1
        return heapq.heappop(self._heap)

    def peek_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)
