"""The operator's side of the coordinator: populations, models and tasks (the admin API).

It receives what it uses: the store, the clock, the task registry, the attestation
verifier (whether one is configured) and the memory a round may hold.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets

import numpy as np

from coordinator.rounds.states import RoundState
from coordinator import errors as E
from coordinator.aggregation.privacy import (TargetUnreachable, calibrate_distributed_noise, calibrate_noise,
                                             sampling_rate)
from coordinator.aggregation.reducers import peak_bytes
from coordinator.gateway.attestation import AttestationVerifier
from coordinator.gateway.tokens import hash_token
from coordinator.store.base import Store
from coordinator.tasks.registry import TaskRegistry
from coordinator.store.records import PopulationRecord, TaskRecord
from coordinator.tasks.config import TaskConfig
from protocol import codec
from protocol.errors import ProtocolError
from protocol.manifest import Manifest
from protocol.names import MAX_NAME_LENGTH, valid_name
from protocol.tflite_file import read_initial_weights, read_manifest, with_weights


log = logging.getLogger("fedge.coordinator")


class AdminOps:
    def __init__(self, store: Store, clock, tasks: TaskRegistry, attestation: AttestationVerifier | None = None,
                 max_aggregation_bytes: int = 2048 * 2**20, audit=None):
        self.store, self.clock, self.tasks = store, clock, tasks
        self.audit = audit  # coordinator.audit.trail.AuditTrail (None: not recorded)
        self.attestation = attestation
        self.max_aggregation_bytes = max_aggregation_bytes
        self.task_created_listeners: list = []  # called with the task id (the gateway's blob guards)

    def create_population(self, name: str, enrollment_secret: str = "", require_attestation: bool = False) -> dict:
        """A population; with an enrollment secret (given to the app at provisioning) and/or
        attestation, registration is refused to devices that cannot show them."""
        valid_name(name, "population name")
        if require_attestation and self.attestation is None:
            raise E.BadRequest("require_attestation needs a verifier: start fedge serve with --attestation-verifier "
                               "MODULE:FUNCTION", "no_verifier")
        if self.store.population(name):
            raise E.Conflict(f"population '{name}' already exists", "exists")
        secret_hash = hash_token(enrollment_secret) if enrollment_secret else ""
        self.store.add_population(PopulationRecord(name, self.clock(), secret_hash, require_attestation))
        return self.population_summary(name)

    def population_summary(self, name: str) -> dict:
        pop = self.store.population(name)
        if pop is None:
            raise E.NotFound(f"no population '{name}'")
        return {"name": name, "enrollment_secret": bool(pop.enrollment_secret_hash),
                "require_attestation": pop.require_attestation, "devices": self.store.count_devices(name),
                "seen_last_hour": self.store.count_seen(self.clock() - 3600.0, name),
                "tasks": sorted(t.task_id for t in self.tasks.values() if t.population == name)}

    def list_populations(self) -> list[dict]:
        return [self.population_summary(p.name) for p in self.store.populations()]

    def put_model(self, data: bytes) -> dict:
        try:
            manifest = read_manifest(data)
        except ProtocolError as exc:
            raise E.BadRequest(str(exc), exc.code) from exc
        sha = hashlib.sha256(data).hexdigest()
        self.store.blobs.put(sha, data)
        return {"model_sha256": sha, "manifest": json.loads(manifest.to_json())}

    def create_task(self, population: str, raw: dict) -> dict:
        if not isinstance(raw, dict):
            raise E.BadRequest("expected a JSON object with model_sha256 and config")
        if not self.store.population(population):
            raise E.NotFound(f"no population '{population}'")
        model_sha = raw.get("model_sha256")
        if not isinstance(model_sha, str) or not self.store.blobs.exists(model_sha):
            raise E.BadRequest("model_sha256 must name a model uploaded to /v1/admin/models", "unknown_model")
        task_id = raw.get("task_id")
        task_id = f"task-{secrets.token_hex(4)}" if task_id is None else valid_name(task_id, "task_id")
        if task_id in self.tasks:
            raise E.Conflict(f"task '{task_id}' already exists", "exists")
        model_bytes = self.store.blobs.read(model_sha)
        manifest = read_manifest(model_bytes)
        config = self._task_config(raw.get("config", {}), manifest.num_parameters)
        if manifest.requires_flex:
            log.warning("task model needs Flex ops %s: devices without Flex will refuse it", manifest.flex_ops)
        try:
            manifest.check_plan(config.proximal_mu, config.scaffold, config.dp_sgd_noise_multiplier > 0)
        except ProtocolError as exc:  # every device would refuse it: say so now
            raise E.BadRequest(str(exc), exc.code) from exc
        need = peak_bytes(config.aggregator, config.target_selected, manifest.num_parameters)
        if need > self.max_aggregation_bytes:
            raise E.BadRequest(
                f"aggregator '{config.aggregator}' keeps every update of a round: {config.target_selected} reports "
                f"(goal_count x over_selection) of {manifest.num_parameters:,} parameters need about "
                f"{need / 2**20:,.0f} MiB at the round's end, over this coordinator's limit of "
                f"{self.max_aggregation_bytes / 2**20:,.0f} MiB (fedge serve --max-aggregation-mib); "
                "lower goal_count or over_selection, or use fedavg", "aggregation_too_large")
        initial = self._initial_weights(raw, manifest, model_bytes)
        checkpoint = codec.encode(initial, codec.CodecSpec("f32"), np.random.default_rng(0))
        ck_sha = hashlib.sha256(checkpoint).hexdigest()
        # Every check is done: from here on, only writes.
        self.store.blobs.put(ck_sha, checkpoint)
        record = TaskRecord(task_id, population, config.to_dict(), model_sha, manifest.to_json(), "active", ck_sha,
                            self.clock())
        self.store.add_task(record)
        self.tasks.put(record)
        self._record(task_id, "task_created", {"population": population, "config": config.to_dict(),
                                               "model_sha256": model_sha, "checkpoint_sha256": ck_sha,
                                               "manifest_sha256": hashlib.sha256(manifest.to_json().encode()).hexdigest()})
        for listener in self.task_created_listeners:
            listener(task_id)
        return self.task_summary(task_id)

    @staticmethod
    def _task_config(raw_config, num_values: int) -> TaskConfig:
        """The validated config; with dp_target_epsilon, the noise multiplier calibrated to it
        (dp-accounting), stored with the config so every replica and restart uses the same."""
        config = TaskConfig.from_dict(raw_config)
        if config.dp_target_epsilon <= 0:
            return config
        if "dp_noise_multiplier" in raw_config:
            raise E.BadRequest("give dp_target_epsilon or dp_noise_multiplier, not both", "bad_config")
        TaskConfig.from_dict({**raw_config, "dp_noise_multiplier": 1.0})  # DP's requirements first (clip, population)
        try:
            if config.dp_mode == "distributed":  # noise on the devices: no amplification by sampling
                z = calibrate_distributed_noise(config.dp_target_epsilon, config.clip_norm, config.secagg_bits,
                                                num_values, config.dp_noise_reporters, config.rounds, config.dp_delta,
                                                config.clipped_count_stddev if config.dp_target_quantile > 0 else 0.0)
            else:
                q = 1.0 if config.asynchronous else sampling_rate(config.goal_count, config.dp_population)
                z = calibrate_noise(config.dp_target_epsilon, q, config.rounds, config.dp_delta)
        except TargetUnreachable as exc:
            raise E.BadRequest(str(exc), "epsilon_unreachable") from None
        return TaskConfig.from_dict({**raw_config, "dp_noise_multiplier": z})

    def _initial_weights(self, raw: dict, manifest: Manifest, model_bytes: bytes) -> list[np.ndarray]:
        """Initial global weights: an optional base64 float32 payload, else those embedded at export."""
        payload = raw.get("initial_weights_f32")
        try:
            data = read_initial_weights(model_bytes) if payload is None else base64.b64decode(payload, validate=True)
            decoded = codec.decode(data, [w.size for w in manifest.weights])
        except (ProtocolError, ValueError) as exc:
            raise E.BadRequest(f"initial_weights_f32: {exc}", "bad_payload") from exc
        return codec.unflatten(decoded.values, manifest.weight_shapes)

    def _record(self, task_id: str, kind: str, data: dict) -> None:
        if self.audit is not None:
            self.audit.record(task_id, kind, data)

    def set_task_state(self, task_id: str, action: str, by: str = "admin") -> dict:
        task = self.tasks.require(task_id)
        target = {"pause": "paused", "resume": "active", "cancel": "cancelled"}.get(action)
        if target is None:
            raise E.BadRequest("action must be pause, resume or cancel")
        if task.state in ("cancelled", "completed"):
            raise E.Conflict(f"task is {task.state}", "task_finished")
        open_rounds = [r.round for r in self.store.open_rounds() if r.task_id == task_id] if target == "cancelled" else []
        self.store.set_task_state(task_id, target, fail_open_rounds="task cancelled" if target == "cancelled" else "",
                                  now=self.clock())
        task.state = target
        self._record(task_id, "admin_action", {"action": action, "state": target, "by": by})
        for num in open_rounds:  # the trail says how every round it opened ended
            self._record(task_id, "round_failed", {"round": num, "reason": "task cancelled"})
        return self.task_summary(task_id)

    def task_summary(self, task_id: str) -> dict:
        task = self.tasks.require(task_id)
        out = {
            "task_id": task_id, "population": task.population, "state": task.state,
            "reason": self.store.task(task_id).reason,
            "model_sha256": task.model_sha, "checkpoint_sha256": task.checkpoint_sha,
            "config": task.config.to_dict(), "model_name": task.manifest.model_name,
            "rounds_committed": self.store.committed_count(task_id),
            "num_parameters": task.manifest.num_parameters,
        }
        if task.config.evaluation:
            last = self.store.last_committed(task_id)
            out["evaluation"] = last.metrics if last else None
        else:
            out["evaluations"] = self.evaluations(task_id)
        return out

    def evaluations(self, task_id: str) -> list[dict]:
        """The evaluation tasks of a training task, by the round they evaluate: state and result."""
        found = []
        for other in list(self.tasks.values()):
            if other.config.evaluation and other.config.evaluate_of == task_id:
                last = self.store.last_committed(other.task_id)
                found.append({"task_id": other.task_id, "round": other.config.evaluate_round, "state": other.state,
                              "metrics": last.metrics if last else None})
        return sorted(found, key=lambda e: (e["round"], e["task_id"]))

    def create_evaluation(self, source_id: str, raw: dict | None = None) -> dict:
        """An evaluation task: one round in which devices of the source task's population run
        the `evaluate` signature on their holdout for the checkpoint of `round` (default: the
        latest committed) and report counts (POST /v1/admin/tasks/{id}/evaluate)."""
        raw = raw or {}
        if not isinstance(raw, dict) or set(raw) - {"round", "goal_count", "eligibility", "task_id",
                                                    "report_deadline_s", "selection_window_s", "personalize_steps"}:
            raise E.BadRequest("expected {round?, goal_count?, eligibility?, task_id?, report_deadline_s?, "
                               "selection_window_s?, personalize_steps?}")
        source = self.tasks.require(source_id)
        if source.config.evaluation:
            raise E.BadRequest(f"task '{source_id}' is an evaluation task; evaluate the task it evaluates")
        num = raw.get("round")
        if num is None:
            last = self.store.last_committed(source_id)
            num, sha = (last.round, last.checkpoint_sha) if last else (0, source.checkpoint_sha)
        else:
            if isinstance(num, bool) or not isinstance(num, int) or num < 0:
                raise E.BadRequest("round must be a round number (0: the initial weights)")
            if num == 0:
                sha = self._initial_checkpoint(source)
            else:
                rnd = self.store.round(source_id, num)
                if rnd is None or rnd.state != RoundState.COMMITTED:
                    raise E.NotFound(f"task '{source_id}' has no committed round {num}")
                sha = rnd.checkpoint_sha
        if not self.store.blobs.exists(sha):
            raise E.Gone(f"the checkpoint of round {num} is no longer kept (keep_checkpoints / keep_every)",
                         "checkpoint_gone")
        cfg = source.config
        config = {"kind": "evaluate", "evaluate_of": source_id, "evaluate_round": num, "rounds": 1,
                  "goal_count": raw.get("goal_count", cfg.eval_goal_count or cfg.goal_count),
                  "over_selection": cfg.over_selection, "min_reports": 1,
                  "selection_window_s": raw.get("selection_window_s", cfg.selection_window_s),
                  "report_deadline_s": raw.get("report_deadline_s", cfg.report_deadline_s),
                  "eligibility": raw.get("eligibility", cfg.eval_eligibility or cfg.eligibility),
                  "max_example_count": cfg.max_example_count, "batch_size": cfg.batch_size,
                  "personalize_steps": raw.get("personalize_steps", cfg.personalize_steps),
                  "learning_rate": cfg.learning_rate}
        if cfg.dp_sgd_noise_multiplier > 0 and config["personalize_steps"]:
            raise E.BadRequest("task '" + source_id + "' trains with example-level DP-SGD: a personalized evaluation "
                               "would fine-tune on the devices' training data outside its guarantee; use "
                               "personalize_steps 0", "bad_dp_sgd")
        config = TaskConfig.from_dict(config)
        try:
            task_id = valid_name(raw.get("task_id") or evaluation_task_id(source_id, num), "task_id")
        except ProtocolError as exc:
            raise E.BadRequest(str(exc), exc.code) from exc
        if task_id in self.tasks:
            raise E.Conflict(f"task '{task_id}' already exists", "exists")
        record = TaskRecord(task_id, source.population, config.to_dict(), source.model_sha, source.manifest.to_json(),
                            "active", sha, self.clock())
        self.store.add_task(record)
        self.tasks.put(record)
        self._record(source_id, "evaluation_created", {"evaluation_task": task_id, "round": num,
                                                       "checkpoint_sha256": sha})
        self._record(task_id, "task_created", {"population": source.population, "config": config.to_dict(),
                                               "model_sha256": source.model_sha, "checkpoint_sha256": sha})
        for listener in self.task_created_listeners:
            listener(task_id)
        return self.task_summary(task_id)

    def _initial_checkpoint(self, task) -> str:
        model_bytes = self.store.blobs.read(task.model_sha)
        checkpoint = codec.encode(self._initial_weights({}, task.manifest, model_bytes), codec.CodecSpec("f32"),
                                  np.random.default_rng(0))
        sha = hashlib.sha256(checkpoint).hexdigest()
        self.store.blobs.put(sha, checkpoint)
        return sha

    def global_model(self, task_id: str) -> bytes:
        """The task's .tflite carrying the current global weights (see `with_weights`)."""
        task = self.tasks.require(task_id)
        return with_weights(self.store.blobs.read(task.model_sha), self.store.blobs.read(task.checkpoint_sha))

    def rounds(self, task_id: str) -> list[dict]:
        self.tasks.require(task_id)
        return [r.to_dict() for r in self.store.rounds(task_id)]


def evaluation_task_id(source_id: str, round_num: int) -> str:
    """`{task}-eval-{round}`, shortened to fit a name (64 characters) when the task's id is
    long: its start, then a digest of the whole id so two long ids sharing a start differ."""
    name = f"{source_id}-eval-{round_num}"
    if len(name) <= MAX_NAME_LENGTH:
        return name
    suffix = f"-{hashlib.sha256(source_id.encode()).hexdigest()[:8]}-eval-{round_num}"
    return source_id[: MAX_NAME_LENGTH - len(suffix)] + suffix
