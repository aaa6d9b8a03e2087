"""One round of local work: train from the global weights (FedProx's term when the plan
asks, within its time budget), clip, encode the delta."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device_runtime.attacks import poison_delta
from device_runtime.litert_model import LocalModel
from protocol import codec, scaffold
from protocol.dp import clip_l2
from protocol.dp_sgd import DpSgdEvent
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
    partial: bool = False  # fewer than the plan's epochs were done (partial work, uploaded)
    personal: list | None = None  # the personal layers after training (kept on the device, never uploaded)
    control: np.ndarray | None = None  # SCAFFOLD: this device's next control variate c_i+ (kept on the device)
    residual: np.ndarray | None = None  # top-k: what this upload left out, added to the next (error feedback)
    dp_sgd: DpSgdEvent | None = None  # example-level DP-SGD: the steps this round spent on the device's data


@dataclass(frozen=True)
class TrainJob:
    """One round of local training, as data: the plan, the device's examples, what the device
    kept from earlier rounds, and what an emulated fleet adds (`device_runtime.emulation`)."""

    plan: Plan
    x: np.ndarray
    y: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    rng: np.random.Generator
    personal: list[np.ndarray] | None = None  # this device's personal layers (None: the file's own)
    control: tuple[np.ndarray, np.ndarray] | None = None  # SCAFFOLD: (c, c_i)
    residual: np.ndarray | None = None  # top-k: what the device's previous upload in the task left out
    attack: str = ""  # emulated fleets only: the clipped delta is replaced with a malicious one
    capacity_epochs: int | None = None  # emulated stragglers: the epochs this device can do this round


class Unfinished(Exception):
    """Training ended before the plan's epochs (time budget or the device's capacity) and the
    plan does not take partial work (FedAvg's assumption): the device does not upload."""


def train_round(model: LocalModel, global_weights: list[np.ndarray], job: TrainJob) -> LocalResult:
    """The round's local work from the global weights.

    The upload's example count is the examples processed divided by the plan's epochs: the
    local dataset size after full work (as FedAvg weighs), proportionally less after partial work.
    """
    plan, x, y, x_eval, y_eval, rng = job.plan, job.x, job.y, job.x_eval, job.y_eval, job.rng
    personal, control, residual, attack, capacity_epochs = (job.personal, job.control, job.residual, job.attack,
                                                            job.capacity_epochs)
    # Before any work: a file without what the plan needs refuses.
    model.manifest.check_plan(plan.proximal_mu, plan.scaffold, plan.dp_sgd)
    if plan.max_examples and len(x) > plan.max_examples:
        keep = rng.choice(len(x), plan.max_examples, replace=False)
        x, y = x[keep], y[keep]
    model.set_weights(global_weights)
    # This device's personal layers (the file's own the first time): the interpreter is shared.
    model.set_personal(personal if personal is not None else model.initial_personal)
    eval_loss, eval_acc = model.evaluate(x_eval, y_eval)  # the global model on local holdout data
    c = c_i = None
    if plan.scaffold:
        n = sum(int(np.prod(np.shape(w))) for w in global_weights)
        c, c_i = control if control is not None else (np.zeros(n, np.float32), np.zeros(n, np.float32))
        if c.size != n or c_i.size != n:
            raise ValueError(f"control variates of {c.size} / {c_i.size} values for {n} weights")
        model.set_control(codec.unflatten((c - c_i).astype(np.float32), [np.shape(w) for w in global_weights]))
    epochs = plan.epochs if capacity_epochs is None else max(0, min(plan.epochs, capacity_epochs))
    if epochs == 0:
        raise Unfinished("the time budget ends before one epoch on this device")
    dp_sgd = (plan.dp_sgd_clip, plan.dp_sgd_noise_multiplier) if plan.dp_sgd else None
    progress = model.train(x, y, epochs, plan.learning_rate, rng, plan.proximal_mu, plan.max_local_seconds, dp_sgd)
    # What this round spends of the device's data, once its update leaves (Device's ledger).
    event = DpSgdEvent.of_round(plan.dp_sgd_noise_multiplier, model.batch, len(x), progress.steps) \
        if dp_sgd and progress.steps else None
    train_loss = progress.loss
    partial = progress.stopped or epochs < plan.epochs
    if partial and (not plan.partial_work or progress.examples == 0):
        why = (f"the {plan.max_local_seconds:g} s budget ended training" if progress.stopped
               else f"this device could do {epochs} of {plan.epochs} epochs")
        raise Unfinished(f"{why}; the task does not take partial work" if progress.examples
                         else f"{why} before the first batch")
    examples = len(x) if not partial else max(1, round(progress.examples / plan.epochs))
    trained_personal = model.get_personal() if model.manifest.personal else None
    delta = codec.flatten(model.get_weights()) - codec.flatten(global_weights)
    next_control = None
    if plan.scaffold:
        # Option II (protocol.scaffold; exact for SGD, an approximation of the mean gradient with
        # momentum or Adam): the update carries c_i+ - c_i after the model delta.
        next_control = scaffold.next_control(c, c_i, delta, progress.steps, plan.learning_rate, plan.sgd_momentum,
                                             plan.sgd_nesterov)
        delta = scaffold.update_vector(delta, c_i, next_control)
    delta, norm = clip_l2(delta, plan.clip_norm)
    delta = poison_delta(attack, delta)
    if plan.secagg:
        # The SecAgg grid is only known once the key phases close; the device encodes then.
        return LocalResult(payload=b"", example_count=examples, train_loss=train_loss, eval_loss=eval_loss,
                           eval_accuracy=eval_acc, eval_count=len(x_eval), delta_norm=norm,
                           float32_bytes=4 * delta.size, delta=delta.astype(np.float32),
                           below_clip=norm <= plan.clip_norm, partial=partial, personal=trained_personal,
                           control=next_control, dp_sgd=event)
    shapes = [np.shape(w) for w in global_weights] * (2 if plan.scaffold else 1)
    spec = codec.CodecSpec.parse(plan.codec, plan.chunk_size)
    next_residual = None
    if spec.topk:
        # Error feedback (Stich et al. 2018; Karimireddy et al. 2019): send the top-k of this
        # update plus what earlier ones left out, and keep what this one leaves out.
        if residual is not None and residual.size == delta.size:
            delta = (delta + residual).astype(np.float32)
    payload = codec.encode(codec.unflatten(delta, shapes), spec, rng, sparse_seed=plan.sparse_seed)
    if spec.topk:
        next_residual = (delta - codec.decode(payload).values).astype(np.float32)
    elif plan.scaffold:  # c_i moves by what the coordinator folds (error feedback carries top-k's rest)
        next_control = scaffold.after_sent(c_i, codec.decode(payload).values)
    return LocalResult(payload=payload, example_count=examples, train_loss=train_loss, eval_loss=eval_loss,
                       eval_accuracy=eval_acc, eval_count=len(x_eval), delta_norm=norm, float32_bytes=4 * delta.size,
                       below_clip=norm <= plan.clip_norm, partial=partial, personal=trained_personal,
                       control=next_control, residual=next_residual, dp_sgd=event)
