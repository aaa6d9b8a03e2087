"""Every intake, made once per gateway, picked by the task's `TaskConfig.round_kind`."""

from __future__ import annotations

from coordinator.gateway.buffered import BufferedIntake
from coordinator.gateway.evaluation import EvaluationIntake
from coordinator.gateway.intakes import IntakeParts, SecAggIntake, SyncIntake
from coordinator.tasks.config import TaskConfig


class GatewayIntakes:
    def __init__(self, parts: IntakeParts, hint_ttl_s: float, memory_size: int):
        self.sync = SyncIntake(parts)
        self.secagg = SecAggIntake(parts)
        self.evaluation = EvaluationIntake(parts)
        self.buffered = BufferedIntake(parts, hint_ttl_s, memory_size)
        self._by_kind = {"sync": self.sync, "secagg": self.secagg, "evaluation": self.evaluation,
                         "buffered": self.buffered}

    def of(self, config: TaskConfig) -> SyncIntake:
        return self._by_kind[config.round_kind]
