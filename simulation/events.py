"""The discrete-event queue: events in time order, ties in the order they were scheduled (a
counter, never the event's contents), so a run is a pure function of its seed."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    at: float
    seq: int
    kind: str
    device: int = -1
    data: Any = None


class EventQueue:
    def __init__(self) -> None:
        # (time, seq, event): tuples compare in C, and seq is unique, so events never compare.
        self._heap: list[tuple[float, int, Event]] = []
        self._seq = 0
        self.processed = 0

    def schedule(self, at: float, kind: str, device: int = -1, data: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, Event(at, self._seq, kind, device, data)))

    def pop(self) -> Event:
        self.processed += 1
        return heapq.heappop(self._heap)[2]

    def peek_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)
