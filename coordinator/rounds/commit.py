"""A round's commit, the part that computes: from the round's strategy to the next global
checkpoint. Pure CPU over values read beforehand, so the round driver runs it in an
executor while the event loop keeps answering check-ins; the store is read before and
written after, on the loop (`RoundDriver.commit` / `commit_async`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from coordinator.aggregation.reducers import NothingToAggregate
from coordinator.aggregation.strategies import RoundContext, Strategy
from protocol import codec


@dataclass(frozen=True)
class CommitInputs:
    strategy: Strategy  # the round's folded updates; nothing folds into it any more
    context: RoundContext
    weight_shapes: list[tuple[int, ...]]
    base_checkpoint: bytes  # the current global weights (FEDU f32)
    opt_state: dict  # the server optimizer's state after the previous round
    control: bytes | None = None  # SCAFFOLD: the server control variate (FEDU f32), else None


@dataclass(frozen=True)
class CommitResult:
    payload: bytes  # the new checkpoint (FEDU f32); empty when the round must fail
    sha: str
    opt_state: dict
    metrics: dict
    failure: str = ""
    control_payload: bytes = b""  # SCAFFOLD: the next server control variate (FEDU f32)
    control_sha: str = ""


def compute_commit(inputs: CommitInputs) -> CommitResult:
    base = codec.decode(inputs.base_checkpoint).values
    n = base.size
    if inputs.control is not None:  # SCAFFOLD: weights and control variate move together
        base = np.concatenate([base, codec.decode(inputs.control).values])
    try:
        result = inputs.strategy.finalize(base, inputs.opt_state, inputs.context)
    except NothingToAggregate as exc:
        return CommitResult(b"", "", {}, {}, str(exc))
    if not np.all(np.isfinite(result.weights)):
        return CommitResult(b"", "", {}, result.metrics, "aggregate is not finite")
    control_payload, control_sha = b"", ""
    if inputs.control is not None:
        control_payload = _f32(result.weights[n:], inputs.weight_shapes)
        control_sha = hashlib.sha256(control_payload).hexdigest()
    payload = _f32(result.weights[:n], inputs.weight_shapes)
    return CommitResult(payload, hashlib.sha256(payload).hexdigest(), result.optimizer_state, result.metrics,
                        control_payload=control_payload, control_sha=control_sha)


def _f32(values: np.ndarray, shapes) -> bytes:
    return codec.encode(codec.unflatten(values, shapes), codec.CodecSpec("f32"), np.random.default_rng(0))
