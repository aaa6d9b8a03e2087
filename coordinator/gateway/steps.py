"""What passes between the gateway's steps, and what the gateway asks of the round driver.

A check-in and an upload each run in two steps around one store write, so that the HTTP
handler can make that write on the intake thread (`Coordinator.write`): a `PendingAssignment`
or a `PendingUpload` is what the first step hands the write and the last step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from coordinator.rounds.states import Event
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
    # Asynchronous tasks: the buffer the assignment was made in; round_num is the buffer the
    # update goes into (it may move on while the update is stored) and staleness their distance.
    assigned_round: int | None = None
    staleness: int = 0
    # The object key the bytes were already stored under, off the event loop, before the row is
    # written (GatewayIntakes' `store_bytes`, for blob stores across the network); "" when not.
    stored_key: str = ""

    def put_once(self, store, key: str) -> None:
        """The bytes under ``key``, unless they are there already."""
        if self.stored_key != key:
            store.blobs.put_object(key, self.body)
            self.stored_key = key


def update_record(task_id: str, round_num: int, device_id: str, meta: UploadMeta, blob: str, digest: str,
                  now: float, staleness: int | None = None) -> UpdateRecord:
    stored = {"train_loss": meta.train_loss, "eval_loss": meta.eval_loss, "eval_accuracy": meta.eval_accuracy,
              "eval_count": meta.eval_count, "below_clip": meta.below_clip}
    if meta.dp_sgd is not None:  # example-level DP-SGD: what the round spent on this device's data
        stored.update(dp_sgd=meta.dp_sgd, dp_sgd_epsilon=meta.dp_sgd_epsilon)
    if staleness is not None:  # asynchronous: recovery folds the update again with the same weight
        stored["staleness"] = staleness
    return UpdateRecord(task_id, round_num, device_id, meta.example_count, stored, blob, digest=digest,
                        received_at=now)


@dataclass
class PendingAssignment:
    """A slot offered to a device, on its way to the store."""

    task: Task
    round: RoundRecord
    token: str
    record: AssignmentRecord
    capacity: int
    now: float
    # Asynchronous tasks: assignments made at or after this time and not yet used are live
    # (they count against `capacity`, the task's concurrency).
    live_since: float | None = None
    # The blobs the device says it holds (its check-in's cached_models): a base for a delta download.
    held: tuple[str, ...] = ()

    def write(self, store) -> int | None:
        """The store write that makes the assignment (the count after it, or None: refused)."""
        if self.live_since is None:
            return store.assign(self.record, self.capacity)
        return store.assign_buffered(self.record, self.capacity, self.live_since)


class RoundSignals(Protocol):
    """What the gateway asks of the round driver when a device's message moves a round."""

    def holds_lease(self, task: Task) -> bool: ...

    def advance(self, task: Task, rnd: RoundRecord, now: float) -> None: ...

    def transition(self, task: Task, round_num: int, event: Event, reason: str = "") -> bool: ...

    def selection_full(self, task: Task, num: int) -> None: ...

    def request_commit(self, task: Task, num: int) -> None: ...

    def guarded(self, task: Task, step, *args) -> None: ...
