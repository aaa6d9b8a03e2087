"""The round state machine, pure: (a round's progress, the task's rules, the clock) -> the next step.

    plain:   selecting -> reporting -> aggregating -> committed | failed(reason)
    SecAgg:  selecting -> advertising -> sharing -> reporting -> unmasking -> aggregating -> ...

No I/O and no clock of its own: the driver (`Coordinator.advance`) reads the round's
progress from the store, asks `next_step`, and applies the step (a transition, a failure
with its reason, a phase to close, a commit). Every transition is then a unit test with an
injected time (tests/coordinator/rounds/test_engine.py).
"""

from __future__ import annotations

from coordinator.rounds.states import RoundState

import math
from dataclasses import dataclass

WAIT = "wait"  # nothing to do until the clock or a device moves the round
START_REPORTING = "start_reporting"  # plain: the selection window closed with enough devices
START_ADVERTISING = "start_advertising"  # SecAgg: ... then the key advertisement begins
CLOSE_ADVERTISING = "close_advertising"  # SecAgg: fix the roster and parameters (or fail)
CLOSE_SHARING = "close_sharing"  # SecAgg: fix who shared (or fail)
CLOSE_REPORTING = "close_reporting"  # SecAgg: fix the survivors, start unmasking (or fail)
AGGREGATE = "aggregate"  # move to aggregating and commit
COMMIT = "commit"  # already aggregating (e.g. after a restart): commit
FAIL = "fail"  # with a reason

SECAGG_MIN_DEVICES = 3


@dataclass(frozen=True)
class Rules:
    goal_count: int
    required_reports: int
    secagg: bool = False


@dataclass(frozen=True)
class Progress:
    state: str
    selected: int
    reported: int
    selection_deadline: float
    report_deadline: float
    # SecAgg only: messages per phase, what the closed phases settled, the phase deadlines.
    advertised: int = 0
    shared: int = 0
    revealed: int = 0
    roster: int = 0
    sharers: int = 0
    survivors: int = 0
    advertise_deadline: float = math.inf
    share_deadline: float = math.inf
    unmask_deadline: float = math.inf


@dataclass(frozen=True)
class Step:
    action: str
    reason: str = ""


def next_step(p: Progress, rules: Rules, now: float) -> Step:
    if p.state in (RoundState.COMMITTED, RoundState.FAILED):
        return Step(WAIT)
    if p.state == RoundState.AGGREGATING:
        return Step(COMMIT)
    return _secagg_step(p, rules, now) if rules.secagg else _plain_step(p, rules, now)


def _plain_step(p: Progress, rules: Rules, now: float) -> Step:
    need = rules.required_reports
    if p.state == RoundState.SELECTING and now > p.selection_deadline:
        if p.selected >= need:
            return Step(START_REPORTING)
        return Step(FAIL, f"selection window closed with {p.selected} devices, need at least {need}")
    if p.state in (RoundState.SELECTING, RoundState.REPORTING) and (p.reported >= rules.goal_count or now > p.report_deadline):
        if p.reported >= need:
            return Step(AGGREGATE)
        return Step(FAIL, f"reporting deadline passed with {p.reported} reports, need at least {need}")
    if p.state == RoundState.REPORTING and p.reported >= max(p.selected, need):
        # Every device the window selected has reported (fewer than the goal): no report can
        # come any more, so waiting for the deadline would only delay the round.
        return Step(AGGREGATE)
    return Step(WAIT)


def _secagg_step(p: Progress, rules: Rules, now: float) -> Step:
    if p.state == RoundState.SELECTING:
        need = max(SECAGG_MIN_DEVICES, rules.required_reports)
        if now <= p.selection_deadline:
            return Step(WAIT)
        if p.selected >= need:
            return Step(START_ADVERTISING)
        return Step(FAIL, f"selection window closed with {p.selected} devices, need at least {need} for secure "
                          "aggregation")
    if p.state == RoundState.ADVERTISING and (p.advertised >= p.selected or now > p.advertise_deadline):
        return Step(CLOSE_ADVERTISING)
    if p.state == RoundState.SHARING and (p.shared >= p.roster or now > p.share_deadline):
        return Step(CLOSE_SHARING)
    # Like a plain round, reporting ends at the goal count; a sharer whose masked input comes
    # later is treated as dropped (its pairwise masks are removed through its mask-key shares).
    if p.state == RoundState.REPORTING and (p.reported >= min(p.sharers, rules.goal_count) or now > p.report_deadline):
        return Step(CLOSE_REPORTING)
    if p.state == RoundState.UNMASKING and (p.revealed >= p.survivors or now > p.unmask_deadline):
        return Step(AGGREGATE)
    return Step(WAIT)
