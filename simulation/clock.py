"""Virtual time: one clock every part of a simulation reads (the coordinator's gateway, driver,
pace steering and audit trail take it as their clock), moved only by the event queue."""

from __future__ import annotations


class VirtualClock:
    def __init__(self, start: float = 1_800_000_000.0):
        self.start = start  # a fixed epoch, so the same seed gives the same run
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance_to(self, t: float) -> None:
        if t < self.now:
            raise ValueError(f"virtual time cannot go back ({t} < {self.now})")
        self.now = t

    @property
    def elapsed_s(self) -> float:
        return self.now - self.start
