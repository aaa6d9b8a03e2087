"""A task's configuration, validated when the task is created (bad config -> 400)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

from coordinator.aggregation.reducers import AGGREGATORS
from coordinator.rounds.engine import Rules
from coordinator.rounds.versions import StalenessWeight
from coordinator.tasks.config_checks import check_combinations
from coordinator.tasks.keys import Section, key, parse_keys
from protocol.codec import CodecSpec
from protocol.messages import MAX_COUNT, PLAN_BOUNDS, Plan

MAX_ROUNDS = 1_000_000  # round numbers in URLs are bounded by this too
MAX_DEVICES = 1_000_000  # devices a round or a version may ask for
MAX_POPULATION = 10**9
DAY_S = 86400.0
R, T, C, S, DP, SGD, B, O, A, E, K = (Section.ROUNDS, Section.TRAINING, Section.CODEC, Section.SECAGG, Section.DP,
                                      Section.DP_SGD, Section.ROBUSTNESS, Section.SERVER_OPTIMIZER, Section.ASYNC,
                                      Section.EVALUATION, Section.RETENTION)


def _plan(name: str) -> dict:
    """A key that becomes a plan field has the bounds the devices hold the plan to."""
    lo, hi = PLAN_BOUNDS[name]
    return {"lo": lo, "hi": hi}


@dataclass(frozen=True)
class ServerOptimizerConfig:
    name: str = key("fedavg", O, "fedavgm: server momentum (Hsu et al. 2019); fedadam: Adam on the server",
                    choices=("fedavg", "fedavgm", "fedadam"))
    learning_rate: float = key(1.0, O, "the server's step on the mean update", lo=0.0, hi=100.0)
    momentum: float = key(0.9, O, "fedavgm's momentum", lo=0.0, hi=0.999)
    beta_1: float = key(0.9, O, "fedadam's first-moment decay", lo=0.0, hi=1.0)
    beta_2: float = key(0.99, O, "fedadam's second-moment decay", lo=0.0, hi=1.0)
    tau: float = key(1e-3, O, "fedadam's adaptivity (epsilon of the denominator)", lo=1e-12, hi=10.0)


@dataclass(frozen=True)
class TaskConfig:
    """A task's settings: each key declared once, here (coordinator.tasks.keys derives the
    parser, the OpenAPI schema and the docs' table from these declarations)."""

    rounds: int = key(20, R, "rounds to commit (asynchronous: versions to publish)", lo=1, hi=MAX_ROUNDS)
    goal_count: int = key(10, R, "reports a round commits with", lo=1, hi=MAX_DEVICES, unit="devices")
    over_selection: float = key(1.3, R, "devices selected per report wanted, for dropouts", lo=1.0, hi=10.0)
    min_reports: int = key(0, R, "reports a round still commits with at its deadline (0: goal_count // 2, at least 1)",
                           lo=0, hi=MAX_DEVICES, unit="devices")
    selection_window_s: float = key(30.0, R, "how long a round selects devices", lo=0.1, hi=DAY_S, unit="s")
    report_deadline_s: float = key(120.0, R, "how long selected devices have to report", lo=0.1, hi=DAY_S, unit="s")
    eligibility: str = key("", R, "who may train, e.g. `charging and unmetered and idle and battery >= 0.3` "
                           "(\"\": everyone)", max_len=1000)
    epochs: int = key(1, T, "local epochs per round", **_plan("epochs"))
    batch_size: int = key(32, T, "local batch size", **_plan("batch_size"))
    learning_rate: float = key(0.05, T, "the devices' learning rate", **_plan("learning_rate"))
    # FedProx (Li et al. 2020): the proximal term's mu in every device's train step (0: FedAvg).
    proximal_mu: float = key(0.0, T, "FedProx's proximal term mu (0: FedAvg)", **_plan("proximal_mu"))
    # Partial work: a budget for local training (0: none) and whether an update from a device
    # that could not finish its epochs counts (weighted by the examples it processed).
    max_local_seconds: float = key(0.0, T, "a budget for local training (0: none)", unit="s",
                                   **_plan("max_local_seconds"))
    partial_work: bool = key(False, T, "whether work cut short by the budget is uploaded, weighted by its examples")
    # SCAFFOLD (Karimireddy et al. 2020): control variates against client drift. The server's
    # moves by (reports / scaffold_population) x the mean control delta (0: by the mean itself).
    scaffold: bool = key(False, T, "SCAFFOLD's control variates against client drift")
    scaffold_population: int = key(0, T, "SCAFFOLD's N: the server's control variate moves by reports / N of the "
                                   "mean control delta (0: by the mean itself)", lo=0, hi=MAX_POPULATION, unit="devices")
    codec: str = key("q8", C, "the update codec: f32, q8, q4, q8+rot, q4+rot, then optionally +sparse:F or +topk:F "
                     "(docs/wire-format.md)", max_len=64)
    # What devices download as the checkpoint: "f32" (the checkpoint itself) or a quantized
    # codec ("q8", "q8+rot", "q4+rot", ...: coordinator.gateway.downloads).
    download_codec: str = key("f32", C, "what devices download as the checkpoint: f32, or the weights quantized "
                              "(q8, q4+rot, ...)", max_len=32)
    # Delta downloads (protocol.delta_download): a device holding one of the task's recent full
    # downloads fetches the current checkpoint minus it in this codec ("q4+rot", "q8", ...; "": off).
    download_delta_codec: str = key("", C, "a device holding a recent download fetches the difference in this codec "
                                    "(\"\": off)", max_len=32)
    chunk_size: int = key(256, C, "values per quantization chunk", **_plan("chunk_size"))
    clip_norm: float = key(0.0, B, "the devices' L2 clip of their update (0: none; required by SecAgg and DP)",
                           lo=0.0, hi=1e9)
    secagg: str = key("off", S, "secure aggregation: secagg (everyone pairs with everyone) or secagg+ "
                      "(O(log n) neighbours)", choices=("off", "secagg", "secagg+"))
    secagg_threshold: float = key(0.5, S, "t = floor(fraction x neighbours) + 1, at least 2", lo=0.0, hi=0.99)
    secagg_degree: int = key(0, S, "SecAgg+ neighbours (0: about 3 log2 n)", lo=0, hi=100_000)
    secagg_bits: int = key(8, S, "quantization bits of the shared grid", lo=1, hi=24)
    secagg_phase_s: float = key(30.0, S, "deadline of each key phase (advertise, share, unmask)", lo=0.1, hi=DAY_S,
                                unit="s")
    dp_noise_multiplier: float = key(0.0, DP, "z, the Gaussian noise's stddev over the clip (0: DP off)",
                                     lo=0.0, hi=1000.0)
    dp_target_quantile: float = key(0.0, DP, "adaptive clipping toward this quantile of update norms (0: fixed clip)",
                                    lo=0.0, hi=1.0)
    dp_clip_learning_rate: float = key(0.2, DP, "eta of the geometric clip update", lo=0.0, hi=10.0)
    dp_clipped_count_stddev: float = key(0.0, DP, "noise on the clip bits' sum (0: goal_count / 20)", lo=0.0, hi=1e6)
    dp_delta: float = key(1e-5, DP, "the delta epsilon is reported at", lo=1e-12, hi=0.1)
    dp_epsilon_budget: float = key(0.0, DP, "stop the task before epsilon would pass this (0: no budget)",
                                   lo=0.0, hi=1e6)
    dp_population: int = key(0, DP, "the population size behind the sampling rate (required with central DP; never "
                             "counted from registrations)", lo=0, hi=MAX_POPULATION, unit="devices")
    # Instead of dp_noise_multiplier: the epsilon the task's `rounds` may spend at dp_delta; the
    # coordinator calibrates the noise multiplier at creation (coordinator.aggregation.privacy).
    dp_target_epsilon: float = key(0.0, DP, "instead of dp_noise_multiplier: the epsilon `rounds` rounds may spend "
                                   "(calibrated at creation)", lo=0.0, hi=1e6)
    # "central": the coordinator adds the Gaussian noise to the sum (it sees the sum before);
    # "distributed": each device adds discrete Gaussian noise before it masks its input under
    # SecAgg, so the coordinator only ever unmasks a noised sum (protocol.secagg.distributed_dp).
    dp_mode: str = key("central", DP, "central: the coordinator noises the sum; distributed: each device noises its "
                       "masked input under SecAgg", choices=("central", "distributed"))
    # Distributed DP: the fraction of a round's minimum reports assumed to add their share of
    # the noise. A device that skips it leaves (m-1)/m of the calibrated noise; below 1 each
    # device adds enough that this fraction alone reaches the calibrated total (and the reported
    # epsilon holds as long as at least that fraction is honest).
    dp_honest_fraction: float = key(1.0, DP, "distributed DP: the fraction of min_reports whose noise alone reaches "
                                    "the calibrated total", lo=0.01, hi=1.0)
    # Example-level DP-SGD on the devices (the file's train_dp, `fedge export --dp-sgd`): each
    # device clips every example's gradient to dp_sgd_clip and adds Gaussian noise of
    # dp_sgd_noise_multiplier x dp_sgd_clip to each step; it accounts the (epsilon, dp_sgd_delta)
    # its own data spent. 0: off. Independent of the user-level DP above (both can run).
    dp_sgd_noise_multiplier: float = key(0.0, SGD, "noise per step over the per-example clip (0: off)",
                                         **_plan("dp_sgd_noise_multiplier"))
    dp_sgd_clip: float = key(0.0, SGD, "each example's gradient clipped to this L2 norm", **_plan("dp_sgd_clip"))
    dp_sgd_delta: float = key(1e-5, SGD, "the delta a device reports its example-level epsilon at",
                              **_plan("dp_sgd_delta"))
    # Server-side bounds: whatever a device says, each decoded update is clipped to this L2 norm
    # (to the round's clip under DP) and weighted by at most this many examples.
    max_update_norm: float = key(100.0, B, "each decoded update is clipped to this L2 norm on the server",
                                 lo=1e-9, hi=1e9)
    max_example_count: int = key(10_000, B, "an update weighs at most this many examples", lo=1, hi=MAX_COUNT)
    aggregator: str = key("fedavg", B, "the reducer (robust ones see single updates: no SecAgg, no DP)",
                          choices=AGGREGATORS)
    trim_fraction: float = key(0.1, B, "trimmed_mean: dropped from each end, per coordinate", lo=0.0, hi=0.49)
    krum_byzantine: int = key(0, B, "krum / multi_krum: f, the attackers to tolerate (0: the most Krum can, "
                              "(n - 3) // 2)", lo=0, hi=MAX_DEVICES)
    krum_select: int = key(0, B, "multi_krum: updates averaged (0: n - f)", lo=0, hi=MAX_DEVICES)
    server_optimizer: ServerOptimizerConfig = key(ServerOptimizerConfig(), O, "the server optimizer's settings")
    # Disk retention (coordinator.rounds.retention): checkpoints of the last N committed rounds and of
    # every K-th round (0: none) stay downloadable; assignments, update records and SecAgg
    # messages are kept for the last M rounds (each round's summary row is kept for good).
    keep_checkpoints: int = key(10, K, "checkpoints of the last N committed rounds stay downloadable",
                                lo=1, hi=MAX_ROUNDS)
    keep_every: int = key(0, K, "and those of every K-th round (0: none)", lo=0, hi=MAX_ROUNDS)
    keep_round_details: int = key(100, K, "assignments, update records and SecAgg messages kept for the last M rounds",
                                  lo=1, hi=MAX_ROUNDS)
    # Asynchronous buffered aggregation (coordinator.rounds.versions): "sync" (rounds) or "async"
    # (FedBuff: `concurrency` devices train at once, every `buffer_size` updates publish a version).
    mode: str = key("sync", A, "sync (rounds) or async (FedBuff: buffered asynchronous aggregation)",
                    choices=("sync", "async"))
    concurrency: int = key(0, A, "devices training at once (0: ceil(buffer_size x over_selection))",
                           lo=0, hi=MAX_DEVICES, unit="devices")
    buffer_size: int = key(0, A, "K, accepted updates per published version (0: goal_count)", lo=0, hi=MAX_DEVICES)
    max_staleness: int = key(10, A, "an update trained more versions ago than this is refused", lo=0, hi=MAX_ROUNDS,
                             unit="versions")
    # After its update is accepted, a device gets no new assignment until this many more
    # versions are published (0: the next one): fast devices cannot dominate the versions.
    participation_gap: int = key(0, A, "versions a device waits after an accepted update", lo=0, hi=MAX_DEVICES,
                                 unit="versions")
    staleness_weight: str = key("polynomial:0.5", A, "how an update's weight falls with staleness: constant, "
                                "polynomial:A or hinge:A,B", max_len=64)
    # Federated evaluation (coordinator.aggregation.evaluation): an evaluation task on the
    # same population after every `eval_every` committed rounds and after the last (0: none),
    # with its own eligibility ("" = this task's) and goal count (0 = this task's).
    eval_every: int = key(0, E, "evaluate on devices after every N committed rounds and after the last (0: never)",
                          lo=0, hi=MAX_ROUNDS)
    eval_eligibility: str = key("", E, "who may evaluate (\"\": this task's eligibility)", max_len=1000)
    eval_goal_count: int = key(0, E, "evaluations to hear from (0: goal_count)", lo=0, hi=MAX_DEVICES, unit="devices")
    personalize_steps: int = key(0, E, "evaluations also report accuracy after this many local fine-tuning steps",
                                 **_plan("personalize_steps"))
    # "train", or "evaluate": one round in which devices report counts on their holdout for
    # the checkpoint of `evaluate_round` of task `evaluate_of` (fedge task evaluate).
    kind: str = key("train", E, "train, or evaluate (one round of counts on the devices' holdout: fedge task "
                    "evaluate)", choices=("train", "evaluate"))
    evaluate_of: str = key("", E, "the task whose checkpoint an evaluation task evaluates", max_len=1000)
    evaluate_round: int = key(0, E, "the round of that checkpoint (0: the initial weights)", lo=0, hi=MAX_ROUNDS)

    # Read on every check-in (twice), so worked out once: the config is frozen.
    @cached_property
    def target_selected(self) -> int:
        return max(self.goal_count, math.ceil(self.goal_count * self.over_selection))

    @cached_property
    def round_kind(self) -> str:
        """Which kind of round the task runs: "evaluation", "buffered" (async), "secagg" or
        "sync". Decided here once; the driver's round kinds and the gateway's intakes are
        looked up by it (coordinator.rounds.all_kinds, coordinator.gateway.intake_kinds)."""
        if self.evaluation:
            return "evaluation"
        if self.asynchronous:
            return "buffered"
        return "secagg" if self.secagg_on else "sync"

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
        """A config from its JSON or TOML: each key checked against its declaration, then what
        the keys cannot combine (config_checks); a bad config is a 400 naming the key."""
        values = parse_keys(cls, raw)
        values["download_codec"] = values["download_codec"] or "f32"  # "" has always meant the default
        cfg = cls(**values)
        check_combinations(cfg)
        return cfg
