"""Refused uploads per assignment: a device whose update bodies keep failing the plan's
checks (wrong codec, bad payload, non-finite values) loses its assignment, so one hostile
device cannot make the coordinator check bodies over and over until the deadline."""

from __future__ import annotations

from coordinator import errors as E

MAX_REFUSED_UPLOADS = 3  # a client bug gets a retry or two; a loop of bad bodies ends here
MAX_TRACKED = 100_000  # assignments with refusals held in memory (the oldest go first)


class UploadRefusals:
    def __init__(self, limit: int = MAX_REFUSED_UPLOADS, max_tracked: int = MAX_TRACKED):
        self.limit, self.max_tracked = limit, max_tracked
        self._counts: dict[tuple[str, int, str], int] = {}

    def check(self, key: tuple[str, int, str]) -> None:
        """403 for an assignment that used up its refusals (before its body is looked at)."""
        if self._counts.get(key, 0) >= self.limit:
            raise E.Forbidden(f"this assignment ended after {self.limit} refused uploads; check in again for "
                              "another round", "assignment_ended")

    def refused(self, key: tuple[str, int, str]) -> None:
        if key not in self._counts and len(self._counts) >= self.max_tracked:
            self._counts.pop(next(iter(self._counts)))
        self._counts[key] = self._counts.get(key, 0) + 1
