"""The asynchronous engine (FedBuff: Nguyen et al., AISTATS 2022), pure: a task's buffers and
the clock -> the next step, and what an update's staleness weighs.

In ``mode = "async"`` a round is a *buffer*: it opens in ``reporting`` at once (there is no
selection window: devices are assigned whenever fewer than ``concurrency`` are training) and
takes updates until ``buffer_size`` (K) have come in; then it aggregates and commits, and its
checkpoint is the next published *version*. The buffer after it opens the moment it starts
aggregating, so no upload has to wait for a commit.

    buffer b:  reporting -> aggregating -> committed | failed(reason)

Each assignment pins the buffer that was open when it was made, ``a``: the device trains
from the checkpoint published before it. An update that lands in buffer ``b`` has staleness
``s = b - a`` (the versions published while it trained); it is refused when ``s`` exceeds
``max_staleness`` and otherwise folded with weight ``staleness_weight(s)`` (1 at s = 0).

A buffer aggregates only once the buffer before it is closed: its update is applied on the
checkpoint that one publishes (while it is still committing, the next buffer keeps taking
updates beyond K). No I/O and no clock of its own, like `coordinator.rounds.engine`; the
driver applies the steps, and each is a unit test (tests/coordinator/rounds/test_versions.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from coordinator.rounds.states import RoundState
from coordinator.rounds.engine import AGGREGATE, COMMIT, WAIT, Step

STALENESS_FUNCTIONS = ("constant", "polynomial", "hinge")


@dataclass(frozen=True)
class BufferRules:
    buffer_size: int


@dataclass(frozen=True)
class BufferProgress:
    state: str
    reported: int
    previous_closed: bool  # the buffer before this one is committed or failed (or there is none)


def next_step(p: BufferProgress, rules: BufferRules, now: float) -> Step:
    if p.state in (RoundState.COMMITTED, RoundState.FAILED):
        return Step(WAIT)
    if p.state == RoundState.AGGREGATING:
        return Step(COMMIT) if p.previous_closed else Step(WAIT)
    if p.state == RoundState.REPORTING and p.reported >= rules.buffer_size and p.previous_closed:
        return Step(AGGREGATE)
    return Step(WAIT)


def staleness(assigned_buffer: int, landing_buffer: int) -> int:
    """Versions published between the one an update trained from and the one it goes into."""
    return max(0, landing_buffer - assigned_buffer)


@dataclass(frozen=True)
class StalenessWeight:
    """``constant``: 1; ``polynomial:A``: 1 / (1 + s)^A; ``hinge:A,B``: 1 for s <= B, else
    1 / (A (s - B) + 1) (the FedBuff/FedAsync family)."""

    kind: str = "polynomial"
    a: float = 0.5
    b: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "StalenessWeight":
        kind, _, args = str(text).partition(":")
        try:
            values = [float(v) for v in args.split(",")] if args else []
        except ValueError:
            raise ValueError(f"staleness_weight '{text}': the parameters must be numbers") from None
        if kind == "constant" and not values:
            return cls("constant", 0.0, 0.0)
        if kind == "polynomial" and len(values) <= 1:
            a = values[0] if values else 0.5
            if not (math.isfinite(a) and 0.0 <= a <= 10.0):
                raise ValueError(f"staleness_weight '{text}': the exponent must be in [0, 10]")
            return cls("polynomial", a, 0.0)
        if kind == "hinge" and len(values) == 2:
            a, b = values
            if not (math.isfinite(a) and math.isfinite(b) and 0.0 <= a <= 100.0 and 0.0 <= b <= 1e6):
                raise ValueError(f"staleness_weight '{text}': A must be in [0, 100] and B in [0, 1e6]")
            return cls("hinge", a, b)
        raise ValueError(f"staleness_weight '{text}': use 'constant', 'polynomial:A' (e.g. polynomial:0.5) "
                         "or 'hinge:A,B'")

    def __call__(self, s: int) -> float:
        s = max(0, int(s))
        if self.kind == "constant":
            return 1.0
        if self.kind == "polynomial":
            return float((1.0 + s) ** -self.a)
        return 1.0 if s <= self.b else float(1.0 / (self.a * (s - self.b) + 1.0))

    def __str__(self) -> str:
        if self.kind == "constant":
            return "constant"
        return f"polynomial:{self.a:g}" if self.kind == "polynomial" else f"hinge:{self.a:g},{self.b:g}"
