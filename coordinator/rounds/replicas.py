"""Several replicas on one shared store (PostgreSQL): which replica drives a task (a lease
in the store, renewed every tick), and what this replica learns each tick of what the others
did (tasks created, paused or committed elsewhere; rounds opened or closed elsewhere)."""

from __future__ import annotations

import secrets

from coordinator.rounds.running import RunningRounds
from coordinator.rounds.states import RoundState
from coordinator.store.base import Store
from coordinator.tasks.registry import Task, TaskRegistry


# How long a replica's right to drive a task lasts without renewal (renewed every tick):
# when the replica dies, another takes the task over after at most this long.
LEASE_TTL_S = 3.0


class Replicas:
    def __init__(self, store: Store, clock, tasks: TaskRegistry, running: RunningRounds, open_listeners: list,
                 change_listeners: list, opens_in):
        """``open_listeners``/``change_listeners``: the driver's lists of who to tell when a
        round opened or moved elsewhere; ``opens_in(task)``: the state a new round of that
        task opens in (its round kind's)."""
        self.store, self.clock, self.tasks, self.running = store, clock, tasks, running
        self.open_listeners, self.change_listeners, self.opens_in = open_listeners, change_listeners, opens_in
        self.replica_id = secrets.token_hex(8)
        self._lease_until: dict[str, float] = {}
        self.known_round: dict[str, int] = {}  # per task: the latest round this replica has seen

    def holds_lease(self, task: Task) -> bool:
        """Whether this replica drives ``task`` now; takes or renews the lease when it is due."""
        now = self.clock()
        if self._lease_until.get(task.task_id, 0.0) - now > LEASE_TTL_S / 2:
            return True
        if self.store.acquire_lease(task.task_id, self.replica_id, now, LEASE_TTL_S):
            self._lease_until[task.task_id] = now + LEASE_TTL_S
            return True
        self._lease_until.pop(task.task_id, None)
        return False

    def release_leases(self) -> None:
        self._lease_until.clear()
        self.store.release_leases(self.replica_id)

    def sync_from_store(self) -> None:
        """What other replicas did; this replica's long polls are woken for rounds opened
        elsewhere, and running sums of rounds that closed elsewhere are dropped."""
        for rec in self.store.tasks():
            task = self.tasks.get(rec.task_id)
            if task is None:
                self.tasks.put(rec)
                continue
            task.state = rec.state
            if task.checkpoint_sha != rec.checkpoint_sha:
                fresh = self.tasks.from_record(rec)
                task.checkpoint_sha, task.dp_clip, task.version = fresh.checkpoint_sha, fresh.dp_clip, fresh.version
                task.control_sha = fresh.control_sha
        for task in self.tasks.values():
            latest = self.store.latest_round(task.task_id)
            if latest is None:
                continue
            known = self.known_round.get(task.task_id, 0)
            if latest.round != known:
                for listener in self.change_listeners:  # another replica moved the task on
                    listener(task.task_id)
            if latest.round > known and latest.state == self.opens_in(task):
                for listener in self.open_listeners:
                    listener(task.task_id)
            self.known_round[task.task_id] = latest.round
        for task_id, num in list(self.running.sums):
            rnd = self.store.round(task_id, num)
            if rnd is None or rnd.state in (RoundState.COMMITTED, RoundState.FAILED):
                self.running.discard(task_id, num)
