"""The coordinator's logic: registration, check-in/selection, uploads, the round state machine.

Round lifecycle (DESIGN.md): ``selecting -> reporting -> aggregating -> committed`` or
``failed (reason)``; with secure aggregation the key phases of `coordinator.secagg_rounds`
come between selecting and reporting, and unmasking after it. Each transition is written to SQLite before it is acted on; after a
restart `recover()` rebuilds the running sums of open rounds from the stored updates
and `tick()` carries on. All methods are synchronous and fast; the aiohttp handlers
call them directly and a background task calls `tick()`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from coordinator import errors as E
from coordinator.attestation import AttestationVerifier
from coordinator import round_engine as engine
from coordinator.commit import CommitInputs, CommitResult, compute_commit
from coordinator.pace import PaceConfig, jittered, retry_window
from coordinator.privacy import epsilon
from coordinator.rate_limit import TokenBuckets
from coordinator.secagg_rounds import SecAggRounds
from coordinator.records import (AssignmentRecord, DeviceRecord, PopulationRecord, RoundRecord, TaskRecord,
                                 UpdateRecord)
from coordinator.store import OPEN_STATES, Store
from coordinator.strategies import FedAvg, Strategy, make_strategy
from coordinator.task_config import TaskConfig
from protocol import codec, dp
from protocol.eligibility import EligibilityRule
from protocol.errors import ProtocolError
from protocol.manifest import Manifest
from protocol.secagg import ring
from protocol.secagg.server import BelowThreshold
from protocol.messages import Assignment, CheckinRequest, CheckinResponse, RegisterRequest, UploadMeta
from protocol.names import valid_name
from protocol.tflite_file import read_initial_weights, read_manifest, with_weights

log = logging.getLogger("fedge.coordinator")
POPULATION_COUNT_TTL_S = 1.0


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a unix socket or a name: limited like any remote address


@dataclass
class Task:
    task_id: str
    population: str
    config: TaskConfig
    manifest: Manifest
    model_sha: str
    state: str
    checkpoint_sha: str
    rule: EligibilityRule
    dp_clip: float = 0.0  # this round's clip norm (moves each round with adaptive clipping)


class Coordinator:
    def __init__(self, store: Store, pace: PaceConfig | None = None, metrics=None,
                 clock=time.time, seed: int | None = None, checkin_rate: float = 5.0,
                 register_rate: float = 10.0, attestation: AttestationVerifier | None = None):
        self.store = store
        self.pace = pace or PaceConfig()
        self.metrics = metrics
        self.clock = clock
        self.rng = random.Random(seed)
        self.sums: dict[tuple[str, int], Strategy] = {}
        self.tasks: dict[str, Task] = {}
        self.checkin_limit = TokenBuckets(checkin_rate, checkin_rate * 2, "check-ins")
        # Per client address; bursts of 10 s worth, so an app's first start is never refused.
        self.register_limit = TokenBuckets(register_rate, register_rate * 10, "registrations from this address")
        self.attestation = attestation
        self._population_counts: dict[str, tuple[float, int]] = {}
        # last_seen of devices that checked in since the last flush: one transaction per tick
        # instead of a write per check-in (it only sizes pace steering; nothing acknowledged).
        self._seen: dict[str, float] = {}
        # Called with the task id whenever a round opens (the app wakes long-polling check-ins).
        self.round_open_listeners: list = []
        # Called with the task id on every round transition (wakes long-polling SecAgg views).
        self.round_change_listeners: list = []
        # With a running driver (the app), commits are computed off the event loop: requested
        # here, taken by the driver (take_pending_commits), run by commit_async.
        self.defer_commits = False
        self.pending_commits: list[tuple[str, int]] = []
        self.committing: set[tuple[str, int]] = set()
        self.commit_listeners: list = []
        self.secagg = SecAggRounds(self)
        self.recover()

    # -- start-up -------------------------------------------------------------------
    def recover(self) -> None:
        """Load tasks; rebuild the running sum of every open round from its stored updates."""
        self.tasks = {rec.task_id: self._task_from_record(rec) for rec in self.store.tasks()}
        for rnd in self.store.open_rounds():
            task = self.tasks[rnd.task_id]
            # A round that cannot be rebuilt (a damaged file) fails alone; the service still starts.
            self._guarded(task, self._recover_round, task, rnd.round)

    def _recover_round(self, task: Task, num: int) -> None:
        if task.config.secagg_on:
            self.secagg.recover(task, num)
            return
        acc = self._sum_for(task, num)
        for upd in self.store.updates(task.task_id, num):
            decoded = codec.decode(Path(upd.blob).read_bytes(), [w.size for w in task.manifest.weights])
            self._fold(task, acc, decoded.values, upd.examples)
        log.info("recovered task %s round %s with %d updates", task.task_id, num, acc.count)

    def _task_from_record(self, rec: TaskRecord) -> Task:
        config = TaskConfig.from_dict(rec.config)
        last = self.store.last_committed(rec.task_id)
        clip = last.metrics.get("dp_next_clip", config.clip_norm) if last else config.clip_norm
        return Task(rec.task_id, rec.population, config, Manifest.from_json(rec.manifest), rec.model_sha, rec.state,
                    rec.checkpoint_sha, EligibilityRule.parse(config.eligibility), clip)

    def _sum_for(self, task: Task, round_num: int) -> Strategy:
        key = (task.task_id, round_num)
        if key not in self.sums:
            c = task.config
            self.sums[key] = make_strategy(c.aggregator, task.manifest.num_parameters, c.trim_fraction,
                                           c.krum_byzantine, c.krum_select)
        return self.sums[key]

    def _server_bound(self, task: Task) -> float:
        """The L2 norm every decoded update is clipped to, whatever the device says: the round's
        DP clip (so the sensitivity behind epsilon holds), else the task's max_update_norm."""
        return task.dp_clip if task.config.dp_on else task.config.max_update_norm

    def _fold(self, task: Task, acc: Strategy, values: np.ndarray, examples: int) -> float:
        """Bound one decoded update and fold it; returns its norm before the server's clip."""
        bounded, norm = dp.clip_l2(values, self._server_bound(task))
        # Under DP every device weighs the same: one device's influence is bounded by the clip alone.
        weight = 1.0 if task.config.dp_on else float(min(examples, task.config.max_example_count))
        acc.fold(bounded, weight)
        return norm

    # -- admin ------------------------------------------------------------------------
    def create_population(self, name: str, enrollment_secret: str = "", require_attestation: bool = False) -> dict:
        """A population; with an enrollment secret (given to the app at provisioning) and/or
        attestation, registration is refused to devices that cannot show them."""
        valid_name(name, "population name")
        if require_attestation and self.attestation is None:
            raise E.BadRequest("require_attestation needs a verifier: start fedge serve with --attestation-verifier "
                               "MODULE:FUNCTION", "no_verifier")
        if self.store.population(name):
            raise E.Conflict(f"population '{name}' already exists", "exists")
        secret_hash = _hash_token(enrollment_secret) if enrollment_secret else ""
        self.store.add_population(PopulationRecord(name, self.clock(), secret_hash, require_attestation))
        return self.population_summary(name)

    def population_summary(self, name: str) -> dict:
        pop = self.store.population(name)
        if pop is None:
            raise E.NotFound(f"no population '{name}'")
        return {"name": name, "enrollment_secret": bool(pop.enrollment_secret_hash),
                "require_attestation": pop.require_attestation}

    def put_model(self, data: bytes) -> dict:
        try:
            manifest = read_manifest(data)
        except ProtocolError as exc:
            raise E.BadRequest(str(exc), exc.code) from exc
        sha = hashlib.sha256(data).hexdigest()
        self.store.put_blob(sha, data)
        return {"model_sha256": sha, "manifest": json.loads(manifest.to_json())}

    def create_task(self, population: str, raw: dict) -> dict:
        if not isinstance(raw, dict):
            raise E.BadRequest("expected a JSON object with model_sha256 and config")
        if not self.store.population(population):
            raise E.NotFound(f"no population '{population}'")
        model_sha = raw.get("model_sha256")
        if not isinstance(model_sha, str) or self.store.blob_path(model_sha) is None:
            raise E.BadRequest("model_sha256 must name a model uploaded to /v1/admin/models", "unknown_model")
        config = TaskConfig.from_dict(raw.get("config", {}))
        task_id = raw.get("task_id")
        task_id = f"task-{secrets.token_hex(4)}" if task_id is None else valid_name(task_id, "task_id")
        if task_id in self.tasks:
            raise E.Conflict(f"task '{task_id}' already exists", "exists")
        model_bytes = self.store.blob_path(model_sha).read_bytes()
        manifest = read_manifest(model_bytes)
        if manifest.requires_flex:
            log.warning("task model needs Flex ops %s: devices without Flex will refuse it", manifest.flex_ops)
        initial = self._initial_weights(raw, manifest, model_bytes)
        checkpoint = codec.encode(initial, codec.CodecSpec("f32"), np.random.default_rng(0))
        ck_sha = hashlib.sha256(checkpoint).hexdigest()
        # Every check is done: from here on, only writes.
        self.store.put_blob(ck_sha, checkpoint)
        record = TaskRecord(task_id, population, config.to_dict(), model_sha, manifest.to_json(), "active", ck_sha,
                            self.clock())
        self.store.add_task(record)
        self.tasks[task_id] = self._task_from_record(record)
        return self.task_summary(task_id)

    def _initial_weights(self, raw: dict, manifest: Manifest, model_bytes: bytes) -> list[np.ndarray]:
        """Initial global weights: an optional base64 float32 payload, else those embedded at export."""
        payload = raw.get("initial_weights_f32")
        try:
            data = read_initial_weights(model_bytes) if payload is None else base64.b64decode(payload, validate=True)
            decoded = codec.decode(data, [w.size for w in manifest.weights])
        except (ProtocolError, ValueError) as exc:
            raise E.BadRequest(f"initial_weights_f32: {exc}", "bad_payload") from exc
        return codec.unflatten(decoded.values, manifest.weight_shapes)

    def set_task_state(self, task_id: str, action: str) -> dict:
        task = self._task(task_id)
        target = {"pause": "paused", "resume": "active", "cancel": "cancelled"}.get(action)
        if target is None:
            raise E.BadRequest("action must be pause, resume or cancel")
        if task.state in ("cancelled", "completed"):
            raise E.Conflict(f"task is {task.state}", "task_finished")
        self.store.set_task_state(task_id, target, fail_open_rounds="task cancelled" if target == "cancelled" else "",
                                  now=self.clock())
        task.state = target
        return self.task_summary(task_id)

    def _task(self, task_id: str) -> Task:
        if task_id not in self.tasks:
            raise E.NotFound(f"no task '{task_id}'")
        return self.tasks[task_id]

    def task_summary(self, task_id: str) -> dict:
        task = self._task(task_id)
        return {
            "task_id": task_id, "population": task.population, "state": task.state,
            "reason": self.store.task(task_id).reason,
            "model_sha256": task.model_sha, "checkpoint_sha256": task.checkpoint_sha,
            "config": task.config.to_dict(), "model_name": task.manifest.model_name,
            "num_parameters": task.manifest.num_parameters,
        }

    def global_model(self, task_id: str) -> bytes:
        """The task's .tflite carrying the current global weights (see `with_weights`)."""
        task = self._task(task_id)
        model = self.store.blob_path(task.model_sha).read_bytes()
        return with_weights(model, self.store.blob_path(task.checkpoint_sha).read_bytes())

    def rounds(self, task_id: str) -> list[dict]:
        self._task(task_id)
        return [r.to_dict() for r in self.store.rounds(task_id)]

    # -- devices ----------------------------------------------------------------------
    def register(self, req: RegisterRequest, address: str = "") -> dict:
        # Emulated fleets register thousands of devices from this host: loopback is not limited.
        if address and not _is_loopback(address):
            self.register_limit.take(address, self.clock())
        pop = self.store.population(req.population)
        if pop is None:
            raise E.NotFound(f"no population '{req.population}'")
        if pop.enrollment_secret_hash and not hmac.compare_digest(
                pop.enrollment_secret_hash, _hash_token(req.enrollment_secret)):
            self._count("registrations", "bad_enrollment_secret")
            raise E.Forbidden("this population needs its enrollment secret", "enrollment_required")
        if pop.require_attestation:
            verdict = self.attestation.verify(req.population, req.attestation) if self.attestation else None
            if not verdict:
                self._count("registrations", "attestation_failed")
                raise E.Forbidden("device attestation failed", "attestation_failed")
        self._count("registrations", "ok")
        device_id = "d-" + secrets.token_hex(8)
        token = secrets.token_urlsafe(32)
        self.store.add_device(DeviceRecord(device_id, req.population, _hash_token(token), req.label, self.clock()))
        return {"device_id": device_id, "token": f"{device_id}.{token}"}

    def authenticate(self, authorization: str | None) -> DeviceRecord:
        if not authorization or not authorization.startswith("Bearer "):
            raise E.Unauthorized("missing device token (Authorization: Bearer <token>)")
        device_id, _, token = authorization[7:].strip().partition(".")
        device = self.store.device(device_id)
        # Compare even for an unknown id, so timing does not reveal which ids exist.
        expected = device.token_hash if device else _hash_token("x")
        if not hmac.compare_digest(expected, _hash_token(token)) or device is None:
            raise E.Unauthorized("invalid device token")
        return device

    def checkin(self, device, req: CheckinRequest, rate_limited: bool = True) -> CheckinResponse:
        if rate_limited:
            self.checkin_limit.take(device.device_id, self.clock())
        now = self.clock()
        self._seen[device.device_id] = now  # written in batches by flush_seen()
        state = req.state.to_dict()
        tasks = [t for t in self.tasks.values() if t.population == device.population and t.state == "active"]
        if not tasks:
            return self._retry(now, self.pace.max_retry_s, "no_task")
        eligible = [t for t in tasks if t.rule.admits(state) and (not t.manifest.requires_flex or req.state.supports_flex)]
        if not eligible:
            return self._retry(now, self.pace.ineligible_retry_s, "ineligible")
        for task in eligible:
            assignment = self._try_assign(task, device.device_id, now)
            if assignment is not None:
                self._count("checkins", "assigned")
                return CheckinResponse("assigned", assignment=assignment)
        task = eligible[0]
        window = retry_window(self._active_population(task.population, now), task.config.selection_window_s,
                              task.config.target_selected, self.pace)
        return self._retry(now, window, "no_slot")

    def flush_seen(self) -> None:
        if not self._seen:
            return
        seen, self._seen = self._seen, {}
        self.store.touch_devices(seen)

    def _active_population(self, population: str, now: float) -> int:
        """Devices of the population seen within max_retry_s, counted at most once a second:
        a COUNT(*) on every no-slot check-in was the check-in path's largest cost."""
        counted_at, n = self._population_counts.get(population, (-1e18, 0))
        if now - counted_at >= POPULATION_COUNT_TTL_S:
            n = self.store.count_seen(now - self.pace.max_retry_s, population)
            self._population_counts[population] = (now, n)
        return n

    def _retry(self, now: float, window: float, reason: str) -> CheckinResponse:
        self._count("checkins", f"retry_{reason}")
        return CheckinResponse("retry", retry_at=jittered(now, window, self.rng), reason=reason)

    def _count(self, metric: str, label: str) -> None:
        if self.metrics is not None:
            self.metrics.count(metric, label)

    def _try_assign(self, task: Task, device_id: str, now: float) -> Assignment | None:
        rnd = self.store.selecting_round(task.task_id)
        if rnd is None or now > rnd.selection_deadline or rnd.selected >= task.config.target_selected:
            return None
        token = secrets.token_urlsafe(24)
        if not self.store.assign(AssignmentRecord(task.task_id, rnd.round, device_id, _hash_token(token), now)):
            return None  # already in this round: it has its assignment
        if rnd.selected + 1 >= task.config.target_selected:
            if task.config.secagg_on:
                self.secagg.start_advertising(task, rnd.round, now)
            else:
                self.transition(task, rnd.round, "reporting")
        base = f"/v1/tasks/{task.task_id}/rounds/{rnd.round}"
        return Assignment(
            task_id=task.task_id, round=rnd.round, upload_token=token, plan=task.config.plan(task.dp_clip),
            model_sha256=task.model_sha, model_url=f"/v1/blobs/{task.model_sha}",
            checkpoint_sha256=task.checkpoint_sha, checkpoint_url=f"/v1/blobs/{task.checkpoint_sha}",
            upload_url=f"{base}/update", report_deadline=float(rnd.report_deadline),
        )

    def upload_limit(self, task_id: str) -> int:
        task = self._task(task_id)
        if task.config.secagg_on:
            return ring.packed_size(32, ring.padded_length(task.manifest.num_parameters)
                                    + task.config.secagg_extra_slots)
        return task.config.codec_spec().max_payload_bytes(len(task.manifest.weights), task.manifest.num_parameters)

    def _assigned(self, device: DeviceRecord, task_id: str, round_num: int,
                  upload_token: str | None) -> RoundRecord:
        """The round, if this device holds an assignment for it with this token; else 403."""
        assignment = self.store.assignment(task_id, round_num, device.device_id)
        if assignment is None or not upload_token or not hmac.compare_digest(
                assignment.token_hash, _hash_token(upload_token)):
            self._reject("not_assigned")
            raise E.Forbidden("this device holds no assignment for that round (or the upload token is wrong)")
        return self.round_row(task_id, round_num)

    def round_row(self, task_id: str, round_num: int) -> RoundRecord | None:
        return self.store.round(task_id, round_num)

    def _secagg_round(self, device, task_id: str, round_num: int, upload_token: str | None):
        """(task, round row) of a SecAgg round this device is assigned to; 404 for a plain task."""
        task = self._task(task_id)
        if not task.config.secagg_on:
            raise E.NotFound(f"task '{task_id}' does not use secure aggregation")
        return task, self._assigned(device, task_id, round_num, upload_token)

    def secagg_message(self, device, task_id: str, round_num: int, upload_token: str | None, phase: str,
                       raw) -> dict:
        """A device's AdvertiseKeys ('keys'), ShareKeys ('shares') or Unmasking ('reveals') message."""
        task, rnd = self._secagg_round(device, task_id, round_num, upload_token)
        post = {"keys": self.secagg.post_keys, "shares": self.secagg.post_shares,
                "reveals": self.secagg.post_reveals}.get(phase)
        if post is None:
            raise E.NotFound(f"no SecAgg phase '{phase}'; use keys, shares or reveals")
        try:
            new = post(task, rnd, device.device_id, raw)
        except ProtocolError as exc:
            raise E.BadRequest(str(exc), exc.code) from exc
        return {"accepted": True, "duplicate": not new}

    def secagg_view(self, device, task_id: str, round_num: int, upload_token: str | None):
        task, rnd = self._secagg_round(device, task_id, round_num, upload_token)
        return self.secagg.view(task, rnd, device.device_id)

    def upload(self, device, task_id: str, round_num: int, upload_token: str | None, meta: UploadMeta,
               body: bytes) -> dict:
        task = self._task(task_id)
        device_id = device.device_id
        rnd = self._assigned(device, task_id, round_num, upload_token)
        digest = hashlib.sha256(body).hexdigest()
        previous = self.store.update(task_id, round_num, device_id)
        if previous is not None:
            if previous.digest == digest:
                return {"accepted": True, "duplicate": True}  # a retry of an acknowledged upload
            self._reject("duplicate")
            raise E.Conflict("an update for this round was already accepted from this device", "duplicate")
        if task.config.secagg_on:
            return self._upload_masked(task, rnd, device_id, meta, body, digest)
        if rnd.state not in ("selecting", "reporting") or self.clock() > rnd.report_deadline:
            self._reject("late")
            raise E.Gone(f"round {round_num} is closed ({rnd.state}); the update was not counted", "round_closed")
        expected_codec = task.config.codec_spec()
        try:
            decoded = codec.decode(body, [w.size for w in task.manifest.weights])
        except ProtocolError as exc:
            self._reject(exc.code)
            raise E.BadRequest(str(exc), exc.code) from exc
        if decoded.codec != expected_codec.name:
            self._reject("wrong_codec")
            raise E.BadRequest(f"update uses codec {decoded.codec}; this task expects {expected_codec.name}", "wrong_codec")
        bound = self._server_bound(task)
        norm = float(np.linalg.norm(decoded.values.astype(np.float64)))
        # The adaptive-clip bit is the server's own measurement here, not the device's claim.
        meta = replace(meta, below_clip=norm <= bound) if task.config.adaptive_clip else meta
        self._store_update(task, round_num, device_id, meta, body, digest)
        self._fold(task, self._sum_for(task, round_num), decoded.values, meta.example_count)
        if norm > bound:
            self._count("clipped_updates", "server_bound")
        if rnd.reported + 1 >= task.config.goal_count:
            # The update is stored and acknowledged whatever happens while committing.
            self._guarded(task, self._close_full_round, task, round_num)
        return {"accepted": True, "duplicate": False}

    def _close_full_round(self, task: Task, num: int) -> None:
        self.transition(task, num, "aggregating")
        self.request_commit(task, num)

    def _upload_masked(self, task: Task, rnd: RoundRecord, device_id: str, meta: UploadMeta, body: bytes,
                       digest: str) -> dict:
        values = self.secagg.accept_masked_input(task, rnd, device_id, body)
        self._store_update(task, rnd.round, device_id, meta, body, digest)
        self.secagg.masked_input_done(task, rnd.round, values)
        return {"accepted": True, "duplicate": False}

    def _store_update(self, task: Task, round_num: int, device_id: str, meta: UploadMeta, body: bytes,
                      digest: str) -> None:
        """File first, then the row: an acknowledged update survives a crash."""
        path = self.store.update_path(task.task_id, round_num, device_id)
        self.store.write_file(path, body)
        self.store.add_update(UpdateRecord(
            task.task_id, round_num, device_id, meta.example_count,
            {"train_loss": meta.train_loss, "eval_loss": meta.eval_loss, "eval_accuracy": meta.eval_accuracy,
             "eval_count": meta.eval_count, "below_clip": meta.below_clip}, str(path), digest, self.clock()))
        if self.metrics is not None:
            self.metrics.bytes_in(len(body))

    def _reject(self, reason: str) -> None:
        self._count("rejected_uploads", reason)

    # -- the round state machine -----------------------------------------------------------
    def transition(self, task: Task, round_num: int, state: str, reason: str = "") -> None:
        closed = self.clock() if state in ("committed", "failed") else None
        self.store.set_round_state(task.task_id, round_num, state, reason, closed)
        log.info("task %s round %d -> %s %s", task.task_id, round_num, state, reason)
        for listener in self.round_change_listeners:
            listener(task.task_id)

    def tick(self) -> None:
        """Advance every active task's round by the clock; called periodically.

        Uploads and commits also advance rounds as they happen (a full round commits at
        its last upload and the next round opens at once); the tick handles windows and
        deadlines passing, and anything a restart left half-way.
        """
        now = self.clock()
        self.flush_seen()
        for task in list(self.tasks.values()):
            if task.state == "active":
                self._guarded(task, self._drive, task, now)

    def _drive(self, task: Task, now: float) -> None:
        rnd = self._latest_round(task)
        if rnd is None or rnd.state in ("committed", "failed"):
            self._open_next_round(task, rnd.round if rnd else 0, now)
        else:
            self.advance(task, rnd, now)

    def _guarded(self, task: Task, step, *args) -> None:
        """Run one step of driving ``task``; an exception fails that task's open round with the
        reason and goes no further: it never stops another task, nor the next tick."""
        try:
            step(*args)
        except Exception as exc:  # noqa: BLE001 - the driver must outlive any one task's failure
            self._fail_on_error(task, exc)

    def _fail_on_error(self, task: Task, exc: Exception) -> None:
        log.error("task %s: error while driving the round", task.task_id, exc_info=exc)
        self._count("driver_errors", type(exc).__name__)
        try:
            rnd = self._latest_round(task)
            if rnd is not None and rnd.state in OPEN_STATES:
                self.fail_round(task, rnd.round, f"internal error while driving the round: "
                                                    f"{type(exc).__name__}: {str(exc)[:200]}")
        except Exception:  # noqa: BLE001
            log.exception("task %s: could not fail the round after an error", task.task_id)

    def _latest_round(self, task: Task) -> RoundRecord | None:
        return self.store.latest_round(task.task_id)

    def _open_next_round(self, task: Task, last: int, now: float) -> None:
        """Open round ``last + 1``, or finish the task when its rounds are done."""
        if task.state != "active":
            return
        done = self.store.committed_count(task.task_id)
        if done >= task.config.rounds:
            self._finish_task(task, "completed", f"{done} rounds committed")
            return
        cfg = task.config
        if cfg.dp_on and cfg.dp_epsilon_budget > 0:
            q = self.dp_sampling_rate(task)
            spent = epsilon(cfg.dp_noise_multiplier, q, done, cfg.dp_delta)
            after = epsilon(cfg.dp_noise_multiplier, q, done + 1, cfg.dp_delta)
            if after > cfg.dp_epsilon_budget:
                self._finish_task(task, "completed", f"privacy budget: one more round would spend epsilon {after:.3f} > "
                                                     f"budget {cfg.dp_epsilon_budget:g} (delta {cfg.dp_delta:g}); "
                                                     f"stopped after {done} rounds at epsilon {spent:.3f}")
                return
        self._open_round(task, last + 1, now)
        for listener in self.round_open_listeners:
            listener(task.task_id)

    def _open_round(self, task: Task, round_num: int, now: float) -> None:
        c = task.config
        selection_deadline = now + c.selection_window_s
        with self.store.transaction():
            report_deadline = (self.secagg.open(task, round_num, selection_deadline) if c.secagg_on
                               else selection_deadline + c.report_deadline_s)
            self.store.add_round(task.task_id, round_num, now, selection_deadline, report_deadline)

    def advance(self, task: Task, rnd: RoundRecord, now: float) -> None:
        """Ask the round engine for the round's next step and apply it."""
        progress = self.secagg.progress(task, rnd) if task.config.secagg_on else engine.Progress(
            rnd.state, rnd.selected, rnd.reported, rnd.selection_deadline, rnd.report_deadline)
        step = engine.next_step(progress, task.config.rules, now)
        num = rnd.round
        if step.action == engine.FAIL:
            self.fail_round(task, num, step.reason)
        elif step.action == engine.START_REPORTING:
            self.transition(task, num, "reporting")
        elif step.action == engine.START_ADVERTISING:
            self.secagg.start_advertising(task, num, now)
            self.advance(task, self.round_row(task.task_id, num), now)  # everyone may have advertised already
        elif step.action == engine.CLOSE_ADVERTISING:
            self.secagg.close_advertising(task, rnd)
        elif step.action == engine.CLOSE_SHARING:
            self.secagg.close_sharing(task, rnd)
        elif step.action == engine.CLOSE_REPORTING:
            self.secagg.close_reporting(task, rnd)
        elif step.action == engine.AGGREGATE:
            self.transition(task, num, "aggregating")
            self.request_commit(task, num)
        elif step.action == engine.COMMIT:
            self.request_commit(task, num)

    def fail_round(self, task: Task, num: int, reason: str) -> None:
        self.transition(task, num, "failed", reason)
        self._discard_updates(task, num)
        self._open_next_round(task, num, self.clock())

    def _discard_updates(self, task: Task, num: int) -> None:
        self.sums.pop((task.task_id, num), None)
        if task.config.secagg_on:
            self.secagg.discard(task, num)
        for upd in self.store.updates(task.task_id, num):
            Path(upd.blob).unlink(missing_ok=True)

    def _aggregate(self, task: Task, num: int) -> tuple[np.ndarray, float, float | None]:
        """(sum of updates, total weight, sum of clip bits or None)."""
        if task.config.secagg_on:
            total, count, bits = self.secagg.unmasked_sum(task, num)
            return total, float(count), bits  # uniform weights: example counts stay private
        acc = self._sum_for(task, num)
        bits = None
        if task.config.adaptive_clip:
            bits = float(sum(1 for u in self.store.updates(task.task_id, num) if u.meta.get("below_clip")))
        if isinstance(acc, FedAvg):
            return acc.total, acc.weight, bits
        return acc.mean().astype(np.float64), 1.0, bits  # a robust aggregate is already a mean

    def dp_sampling_rate(self, task: Task) -> float:
        """goal / population, from the task's explicit dp_population only: a count of registered
        devices would let anyone lower the reported epsilon by registering more."""
        population = task.config.dp_population
        if population < task.config.goal_count:  # a task stored before dp_population was required
            return 1.0
        return task.config.goal_count / population

    # -- commit: read on the loop, compute anywhere (coordinator.commit), write on the loop -----
    def request_commit(self, task: Task, num: int) -> None:
        """The round is aggregating: commit it now, or hand it to the app's driver, which
        computes it in an executor (never inside the request of the round's last upload)."""
        key = (task.task_id, num)
        if not self.defer_commits:
            self.commit(task, num)
        elif key not in self.committing and key not in self.pending_commits:
            self.pending_commits.append(key)
            for listener in self.commit_listeners:
                listener()

    def take_pending_commits(self) -> list[tuple[str, int]]:
        """The commits to run; each counts as in progress from here until commit_async ends,
        so a tick in between cannot request it a second time."""
        pending, self.pending_commits = self.pending_commits, []
        self.committing.update(pending)
        return pending

    def commit(self, task: Task, num: int) -> None:
        started = self.clock()
        inputs = self._commit_inputs(task, num)
        if inputs is not None:
            self._apply_commit(task, num, compute_commit(inputs), started)

    async def commit_async(self, task_id: str, num: int) -> None:
        """The driver's commit: the computation in the default executor, the store on the loop."""
        task = self.tasks.get(task_id)
        started = self.clock()
        try:
            rnd = self.round_row(task_id, num)
            if task is None or rnd is None or rnd.state != "aggregating":
                return
            inputs = self._commit_inputs(task, num)
            if inputs is None:
                return
            result = await asyncio.get_running_loop().run_in_executor(None, compute_commit, inputs)
            rnd = self.round_row(task_id, num)
            if rnd is None or rnd.state != "aggregating":  # cancelled meanwhile
                return
            self._apply_commit(task, num, result, started)
        except Exception as exc:  # noqa: BLE001 - as in tick(): fail this round, keep driving
            self._fail_on_error(task, exc)
        finally:
            self.committing.discard((task_id, num))

    def _commit_inputs(self, task: Task, num: int) -> CommitInputs | None:
        try:
            total, weight, bits = self._aggregate(task, num)
        except BelowThreshold as exc:
            self.fail_round(task, num, f"secagg: cannot unmask the sum: {exc}")
            return None
        if weight <= 0:
            self.fail_round(task, num, "no updates to aggregate")
            return None
        done = self.store.committed_count(task.task_id)
        return CommitInputs(task.config, task.manifest.weight_shapes, total, weight, bits, task.dp_clip,
                            self.store.blob_path(task.checkpoint_sha).read_bytes(),
                            self._load_opt_state(task, num - 1), done, self.dp_sampling_rate(task))

    def _apply_commit(self, task: Task, num: int, result: CommitResult, started: float) -> None:
        if result.failure:
            self.fail_round(task, num, result.failure)
            return
        sha = result.sha
        self.store.put_blob(sha, result.payload)
        if result.opt_state:
            self._save_opt_state(task, num, result.opt_state)
        metrics = {**self._round_metrics(task, num), **result.dp_metrics}
        self.store.commit_round(task.task_id, num, self.clock(), sha, metrics)
        task.checkpoint_sha = sha
        # The next clip takes effect only once the round that chose it is committed (as on a restart).
        task.dp_clip = metrics.get("dp_next_clip", task.dp_clip)
        self._discard_updates(task, num)
        if self.metrics is not None:
            opened_at = self.store.round(task.task_id, num).opened_at
            self.metrics.round_committed(self.clock() - opened_at, self.clock() - started)
        log.info("task %s round %d committed: %s", task.task_id, num, metrics)
        self._open_next_round(task, num, self.clock())

    def _round_metrics(self, task: Task, num: int) -> dict:
        cap = task.config.max_example_count  # a device's claim weighs its metrics no more than its update
        metas = [(min(u.examples, cap), u.meta) for u in self.store.updates(task.task_id, num)]
        total = sum(n for n, _ in metas) or 1
        eval_total = sum(m["eval_count"] for _, m in metas)
        out = {"reports": len(metas), "examples": int(sum(n for n, _ in metas)),
               "train_loss": sum(n * m["train_loss"] for n, m in metas) / total}
        if eval_total:
            out["eval_accuracy"] = sum(m["eval_count"] * m["eval_accuracy"] for _, m in metas) / eval_total
            out["eval_loss"] = sum(m["eval_count"] * m["eval_loss"] for _, m in metas) / eval_total
        return out

    def _opt_path(self, task: Task, num: int):
        return self.store.data_dir / "server_opt" / task.task_id / f"{num:06d}.npz"

    def _load_opt_state(self, task: Task, num: int) -> dict:
        path = self._opt_path(task, num)
        if not path.exists():
            return {}
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def _save_opt_state(self, task: Task, num: int, state: dict) -> None:
        import io

        buf = io.BytesIO()
        np.savez(buf, **state)
        self.store.write_file(self._opt_path(task, num), buf.getvalue())

    def _finish_task(self, task: Task, state: str, reason: str) -> None:
        self.store.set_task_state(task.task_id, state, reason)
        task.state = state
        log.info("task %s %s: %s", task.task_id, state, reason)

    def active_devices(self, window_s: float = 600.0) -> int:
        return self.store.count_seen(self.clock() - window_s)
