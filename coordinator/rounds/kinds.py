"""One class per kind of round: what differs between a plain synchronous round, a SecAgg round,
an evaluation round and an asynchronous task's buffered versions (`coordinator.rounds.buffers`)
lives in that kind's class; the driver calls the same methods for every task and never asks
which kind it is (`coordinator.rounds.all_kinds.RoundKinds.of` is the one place that looks at
the task's config to choose).

A kind receives what it uses: the store, the open rounds' running sums, the SecAgg rounds and
a `RoundControl` (the driver's operations every kind shares: transitions, failures, commits,
the next round), never the driver itself.
"""

from __future__ import annotations

import logging
from typing import Protocol

from coordinator.aggregation.strategies import Strategy, make_strategy
from coordinator.rounds import engine
from coordinator.rounds.running import RunningRounds
from coordinator.rounds.secagg import SecAggRounds
from coordinator.rounds.states import Event, RoundState
from coordinator.store.base import Store
from coordinator.store.records import RoundRecord
from coordinator.tasks.registry import Task
from protocol import codec

log = logging.getLogger("fedge.coordinator")


class RoundControl(Protocol):
    """What a round kind asks of the round driver."""

    def transition(self, task: Task, round_num: int, event: Event, reason: str = "") -> bool: ...

    def fail_round(self, task: Task, num: int, reason: str) -> None: ...

    def request_commit(self, task: Task, num: int) -> None: ...

    def open_next_round(self, task: Task, last: int, now: float) -> None: ...

    def opened(self, task: Task, num: int) -> None: ...

    def finish_task(self, task: Task, state: str, reason: str) -> None: ...

    def over_budget(self, task: Task, done: int) -> bool: ...

    def holds_lease(self, task: Task) -> bool: ...


class SyncKind:
    """Synchronous rounds (FedAvg and its strategies): select, report, aggregate, commit; the
    updates fold into a running sum as they arrive."""

    name = "sync"
    trains = True  # a committed round makes a new checkpoint (and may call an evaluation)
    opens_in = RoundState.SELECTING  # the state a new round starts in

    def __init__(self, control: RoundControl, store: Store, running: RunningRounds):
        self.control, self.store, self.running = control, store, running

    # -- opening and moving rounds ---------------------------------------------------------------
    def drive(self, task: Task, now: float) -> None:
        """The tick: open the next round when the last one ended, else move the open one on."""
        rnd = self.store.latest_round(task.task_id)
        if rnd is None or rnd.state in (RoundState.COMMITTED, RoundState.FAILED):
            self.control.open_next_round(task, rnd.round if rnd else 0, now)
        else:
            self.advance(task, rnd, now)

    def report_deadline(self, task: Task, num: int, selection_deadline: float) -> float:
        """Where a new round's report deadline falls (inside the round's opening transaction)."""
        return selection_deadline + task.config.report_deadline_s

    def progress(self, task: Task, rnd: RoundRecord) -> engine.Progress:
        return engine.Progress(rnd.state, rnd.selected, rnd.reported, rnd.selection_deadline, rnd.report_deadline)

    def advance(self, task: Task, rnd: RoundRecord, now: float) -> None:
        """Ask the round engine for the round's next step and apply it."""
        step = engine.next_step(self.progress(task, rnd), task.config.rules, now)
        self.apply(task, rnd, step, now)

    def apply(self, task: Task, rnd: RoundRecord, step: engine.Step, now: float) -> None:
        c, num = self.control, rnd.round
        if step.action == engine.FAIL:
            c.fail_round(task, num, step.reason)
        elif step.action == engine.START_REPORTING:
            c.transition(task, num, Event.SELECTION_CLOSED)
        elif step.action == engine.AGGREGATE:
            c.transition(task, num, Event.GOAL_REACHED)
            c.request_commit(task, num)
        elif step.action == engine.COMMIT:
            c.request_commit(task, num)

    def selection_full(self, task: Task, num: int) -> None:
        """The gateway filled the round's selection before its window closed."""
        self.control.transition(task, num, Event.SELECTION_CLOSED)

    def after_close(self, task: Task, num: int, now: float) -> None:
        """Round ``num`` committed or failed: what comes next."""
        self.control.open_next_round(task, num, now)

    # -- the round's updates -----------------------------------------------------------------
    def recover(self, task: Task, num: int) -> None:
        """Rebuild the round's running sum from its stored updates (after a restart, or when
        another replica accepted some)."""
        acc = self.running.sum_for(task, num)
        updates = self.store.updates(task.task_id, num)
        for upd, data in zip(updates, self.store.blobs.read_objects([u.blob for u in updates])):
            if data is None:
                raise FileNotFoundError(f"the bytes of {upd.device_id}'s update ({upd.blob}) are missing")
            decoded = codec.decode(data, task.update_counts)
            self.running.fold(task, acc, decoded.values, upd.examples, staleness=self.staleness(upd))
        log.info("recovered task %s round %s with %d updates", task.task_id, num, acc.count)

    def staleness(self, upd) -> int | None:
        return None  # synchronous updates were all trained on the round's checkpoint

    def discard(self, task: Task, num: int) -> None:
        """What this kind keeps about a round beyond its rows, once the round ended."""
        self.running.discard(task.task_id, num)

    def strategy(self, task: Task, num: int) -> tuple[Strategy, float | None]:
        """The round's folded strategy and, with adaptive clipping, the sum of clip bits."""
        bits = None
        if task.config.adaptive_clip:
            bits = float(sum(1 for u in self.store.updates(task.task_id, num) if u.meta.get("below_clip")))
        if self.running.sum_for(task, num).count != self.store.round(task.task_id, num).reported:
            # Some updates were accepted by another replica: fold the round again from the store.
            self.running.discard(task.task_id, num)
            self.recover(task, num)
        return self.running.sum_for(task, num), bits

    def commit_metrics(self, task: Task, num: int) -> dict:
        """What this kind adds to a committed round's metrics."""
        return {}


