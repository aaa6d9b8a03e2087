"""The device gateway: registration, authentication, check-in and selection, upload intake
and validation. It records and signals; it never commits a round (a full round is handed
to the round driver with `request_commit`).

It receives what it uses: the store, the clock, the task registry, the open rounds'
running aggregates, the SecAgg rounds, and `rounds` (the round driver, seen through
`RoundSignals`: how it asks a round to move on or to be committed).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import secrets
from dataclasses import replace
from typing import NoReturn

import numpy as np

from coordinator import errors as E
from coordinator.gateway.activity import CheckinActivity
from coordinator.gateway.attestation import AttestationVerifier
from coordinator.gateway.pace import PaceConfig, PaceInputs, due_back, jittered, retry_window
from coordinator.http.rate_limit import TokenBuckets
from coordinator.rounds.running import RunningRounds
from coordinator.rounds.secagg import SecAggRounds
from coordinator.rounds.states import Event, RoundState
from coordinator.gateway.blobs import BlobAccess
from coordinator.gateway.buffered import BufferedIntake
from coordinator.gateway.downloads import DownloadBlobs
from coordinator.gateway.evaluation import EvaluationIntake
from coordinator.gateway import upload_rules
from coordinator.gateway.refusals import UploadRefusals
from coordinator.gateway.registration import Registration
from coordinator.gateway.secagg_messages import SecAggMessages
from coordinator.store.base import Store
from coordinator.store.blobs import update_key
from coordinator.tasks.registry import Task, TaskRegistry
from coordinator.store.records import AssignmentRecord, DeviceRecord, RoundRecord
from coordinator.gateway.steps import PendingAssignment, PendingUpload, RoundSignals, update_record
from coordinator.gateway.tokens import hash_token
from protocol import codec, dp, sparse
from protocol.errors import ProtocolError
from protocol.messages import (Assignment, CheckinRequest, CheckinResponse, UploadMeta)

log = logging.getLogger("fedge.coordinator")
SELECTING_HINT_TTL_S = 0.1  # as long as a tick: another replica's round opening is seen within it


NOT_ASSIGNED = "this device holds no assignment for that round (or the upload token is wrong)"
DEVICE_CACHE_SIZE = 200_000  # ~40 MB of device records


class DeviceGateway:
    def __init__(self, store: Store, clock, tasks: TaskRegistry, running: RunningRounds, secagg: SecAggRounds,
                 rounds: RoundSignals, pace: PaceConfig, metrics=None, rng: random.Random | None = None,
                 checkin_rate: float = 5.0, register_rate: float = 10.0,
                 attestation: AttestationVerifier | None = None):
        self.store, self.clock, self.tasks, self.running, self.secagg = store, clock, tasks, running, secagg
        self.rounds, self.pace, self.metrics, self.attestation = rounds, pace, metrics, attestation
        self.rng = rng or random.Random()
        self.checkin_limit = TokenBuckets(checkin_rate, checkin_rate * 2, "check-ins")
        self.activity = CheckinActivity()  # recent check-ins per population, for the operator page
        self.pace_inputs = PaceInputs(store)  # (devices present, round period) per task
        self._selecting_hint: dict[str, tuple[float, RoundRecord | None]] = {}  # see _selecting_round
        self._device_cache: dict[str, DeviceRecord] = {}  # see _device
        # last_seen of devices that checked in since the last flush: one transaction per tick
        # instead of a write per check-in (it only sizes pace steering; nothing acknowledged).
        self._seen: dict[str, tuple[float, float]] = {}  # device -> (last_seen, due)
        self._storing: set[tuple[str, int, str]] = set()  # uploads between begin_upload and end_upload
        self.refusals = UploadRefusals()
        self.offers: dict[str, int] = {}  # per task: slots offered and not yet written (see _offer)
        # Called with (task id, slots) when an asynchronous task's slots free up (an update in,
        # a stale one refused): the app wakes that many held check-ins of the population.
        self.slot_listeners: list = []
        # The gateway's parts: blob downloads, asynchronous tasks' intake, evaluation reports.
        self.downloads = DownloadBlobs(store)
        self.blobs = BlobAccess(store, clock, tasks, self.authenticate, self.downloads.served_for, self.downloads.models)
        self.buffered = BufferedIntake(self, SELECTING_HINT_TTL_S, DEVICE_CACHE_SIZE)
        self.evaluations = EvaluationIntake(self)
        self.registration = Registration(store, clock, attestation, register_rate, self._count, self._remember)
        self.secagg_messages = SecAggMessages(self)

    def _count(self, metric: str, label: str) -> None:
        if self.metrics is not None:
            self.metrics.count(metric, label)

    def authenticate(self, authorization: str | None) -> DeviceRecord:
        if not authorization or not authorization.startswith("Bearer "):
            raise E.Unauthorized("missing device token (Authorization: Bearer <token>)")
        if not authorization.isascii():  # every token we issue is ASCII; never let other bytes reach the store
            raise E.Unauthorized("invalid device token")
        device_id, _, token = authorization[7:].strip().partition(".")
        device = self._device(device_id)
        # Compare even for an unknown id, so timing does not reveal which ids exist.
        expected = device.token_hash if device else hash_token("x")
        if not hmac.compare_digest(expected, hash_token(token)) or device is None:
            raise E.Unauthorized("invalid device token")
        return device

    def _device(self, device_id: str) -> DeviceRecord | None:
        """A registered device, from memory after its first request: a device's id, population
        and token hash never change, and reading them from the store was one of the two queries
        of every check-in (a round trip each with PostgreSQL). Bounded: the oldest entries go."""
        device = self._device_cache.get(device_id)
        if device is None:
            device = self.store.device(device_id)
            if device is not None:
                self._remember(device)
        return device

    def _remember(self, device: DeviceRecord) -> None:
        if len(self._device_cache) >= DEVICE_CACHE_SIZE:
            self._device_cache.pop(next(iter(self._device_cache)), None)
        self._device_cache[device.device_id] = device

    def checkin(self, device, req: CheckinRequest, rate_limited: bool = True) -> CheckinResponse:
        """A device's check-in; ``rate_limited`` False is the second look of a held long poll
        (the same arrival: not rate limited, not counted again in the activity). The HTTP
        handler runs the same two steps with the assignment written on the intake thread."""
        if rate_limited:
            self.admit_checkin(device)
        step = self.checkin_begin(device, req, rate_limited)
        if isinstance(step, CheckinResponse):
            return step
        return self.checkin_finish(device, step, step.write(self.store), rate_limited)

    def admit_checkin(self, device) -> None:
        """The device's rate limit, taken before its body is read (429 costs a bucket lookup)."""
        self.checkin_limit.take(device.device_id, self.clock())

    def checkin_begin(self, device, req: CheckinRequest, rate_limited: bool = True
                      ) -> CheckinResponse | PendingAssignment:
        """Everything but writing the assignment: the answer, or the assignment to write
        (`Store.assign(p.record, p.capacity)`, then `checkin_finish`); `admit_checkin` first."""
        now = self.clock()
        # Written in batches by Coordinator.tick (take_seen); `_arrival` sets when it is due back.
        self._seen[device.device_id] = (now, due_back(now, now))
        state = req.state.to_dict()
        tasks = self.tasks.active_in(device.population)
        if not tasks:
            return self._arrival(device, rate_limited, now, self._retry(now, self.pace.max_retry_s, "no_task"))
        eligible = [t for t in tasks if t.rule.admits(state) and (not t.manifest.requires_flex or req.state.supports_flex)]
        if not eligible:
            # Which clauses turned it away (worked out only on arrival: the operator page counts them).
            failed = (tasks[0].rule.failed_clauses(state) or ["runtime without Flex ops"]) if rate_limited else []
            return self._arrival(device, rate_limited, now,
                                 self._retry(now, self.pace.ineligible_retry_s, "ineligible"), failed)
        for task in eligible:
            offer = (self.buffered.offer if task.config.asynchronous else self._offer)(task, device.device_id, now)
            if offer is not None:
                offer.held = req.cached_models
                return offer
        return self._arrival(device, rate_limited, now, self._no_slot(eligible[0], now))

    def checkin_finish(self, device, p: PendingAssignment, selected: int | None,
                       rate_limited: bool = True) -> CheckinResponse:
        """The answer once the assignment was written (`selected`: the round's count after it)
        or refused (None)."""
        assignment = self._accept(p, selected)
        if assignment is None:
            return self._arrival(device, rate_limited, p.now, self._no_slot(p.task, p.now))
        self._count("checkins", "assigned")
        return self._arrival(device, rate_limited, p.now, CheckinResponse("assigned", assignment=assignment))

    def _no_slot(self, task: Task, now: float) -> CheckinResponse:
        population, period = self.pace_inputs(task, now)
        # Asynchronous: about K slots free up per version published (the period between openings).
        wanted = task.config.buffer_goal if task.config.asynchronous else task.config.target_selected
        return self._retry(now, retry_window(population, period, wanted, self.pace), "no_slot")

    def _arrival(self, device, first_look: bool, now: float, resp: CheckinResponse,
                 failed_clauses=()) -> CheckinResponse:
        if first_look:
            self.activity.record(device.population, resp.reason or resp.outcome, now, failed_clauses)
        back = resp.assignment.report_deadline if resp.assignment is not None else resp.retry_at
        if back:  # due back then, with a grace for the network and its own timers
            self._seen[device.device_id] = (now, due_back(now, back))
        return resp

    def take_seen(self) -> dict[str, tuple[float, float]]:
        """(last_seen, due) of the devices that checked in since the last call (one batch write)."""
        seen, self._seen = self._seen, {}
        return seen

    def _retry(self, now: float, window: float, reason: str) -> CheckinResponse:
        self._count("checkins", f"retry_{reason}")
        return CheckinResponse("retry", retry_at=jittered(now, window, self.rng), reason=reason)

    def _selecting_round(self, task: Task, now: float) -> RoundRecord | None:
        """The task's selecting round as last read, at most SELECTING_HINT_TTL_S old, or fresher
        after this replica moved the round (forget_selecting_round). A hint only: Store.assign
        checks the round's state and capacity in the database. Without it, every check-in with
        no slot was one query: a third of the event loop's time on PostgreSQL at 10,000 devices."""
        return self.round_hint(task, now, self.store.selecting_round)

    def round_hint(self, task: Task, now: float, read) -> RoundRecord | None:
        """`read(task_id)` (the selecting round, or an async task's open buffer), cached for
        SELECTING_HINT_TTL_S and dropped when this replica moves the task's rounds."""
        cached = self._selecting_hint.get(task.task_id)
        if cached is not None and 0 <= now - cached[0] < SELECTING_HINT_TTL_S:
            return cached[1]
        rnd = read(task.task_id)
        self._selecting_hint[task.task_id] = (now, rnd)
        return rnd

    def forget_selecting_round(self, task_id: str) -> None:
        self._selecting_hint.pop(task_id, None)

    def _offer(self, task: Task, device_id: str, now: float) -> PendingAssignment | None:
        """A slot in the task's selecting round, if the hint says one is free counting the
        offers already on their way to the store (so a burst of woken long polls does not
        send more assignments to the database than the round can take)."""
        rnd = self._selecting_round(task, now)
        in_flight = self.offers.get(task.task_id, 0)
        if rnd is None or now > rnd.selection_deadline or rnd.selected + in_flight >= task.config.target_selected:
            return None
        self.offers[task.task_id] = in_flight + 1
        token = self.new_upload_token()
        return PendingAssignment(task, rnd, token, AssignmentRecord(task.task_id, rnd.round, device_id,
                                                                    hash_token(token), now),
                                 task.config.target_selected, now)

    @staticmethod
    def new_upload_token() -> str:
        return secrets.token_urlsafe(24)

    def _accept(self, p: PendingAssignment, selected: int | None) -> Assignment | None:
        task, rnd = p.task, p.round
        self.offers[task.task_id] = max(0, self.offers.get(task.task_id, 1) - 1)
        if p.live_since is not None:
            return self._assignment(task, rnd, p.token, p.held) if self.buffered.written(task, selected) else None
        if selected is None:
            # Already in this round (it has its assignment), or the round filled or closed since
            # the hint was read: read it afresh next time.
            self.forget_selecting_round(task.task_id)
            return None
        hint = self._selecting_hint.get(task.task_id)
        if hint is not None and hint[1] is not None and hint[1].round == rnd.round:
            self._selecting_hint[task.task_id] = (hint[0], replace(hint[1], selected=max(selected, hint[1].selected)))
        if selected >= task.config.target_selected and self.rounds.holds_lease(task):
            current = self.store.round(task.task_id, rnd.round)
            if current is not None and current.state == RoundState.SELECTING:
                self.rounds.selection_full(task, rnd.round)
        return self._assignment(task, rnd, p.token, p.held)

    def _assignment(self, task: Task, rnd: RoundRecord, token: str, held: tuple[str, ...] = ()) -> Assignment:
        base = f"/v1/tasks/{task.task_id}/rounds/{rnd.round}"
        return Assignment(
            task_id=task.task_id, round=rnd.round, upload_token=token,
            plan=task.config.plan(task.dp_clip, sparse.round_seed(task.task_id, rnd.round), task.manifest.optimizer),
            upload_url=f"{base}/evaluation" if task.config.evaluation else f"{base}/update",
            report_deadline=float(rnd.report_deadline),
            control_sha256=task.control_sha, control_url=f"/v1/blobs/{task.control_sha}" if task.control_sha else "",
            **self.downloads.assignment_fields(task, held),  # the model, the checkpoint, its delta
        )

    def admit_upload(self, device: DeviceRecord, task_id: str, round_num: int, upload_token: str | None) -> int:
        """Before an update's body is read: the task, the assignment and its token (when the
        assignment is still there: an asynchronous device's retry of an acknowledged upload
        is recognised by its body), and refusals; the body limit for this task."""
        limit = self.upload_limit(device, task_id)
        assignment = self.store.assignment(task_id, round_num, device.device_id)
        if assignment is None and not self.tasks.require(task_id).config.asynchronous:
            self.refuse_unassigned()
        if assignment is not None and (not upload_token or not hmac.compare_digest(
                assignment.token_hash, hash_token(upload_token))):
            self.refuse_unassigned()
        self.refusals.check((task_id, round_num, device.device_id))
        return limit

    def upload_limit(self, device: DeviceRecord, task_id: str) -> int:
        task = self.device_task(device, task_id)
        if task.config.evaluation:
            raise E.NotFound(f"task '{task_id}' is an evaluation task: POST the report (JSON) to the assignment's "
                             "upload_url (.../evaluation), not an update")
        return upload_rules.body_limit(task)

    def device_task(self, device: DeviceRecord, task_id: str) -> "Task":
        """The task, for a device of its population; otherwise the same 403 as for a round the
        device holds no assignment in, so a device cannot probe which task ids exist."""
        try:
            task = self.tasks.require(task_id)
        except E.NotFound:
            task = None
        if task is None or task.population != device.population:
            self.reject("not_assigned")
            raise E.Forbidden(NOT_ASSIGNED)
        return task

    def assigned(self, device: DeviceRecord, task_id: str, round_num: int,
                  upload_token: str | None) -> RoundRecord:
        """The round, if this device holds an assignment for it with this token; else 403."""
        assignment = self.store.assignment(task_id, round_num, device.device_id)
        if assignment is None or not upload_token or not hmac.compare_digest(
                assignment.token_hash, hash_token(upload_token)):
            self.reject("not_assigned")
            raise E.Forbidden(NOT_ASSIGNED)
        return self.round_row(task_id, round_num)

    def round_row(self, task_id: str, round_num: int) -> RoundRecord | None:
        return self.store.round(task_id, round_num)

    def upload(self, device, task_id: str, round_num: int, upload_token: str | None, meta: UploadMeta,
               body: bytes) -> dict:
        """An update, checked, stored and folded in one call (the HTTP handler runs the storing
        step in the intake thread where the store has one: `begin_upload`, `persist_upload`,
        `finish_upload`)."""
        step = self.begin_upload(device, task_id, round_num, upload_token, meta, body)
        if isinstance(step, dict):
            return step
        try:
            reported = self.persist_upload(step, self.store)
        finally:
            self.end_upload(step)
        return self.finish_upload(step, reported)

    def begin_upload(self, device, task_id: str, round_num: int, upload_token: str | None, meta: UploadMeta,
                     body: bytes) -> dict | PendingUpload:
        """Everything but storing: who may upload, duplicates, lateness, decoding and bounds.
        A dict is the final answer (a retried upload, a SecAgg masked input); a PendingUpload
        still has to be stored (`persist_upload`) and folded (`finish_upload`)."""
        task = self.device_task(device, task_id)
        device_id = device.device_id
        self._check_dp_sgd(task, meta)
        digest = hashlib.sha256(body).hexdigest()
        if task.config.asynchronous:
            return self.buffered.begin_upload(task, device, round_num, upload_token, meta, body, digest)
        rnd = self.assigned(device, task_id, round_num, upload_token)
        previous = self.store.update(task_id, round_num, device_id)
        if previous is not None:
            if previous.digest == digest:
                return {"accepted": True, "duplicate": True}  # a retry of an acknowledged upload
            self.reject("duplicate")
            raise E.Conflict("an update for this round was already accepted from this device", "duplicate")
        if task.config.secagg_on:
            return self._upload_masked(task, rnd, device_id, meta, body, digest)
        if rnd.state not in (RoundState.SELECTING, RoundState.REPORTING) or self.clock() > rnd.report_deadline:
            self.reject("late")
            raise E.Gone(f"round {round_num} is closed ({rnd.state}); the update was not counted", "round_closed")
        values, norm, meta = self.decode(task, round_num, meta, body, device_id)
        self.claim((task_id, round_num, device_id))
        return PendingUpload(task, round_num, device_id, meta, body, digest, values, norm)

    def _check_dp_sgd(self, task: Task, meta: UploadMeta) -> None:
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

    def persist_upload(self, p: PendingUpload, store: Store) -> int:
        """File first, then the row, in one transaction with the round's counts, and only while
        the round still takes updates: the round's reported count after it. Touches nothing in
        memory, so it may run on a thread with a store connection of its own."""
        if p.assigned_round is not None:
            return self.buffered.persist(p, store)
        key = update_key(p.task.task_id, p.round_num, p.device_id)
        store.blobs.put_object(key, p.body)
        reported = store.add_update(update_record(p.task.task_id, p.round_num, p.device_id, p.meta, key,
                                                  p.digest, self.clock()), only_open=True)
        if reported is None:  # the round closed while this one was on its way
            store.blobs.delete_object(key)
            self.reject("late")
            raise E.Gone(f"round {p.round_num} closed; the update was not counted", "round_closed")
        return reported

    def end_upload(self, p: PendingUpload) -> None:
        self._storing.discard((p.task.task_id, p.assigned_round if p.assigned_round is not None else p.round_num,
                               p.device_id))

    def finish_upload(self, p: PendingUpload, reported: int) -> dict:
        """Fold the stored update; the upload that reaches the goal closes the round."""
        task = p.task
        if self.metrics is not None:
            self.metrics.bytes_in(len(p.body))
        self.running.fold(task, self.running.sum_for(task, p.round_num), p.values, p.meta.example_count, p.norm,
                          staleness=p.staleness if p.assigned_round is not None else None)
        if p.norm > self.running.server_bound(task):
            self._count("clipped_updates", "server_bound")
        if p.assigned_round is not None:  # asynchronous: the answer names the version that took it
            return {"accepted": True, "duplicate": False, **self.buffered.landed(p, reported)}
        if reported >= task.config.goal_count:
            # The update is stored and acknowledged whatever happens while committing.
            self.rounds.guarded(task, self.close_full_round, task, p.round_num)
        return {"accepted": True, "duplicate": False}

    def close_full_round(self, task: Task, num: int) -> None:
        self.rounds.transition(task, num, Event.GOAL_REACHED)
        self.rounds.request_commit(task, num)

    def _upload_masked(self, task: Task, rnd: RoundRecord, device_id: str, meta: UploadMeta, body: bytes,
                       digest: str) -> dict:
        values = self.secagg.accept_masked_input(task, rnd, device_id, body)
        self._store_update(task, rnd.round, device_id, meta, body, digest)
        self.secagg.masked_input_done(task, rnd.round, values)
        self.rounds.advance(task, self.round_row(task.task_id, rnd.round), self.clock())
        return {"accepted": True, "duplicate": False}

    def _store_update(self, task: Task, round_num: int, device_id: str, meta: UploadMeta, body: bytes,
                      digest: str) -> None:
        """File first, then the row: an acknowledged update survives a crash (SecAgg's masked inputs)."""
        key = update_key(task.task_id, round_num, device_id)
        self.store.blobs.put_object(key, body)
        self.store.add_update(update_record(task.task_id, round_num, device_id, meta, key, digest, self.clock()))
        if self.metrics is not None:
            self.metrics.bytes_in(len(body))

    def reject(self, reason: str) -> None:
        self._count("rejected_uploads", reason)

    def refuse_unassigned(self) -> NoReturn:
        self.reject("not_assigned")
        raise E.Forbidden(NOT_ASSIGNED)
