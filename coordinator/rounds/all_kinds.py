"""Every round kind, made once per driver, picked by the task's `TaskConfig.round_kind`."""

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
        self._by_kind = {"sync": self.sync, "secagg": self.secagg, "evaluation": self.evaluation,
                         "buffered": self.buffered}

    def of(self, config: TaskConfig) -> SyncKind:
        return self._by_kind[config.round_kind]
