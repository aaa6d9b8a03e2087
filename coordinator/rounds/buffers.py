"""Asynchronous tasks' round kind (FedBuff): it applies the buffer engine's steps
(`coordinator.rounds.versions`). One buffer always takes updates (until the task's versions
are all on their way); a full buffer aggregates only once the one before it is committed, and
the next opens the moment one aggregates, so uploads never wait for a commit."""

from __future__ import annotations

import logging

from coordinator.rounds import engine, versions
from coordinator.rounds.kinds import RoundControl, SyncKind
from coordinator.rounds.running import RunningRounds
from coordinator.rounds.states import OPEN_STATES, Event, RoundState
from coordinator.store.base import Store
from coordinator.store.records import RoundRecord
from coordinator.tasks.registry import Task

log = logging.getLogger("fedge.coordinator")
# A buffer has no deadline of its own (each assignment has one); its row still names one, far
# ahead, so every round row reads alike.
BUFFER_OPEN_S = 365 * 86400.0
RECENT = 3  # the rows that can be open at once: committing, aggregating, reporting


class BufferedKind(SyncKind):
    name = "buffered"
    opens_in = RoundState.REPORTING  # a buffer takes updates from its first moment

    def __init__(self, control: RoundControl, store: Store, running: RunningRounds, slot_listeners: list,
                 metrics=None):
        super().__init__(control, store, running)
        # Called with (task id, free slots) each tick while slots are free (the gateway calls devices in).
        self.slot_listeners = slot_listeners
        self.metrics = metrics

    def drive(self, task: Task, now: float) -> None:
        """The tick: the buffers moved on, and how many devices may start training."""
        self._move(task, now)
        live = self.store.live_assignments(task.task_id, now - task.config.report_deadline_s)
        if self.metrics is not None:
            self.metrics.concurrency(task.task_id, live, task.config.target_concurrency)
        free = task.config.target_concurrency - live
        if free > 0 and task.state == "active":  # e.g. assignments that expired: call devices in
            for listener in self.slot_listeners:
                listener(task.task_id, free)

    def _move(self, task: Task, now: float) -> None:
        """Keep one buffer taking updates and move every open buffer on, oldest first."""
        self.open(task, now)
        if task.state != "active":
            return
        for rnd in sorted((r for r in self.store.recent_rounds(task.task_id, RECENT) if r.state in OPEN_STATES),
                          key=lambda r: r.round):
            self.advance(task, rnd, now)

    def open(self, task: Task, now: float) -> None:
        c = self.control
        if task.state != "active" or not c.holds_lease(task):
            return
        recent = self.store.recent_rounds(task.task_id, RECENT)
        if recent and recent[0].state == RoundState.REPORTING:
            return
        done = self.store.committed_count(task.task_id)
        if done >= task.config.rounds:
            c.finish_task(task, "completed", f"{done} versions published")
            return
        committing = sum(1 for r in recent if r.state == RoundState.AGGREGATING)
        if done + committing >= task.config.rounds:
            return  # the last versions are being committed
        if c.over_budget(task, done + committing):  # DP-FedBuff: one more version must fit the budget
            return
        num = recent[0].round + 1 if recent else 1
        # No selection window and no round deadline: each assignment has its own deadline.
        self.store.add_round(task.task_id, num, now, now, now + BUFFER_OPEN_S, state=RoundState.REPORTING)
        c.opened(task, num)
        log.info("task %s buffer %d open", task.task_id, num)

    def advance(self, task: Task, rnd: RoundRecord, now: float) -> None:
        prev = self.store.round(task.task_id, rnd.round - 1) if rnd.round > 1 else None
        progress = versions.BufferProgress(rnd.state, rnd.reported,
                                           prev is None or prev.state in (RoundState.COMMITTED, RoundState.FAILED))
        step = versions.next_step(progress, versions.BufferRules(task.config.buffer_goal), now)
        if step.action == engine.AGGREGATE:
            self.control.transition(task, rnd.round, Event.GOAL_REACHED)
            self.open(task, now)  # uploads go on into the next buffer meanwhile
            self.control.request_commit(task, rnd.round)
        elif step.action == engine.COMMIT:
            self.control.request_commit(task, rnd.round)

    def after_close(self, task: Task, num: int, now: float) -> None:
        self._move(task, now)

    def staleness(self, upd) -> int | None:
        return int(upd.meta.get("staleness", 0))
