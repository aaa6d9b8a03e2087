"""The round driver's part for asynchronous tasks: it applies the buffer engine's steps
(`coordinator.rounds.versions`). One buffer always takes updates (until the task's versions
are all on their way); a full buffer aggregates only once the one before it is committed, and
the next opens the moment one aggregates, so uploads never wait for a commit."""

from __future__ import annotations

import logging

from coordinator.rounds import engine, versions
from coordinator.rounds.states import Event, OPEN_STATES, RoundState
from coordinator.store.records import RoundRecord
from coordinator.tasks.registry import Task


log = logging.getLogger("fedge.coordinator")
# A buffer has no deadline of its own (each assignment has one); its row still names one, far
# ahead, so every round row reads alike.
BUFFER_OPEN_S = 365 * 86400.0
RECENT = 3  # the rows that can be open at once: committing, aggregating, reporting


class BufferDriver:
    # `driver`: the RoundDriver this is a part of (not imported here: it imports this module).
    def __init__(self, driver):
        self.driver = driver

    def drive(self, task: Task, now: float) -> None:
        """Keep one buffer taking updates and move every open buffer on, oldest first."""
        self.open(task, now)
        if task.state != "active":
            return
        store = self.driver.store
        for rnd in sorted((r for r in store.recent_rounds(task.task_id, RECENT) if r.state in OPEN_STATES),
                          key=lambda r: r.round):
            self.driver.advance(task, rnd, now)

    def open(self, task: Task, now: float) -> None:
        d = self.driver
        if task.state != "active" or not d.holds_lease(task):
            return
        recent = d.store.recent_rounds(task.task_id, RECENT)
        if recent and recent[0].state == RoundState.REPORTING:
            return
        done = d.store.committed_count(task.task_id)
        if done >= task.config.rounds:
            d.finish_task(task, "completed", f"{done} versions published")
            return
        committing = sum(1 for r in recent if r.state == RoundState.AGGREGATING)
        if done + committing >= task.config.rounds:
            return  # the last versions are being committed
        if d.over_budget(task, done + committing):  # DP-FedBuff: one more version must fit the budget
            return
        num = recent[0].round + 1 if recent else 1
        # No selection window and no round deadline: each assignment has its own deadline.
        d.store.add_round(task.task_id, num, now, now, now + BUFFER_OPEN_S, state=RoundState.REPORTING)
        d.opened(task, num)
        log.info("task %s buffer %d open", task.task_id, num)

    def advance(self, task: Task, rnd: RoundRecord, now: float) -> None:
        d = self.driver
        prev = d.store.round(task.task_id, rnd.round - 1) if rnd.round > 1 else None
        progress = versions.BufferProgress(rnd.state, rnd.reported,
                                           prev is None or prev.state in (RoundState.COMMITTED, RoundState.FAILED))
        step = versions.next_step(progress, versions.BufferRules(task.config.buffer_goal), now)
        if step.action == engine.AGGREGATE:
            d.transition(task, rnd.round, Event.GOAL_REACHED)
            self.open(task, now)  # uploads go on into the next buffer meanwhile
            d.request_commit(task, rnd.round)
        elif step.action == engine.COMMIT:
            d.request_commit(task, rnd.round)
