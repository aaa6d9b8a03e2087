"""The device loop: check in, obey 'come back at T', download (cached by content hash),
train before the deadline, upload once. Shared by `fedge device` and the fleet."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from device_runtime.blob_cache import BlobMismatch
from device_runtime.client import RequestRefused, CoordinatorClient, retryable
from device_runtime.data_fit import fit_problems
from device_runtime.example_store import LocalData
from device_runtime.emulation import Behaviour, Emulation
from device_runtime.kept_state import KeptState
from device_runtime.releases import InstalledReleases
from device_runtime.secagg_session import run_secagg_round
from device_runtime.trainer import Deadline, RoundBlobs, TooLate, Trainer
from device_runtime.training import TrainJob, Unfinished
from protocol import codec
from protocol.delta_download import apply_delta
from protocol.errors import ProtocolError
from protocol.messages import Assignment, DeviceState, UploadMeta
from protocol.tflite_file import read_manifest

log = logging.getLogger("fedge.device")
report = logging.getLogger("fedge.device.rounds")  # one line per outcome; fleets keep it at WARNING
REFUSED_WAIT_S = 5.0  # after a 4xx at check-in or a refused round, before checking in again
UNREACHABLE_WAIT_S = 5.0  # after the client gave up retrying an unreachable coordinator


@dataclass
class DeviceStats:
    rounds_joined: int = 0
    uploads: int = 0
    abandoned_deadline: int = 0
    dropped: int = 0
    rejected: int = 0
    rejected_codes: dict = field(default_factory=dict)  # the coordinator's error code -> how many
    refused: int = 0  # rounds this device refused (a malformed or unsafe message from the coordinator)
    unfinished: int = 0  # trainings cut short (budget or capacity) in a task that takes no partial work
    download_failures: int = 0  # rounds whose model or checkpoint could not be downloaded
    refused_blobs: int = 0  # ...of them, because the bytes did not hash to the digest named (tampered)
    partial: int = 0  # uploads of partial work
    evaluations: int = 0  # federated evaluation reports sent
    delta_downloads: int = 0  # checkpoints reached as a held base plus a downloaded delta
    checkpoint_bytes_down: int = 0  # what reaching the round's checkpoints cost (full or delta)
    checkpoints: int = 0  # rounds whose checkpoint this device reached
    model_bytes_down: int = 0  # what its model downloads cost
    model_downloads: int = 0  # how many (a phone keeps its last few blobs: a model can go and come back)
    dp_sgd_epsilon: float = 0.0  # example-level epsilon this device's data has spent (DP-SGD), by its ledger
    bytes_up: int = 0
    float32_bytes: int = 0
    last_outcome: str = ""
    bytes_by_round: dict = field(default_factory=dict)  # round -> update bytes this device sent
    bytes_down: int = 0  # models, checkpoints and control variates this device had to download
    down_by_round: dict = field(default_factory=dict)  # round -> those bytes

    def refused_by(self, exc) -> None:
        """An upload, report or SecAgg message the coordinator refused, counted by its error code."""
        self.rejected += 1
        code = getattr(exc, "code", "") or "unknown"
        self.rejected_codes[code] = self.rejected_codes.get(code, 0) + 1

    def count_download(self, round_num: int, size: int) -> None:
        self.bytes_down += size
        self.down_by_round[round_num] = self.down_by_round.get(round_num, 0) + size

    def count_upload(self, round_num: int, payload_bytes: int, float32_bytes: int) -> None:
        self.uploads += 1
        self.bytes_up += payload_bytes
        self.float32_bytes += float32_bytes
        self.bytes_by_round[round_num] = self.bytes_by_round.get(round_num, 0) + payload_bytes


@dataclass
class RoundOutcome:
    outcome: str  # uploaded | evaluated | retry | abandoned | dropped | rejected | refused | download_failed | ...
    retry_at: float = 0.0
    detail: str = ""
    logged: bool = False  # already said in a warning (a refused check-in)


@dataclass
class Device:
    client: CoordinatorClient
    data: LocalData
    trainer: Trainer
    state_fn: Callable[[], DeviceState]
    cache: object
    rng: np.random.Generator
    behaviour: Behaviour = field(default_factory=Behaviour)
    stats: DeviceStats = field(default_factory=DeviceStats)
    clock: Callable[[], float] = time.time
    # What this device keeps between rounds, never uploaded (device_runtime.kept_state): in
    # memory and in this folder (`fedge device --state-dir`), so that it survives a restart.
    state_dir: InitVar[Path | None] = None
    # This device's own privacy floor (`fedge device --min-dp-noise-multiplier`): it uploads only
    # in distributed-DP rounds whose devices' noise adds up to at least this many sensitivities.
    min_dp_noise: float = 0.0
    # Blobs this device holds (a phone keeps its model and last checkpoint): a blob not among
    # them counts as downloaded, even when an emulated fleet's shared cache had it already.
    held: list = field(default_factory=list)
    # Per model: (its name, why this device's examples cannot train it; empty when they can).
    _fits: dict = field(default_factory=dict)
    # The model releases this device installs for inference (device_runtime.releases); None:
    # it takes none (an emulated fleet's devices unless asked).
    releases: InstalledReleases | None = None
    kept: KeptState = field(init=False)
    emulation: Emulation = field(init=False)  # the behaviour's knobs, applied at fixed points of a round

    def __post_init__(self, state_dir: Path | None) -> None:
        self.kept = KeptState(state_dir)
        self.emulation = Emulation(self.behaviour, self.rng)

    async def _fetch(self, a: Assignment, url: str, sha: str) -> bytes:
        data = await self.client.fetch_blob(url, sha, self.cache)
        if sha not in self.held:
            self.stats.count_download(a.round, self.cache.wire_size(sha, len(data)))
            self.held = (self.held + [sha])[-4:]
        return data

    def spend(self, result, delta: float) -> dict:
        """Record a round's DP-SGD steps before its update leaves the device; the upload's
        dp_sgd fields ({} without DP-SGD), epsilon at the plan's ``delta``."""
        if result.dp_sgd is None:
            return {}
        epsilon = self.kept.spend(result.dp_sgd, delta)
        self.stats.dp_sgd_epsilon = epsilon
        return {"dp_sgd": result.dp_sgd.to_dict(), "dp_sgd_epsilon": epsilon}

    def _holding(self) -> list[str]:
        """What the check-in says this device holds: its bases for delta downloads first, then
        the blobs it fetched last (its own, even when an emulated fleet shares one cache)."""
        return list(dict.fromkeys([*self.kept.bases.values(), *self.held]))[:8]

    async def _checkpoint(self, a: Assignment) -> tuple[bytes, str]:
        """The round's checkpoint (a payload) and the digest the trainer knows it by: the base
        this device holds plus the assignment's delta when it offers one for that base (the
        task's download_delta_codec), else the full download, which becomes the task's base."""
        base = self.kept.bases.get(a.task_id)
        if a.checkpoint_delta_sha256 and base and a.checkpoint_base_sha256 == base:
            held = self.cache.get(base)
            if held is not None:
                try:
                    before = self.stats.bytes_down
                    delta = await self._fetch(a, a.checkpoint_delta_url, a.checkpoint_delta_sha256)
                    self.stats.checkpoint_bytes_down += self.stats.bytes_down - before
                    reached = apply_delta(held, delta)
                    payload = codec.encode(codec.unflatten(reached.values, [(n,) for n in reached.counts]),
                                           codec.CodecSpec("f32"), None)
                    self.stats.delta_downloads += 1
                    self.stats.checkpoints += 1
                    return payload, a.checkpoint_delta_sha256
                except (RequestRefused, ProtocolError, ValueError) as exc:  # gone, or not this base's: the full one
                    log.info("delta download failed, downloading the checkpoint: %s", exc)
        before = self.stats.bytes_down
        data = await self._fetch(a, a.checkpoint_url, a.checkpoint_sha256)
        self.stats.checkpoint_bytes_down += self.stats.bytes_down - before
        self.stats.checkpoints += 1
        self.kept.bases[a.task_id] = a.checkpoint_sha256
        return data, a.checkpoint_sha256

    def _expected_train_s(self, assignment: Assignment) -> float:
        steps = assignment.plan.epochs * -(-len(self.data.x_train) // self.trainer.batch_size_hint(assignment))
        return self.emulation.expected_train_s(assignment.plan,
                                               steps * self.trainer.step_time_estimate(assignment.model_sha256))

    async def run_once(self) -> RoundOutcome:
        state = self.state_fn()
        releases = self.releases
        resp = await self.client.checkin(state, self._holding(), self.behaviour.long_poll_s,
                                         (releases.channel, releases.sequence) if releases else None)
        if resp.release is not None and releases is not None and state.unmetered:
            # A newer model to infer with: downloaded on an unmetered network only, verified, swapped in.
            await releases.install(resp.release, lambda url, sha: self.client.fetch_blob(url, sha, self.cache))
        if resp.outcome == "retry":
            return RoundOutcome("retry", resp.retry_at, resp.reason)
        a = resp.assignment
        self.stats.rounds_joined += 1
        before = self.stats.bytes_down
        try:
            model = await self._fetch(a, a.model_url, a.model_sha256)
            if self.stats.bytes_down > before:
                self.stats.model_bytes_down += self.stats.bytes_down - before
                self.stats.model_downloads += 1
            self._check_data(a.model_sha256, model)
            checkpoint, checkpoint_sha = await self._checkpoint(a)
        except (RequestRefused, BlobMismatch) as exc:  # a download, not the check-in, failed
            return self._download_failed(exc)
        if a.plan.evaluate_only:
            return await self._evaluate(a, model, checkpoint, checkpoint_sha)
        expected_s = self._expected_train_s(a)
        if self.clock() + expected_s + self.behaviour.safety_margin_s > a.report_deadline:
            return self._abandon("cannot finish before the reporting deadline")
        # The wall-clock deadline as the trainer's clock sees it (the device clock may be injected).
        finish_by = time.time() + (a.report_deadline - self.clock()) - self.behaviour.safety_margin_s

        if self.min_dp_noise > 0 and not a.plan.secagg:
            raise ProtocolError(f"this device takes part only under distributed DP (a noise multiplier of at least "
                                f"{self.min_dp_noise:g}); the round has no secure aggregation", "dp_floor")
        control = None
        if a.plan.scaffold:
            if not a.control_url:
                raise ProtocolError("a SCAFFOLD assignment without the server control variate", "bad_request")
            try:
                c = codec.decode(await self._fetch(a, a.control_url, a.control_sha256)).values
            except (RequestRefused, BlobMismatch) as exc:
                return self._download_failed(exc)
            c_i = self.kept.control_for(a.task_id)
            control = (c, c_i if c_i is not None and c_i.size == c.size else np.zeros_like(c))
        capacity = self.emulation.capacity_epochs(a.plan)
        blobs = RoundBlobs(model, a.model_sha256, checkpoint, checkpoint_sha)
        job = TrainJob(a.plan, self.data.x_train, self.data.y_train, self.data.x_eval, self.data.y_eval, self.rng,
                       personal=self.kept.personal_for(a.model_sha256), control=control,
                       residual=self.kept.residual_for(a.task_id), attack=self.emulation.attack,
                       capacity_epochs=capacity)

        async def train():
            result, compute_s = await self.trainer.train(blobs, job, Deadline(finish_by, expected_s))
            if result.personal is not None:
                self.kept.keep_personal(a.model_sha256, result.personal)
            await self.emulation.phone_time(a.plan, capacity, compute_s)
            return result

        try:
            if a.plan.secagg:
                return await self._run_secagg(a, train)
            result = await train()
        except TooLate as exc:
            return self._abandon(str(exc))
        except Unfinished as exc:
            self.stats.unfinished += 1
            return RoundOutcome("unfinished", detail=str(exc))
        if self.emulation.drops():
            self.stats.dropped += 1
            return RoundOutcome("dropped")
        if self.clock() + self.behaviour.safety_margin_s / 5 > a.report_deadline:
            return self._abandon("training ended after the reporting deadline")
        meta = UploadMeta(result.example_count, result.train_loss, result.eval_loss, result.eval_accuracy,
                          result.eval_count, result.below_clip if a.plan.report_clip_bit else None,
                          **self.spend(result, a.plan.dp_sgd_delta))
        try:
            answer = await self.client.upload(a, result.payload, meta)
        except RequestRefused as exc:
            self.stats.refused_by(exc)
            return RoundOutcome("rejected", detail=str(exc))
        # An asynchronous task says which version took the update (it may be a later one).
        landed = answer.get("round", a.round) if isinstance(answer, dict) else a.round
        self.stats.count_upload(landed if isinstance(landed, int) else a.round, len(result.payload),
                                result.float32_bytes)
        self.stats.partial += int(result.partial)
        if result.control is not None:  # c_i moves only once its delta is acknowledged
            self.kept.keep_control(a.task_id, result.control)
        if result.residual is not None:  # likewise what a top-k upload left out
            self.kept.keep_residual(a.task_id, result.residual)
        return RoundOutcome("uploaded", detail=f"{len(result.payload)} bytes")

    async def _evaluate(self, a: Assignment, model: bytes, checkpoint: bytes, checkpoint_sha: str) -> RoundOutcome:
        """Federated evaluation: counts on the local holdout, no training, no update."""
        if len(self.data.x_eval) == 0:
            return self._abandon("no local holdout examples to evaluate on")
        report = await self.trainer.evaluate(model, a.model_sha256, checkpoint, checkpoint_sha, self.data,
                                             self.kept.personal_for(a.model_sha256), a.plan, self.rng)
        try:
            await self.client.report_evaluation(a, report)
        except RequestRefused as exc:
            self.stats.refused_by(exc)
            return RoundOutcome("rejected", detail=str(exc))
        self.stats.evaluations += 1
        return RoundOutcome("evaluated", detail=f"{report['examples']} examples")

    async def _run_secagg(self, a: Assignment, train) -> RoundOutcome:
        drop_at = self.emulation.secagg_drop_phase()
        try:
            done = await run_secagg_round(self.client, a, train, self.rng, drop_at, self.behaviour.long_poll_s,
                                          self.clock, self.min_dp_noise,
                                          lambda result: self.spend(result, a.plan.dp_sgd_delta))
        except RequestRefused as exc:
            self.stats.refused_by(exc)
            return RoundOutcome("rejected", detail=str(exc))
        if done.outcome == "dropped":
            self.stats.dropped += 1
        if done.payload_bytes:
            self.stats.count_upload(a.round, done.payload_bytes, done.result.float32_bytes)
            if done.result.control is not None:  # SCAFFOLD under SecAgg: c_i moves once its masked input is in
                self.kept.keep_control(a.task_id, done.result.control)
        outcome = "uploaded" if done.payload_bytes else done.outcome
        return RoundOutcome(outcome, detail=done.detail)

    def _check_data(self, model_sha: str, model: bytes) -> None:
        """Refuses (ProtocolError ``data_mismatch``) a round whose model this device's examples
        cannot train, naming both shapes; checked once per model."""
        if model_sha in self._fits:
            problems = self._fits[model_sha]
        else:
            manifest = read_manifest(model)
            labels = np.concatenate([np.asarray(self.data.y_train).ravel(), np.asarray(self.data.y_eval).ravel()])
            problems = self._fits[model_sha] = (manifest.model_name, fit_problems(manifest, self.data.x_train, labels))
        if problems[1]:
            raise ProtocolError(f"this device's data does not fit model {problems[0]!r}: " + "; ".join(problems[1]),
                                "data_mismatch")

    def _report(self, outcome: RoundOutcome) -> None:
        """One line per check-in outcome (`fedge device` shows them; -q hides them)."""
        if outcome.outcome == "retry":
            wait = max(0.0, outcome.retry_at - self.clock())
            report.info("check-in: no round for this device now (%s); next in %.0f s", outcome.detail or "retry",
                        wait)
        elif outcome.outcome == "rejected" and not outcome.logged:  # the coordinator refused what the round sent
            # Often routine (over-selection: the round closed before this upload), so a line of
            # the device's report, not a warning: a fleet of thousands would print one each.
            report.info("round: refused by the coordinator: %s", outcome.detail)
        elif not outcome.logged and outcome.outcome not in ("refused", "unreachable", "rejected"):
            report.info("round: %s%s", outcome.outcome, f" ({outcome.detail})" if outcome.detail else "")

    def _download_failed(self, exc: Exception) -> RoundOutcome:
        """A blob the assignment named could not be had: refused by whoever serves it (gone,
        expired, another population's) or not the bytes named (BlobMismatch: never used)."""
        self.stats.download_failures += 1
        self.stats.refused_blobs += isinstance(exc, BlobMismatch)
        (log.warning if isinstance(exc, BlobMismatch) else log.info)("round skipped, a download failed: %s", exc)
        return RoundOutcome("download_failed", self.clock() + REFUSED_WAIT_S, str(exc))

    def _abandon(self, why: str) -> RoundOutcome:
        self.stats.abandoned_deadline += 1
        log.info("abandoning round: %s", why)
        return RoundOutcome("abandoned", detail=why)

    async def run(self, stop: asyncio.Event, max_rounds: int | None = None, after_round_s: float = 0.0) -> None:
        """Loop until ``stop`` is set (or ``max_rounds`` uploads)."""
        while not stop.is_set():
            attempt = asyncio.ensure_future(self.run_once())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({attempt, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not attempt.done():  # switched off mid-round, like a phone losing power
                attempt.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await attempt
                return
            try:
                outcome = attempt.result()
            except RequestRefused as exc:
                log.warning("check-in refused: %s", exc)
                outcome = RoundOutcome("rejected", self.clock() + REFUSED_WAIT_S, str(exc), logged=True)
            except ProtocolError as exc:
                # The coordinator sent something this device will not act on (malformed, or an
                # unsafe SecAgg request): skip the round, keep the device alive, try again later.
                log.warning("round refused by the device: %s", exc)
                self.stats.refused += 1
                outcome = RoundOutcome("refused", self.clock() + REFUSED_WAIT_S, str(exc))
            except Exception as exc:
                if not retryable(exc):
                    raise
                # The coordinator stayed unreachable for the client's whole retry time (a
                # restart, a network outage): the device waits and tries again, as a phone would.
                log.warning("coordinator unreachable, trying again in %.0f s: %s", UNREACHABLE_WAIT_S, exc)
                outcome = RoundOutcome("unreachable", self.clock() + UNREACHABLE_WAIT_S, str(exc))
            self.stats.last_outcome = outcome.outcome
            self._report(outcome)
            if max_rounds is not None and self.stats.uploads >= max_rounds:
                return
            # A refusal waits (retrying a 401 at once would spin); otherwise "come back at T", or next round.
            wake = outcome.retry_at if outcome.retry_at else self.clock() + after_round_s
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, wake - self.clock()))
            except asyncio.TimeoutError:
                pass
