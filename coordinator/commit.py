"""A round's commit, the part that computes: from the round's aggregate to the next global
checkpoint. Pure CPU over values read beforehand, so the round driver runs it in an
executor while the event loop keeps answering check-ins; the store is read before and
written after, on the loop (`Coordinator.commit` / `commit_async`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from coordinator.aggregation import apply_server_optimizer
from coordinator.privacy import epsilon
from coordinator.task_config import TaskConfig
from protocol import codec, dp


@dataclass(frozen=True)
class CommitInputs:
    config: TaskConfig
    weight_shapes: list[tuple[int, ...]]
    total: np.ndarray  # the sum of the round's updates (a robust strategy's mean, with weight 1)
    weight: float
    bits: float | None  # with adaptive clipping: the clip bits' sum
    dp_clip: float  # this round's clip
    base_checkpoint: bytes  # the current global weights (FEDU f32)
    opt_state: dict  # the server optimizer's state after the previous round
    committed_rounds: int  # before this one (for epsilon)
    sampling_rate: float  # for epsilon


@dataclass(frozen=True)
class CommitResult:
    payload: bytes  # the new checkpoint (FEDU f32); empty when the round must fail
    sha: str
    opt_state: dict
    dp_metrics: dict
    failure: str = ""


def privatize(inputs: CommitInputs) -> tuple[np.ndarray, dict]:
    """DP-FedAvg: Gaussian noise on the sum, fixed denominator, adaptive clip, epsilon so far."""
    cfg, clip, total = inputs.config, inputs.dp_clip, inputs.total
    rng = np.random.default_rng()  # fresh OS entropy: the noise must not be reproducible
    z_update = (dp.update_noise_multiplier(cfg.dp_noise_multiplier, cfg.clipped_count_stddev)
                if cfg.adaptive_clip else cfg.dp_noise_multiplier)
    noisy = total + dp.gaussian(total.size, z_update * clip, rng)
    out = {"dp_clip": clip, "dp_noise_stddev": z_update * clip}
    if cfg.adaptive_clip:
        below = (inputs.bits + float(dp.gaussian(1, cfg.clipped_count_stddev, rng)[0])) / cfg.goal_count
        out.update(dp_below_clip=below,
                   dp_next_clip=dp.next_clip(clip, below, cfg.dp_target_quantile, cfg.dp_clip_learning_rate))
    q = inputs.sampling_rate
    out.update(epsilon=epsilon(cfg.dp_noise_multiplier, q, inputs.committed_rounds + 1, cfg.dp_delta),
               dp_sampling_rate=q)
    return (noisy / cfg.goal_count).astype(np.float32), out


def compute_commit(inputs: CommitInputs) -> CommitResult:
    dp_metrics: dict = {}
    if inputs.config.dp_on:
        mean, dp_metrics = privatize(inputs)
    else:
        mean = (inputs.total / inputs.weight).astype(np.float32)
    base = codec.decode(inputs.base_checkpoint).values
    new_weights, opt_state = apply_server_optimizer(base, mean, inputs.config.server_optimizer, inputs.opt_state)
    if not np.all(np.isfinite(new_weights)):
        return CommitResult(b"", "", {}, dp_metrics, "aggregate is not finite")
    payload = codec.encode(codec.unflatten(new_weights, inputs.weight_shapes), codec.CodecSpec("f32"),
                           np.random.default_rng(0))
    return CommitResult(payload, hashlib.sha256(payload).hexdigest(), opt_state, dp_metrics)
