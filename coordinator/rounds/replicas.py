"""Several replicas on one shared store (PostgreSQL): which replica drives a task (a lease
in the store, renewed every tick), and what this replica learns each tick of what the others
did (tasks created, paused or committed elsewhere; rounds opened or closed elsewhere)."""

from __future__ import annotations

import secrets

from coordinator.rounds.states import RoundState
from coordinator.tasks.registry import Task


# How long a replica's right to drive a task lasts without renewal (renewed every tick):
# when the replica dies, another takes the task over after at most this long.
LEASE_TTL_S = 3.0


class Replicas:
    # `driver`: the RoundDriver this is a part of (not imported here: it imports this module).
    def __init__(self, driver):
        self.driver = driver
        self.replica_id = secrets.token_hex(8)
        self._lease_until: dict[str, float] = {}
        self.known_round: dict[str, int] = {}  # per task: the latest round this replica has seen

    def holds_lease(self, task: Task) -> bool:
        """Whether this replica drives ``task`` now; takes or renews the lease when it is due."""
        d = self.driver
        now = d.clock()
        if self._lease_until.get(task.task_id, 0.0) - now > LEASE_TTL_S / 2:
            return True
        if d.store.acquire_lease(task.task_id, self.replica_id, now, LEASE_TTL_S):
            self._lease_until[task.task_id] = now + LEASE_TTL_S
            return True
        self._lease_until.pop(task.task_id, None)
        return False

    def release_leases(self) -> None:
        self._lease_until.clear()
        self.driver.store.release_leases(self.replica_id)

    def sync_from_store(self) -> None:
        """What other replicas did; this replica's long polls are woken for rounds opened
        elsewhere, and running sums of rounds that closed elsewhere are dropped."""
        d = self.driver
        for rec in d.store.tasks():
            task = d.tasks.get(rec.task_id)
            if task is None:
                d.tasks.put(rec)
                continue
            task.state = rec.state
            if task.checkpoint_sha != rec.checkpoint_sha:
                fresh = d.tasks.from_record(rec)
                task.checkpoint_sha, task.dp_clip, task.version = fresh.checkpoint_sha, fresh.dp_clip, fresh.version
                task.control_sha = fresh.control_sha
        for task in d.tasks.values():
            latest = d.store.latest_round(task.task_id)
            if latest is None:
                continue
            known = self.known_round.get(task.task_id, 0)
            if latest.round != known:
                for listener in d.round_change_listeners:  # another replica moved the task on
                    listener(task.task_id)
            opened = RoundState.REPORTING if task.config.asynchronous else RoundState.SELECTING
            if latest.round > known and latest.state == opened:
                for listener in d.round_open_listeners:
                    listener(task.task_id)
            self.known_round[task.task_id] = latest.round
        for task_id, num in list(d.running.sums):
            rnd = d.store.round(task_id, num)
            if rnd is None or rnd.state in (RoundState.COMMITTED, RoundState.FAILED):
                d.running.discard(task_id, num)
