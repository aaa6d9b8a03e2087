"""The device gateway: registration, authentication, check-in and selection, upload intake
and validation. It records and signals; it never commits a round (a full round is handed
to the round driver with `request_commit`).

What differs between kinds of task (plain, SecAgg, evaluation, asynchronous) is each kind's
intake (`coordinator.gateway.intakes`): the gateway calls the task's intake and never asks
which kind it is. It receives what it uses: the store, the clock, the task registry, the open
rounds' running aggregates, the SecAgg rounds, and `rounds` (the round driver, seen through
`RoundSignals`: how it asks a round to move on or to be committed).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import random
from typing import NoReturn

from coordinator import errors as E
from coordinator.gateway.activity import CheckinActivity
from coordinator.gateway.attestation import AttestationVerifier
from coordinator.gateway.blobs import BlobAccess
from coordinator.gateway.downloads import DownloadBlobs
from coordinator.gateway.evaluation import EvaluationReports
from coordinator.gateway.intake_kinds import GatewayIntakes
from coordinator.gateway.intakes import IntakeParts, SyncIntake
from coordinator.gateway.offers import SELECTING_HINT_TTL_S, RoundHints
from coordinator.gateway.pace import PaceConfig, PaceSteering, due_back, jittered
from coordinator.gateway.registration import Registration
from coordinator.gateway.secagg_messages import SecAggMessages
from coordinator.gateway.steps import PendingAssignment, PendingUpload, RoundSignals
from coordinator.gateway.tokens import hash_token
from coordinator.gateway.upload_desk import NOT_ASSIGNED, UploadDesk  # noqa: F401 (NOT_ASSIGNED: tests)
from coordinator.http.rate_limit import TokenBuckets
from coordinator.rounds.running import RunningRounds
from coordinator.rounds.secagg import SecAggRounds
from coordinator.store.base import Store
from coordinator.store.records import DeviceRecord, RoundRecord
from coordinator.tasks.registry import Task, TaskRegistry
from protocol import sparse
from protocol.messages import Assignment, CheckinRequest, CheckinResponse, UploadMeta

log = logging.getLogger("fedge.coordinator")
DEVICE_CACHE_SIZE = 200_000  # ~40 MB of device records


class DeviceGateway:
    def __init__(self, store: Store, clock, tasks: TaskRegistry, running: RunningRounds, secagg: SecAggRounds,
                 rounds: RoundSignals, pace: PaceConfig, *, metrics=None, rng: random.Random | None = None,
                 checkin_rate: float = 5.0, register_rate: float = 10.0,
                 attestation: AttestationVerifier | None = None):
        self.store, self.clock, self.tasks, self.running, self.secagg = store, clock, tasks, running, secagg
        self.rounds, self.pace, self.metrics, self.attestation = rounds, pace, metrics, attestation
        self.rng = rng or random.Random()
        self.checkin_limit = TokenBuckets(checkin_rate, checkin_rate * 2, "check-ins")
        self.activity = CheckinActivity()  # recent check-ins per population, for the operator page
        self.pace_steering = PaceSteering(store, pace, lambda task: self.intake(task).wanted(task))
        self._device_cache: dict[str, DeviceRecord] = {}  # see _device
        # last_seen of devices that checked in since the last flush: one transaction per tick
        # instead of a write per check-in (it only sizes pace steering; nothing acknowledged).
        self._seen: dict[str, tuple[float, float]] = {}  # device -> (last_seen, due)
        self.desk = UploadDesk(store, clock, tasks, running, metrics)  # the checks every upload shares
        self.refusals = self.desk.refusals
        # Open rounds as last read, and offers in flight. With replicas the hint lives a tick
        # (another replica may open or fill a round); a store no other process writes changes
        # its rounds only through this process's driver, whose transitions drop the hint
        # (`forget_selecting_round`), so the hint holds until then (a query per check-in saved).
        self.hints = RoundHints(SELECTING_HINT_TTL_S if store.shared else math.inf)
        # Called with (task id, slots) when an asynchronous task's slots free up (an update in,
        # a stale one refused): the app wakes that many held check-ins of the population.
        self.slot_listeners: list = []
        parts = IntakeParts(store, clock, running, rounds, self.desk, self.hints, secagg, metrics, self.slot_listeners)
        self.intakes = GatewayIntakes(parts, SELECTING_HINT_TTL_S, DEVICE_CACHE_SIZE)
        self.buffered = self.intakes.buffered
        # The gateway's other parts: blob downloads, evaluation reports, SecAgg's key phases, registration.
        self.downloads = DownloadBlobs(store)
        self.blobs = BlobAccess(store, clock, tasks, self.authenticate, self.downloads.served_for, self.downloads.models)
        self.evaluations = EvaluationReports(store, clock, self.desk, rounds, self.intakes.evaluation.close_full_round)
        self.registration = Registration(store, clock, attestation, register_rate, self._count, self._remember)
        self.secagg_messages = SecAggMessages(store, clock, self.desk, secagg, rounds)

    def intake(self, task: Task) -> SyncIntake:
        return self.intakes.of(task.config)

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
        if rate_limited and self.checkin_limit.rate > 0:  # 0: no limit (`--checkin-rate 0`, simulations)
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
            offer = self.intake(task).offer(task, device.device_id, now)
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
        return self._retry(now, self.pace_steering.window(task, now), "no_slot")

    def _arrival(self, device, first_look: bool, now: float, resp: CheckinResponse,
                 failed_clauses=()) -> CheckinResponse:
        if first_look:
            self.activity.record(device.population, resp.reason or resp.outcome, now, failed_clauses)
        # Seen now, due back then with a grace for the network and its own timers; written in
        # batches by Coordinator.tick (take_seen). Every answer passes here, an assignment once
        # the store took it.
        back = resp.assignment.report_deadline if resp.assignment is not None else resp.retry_at
        self._seen[device.device_id] = (now, due_back(now, back or now))
        return resp

    def take_seen(self) -> dict[str, tuple[float, float]]:
        """(last_seen, due) of the devices that checked in since the last call (one batch write)."""
        seen, self._seen = self._seen, {}
        return seen

    def _retry(self, now: float, window: float, reason: str) -> CheckinResponse:
        if self.metrics is not None:
            self.metrics.count("checkins", f"retry_{reason}")
        return CheckinResponse("retry", jittered(now, window, self.rng), reason)

    def forget_selecting_round(self, task_id: str) -> None:
        """This replica moved the task's rounds: the next check-in reads its round afresh."""
        self.hints.forget(task_id)

    def _accept(self, p: PendingAssignment, selected: int | None) -> Assignment | None:
        self.hints.settled(p.task.task_id)
        if not self.intake(p.task).accept(p, selected):
            return None
        return self._assignment(p.task, p.round, p.token, p.held)

    def _assignment(self, task: Task, rnd: RoundRecord, token: str, held: tuple[str, ...] = ()) -> Assignment:
        base = f"/v1/tasks/{task.task_id}/rounds/{rnd.round}"
        return Assignment(
            task_id=task.task_id, round=rnd.round, upload_token=token,
            plan=task.config.plan(task.dp_clip, sparse.round_seed(task.task_id, rnd.round), task.manifest.optimizer),
            upload_url=f"{base}/{self.intake(task).upload_path}",
            report_deadline=float(rnd.report_deadline),
            # The model, the checkpoint, its delta, the control variate: their URLs last until the deadline.
            **self.downloads.assignment_fields(task, held, float(rnd.report_deadline), self.clock()),
        )

    def admit_upload(self, device: DeviceRecord, task_id: str, round_num: int, upload_token: str | None) -> int:
        """Before an update's body is read: the task, the assignment and its token (when the
        assignment is still there: an asynchronous device's retry of an acknowledged upload
        is recognised by its body), and refusals; the body limit for this task."""
        limit = self.upload_limit(device, task_id)
        assignment = self.store.assignment(task_id, round_num, device.device_id)
        if assignment is None and not self.intake(self.tasks.require(task_id)).takes_unassigned:
            self.desk.refuse_unassigned()
        if assignment is not None and (not upload_token or not hmac.compare_digest(
                assignment.token_hash, hash_token(upload_token))):
            self.desk.refuse_unassigned()
        self.refusals.check((task_id, round_num, device.device_id))
        return limit

    def upload_limit(self, device: DeviceRecord, task_id: str) -> int:
        task = self.desk.device_task(device, task_id)
        return self.intake(task).body_limit(task)

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
        task = self.desk.device_task(device, task_id)
        self.desk.check_dp_sgd(task, meta)
        digest = hashlib.sha256(body).hexdigest()
        return self.intake(task).begin_upload(task, device, round_num, upload_token, meta, body, digest)

    def store_bytes(self, p: PendingUpload) -> None:
        """The update's bytes where its intake will look for them (`persist_upload` then writes
        only the row): for a blob store across the network, on a thread, so that the event
        loop does not wait for the store's answer."""
        p.put_once(self.store, self.intake(p.task).object_key(p))

    def persist_upload(self, p: PendingUpload, store: Store) -> int:
        """The task's intake stores it (on the intake thread where there is one): the count after it."""
        return self.intake(p.task).persist(p, store)

    def end_upload(self, p: PendingUpload) -> None:
        self.desk.release(self.intake(p.task).claimed(p))

    def finish_upload(self, p: PendingUpload, reported: int) -> dict:
        """Fold the stored update; what follows is the task's intake's (a full round closes)."""
        task, intake = p.task, self.intake(p.task)
        if self.metrics is not None:
            self.metrics.bytes_in(len(p.body))
        self.running.fold(task, self.running.sum_for(task, p.round_num), p.values, p.meta.example_count, p.norm,
                          staleness=intake.staleness(p))
        if p.norm > self.running.server_bound(task):
            self._count("clipped_updates", "server_bound")
        return intake.landed(p, reported)

    def reject(self, reason: str) -> None:
        self.desk.reject(reason)

    def refuse_unassigned(self) -> NoReturn:
        self.desk.refuse_unassigned()
