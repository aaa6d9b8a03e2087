"""One intake per kind of round at the gateway: how a task's slots are offered at check-in and
how its uploads are taken (checked, stored, folded). The gateway calls the same methods for
every task (`coordinator.gateway.intake_kinds.GatewayIntakes.of` picks a task's intake), and
an intake receives the collaborators it uses (`IntakeParts`), never the gateway.

This module has the synchronous kinds: plain rounds (`SyncIntake`) and SecAgg rounds, whose
masked inputs are added to the round's masked sum (`SecAggIntake`); evaluation rounds and
asynchronous buffers are in `coordinator.gateway.evaluation` and `coordinator.gateway.buffered`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coordinator import errors as E
from coordinator.gateway import upload_rules
from coordinator.gateway.offers import RoundHints
from coordinator.gateway.steps import PendingAssignment, PendingUpload, RoundSignals, update_record
from coordinator.gateway.tokens import hash_token
from coordinator.gateway.upload_desk import UploadDesk
from coordinator.rounds.running import RunningRounds
from coordinator.rounds.secagg import SecAggRounds
from coordinator.rounds.states import Event, RoundState
from coordinator.store.base import Store
from coordinator.store.blobs import update_key
from coordinator.store.records import AssignmentRecord, DeviceRecord, RoundRecord
from coordinator.tasks.registry import Task
from protocol.messages import UploadMeta


@dataclass(frozen=True)
class IntakeParts:
    """The collaborators every intake may use."""

    store: Store
    clock: object
    running: RunningRounds
    rounds: RoundSignals  # the round driver, as the gateway sees it
    desk: UploadDesk
    hints: RoundHints
    secagg: SecAggRounds
    metrics: object = None
    # Called with (task id, slots) when an asynchronous task's slots free up (the app wakes
    # that many held check-ins of the population).
    slot_listeners: list = field(default_factory=list)


class SyncIntake:
    """Plain synchronous rounds: a slot while the selecting round has room; an update decoded,
    stored and folded into the round's running sum; the update that reaches the goal closes it."""

    upload_path = "update"  # where the assignment's upload_url points
    takes_unassigned = False  # an upload without an assignment is refused before its body is read

    def __init__(self, parts: IntakeParts):
        self.parts = parts
        self.store, self.clock, self.desk, self.hints, self.rounds = (parts.store, parts.clock, parts.desk,
                                                                      parts.hints, parts.rounds)

    # -- check-ins -------------------------------------------------------------------------------
    def wanted(self, task: Task) -> int:
        """How many devices a round (or, asynchronous, a version) takes: pace steering's denominator."""
        return task.config.target_selected

    def offer(self, task: Task, device_id: str, now: float) -> PendingAssignment | None:
        """A slot in the task's selecting round, if the hint says one is free counting the
        offers already on their way to the store."""
        rnd = self.hints.read(task, now, self.store.selecting_round)
        in_flight = self.hints.in_flight(task.task_id)
        if rnd is None or now > rnd.selection_deadline or rnd.selected + in_flight >= task.config.target_selected:
            return None
        token = self.hints.offered(task.task_id)
        return PendingAssignment(task, rnd, token, AssignmentRecord(task.task_id, rnd.round, device_id,
                                                                    hash_token(token), now),
                                 task.config.target_selected, now)

    def accept(self, p: PendingAssignment, selected: int | None) -> bool:
        """After the store wrote the offer (``selected``: the round's count after it) or refused
        it (None: already in this round, or the round filled or closed since the hint was read)."""
        task, rnd = p.task, p.round
        if selected is None:
            self.hints.forget(task.task_id)
            return False
        self.hints.saw_selected(task.task_id, rnd.round, selected)
        if selected >= task.config.target_selected and self.rounds.holds_lease(task):
            current = self.store.round(task.task_id, rnd.round)
            if current is not None and current.state == RoundState.SELECTING:
                self.rounds.selection_full(task, rnd.round)
        return True

    # -- uploads -------------------------------------------------------------------------------
    def body_limit(self, task: Task) -> int:
        return upload_rules.body_limit(task)

    def begin_upload(self, task: Task, device: DeviceRecord, round_num: int, upload_token: str | None,
                     meta: UploadMeta, body: bytes, digest: str) -> dict | PendingUpload:
        """The assignment, a retried upload, then this kind's checks (`take`)."""
        rnd = self.desk.assigned(device, task.task_id, round_num, upload_token)
        previous = self.store.update(task.task_id, round_num, device.device_id)
        if previous is not None:
            if previous.digest == digest:
                return {"accepted": True, "duplicate": True}  # a retry of an acknowledged upload
            self.desk.reject("duplicate")
            raise E.Conflict("an update for this round was already accepted from this device", "duplicate")
        return self.take(task, rnd, device.device_id, meta, body, digest)

    def take(self, task: Task, rnd: RoundRecord, device_id: str, meta: UploadMeta, body: bytes,
             digest: str) -> dict | PendingUpload:
        if rnd.state not in (RoundState.SELECTING, RoundState.REPORTING) or self.clock() > rnd.report_deadline:
            self.desk.reject("late")
            raise E.Gone(f"round {rnd.round} is closed ({rnd.state}); the update was not counted", "round_closed")
        values, norm, meta = self.desk.decode(task, rnd.round, meta, body, device_id)
        self.desk.claim((task.task_id, rnd.round, device_id))
        return PendingUpload(task, rnd.round, device_id, meta, body, digest, values, norm)

    def persist(self, p: PendingUpload, store: Store) -> int:
        """Bytes first, then the row, in one transaction with the round's counts, and only while
        the round still takes updates: the round's reported count after it. Touches nothing in
        memory, so it may run on a thread with a store connection of its own."""
        key = self.object_key(p)
        p.put_once(store, key)
        reported = store.add_update(update_record(p.task.task_id, p.round_num, p.device_id, p.meta, key,
                                                  p.digest, self.clock()), only_open=True)
        if reported is None:  # the round closed while this one was on its way
            store.blobs.delete_object(key)
            self.desk.reject("late")
            raise E.Gone(f"round {p.round_num} closed; the update was not counted", "round_closed")
        return reported

    def object_key(self, p: PendingUpload) -> str:
        """Where the update's bytes go."""
        return update_key(p.task.task_id, p.round_num, p.device_id)

    def claimed(self, p: PendingUpload) -> tuple[str, int, str]:
        return p.task.task_id, p.round_num, p.device_id

    def staleness(self, p: PendingUpload) -> int | None:
        return None

    def landed(self, p: PendingUpload, reported: int) -> dict:
        """After the update was folded: the upload that reaches the goal closes the round."""
        if reported >= p.task.config.goal_count:
            # The update is stored and acknowledged whatever happens while committing.
            self.rounds.guarded(p.task, self.close_full_round, p.task, p.round_num)
        return {"accepted": True, "duplicate": False}

    def close_full_round(self, task: Task, num: int) -> None:
        self.rounds.transition(task, num, Event.GOAL_REACHED)
        self.rounds.request_commit(task, num)


class SecAggIntake(SyncIntake):
    """SecAgg rounds: a masked input is checked against the round's SecAgg state, stored and
    added to the masked sum at once; the round engine moves the round on."""

    def take(self, task: Task, rnd: RoundRecord, device_id: str, meta: UploadMeta, body: bytes,
             digest: str) -> dict:
        secagg = self.parts.secagg
        values = secagg.accept_masked_input(task, rnd, device_id, body)
        key = update_key(task.task_id, rnd.round, device_id)
        self.store.blobs.put_object(key, body)  # bytes, then the row: an acknowledged input survives a crash
        self.store.add_update(update_record(task.task_id, rnd.round, device_id, meta, key, digest, self.clock()))
        if self.parts.metrics is not None:
            self.parts.metrics.bytes_in(len(body))
        secagg.masked_input_done(task, rnd.round, values)
        self.rounds.advance(task, self.store.round(task.task_id, rnd.round), self.clock())
        return {"accepted": True, "duplicate": False}
