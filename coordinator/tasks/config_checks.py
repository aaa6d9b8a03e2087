"""What a task config cannot combine, refused at creation with the reason (`TaskConfig.from_dict`).
Each key alone was checked against its declaration before (coordinator.tasks.keys)."""

from __future__ import annotations

from coordinator.aggregation.reducers import ROBUST
from coordinator.errors import BadRequest
from coordinator.rounds.versions import StalenessWeight
from protocol.codec import CodecSpec
from protocol.eligibility import EligibilityRule
from protocol.errors import ProtocolError

# Each check takes the parsed coordinator.tasks.config.TaskConfig (not imported: that module imports this one).


def check_combinations(cfg) -> None:
    """Every rule about more than one key (or about a key's own syntax: codecs, rules)."""
    try:
        StalenessWeight.parse(cfg.staleness_weight)
    except ValueError as exc:
        raise BadRequest(str(exc), "bad_staleness_weight") from exc
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


def check_subset_codecs(cfg, spec: CodecSpec, download: CodecSpec, delta: CodecSpec | None = None) -> None:
    """Where a codec that sends part of the coordinates cannot work, refused at creation."""
    if download.sparse or download.topk or (delta is not None and (delta.sparse or delta.topk)):
        raise BadRequest("download_codec and download_delta_codec cannot be sparse or top-k: a device needs the "
                         "whole checkpoint", "bad_codec")
    if delta is not None and delta.kind == "f32":
        raise BadRequest("download_delta_codec is a quantized codec (q8, q4+rot, ...): a float32 delta is no smaller "
                         "than the checkpoint", "bad_codec")
    if (spec.sparse or spec.topk) and (cfg.dp_on or cfg.dp_target_epsilon > 0):
        raise BadRequest("a sparse or top-k codec cannot be combined with DP yet: the decoded update (the kept "
                         "coordinates, scaled by L/m when sparse) is not what the clip and the noise were sized for",
                         "bad_codec")
    if spec.topk and cfg.secagg_on:
        raise BadRequest("top-k cannot travel under secure aggregation: each device keeps different coordinates, "
                         "so masked sums would not line up; use +sparse:F (a subset the round shares)", "bad_codec")


def check_distributed_dp(cfg) -> None:
    if not cfg.secagg_on:
        raise BadRequest("dp_mode 'distributed' adds the noise on the devices under secure aggregation: set secagg "
                         "to 'secagg' or 'secagg+'", "distributed_dp_needs_secagg")
    if not cfg.dp_on and cfg.dp_target_epsilon <= 0:
        raise BadRequest("dp_mode 'distributed' needs dp_noise_multiplier > 0 or dp_target_epsilon", "bad_config")


def check_scaffold(cfg) -> None:
    """What SCAFFOLD is not combined with yet, refused at creation (docs/coordinator.md says why)."""
    if cfg.aggregator != "fedavg":
        raise BadRequest(f"scaffold averages the control deltas as it averages the updates: it runs with the "
                         f"fedavg aggregator, not {cfg.aggregator!r} (a robust aggregator would keep one device's "
                         "update and another's control delta)", "bad_scaffold")
    if cfg.asynchronous:
        raise BadRequest("scaffold runs in sync mode (with or without secure aggregation and DP, which clip and "
                         "noise the model delta and the control delta as one vector), not async: a buffer's "
                         "variates would be of mixed ages", "bad_scaffold")
    if cfg.kind == "evaluate":
        raise BadRequest("an evaluation task trains nothing: scaffold does not apply", "bad_scaffold")


def check_evaluation(cfg) -> None:
    """An evaluation task reports counts, not updates: nothing to mask, noise or buffer."""
    if cfg.secagg_on or cfg.dp_on or cfg.asynchronous or cfg.eval_every:
        raise BadRequest("an evaluation task (kind 'evaluate') takes no secagg, DP, async mode or eval_every: "
                         "its devices report counts only", "bad_evaluation")
    if not cfg.evaluate_of:
        raise BadRequest("an evaluation task names the task whose checkpoint it evaluates (evaluate_of)",
                         "bad_evaluation")


def check_async(cfg) -> None:
    """What asynchronous aggregation cannot (yet) combine with, refused at creation."""
    if cfg.secagg_on:
        raise BadRequest("mode 'async' cannot use secure aggregation: SecAgg unmasks the sum of a cohort fixed "
                         "before anyone uploads, and an asynchronous buffer has no such cohort (it needs "
                         "buffered secure aggregation, which fedge does not implement); use mode 'sync' with "
                         "secagg", "async_secagg")
    if cfg.dp_mode == "distributed" and (cfg.dp_on or cfg.dp_target_epsilon > 0):
        raise BadRequest("mode 'async' cannot use distributed DP: its noise travels under SecAgg, which needs a "
                         "fixed cohort; use central DP (noise per published version, DP-FedBuff)", "async_dp")
    if cfg.dp_target_quantile > 0:
        raise BadRequest("mode 'async' takes a fixed clip_norm under DP: adaptive clipping's noised bit count "
                         "per version is not implemented", "async_dp")
    if cfg.max_staleness > cfg.keep_round_details:
        raise BadRequest("max_staleness cannot exceed keep_round_details: the assignments of older versions are "
                         "removed by then, so their updates could not be recognised")
    if cfg.target_concurrency < cfg.buffer_goal:
        raise BadRequest(f"concurrency ({cfg.target_concurrency}) must be at least buffer_size "
                         f"({cfg.buffer_goal}): fewer devices training than one version needs would stall")


def check_dp_sgd(cfg) -> None:
    """Example-level DP-SGD needs both of its numbers, and a task that trains."""
    if cfg.dp_sgd_noise_multiplier <= 0 or cfg.dp_sgd_clip <= 0:
        raise BadRequest("example-level DP-SGD needs both dp_sgd_noise_multiplier > 0 and dp_sgd_clip > 0 (the "
                         "per-example gradient clip)", "bad_dp_sgd")
    if cfg.kind == "evaluate":
        raise BadRequest("an evaluation task does not train: dp_sgd_* keys belong to the training task",
                         "bad_dp_sgd")
    if cfg.personalize_steps:
        raise BadRequest("personalized evaluation fine-tunes on the devices' training data with plain steps, "
                         "outside DP-SGD's guarantee: use personalize_steps 0 with dp_sgd_noise_multiplier",
                         "bad_dp_sgd")
