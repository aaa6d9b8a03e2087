"""Every intake, made once per gateway, and the one place that picks a task's."""

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

    def of(self, config: TaskConfig) -> SyncIntake:
        if config.evaluation:
            return self.evaluation
        if config.asynchronous:
            return self.buffered
        return self.secagg if config.secagg_on else self.sync