class SecAggKind(SyncKind):
    """Synchronous rounds under secure aggregation: the key phases between selecting and
    reporting, unmasking after it; the coordinator only ever sees the unmasked sum."""

    name = "secagg"

    def __init__(self, control: RoundControl, store: Store, running: RunningRounds, secagg: SecAggRounds):
        super().__init__(control, store, running)
        self.secagg = secagg
        # What closes each phase, and the event its success reports.
        self._closes = {engine.CLOSE_ADVERTISING: (secagg.close_advertising, Event.ADVERTISING_CLOSED),
                        engine.CLOSE_SHARING: (secagg.close_sharing, Event.SHARING_CLOSED),
                        engine.CLOSE_REPORTING: (secagg.close_reporting, Event.REPORTING_CLOSED)}

    def report_deadline(self, task: Task, num: int, selection_deadline: float) -> float:
        return self.secagg.open(task, num, selection_deadline)

    def progress(self, task: Task, rnd: RoundRecord) -> engine.Progress:
        return self.secagg.progress(task, rnd)

    def apply(self, task: Task, rnd: RoundRecord, step: engine.Step, now: float) -> None:
        num = rnd.round
        if step.action == engine.START_ADVERTISING:
            self.start_advertising(task, num)
            self.advance(task, self.store.round(task.task_id, num), now)  # everyone may have advertised already
        elif step.action in self._closes:
            close, event = self._closes[step.action]
            failure = close(task, rnd)
            if failure:
                self.control.fail_round(task, num, failure)
            else:
                self.control.transition(task, num, event)
        else:
            super().apply(task, rnd, step, now)

    def start_advertising(self, task: Task, num: int) -> None:
        self.secagg.start_advertising(task, num)
        self.control.transition(task, num, Event.KEYS_REQUESTED)

    def selection_full(self, task: Task, num: int) -> None:
        self.start_advertising(task, num)

    def recover(self, task: Task, num: int) -> None:
        self.secagg.recover(task, num)

    def discard(self, task: Task, num: int) -> None:
        super().discard(task, num)
        self.secagg.discard(task, num)

    def strategy(self, task: Task, num: int) -> tuple[Strategy, float | None]:
        total, count, bits = self.secagg.unmasked_sum(task, num)
        strategy = make_strategy(task.config, task.update_size)
        if count:
            strategy.fold_sum(total, float(count), count)  # uniform weights: example counts stay private
        return strategy, bits

    def commit_metrics(self, task: Task, num: int) -> dict:
        return self.secagg.wire_metrics(task.task_id, num)


class EvaluationKind(SyncKind):
    """An evaluation round: devices report counts on their holdout; the commit summarizes
    them (coordinator.aggregation.evaluation) and leaves the checkpoint as it is."""

    name = "evaluation"
    trains = False

    def recover(self, task: Task, num: int) -> None:
        """Reports are read from the store at the commit: nothing to fold."""
