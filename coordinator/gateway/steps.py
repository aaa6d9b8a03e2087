"""What passes between the gateway's steps, and what the gateway asks of the round driver.

A check-in and an upload each run in two steps around one store write, so that the HTTP
handler can make that write on the intake thread (`Coordinator.write`): a `PendingAssignment`
or a `PendingUpload` is what the first step hands the write and the last step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from coordinator.store.records import AssignmentRecord, RoundRecord, UpdateRecord
from coordinator.tasks.registry import Task
from protocol.messages import UploadMeta


@dataclass
class PendingUpload:
    """An update that passed every check and is on its way to the store."""

    task: Task
    round_num: int
    device_id: str
    meta: UploadMeta
    body: bytes
    digest: str
    values: np.ndarray  # decoded
    norm: float


def update_record(task_id: str, round_num: int, device_id: str, meta: UploadMeta, blob: str, digest: str,
                  now: float) -> UpdateRecord:
    return UpdateRecord(task_id, round_num, device_id, meta.example_count,
                        {"train_loss": meta.train_loss, "eval_loss": meta.eval_loss,
                         "eval_accuracy": meta.eval_accuracy, "eval_count": meta.eval_count,
                         "below_clip": meta.below_clip}, blob, digest=digest, received_at=now)


@dataclass
class PendingAssignment:
    """A slot offered to a device, on its way to the store."""

    task: Task
    round: RoundRecord
    token: str
    record: AssignmentRecord
    capacity: int
    now: float


class RoundSignals(Protocol):
    """What the gateway asks of the round driver when a device's message moves a round."""

    def holds_lease(self, task: Task) -> bool: ...

    def advance(self, task: Task, rnd: RoundRecord, now: float) -> None: ...

    def transition(self, task: Task, round_num: int, state: str, reason: str = "") -> None: ...

    def start_advertising(self, task: Task, num: int) -> None: ...

    def request_commit(self, task: Task, num: int) -> None: ...

    def guarded(self, task: Task, step, *args) -> None: ...
