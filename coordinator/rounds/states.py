"""A round's states and every legal change between them, in one table.

    plain:       selecting -> reporting -> aggregating -> committed
    SecAgg:      selecting -> advertising -> sharing -> reporting -> unmasking -> aggregating -> committed
    a version:   reporting (the open buffer) -> aggregating -> committed       (asynchronous tasks)
    and any open state -> failed (with a reason)

Parts report what happened (an `Event`); `after` says which state that leads to, or raises
`IllegalTransition`: a change that is not in `TRANSITIONS` is a bug, never a silent write.
(The pattern of h11's `_state.py` and Flower's `VALID_RUN_STATUS_TRANSITIONS`.)
"""

from __future__ import annotations

import enum


class RoundState(str, enum.Enum):
    """Stored as its value; a str, so rows read back compare equal to the members."""

    SELECTING = "selecting"
    ADVERTISING = "advertising"
    SHARING = "sharing"
    REPORTING = "reporting"
    UNMASKING = "unmasking"
    AGGREGATING = "aggregating"
    COMMITTED = "committed"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


class Event(enum.Enum):
    SELECTION_CLOSED = "selection_closed"  # the window closed with enough devices (or the round filled)
    KEYS_REQUESTED = "keys_requested"  # SecAgg: selection is over, the key advertisement begins
    ADVERTISING_CLOSED = "advertising_closed"  # SecAgg: the roster and parameters are fixed
    SHARING_CLOSED = "sharing_closed"  # SecAgg: who shared is fixed
    REPORTING_CLOSED = "reporting_closed"  # SecAgg: the survivors are fixed, unmasking starts
    GOAL_REACHED = "goal_reached"  # enough reports (or a full buffer, or the deadline with enough): aggregate
    COMMITTED = "committed"  # the new checkpoint is stored
    FAILED = "failed"  # with a reason


S, E = RoundState, Event
OPEN_STATES = (S.SELECTING, S.ADVERTISING, S.SHARING, S.REPORTING, S.UNMASKING, S.AGGREGATING)
FINAL_STATES = (S.COMMITTED, S.FAILED)

TRANSITIONS: dict[tuple[RoundState, Event], RoundState] = {
    (S.SELECTING, E.SELECTION_CLOSED): S.REPORTING,
    (S.SELECTING, E.KEYS_REQUESTED): S.ADVERTISING,
    (S.ADVERTISING, E.ADVERTISING_CLOSED): S.SHARING,
    (S.SHARING, E.SHARING_CLOSED): S.REPORTING,
    (S.REPORTING, E.REPORTING_CLOSED): S.UNMASKING,
    # A plain round may fill before its selection window closes.
    (S.SELECTING, E.GOAL_REACHED): S.AGGREGATING,
    (S.REPORTING, E.GOAL_REACHED): S.AGGREGATING,
    (S.UNMASKING, E.GOAL_REACHED): S.AGGREGATING,
    (S.AGGREGATING, E.COMMITTED): S.COMMITTED,
    **{(state, E.FAILED): S.FAILED for state in OPEN_STATES},
}


class IllegalTransition(RuntimeError):
    def __init__(self, state: str, event: Event):
        super().__init__(f"a round in state {state!r} cannot take event {event.value!r}")
        self.state, self.event = state, event


def after(state: str, event: Event) -> RoundState:
    """The state ``event`` leads to from ``state``; IllegalTransition where the table has none."""
    try:
        return TRANSITIONS[(RoundState(state), event)]
    except (KeyError, ValueError):
        raise IllegalTransition(state, event) from None


def already_taken(state: str, event: Event) -> bool:
    """Whether ``state`` is where ``event`` leads (from anywhere): taking it again is a no-op,
    as when two uploads reach a round's goal at once."""
    return any(e is event and target == state for (_, e), target in TRANSITIONS.items())


def is_final(state: str) -> bool:
    return state in FINAL_STATES
