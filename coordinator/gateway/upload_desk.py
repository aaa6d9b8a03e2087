"""What every upload path checks the same way, whatever the task's kind: the device's task and
assignment, the upload's codec against the plan, refusals that end an assignment, and the
claim that keeps one device's update from being stored twice at once. Each round kind's
intake (`coordinator.gateway.intakes`) receives this desk instead of the gateway."""

from __future__ import annotations

import hmac
from dataclasses import replace
from typing import NoReturn

import numpy as np

from coordinator import errors as E
from coordinator.gateway import upload_rules
from coordinator.gateway.refusals import UploadRefusals
from coordinator.gateway.tokens import hash_token
from coordinator.rounds.running import RunningRounds
from coordinator.store.base import Store
from coordinator.store.records import DeviceRecord, RoundRecord
from coordinator.tasks.registry import Task, TaskRegistry
from protocol import codec, dp, sparse
from protocol.errors import ProtocolError
from protocol.messages import UploadMeta

NOT_ASSIGNED = "this device holds no assignment for that round (or the upload token is wrong)"


class UploadDesk:
    def __init__(self, store: Store, clock, tasks: TaskRegistry, running: RunningRounds, metrics=None):
        self.store, self.clock, self.tasks, self.running, self.metrics = store, clock, tasks, running, metrics
        self.refusals = UploadRefusals()
        self._storing: set[tuple[str, int, str]] = set()  # uploads between claim and release

    def count(self, metric: str, label: str) -> None:
        if self.metrics is not None:
            self.metrics.count(metric, label)

    def reject(self, reason: str) -> None:
        self.count("rejected_uploads", reason)

    def refuse_unassigned(self) -> NoReturn:
        self.reject("not_assigned")
        raise E.Forbidden(NOT_ASSIGNED)

    def device_task(self, device: DeviceRecord, task_id: str) -> Task:
        """The task, for a device of its population; otherwise the same 403 as for a round the
        device holds no assignment in, so a device cannot probe which task ids exist."""
        try:
            task = self.tasks.require(task_id)
        except E.NotFound:
            task = None
        if task is None or task.population != device.population:
            self.refuse_unassigned()
        return task

    def assigned(self, device: DeviceRecord, task_id: str, round_num: int, upload_token: str | None) -> RoundRecord:
        """The round, if this device holds an assignment for it with this token; else 403."""
        assignment = self.store.assignment(task_id, round_num, device.device_id)
        if assignment is None or not upload_token or not hmac.compare_digest(
                assignment.token_hash, hash_token(upload_token)):
            self.refuse_unassigned()
        return self.store.round(task_id, round_num)

    def check_dp_sgd(self, task: Task, meta: UploadMeta) -> None:
        refusal = upload_rules.dp_sgd_refusal(task, meta)
        if refusal is not None:
            self.reject(refusal[0])
            raise E.BadRequest(refusal[1], refusal[0])

    def decode(self, task: Task, round_num: int, meta: UploadMeta, body: bytes,
               device_id: str) -> tuple[np.ndarray, float, UploadMeta]:
        """An update's values and L2 norm (400 for bytes that are not this task's codec, or a
        sparse update on a subset other than its round's; the assignment ends after a few)."""
        expected_codec = task.config.codec_spec()
        key = (task.task_id, round_num, device_id)
        self.refusals.check(key)
        try:  # the header is compared with the plan before any decoding work
            decoded = codec.decode(body, task.update_counts,
                                   sparse.round_seed(task.task_id, round_num) if expected_codec.sparse else None,
                                   expected=expected_codec)
        except ProtocolError as exc:
            self.reject(exc.code)
            self.refusals.refused(key)
            raise E.BadRequest(str(exc), exc.code) from exc
        norm = dp.l2_norm(decoded.values)
        # The adaptive-clip bit is the server's own measurement here, not the device's claim.
        if task.config.adaptive_clip:
            meta = replace(meta, below_clip=norm <= self.running.server_bound(task))
        return decoded.values, norm, meta

    def claim(self, key: tuple[str, int, str]) -> None:
        if key in self._storing:
            raise E.Conflict("this device's update for the round is being stored; retry shortly", "in_progress")
        self._storing.add(key)

    def release(self, key: tuple[str, int, str]) -> None:
        self._storing.discard(key)
