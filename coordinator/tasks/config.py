"""A task's configuration, validated when the task is created (bad config -> 400)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from coordinator.errors import BadRequest
from coordinator.rounds.engine import Rules
from coordinator.rounds.versions import StalenessWeight
from protocol.codec import CodecSpec
from protocol.eligibility import EligibilityRule
from protocol.errors import ProtocolError
from protocol.messages import (MAX_COUNT, MAX_DP_SGD_CLIP, MAX_DP_SGD_NOISE, MAX_PERSONALIZE_STEPS, MAX_PROXIMAL_MU,
                               Plan)
from coordinator.aggregation.reducers import AGGREGATORS, ROBUST
from coordinator.tasks.config_checks import (check_async, check_distributed_dp, check_dp_sgd, check_evaluation,
                                             check_scaffold, check_subset_codecs)


def _num(raw: dict, name: str, default, lo=None, hi=None, kind=float):
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise BadRequest(f"task config '{name}' must be a{'n integer' if kind is int else ' number'}")
    if (lo is not None and value < lo) or (hi is not None and value > hi) or not math.isfinite(value):
        raise BadRequest(f"task config '{name}' must be in [{lo}, {hi}]")
    return kind(value)


MAX_ROUNDS = 1_000_000  # round numbers in URLs are bounded by this too


@dataclass(frozen=True)
class ServerOptimizer:
    name: str = "fedavg"  # "fedavg", "fedavgm" (server momentum) or "fedadam"
    learning_rate: float = 1.0
    momentum: float = 0.9  # fedavgm only
    beta_1: float = 0.9
    beta_2: float = 0.99
    tau: float = 1e-3


@dataclass(frozen=True)
class TaskConfig:
    rounds: int = 20
    goal_count: int = 10
    over_selection: float = 1.3
    min_reports: int = 0  # 0 -> goal_count // 2, at least 1
    selection_window_s: float = 30.0
    report_deadline_s: float = 120.0
    eligibility: str = ""
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.05
    # FedProx (Li et al. 2020): the proximal term's mu in every device's train step (0: FedAvg).
    proximal_mu: float = 0.0
    # Partial work: a budget for local training (0: none) and whether an update from a device
    # that could not finish its epochs counts (weighted by the examples it processed).
    max_local_seconds: float = 0.0
    partial_work: bool = False
    # SCAFFOLD (Karimireddy et al. 2020): control variates against client drift. The server's
    # moves by (reports / scaffold_population) x the mean control delta (0: by the mean itself).
    scaffold: bool = False
    scaffold_population: int = 0
    codec: str = "q8"
    # What devices download as the checkpoint: "f32" (the checkpoint itself) or a quantized
    # codec ("q8", "q8+rot", "q4+rot", ...: coordinator.gateway.downloads).
    download_codec: str = "f32"
    # Delta downloads (protocol.delta_download): a device holding one of the task's recent full
    # downloads fetches the current checkpoint minus it in this codec ("q4+rot", "q8", ...; "": off).
    download_delta_codec: str = ""
    chunk_size: int = 256
    clip_norm: float = 0.0
    secagg: str = "off"  # "off", "secagg" (everyone pairs with everyone) or "secagg+" (O(log n) neighbours)
    secagg_threshold: float = 0.5  # t = floor(fraction * neighbours) + 1, at least 2
    secagg_degree: int = 0  # SecAgg+ neighbours; 0 picks ~3 log2(n)
    secagg_bits: int = 8  # quantization bits of the shared grid
    secagg_phase_s: float = 30.0  # deadline of each key phase (advertise, share, unmask)
    dp_noise_multiplier: float = 0.0  # z; 0 turns user-level DP off
    dp_target_quantile: float = 0.0  # adaptive clipping toward this norm quantile; 0 keeps clip_norm fixed
    dp_clip_learning_rate: float = 0.2  # eta of the geometric clip update
    dp_clipped_count_stddev: float = 0.0  # noise on the clip bits' sum; 0 picks goal_count / 20
    dp_delta: float = 1e-5
    dp_epsilon_budget: float = 0.0  # stop the task before epsilon would pass this; 0: no budget
    dp_population: int = 0  # population size for the sampling rate: required with DP (never counted from registrations)
    # Instead of dp_noise_multiplier: the epsilon the task's `rounds` may spend at dp_delta; the
    # coordinator calibrates the noise multiplier at creation (coordinator.aggregation.privacy).
    dp_target_epsilon: float = 0.0
    # "central": the coordinator adds the Gaussian noise to the sum (it sees the sum before);
    # "distributed": each device adds discrete Gaussian noise before it masks its input under
    # SecAgg, so the coordinator only ever unmasks a noised sum (protocol.secagg.distributed_dp).
    dp_mode: str = "central"
    # Distributed DP: the fraction of a round's minimum reports assumed to add their share of
    # the noise. A device that skips it leaves (m-1)/m of the calibrated noise; below 1 each
    # device adds enough that this fraction alone reaches the calibrated total (and the reported
    # epsilon holds as long as at least that fraction is honest).
    dp_honest_fraction: float = 1.0
    # Example-level DP-SGD on the devices (the file's train_dp, `fedge export --dp-sgd`): each
    # device clips every example's gradient to dp_sgd_clip and adds Gaussian noise of
    # dp_sgd_noise_multiplier x dp_sgd_clip to each step; it accounts the (epsilon, dp_sgd_delta)
    # its own data spent. 0: off. Independent of the user-level DP above (both can run).
    dp_sgd_noise_multiplier: float = 0.0
    dp_sgd_clip: float = 0.0
    dp_sgd_delta: float = 1e-5
    # Server-side bounds: whatever a device says, each decoded update is clipped to this L2 norm
    # (to the round's clip under DP) and weighted by at most this many examples.
    max_update_norm: float = 100.0
    max_example_count: int = 10_000
    aggregator: str = "fedavg"  # fedavg | trimmed_mean | median | krum | multi_krum (coordinator.aggregation.reducers)
    trim_fraction: float = 0.1  # trimmed_mean: dropped from each end, per coordinate
    krum_byzantine: int = 0  # krum / multi_krum: f, the attackers to tolerate; 0 = the most Krum can, (n - 3) // 2
    krum_select: int = 0  # multi_krum: updates averaged; 0 = n - f
    server_optimizer: ServerOptimizer = field(default_factory=ServerOptimizer)
    # Disk retention (coordinator.rounds.retention): checkpoints of the last N committed rounds and of
    # every K-th round (0: none) stay downloadable; assignments, update records and SecAgg
    # messages are kept for the last M rounds (each round's summary row is kept for good).
    keep_checkpoints: int = 10
    keep_every: int = 0
    keep_round_details: int = 100
    # Asynchronous buffered aggregation (coordinator.rounds.versions): "sync" (rounds) or "async"
    # (FedBuff: `concurrency` devices train at once, every `buffer_size` updates publish a version).
    mode: str = "sync"
    concurrency: int = 0  # 0: ceil(buffer_size x over_selection)
    buffer_size: int = 0  # K; 0: goal_count
    max_staleness: int = 10  # an update trained more versions ago than this is refused
    # After its update is accepted, a device gets no new assignment until this many more
    # versions are published (0: the next one): fast devices cannot dominate the versions.
    participation_gap: int = 0
    staleness_weight: str = "polynomial:0.5"
    # Federated evaluation (coordinator.aggregation.evaluation): an evaluation task on the
    # same population after every `eval_every` committed rounds and after the last (0: none),
    # with its own eligibility ("" = this task's) and goal count (0 = this task's).
    eval_every: int = 0
    eval_eligibility: str = ""
    eval_goal_count: int = 0
    personalize_steps: int = 0  # evaluations also report accuracy after this many local fine-tuning steps
    # "train", or "evaluate": one round in which devices report counts on their holdout for
    # the checkpoint of `evaluate_round` of task `evaluate_of` (fedge task evaluate).
    kind: str = "train"
    evaluate_of: str = ""
    evaluate_round: int = 0

    @property
    def target_selected(self) -> int:
        return max(self.goal_count, math.ceil(self.goal_count * self.over_selection))

    @property
    def evaluation(self) -> bool:
        return self.kind == "evaluate"

    @property
    def asynchronous(self) -> bool:
        return self.mode == "async"

    @property
    def buffer_goal(self) -> int:
        """K: accepted updates per published version (async)."""
        return self.buffer_size or self.goal_count

    @property
    def target_concurrency(self) -> int:
        """Devices training at once (async)."""
        return self.concurrency or max(self.buffer_goal, math.ceil(self.buffer_goal * self.over_selection))

    @property
    def staleness_weighting(self) -> StalenessWeight:
        return StalenessWeight.parse(self.staleness_weight)

    @property
    def secagg_on(self) -> bool:
        return self.secagg != "off"

    @property
    def dp_on(self) -> bool:
        return self.dp_noise_multiplier > 0

    @property
    def dp_denominator(self) -> int:
        """DP-FedAvg's fixed denominator: the expected reports per round, or per version
        (asynchronous: buffer_size), so one update moves the mean by at most clip / it."""
        return self.buffer_goal if self.asynchronous else self.goal_count

    @property
    def distributed_dp(self) -> bool:
        return self.dp_on and self.dp_mode == "distributed"

    @property
    def adaptive_clip(self) -> bool:
        return self.dp_on and self.dp_target_quantile > 0

    @property
    def secagg_extra_slots(self) -> int:
        """Integers masked after the update: the adaptive-clipping bit."""
        return 1 if self.adaptive_clip else 0

    @property
    def clipped_count_stddev(self) -> float:
        return self.dp_clipped_count_stddev or self.goal_count / 20.0

    @property
    def required_reports(self) -> int:
        return self.min_reports or max(1, self.goal_count // 2)

    @property
    def dp_noise_reporters(self) -> int:
        """Distributed DP: the reports whose noise alone must reach the calibrated total."""
        return max(1, math.floor(self.required_reports * self.dp_honest_fraction + 1e-9))

    @property
    def rules(self) -> Rules:
        """What the round engine needs to know of the task."""
        return Rules(self.goal_count, self.required_reports, self.secagg_on)

    def plan(self, clip_norm: float | None = None, sparse_seed: int = 0, optimizer: dict | None = None) -> Plan:
        """The devices' plan; ``clip_norm`` is this round's clip when it adapts; ``sparse_seed``
        the round's shared subset when the codec is sparse; ``optimizer`` the model's exported
        one (SCAFFOLD counts momentum SGD's steps by its momentum)."""
        sgd = (optimizer or {}).get("name") == "sgd" and self.scaffold
        return Plan(self.epochs, self.batch_size, self.learning_rate, self.codec, self.chunk_size,
                    self.clip_norm if clip_norm is None else clip_norm,
                    secagg="" if self.secagg == "off" else self.secagg, report_clip_bit=self.adaptive_clip,
                    proximal_mu=self.proximal_mu, max_local_seconds=self.max_local_seconds,
                    partial_work=self.partial_work, evaluate_only=self.kind == "evaluate",
                    personalize_steps=self.personalize_steps if self.kind == "evaluate" else 0,
                    scaffold=self.scaffold, sparse_seed=sparse_seed if self.codec_spec().sparse else 0,
                    sgd_momentum=float(optimizer.get("momentum") or 0.0) if sgd else 0.0,
                    sgd_nesterov=bool(optimizer.get("nesterov")) if sgd else False,
                    dp_sgd_noise_multiplier=self.dp_sgd_noise_multiplier, dp_sgd_clip=self.dp_sgd_clip,
                    dp_sgd_delta=self.dp_sgd_delta)

    def codec_spec(self) -> CodecSpec:
        return CodecSpec.parse(self.codec, self.chunk_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> "TaskConfig":
        if not isinstance(raw, dict):
            raise BadRequest("task config must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise BadRequest(f"unknown task config field(s): {', '.join(sorted(unknown))}")
        so_raw = raw.get("server_optimizer", {}) or {}
        if not isinstance(so_raw, dict) or set(so_raw) - set(ServerOptimizer.__dataclass_fields__):
            raise BadRequest("server_optimizer must be an object with name, learning_rate, momentum, beta_1, beta_2, "
                             "tau")
        so = ServerOptimizer(
            name=str(so_raw.get("name", "fedavg")),
            learning_rate=_num(so_raw, "learning_rate", 1.0, 0.0, 100.0),
            momentum=_num(so_raw, "momentum", 0.9, 0.0, 0.999),
            beta_1=_num(so_raw, "beta_1", 0.9, 0.0, 1.0),
            beta_2=_num(so_raw, "beta_2", 0.99, 0.0, 1.0),
            tau=_num(so_raw, "tau", 1e-3, 1e-12, 10.0),
        )
        if so.name not in ("fedavg", "fedavgm", "fedadam"):
            raise BadRequest("server_optimizer.name must be 'fedavg', 'fedavgm' or 'fedadam'")
        secagg = raw.get("secagg", "off")
        if secagg not in ("off", "secagg", "secagg+"):
            raise BadRequest("task config 'secagg' must be 'off', 'secagg' or 'secagg+'")
        aggregator = raw.get("aggregator", "fedavg")
        if aggregator not in AGGREGATORS:
            raise BadRequest(f"task config 'aggregator' must be one of {', '.join(AGGREGATORS)}")
        kind = raw.get("kind", "train")
        if kind not in ("train", "evaluate"):
            raise BadRequest("task config 'kind' must be 'train' or 'evaluate'")
        mode = raw.get("mode", "sync")
        if mode not in ("sync", "async"):
            raise BadRequest("task config 'mode' must be 'sync' (rounds) or 'async' (buffered asynchronous "
                             "aggregation)")
        staleness_weight = raw.get("staleness_weight", "polynomial:0.5")
        if not isinstance(staleness_weight, str):
            raise BadRequest("task config 'staleness_weight' must be a string such as 'polynomial:0.5'")
        try:
            StalenessWeight.parse(staleness_weight)
        except ValueError as exc:
            raise BadRequest(str(exc), "bad_staleness_weight") from exc
        partial_work = raw.get("partial_work", False)
        if not isinstance(partial_work, bool):
            raise BadRequest("task config 'partial_work' must be true or false")
        eligibility = raw.get("eligibility", "")
        codec = raw.get("codec", "q8")
        if not isinstance(eligibility, str) or not isinstance(codec, str):
            raise BadRequest("task config 'eligibility' and 'codec' must be strings")
        cfg = cls(
            rounds=_num(raw, "rounds", 20, 1, MAX_ROUNDS, int),
            goal_count=_num(raw, "goal_count", 10, 1, 1_000_000, int),
            over_selection=_num(raw, "over_selection", 1.3, 1.0, 10.0),
            min_reports=_num(raw, "min_reports", 0, 0, 1_000_000, int),
            selection_window_s=_num(raw, "selection_window_s", 30.0, 0.1, 86400.0),
            report_deadline_s=_num(raw, "report_deadline_s", 120.0, 0.1, 86400.0),
            eligibility=eligibility,
            epochs=_num(raw, "epochs", 1, 1, 1000, int),
            batch_size=_num(raw, "batch_size", 32, 1, 100_000, int),
            learning_rate=_num(raw, "learning_rate", 0.05, 0.0, 100.0),
            proximal_mu=_num(raw, "proximal_mu", 0.0, 0.0, MAX_PROXIMAL_MU),
            max_local_seconds=_num(raw, "max_local_seconds", 0.0, 0.0, 86400.0),
            partial_work=partial_work,
            scaffold=_flag(raw, "scaffold"),
            scaffold_population=_num(raw, "scaffold_population", 0, 0, 10**9, int),
            codec=codec,
            download_codec=_text(raw, "download_codec", 32) or "f32",
            download_delta_codec=_text(raw, "download_delta_codec", 32),
            chunk_size=_num(raw, "chunk_size", 256, 1, 1 << 20, int),
            clip_norm=_num(raw, "clip_norm", 0.0, 0.0, 1e9),
            secagg=secagg,
            secagg_threshold=_num(raw, "secagg_threshold", 0.5, 0.0, 0.99),
            secagg_degree=_num(raw, "secagg_degree", 0, 0, 100_000, int),
            secagg_bits=_num(raw, "secagg_bits", 8, 1, 24, int),
            secagg_phase_s=_num(raw, "secagg_phase_s", 30.0, 0.1, 86400.0),
            dp_noise_multiplier=_num(raw, "dp_noise_multiplier", 0.0, 0.0, 1000.0),
            dp_target_quantile=_num(raw, "dp_target_quantile", 0.0, 0.0, 1.0),
            dp_clip_learning_rate=_num(raw, "dp_clip_learning_rate", 0.2, 0.0, 10.0),
            dp_clipped_count_stddev=_num(raw, "dp_clipped_count_stddev", 0.0, 0.0, 1e6),
            dp_delta=_num(raw, "dp_delta", 1e-5, 1e-12, 0.1),
            dp_epsilon_budget=_num(raw, "dp_epsilon_budget", 0.0, 0.0, 1e6),
            dp_population=_num(raw, "dp_population", 0, 0, 10**9, int),
            dp_target_epsilon=_num(raw, "dp_target_epsilon", 0.0, 0.0, 1e6),
            dp_mode=_choice(raw, "dp_mode", ("central", "distributed")),
            dp_honest_fraction=_num(raw, "dp_honest_fraction", 1.0, 0.01, 1.0),
            dp_sgd_noise_multiplier=_num(raw, "dp_sgd_noise_multiplier", 0.0, 0.0, MAX_DP_SGD_NOISE),
            dp_sgd_clip=_num(raw, "dp_sgd_clip", 0.0, 0.0, MAX_DP_SGD_CLIP),
            dp_sgd_delta=_num(raw, "dp_sgd_delta", 1e-5, 1e-12, 0.1),
            max_update_norm=_num(raw, "max_update_norm", 100.0, 1e-9, 1e9),
            max_example_count=_num(raw, "max_example_count", 10_000, 1, MAX_COUNT, int),
            aggregator=aggregator,
            trim_fraction=_num(raw, "trim_fraction", 0.1, 0.0, 0.49),
            krum_byzantine=_num(raw, "krum_byzantine", 0, 0, 1_000_000, int),
            krum_select=_num(raw, "krum_select", 0, 0, 1_000_000, int),
            server_optimizer=so,
            keep_checkpoints=_num(raw, "keep_checkpoints", 10, 1, MAX_ROUNDS, int),
            keep_every=_num(raw, "keep_every", 0, 0, MAX_ROUNDS, int),
            keep_round_details=_num(raw, "keep_round_details", 100, 1, MAX_ROUNDS, int),
            mode=mode,
            concurrency=_num(raw, "concurrency", 0, 0, 1_000_000, int),
            buffer_size=_num(raw, "buffer_size", 0, 0, 1_000_000, int),
            max_staleness=_num(raw, "max_staleness", 10, 0, MAX_ROUNDS, int),
            participation_gap=_num(raw, "participation_gap", 0, 0, 1_000_000, int),
            staleness_weight=staleness_weight,
            eval_every=_num(raw, "eval_every", 0, 0, MAX_ROUNDS, int),
            eval_eligibility=_text(raw, "eval_eligibility"),
            eval_goal_count=_num(raw, "eval_goal_count", 0, 0, 1_000_000, int),
            personalize_steps=_num(raw, "personalize_steps", 0, 0, MAX_PERSONALIZE_STEPS, int),
            kind=kind,
            evaluate_of=_text(raw, "evaluate_of"),
            evaluate_round=_num(raw, "evaluate_round", 0, 0, MAX_ROUNDS, int),
        )
        if cfg.kind == "evaluate":
            check_evaluation(cfg)
        if cfg.asynchronous:
            check_async(cfg)
        if cfg.scaffold:
            check_scaffold(cfg)
        if cfg.dp_sgd_noise_multiplier > 0 or cfg.dp_sgd_clip > 0:
            check_dp_sgd(cfg)
        if cfg.secagg_on and cfg.clip_norm <= 0:
            raise BadRequest("secure aggregation needs a bounded contribution: set clip_norm > 0", "clip_required")
        if cfg.secagg_on and cfg.target_selected < 3:
            raise BadRequest("secure aggregation needs at least 3 devices per round (goal_count x over_selection)")
        if cfg.dp_on and cfg.clip_norm <= 0:
            raise BadRequest("DP needs a clip: set clip_norm > 0 (the initial clip with dp_target_quantile)",
                             "clip_required")
        if cfg.dp_mode == "distributed":
            check_distributed_dp(cfg)
        if cfg.dp_on and not cfg.distributed_dp and not cfg.asynchronous and cfg.dp_population < cfg.goal_count:
            # The sampling rate behind epsilon must not come from a count that anyone can raise
            # by registering devices.
            raise BadRequest("DP needs the population size: set dp_population >= goal_count (the number of devices "
                             "that could be sampled; it sets the sampling rate behind epsilon)", "population_required")
        if cfg.aggregator in ROBUST and (cfg.secagg_on or cfg.dp_on):
            raise BadRequest(f"aggregator '{cfg.aggregator}' needs to see single updates and is not a bounded sum: "
                             "use it without secagg and without DP", "bad_aggregator")
        if cfg.adaptive_clip and not cfg.distributed_dp:  # distributed DP composes the bits' release instead
            from protocol.dp import update_noise_multiplier

            try:
                update_noise_multiplier(cfg.dp_noise_multiplier, cfg.clipped_count_stddev)
            except ProtocolError as exc:
                raise BadRequest(str(exc), exc.code) from exc
        if cfg.min_reports > cfg.goal_count:
            raise BadRequest("min_reports cannot exceed goal_count")
        try:
            EligibilityRule.parse(cfg.eligibility)
            EligibilityRule.parse(cfg.eval_eligibility)
            spec = cfg.codec_spec()
            download = CodecSpec.parse(cfg.download_codec, cfg.chunk_size)
            delta = CodecSpec.parse(cfg.download_delta_codec, cfg.chunk_size) if cfg.download_delta_codec else None
        except ProtocolError as exc:
            raise BadRequest(str(exc), exc.code) from exc
        check_subset_codecs(cfg, spec, download, delta)
        return cfg


def _choice(raw: dict, name: str, choices: tuple[str, ...]) -> str:
    value = raw.get(name, choices[0])
    if value not in choices:
        raise BadRequest(f"task config '{name}' must be one of {', '.join(repr(c) for c in choices)}")
    return value


def _text(raw: dict, name: str, max_len: int = 1000) -> str:
    value = raw.get(name, "")
    if not isinstance(value, str) or len(value) > max_len:
        raise BadRequest(f"task config '{name}' must be a string of at most {max_len} characters")
    return value


def _flag(raw: dict, name: str) -> bool:
    value = raw.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"task config '{name}' must be true or false")
    return value
