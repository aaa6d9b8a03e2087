"""A release's life, owned here: created `active` at some percentage; promoted (the percentage
only grows: a device that has a release keeps being offered it); `superseded` once a newer
release of its channel reaches 100%; `rolled_back` by the operator, which also creates a
new release (the next sequence) of the model the channel had before, at 100%, so that every
device moves back, and no device can be moved back by replaying an old statement."""

from __future__ import annotations

from enum import Enum


class ReleaseState(str, Enum):
    ACTIVE = "active"
    SUPERSEDED = "superseded"
    ROLLED_BACK = "rolled_back"


class ReleaseRefused(Exception):
    """A release action that this release's state or the arguments do not allow (HTTP 409/400)."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def check_promote(state: str, current: float, percent: float) -> None:
    if state != ReleaseState.ACTIVE:
        raise ReleaseRefused(f"the release is {state}; only an active release can be promoted", "not_active")
    if not 0 < percent <= 100:
        raise ReleaseRefused(f"percent must be in (0, 100], not {percent:g}", "bad_percent")
    if percent < current:
        raise ReleaseRefused(f"the release is at {current:g}%; a rollout only grows (devices keep what they have): "
                             "roll it back instead", "percent_down")


def check_rollback(state: str, is_newest: bool, has_earlier: bool) -> None:
    if state != ReleaseState.ACTIVE:
        raise ReleaseRefused(f"the release is {state}; only an active release can be rolled back", "not_active")
    if not is_newest:
        raise ReleaseRefused("only the newest release of a channel can be rolled back", "not_newest")
    if not has_earlier:
        raise ReleaseRefused("no earlier release on this channel to return to; release another checkpoint instead",
                             "nothing_to_return_to")
