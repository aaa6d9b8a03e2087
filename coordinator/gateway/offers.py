"""What the gateway remembers between check-ins to offer slots cheaply: a short-lived hint of
each task's open round (a read per tick instead of a query per check-in) and the offers on
their way to the store (so a burst of woken long polls does not send more assignments to the
database than the round can take). Hints only: `Store.assign` decides."""

from __future__ import annotations

import secrets
from dataclasses import replace

from coordinator.store.records import RoundRecord
from coordinator.tasks.registry import Task

SELECTING_HINT_TTL_S = 0.1  # as long as a tick: another replica's round opening is seen within it


class RoundHints:
    def __init__(self, ttl_s: float = SELECTING_HINT_TTL_S):
        self.ttl_s = ttl_s
        self._hints: dict[str, tuple[float, RoundRecord | None]] = {}
        self._in_flight: dict[str, int] = {}  # per task: slots offered and not yet written

    def read(self, task: Task, now: float, read) -> RoundRecord | None:
        """`read(task_id)` (the selecting round, or an async task's open buffer), cached for
        ttl_s and dropped when this replica moves the task's rounds (`forget`)."""
        cached = self._hints.get(task.task_id)
        if cached is not None and 0 <= now - cached[0] < self.ttl_s:
            return cached[1]
        rnd = read(task.task_id)
        self._hints[task.task_id] = (now, rnd)
        return rnd

    def forget(self, task_id: str) -> None:
        self._hints.pop(task_id, None)

    def saw_selected(self, task_id: str, round_num: int, selected: int) -> None:
        """The store wrote an assignment: the hinted round has at least ``selected`` devices."""
        hint = self._hints.get(task_id)
        if hint is not None and hint[1] is not None and hint[1].round == round_num:
            self._hints[task_id] = (hint[0], replace(hint[1], selected=max(selected, hint[1].selected)))

    def in_flight(self, task_id: str) -> int:
        return self._in_flight.get(task_id, 0)

    def offered(self, task_id: str) -> str:
        """Count one more offer on its way; its upload token."""
        self._in_flight[task_id] = self._in_flight.get(task_id, 0) + 1
        return secrets.token_urlsafe(24)

    def settled(self, task_id: str) -> None:
        """An offer was written or refused by the store."""
        self._in_flight[task_id] = max(0, self._in_flight.get(task_id, 1) - 1)
