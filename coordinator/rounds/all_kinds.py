"""Every round kind, made once per driver, and the one place that picks a task's."""

from __future__ import annotations

from coordinator.rounds.buffers import BufferedKind
from coordinator.rounds.kinds import EvaluationKind, RoundControl, SecAggKind, SyncKind
from coordinator.rounds.running import RunningRounds
from coordinator.rounds.secagg import SecAggRounds
from coordinator.store.base import Store
from coordinator.tasks.config import TaskConfig


class RoundKinds:
    def __init__(self, control: RoundControl, store: Store, running: RunningRounds, secagg: SecAggRounds,
                 slot_listeners: list, metrics=None):
        self.sync = SyncKind(control, store, running)
        self.secagg = SecAggKind(control, store, running, secagg)
        self.evaluation = EvaluationKind(control, store, running)
        self.buffered = BufferedKind(control, store, running, slot_listeners, metrics)

    def of(self, config: TaskConfig) -> SyncKind:
        if config.evaluation:
            return self.evaluation
        if config.asynchronous:
            return self.buffered
        return self.secagg if config.secagg_on else self.sync
