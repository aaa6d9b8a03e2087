"""Asynchronous tasks (FedBuff) at the gateway: slots while fewer than `concurrency`
assignments are live, and updates folded into the buffer open when they land, weighted by
their staleness or refused beyond `max_staleness`.

An assignment pins the buffer open when it was made (task.version + 1), whose checkpoint it
hands out; the update goes into the buffer open when it is stored, which may be a later one.
"""

from __future__ import annotations

import hmac

from coordinator import errors as E
from coordinator.gateway.intakes import IntakeParts, SyncIntake
from coordinator.gateway.steps import PendingAssignment, PendingUpload, update_record
from coordinator.gateway.tokens import hash_token
from coordinator.rounds import versions
from coordinator.rounds.states import RoundState
from coordinator.store.base import Store
from coordinator.store.blobs import update_key
from coordinator.store.buffer_rows import AlreadyInBuffer, AssignmentGone, BufferClosed
from coordinator.store.records import AssignmentRecord, RoundRecord
from coordinator.tasks.registry import Task
from protocol.messages import UploadMeta


PERSIST_TRIES = 5  # buffers that may start aggregating under one update being stored


class BufferedIntake(SyncIntake):
    takes_unassigned = True  # a retry of an acknowledged upload is recognised by its body

    def __init__(self, parts: IntakeParts, hint_ttl_s: float, memory_size: int):
        super().__init__(parts)
        self.hint_ttl_s, self.memory_size = hint_ttl_s, memory_size
        self._live_hint: dict[str, tuple[float, int]] = {}  # per task: (read at, live assignments)
        self.stale_refused: dict[str, int] = {}  # updates refused as too stale, per task (this replica)
        # participation_gap: (task, device) -> the version its last accepted update went into (this replica).
        self._contributed: dict[tuple[str, str], int] = {}

    def wanted(self, task: Task) -> int:
        return task.config.buffer_goal  # about K slots free up per version published

    def offer(self, task: Task, device_id: str, now: float) -> PendingAssignment | None:
        """A slot if fewer than `concurrency` assignments are live (a hint, read at most every
        hint_ttl_s; Store.assign_buffered decides)."""
        cfg = task.config
        live_since = now - cfg.report_deadline_s
        cached = self._live_hint.get(task.task_id)
        if cached is None or not 0 <= now - cached[0] < self.hint_ttl_s:
            cached = self._live_hint[task.task_id] = (now, self.store.live_assignments(task.task_id, live_since))
        in_flight = self.hints.in_flight(task.task_id)
        if cached[1] + in_flight >= cfg.target_concurrency or self.hints.read(task, now, self.store.open_buffer) is None:
            return None
        last = self._contributed.get((task.task_id, device_id))
        if cfg.participation_gap and last is not None and task.version + 1 <= last + cfg.participation_gap:
            return None  # it took part in a recent version: others first
        token = self.hints.offered(task.task_id)
        buffer = task.version + 1
        rnd = RoundRecord(task.task_id, buffer, RoundState.REPORTING, now, now, now + cfg.report_deadline_s)
        return PendingAssignment(task, rnd, token, AssignmentRecord(task.task_id, buffer, device_id,
                                                                    hash_token(token), now),
                                 cfg.target_concurrency, now, live_since=live_since)

    def accept(self, p: PendingAssignment, selected: int | None) -> bool:
        """After the store wrote (selected: live assignments) or refused (None) an offer."""
        task = p.task
        if selected is None:
            self.forget_live_assignments(task.task_id)
            return False
        hint = self._live_hint.get(task.task_id)
        if hint is not None:
            self._live_hint[task.task_id] = (hint[0], max(hint[1], selected))
        return True

    def forget_live_assignments(self, task_id: str) -> None:
        self._live_hint.pop(task_id, None)

    def slot_freed(self, task_id: str) -> None:
        self.forget_live_assignments(task_id)
        for listener in self.parts.slot_listeners:
            listener(task_id, 1)

    def begin_upload(self, task: Task, device, round_num: int, upload_token: str | None,
                     meta: UploadMeta, body: bytes, digest: str) -> dict | PendingUpload:
        """The assignment of buffer ``round_num`` (the version it trained from, as the device
        names it in the URL) is checked against the store; the update goes into the buffer open
        now, weighted by its staleness, or is refused when too stale."""
        g, task_id, device_id, cfg = self.desk, task.task_id, device.device_id, task.config
        assignment = self.store.assignment(task_id, round_num, device_id)
        if assignment is None:
            if self.store.update_with_digest(task_id, device_id, digest, round_num) is not None:
                return {"accepted": True, "duplicate": True}  # a retry of an acknowledged upload
            g.refuse_unassigned()
        if not upload_token or not hmac.compare_digest(assignment.token_hash, hash_token(upload_token)):
            g.refuse_unassigned()
        if self.clock() > assignment.assigned_at + cfg.report_deadline_s:
            g.reject("late")
            raise E.Gone("the assignment's reporting deadline passed; the update was not counted", "round_closed")
        buffer = self.store.open_buffer(task_id)
        if buffer is None:
            g.reject("late")
            raise E.Gone("the task takes no more updates", "round_closed")
        stale = self.staleness_check(task, round_num, buffer.round, device_id)
        values, norm, meta = g.decode(task, round_num, meta, body, device_id)
        g.claim((task_id, round_num, device_id))
        return PendingUpload(task, buffer.round, device_id, meta, body, digest, values, norm,
                             assigned_round=round_num, staleness=stale)

    def staleness_check(self, task: Task, assigned: int, landing: int, device_id: str,
                        store: Store | None = None) -> int:
        """The update's staleness, or 409 (counted; its assignment is used up) beyond max_staleness."""
        stale = versions.staleness(assigned, landing)
        if stale > task.config.max_staleness:
            (store or self.store).drop_assignment(task.task_id, assigned, device_id)
            if store is None or store is self.store:  # on the event loop (not the intake thread)
                self.slot_freed(task.task_id)
            self.desk.reject("stale")
            self.stale_refused[task.task_id] = self.stale_refused.get(task.task_id, 0) + 1
            raise E.Conflict(f"the update was trained on a model {stale} versions old; this task accepts at most "
                             f"{task.config.max_staleness} (max_staleness); it was not counted", "stale")
        return stale

    def object_key(self, p: PendingUpload) -> str:
        return update_key(p.task.task_id, p.round_num, p.device_id, p.assigned_round)

    def persist(self, p: PendingUpload, store: Store) -> int:
        """Into the open buffer; when it starts aggregating under the caller, into the one that
        opened after it (the staleness is worked out again). The buffer's count after it."""
        g, task = self.desk, p.task
        for _ in range(PERSIST_TRIES):
            key = self.object_key(p)
            p.put_once(store, key)
            record = update_record(task.task_id, p.round_num, p.device_id, p.meta, key, p.digest, self.clock(),
                                   staleness=p.staleness)
            try:
                return store.add_buffered_update(record, p.assigned_round)
            except AlreadyInBuffer:
                store.blobs.delete_object(key)
                g.reject("duplicate")
                raise E.Conflict("this device's update is in this version already; check in again for the next",
                                 "duplicate") from None
            except AssignmentGone:
                store.blobs.delete_object(key)
                g.refuse_unassigned()
            except BufferClosed:
                store.blobs.delete_object(key)
            buffer = store.open_buffer(task.task_id)
            if buffer is None:
                g.reject("late")
                raise E.Gone("the task takes no more updates", "round_closed")
            p.round_num = buffer.round
            p.staleness = self.staleness_check(task, p.assigned_round, buffer.round, p.device_id, store)
        raise E.Conflict("the buffers moved on while the update was stored; retry", "in_progress")

    def claimed(self, p: PendingUpload) -> tuple[str, int, str]:
        return p.task.task_id, p.assigned_round, p.device_id

    def staleness(self, p: PendingUpload) -> int | None:
        return p.staleness

    def landed(self, p: PendingUpload, reported: int) -> dict:
        """After the update was folded: its slot is free, and the update that fills the buffer
        asks the driver to publish. The answer names the version that took it."""
        task, metrics = p.task, self.parts.metrics
        if task.config.participation_gap:
            if len(self._contributed) >= self.memory_size:
                self._contributed.pop(next(iter(self._contributed)), None)
            self._contributed[(task.task_id, p.device_id)] = p.round_num
        self.slot_freed(task.task_id)
        if metrics is not None:
            metrics.staleness(task.task_id, p.staleness)
        if reported >= task.config.buffer_goal:
            rnd = self.store.round(task.task_id, p.round_num)
            if rnd is not None:
                self.rounds.guarded(task, self.rounds.advance, task, rnd, self.clock())
        return {"accepted": True, "duplicate": False, "round": p.round_num, "staleness": p.staleness}
