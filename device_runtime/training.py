"""One round of local work: train from the global weights, clip, encode the delta."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device_runtime.attacks import poison_delta
from device_runtime.litert_model import LocalModel
from protocol import codec
from protocol.dp import clip_l2
from protocol.messages import Plan


@dataclass
class LocalResult:
    payload: bytes
    example_count: int
    train_loss: float
    eval_loss: float
    eval_accuracy: float
    eval_count: int
    delta_norm: float
    float32_bytes: int
    delta: np.ndarray | None = None  # the clipped delta, kept (unencoded) when SecAgg encodes it later
    below_clip: bool = True  # |delta| <= clip_norm before clipping (the adaptive-clipping bit)


def train_round(model: LocalModel, global_weights: list[np.ndarray], plan: Plan,
                x: np.ndarray, y: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray,
                rng: np.random.Generator, attack: str = "") -> LocalResult:
    """``attack`` (emulated fleets only) replaces the clipped delta with a malicious one."""
    if plan.max_examples and len(x) > plan.max_examples:
        keep = rng.choice(len(x), plan.max_examples, replace=False)
        x, y = x[keep], y[keep]
    model.set_weights(global_weights)
    eval_loss, eval_acc = model.evaluate(x_eval, y_eval)  # the global model on local holdout data
    train_loss = model.train(x, y, plan.epochs, plan.learning_rate, rng)
    delta = codec.flatten(model.get_weights()) - codec.flatten(global_weights)
    delta, norm = clip_l2(delta, plan.clip_norm)
    delta = poison_delta(attack, delta)
    if plan.secagg:
        # The SecAgg grid is only known once the key phases close; the device encodes then.
        return LocalResult(b"", len(x), train_loss, eval_loss, eval_acc, len(x_eval), norm, 4 * delta.size,
                           delta.astype(np.float32), norm <= plan.clip_norm)
    shapes = [np.shape(w) for w in global_weights]
    spec = codec.CodecSpec.parse(plan.codec, plan.chunk_size)
    payload = codec.encode(codec.unflatten(delta, shapes), spec, rng)
    return LocalResult(payload, len(x), train_loss, eval_loss, eval_acc, len(x_eval), norm, 4 * delta.size,
                       below_clip=norm <= plan.clip_norm)
