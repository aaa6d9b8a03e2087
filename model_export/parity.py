"""Parity report: K training steps in LiteRT and in Keras from the same weights.

The Keras side is the model itself, trained by Keras's own code (its ``call``, its
compiled loss, a fresh copy of its optimizer) with TensorFlow's own gradients; every
variable is put back afterwards. Passing means every step's loss and every travelling
weight agree within ``tolerance`` (absolute, scaled by 1 + |value| for losses).
Dropout is switched off on both sides (a deterministic build of the same graph).

One exception, and only for optimizers that divide by a running gradient scale (Adam,
AdamW, non-centered RMSprop): a coordinate whose gradient was at rounding level in every
step (at most ``ROUNDING_LEVEL`` of its tensor's largest) may differ by up to the
optimizer's largest possible step. Such an optimizer moves a coordinate by about its
learning rate whatever the gradient's size, so two float32 kernels that round a
near-zero gradient to different signs part by a full step; the loss, and every
coordinate with a real gradient, must still agree within ``tolerance``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from model_export.sample_data import random_batches, vocab_size
from protocol.manifest import Manifest

DEFAULT_TOLERANCE = 1e-4
# A gradient this small against its tensor's largest is float32 rounding noise of a sum
# that cancels (a BatchNormalization beta, a channel no example activates).
ROUNDING_LEVEL = 1e-3
# A normalizing optimizer's step moves by about (rounding error / gradient) of a full step:
# a coordinate may differ by this many times that share of the largest step.
ROUNDING_MARGIN = 8.0


@dataclass
class ParityReport:
    litert_losses: list[float]
    keras_losses: list[float]
    max_weight_diff: float  # over the coordinates the tolerance judges
    tolerance: float
    # Coordinates with a rounding-level gradient under a scale-normalizing optimizer (see
    # the module doc): how many exceeded the tolerance, their largest difference, the bound.
    excused: int = 0
    max_excused_diff: float = 0.0
    excused_bound: float = 0.0
    proximal_mu: float = 0.0
    scaffold: bool = False  # run with a SCAFFOLD correction on both sides
    dp_sgd: tuple[float, float] | None = None  # (l2_norm_clip, noise_multiplier) of a train_dp check
    # The same check with FedProx's term on (proximal_mu > 0 on both sides), when it was run.
    proximal: "ParityReport | None" = None
    dp: "ParityReport | None" = None  # the train_dp check, for files exported with --dp-sgd

    @property
    def max_loss_diff(self) -> float:
        return max(abs(a - b) / (1.0 + abs(b)) for a, b in zip(self.litert_losses, self.keras_losses))

    @property
    def passed_alone(self) -> bool:
        """This check, without the FedProx one."""
        return (self.max_loss_diff <= self.tolerance and self.max_weight_diff <= self.tolerance
                and self.max_excused_diff <= self.excused_bound)

    @property
    def passed(self) -> bool:
        return (self.passed_alone and (self.proximal is None or self.proximal.passed)
                and (self.dp is None or self.dp.passed))

    def render(self) -> str:
        title = "parity: LiteRT train signature vs a Keras train step, same initial weights"
        if self.dp_sgd is not None:
            title = (f"DP-SGD parity (train_dp: clip {self.dp_sgd[0]:g}, noise multiplier {self.dp_sgd[1]:g}, the "
                     "same noise fed to both sides)")
        elif self.proximal_mu or self.scaffold:
            title = (f"FedProx + SCAFFOLD parity (proximal_mu {self.proximal_mu:g} and a random control correction "
                     "on both sides)" if self.scaffold else
                     f"FedProx parity (proximal_mu {self.proximal_mu:g} on both sides)")
        lines = [title,
                 f"{'step':>4}  {'LiteRT loss':>12}  {'Keras loss':>12}  {'|diff|':>9}"]
        for i, (a, b) in enumerate(zip(self.litert_losses, self.keras_losses), 1):
            lines.append(f"{i:>4}  {a:>12.6f}  {b:>12.6f}  {abs(a - b):>9.2e}")
        lines.append(f"max |weight diff| after {len(self.litert_losses)} steps: {self.max_weight_diff:.2e} "
                     f"(tolerance {self.tolerance:.0e})  ->  {'PASS' if self.passed_alone else 'FAIL'}")
        if self.excused:
            lines.append(f"  {self.excused} coordinate(s) with a rounding-level gradient differ by up to "
                         f"{self.max_excused_diff:.2e} (the optimizer's largest step: {self.excused_bound:.2e})")
        for other in (self.proximal, self.dp):
            if other is not None:
                lines += ["", other.render()]
        return "\n".join(lines)


def max_normalized_step(spec: dict, steps: int) -> float | None:
    """The largest distance `steps` updates of a scale-normalizing optimizer can move one
    coordinate, whatever its gradients; None for optimizers that do not normalize (SGD,
    Adagrad: a tiny gradient gives a tiny step) or whose step is unbounded (centered RMSprop).
    """
    name, lr = spec["name"], float(spec["learning_rate"])
    total = 0.0
    if name in ("adam", "adamw"):
        b1, b2 = float(spec["beta_1"]), float(spec["beta_2"])
        for t in range(1, steps + 1):
            # |m_hat| / sqrt(v_hat) <= sqrt(sum a_i^2 / b_i) by Cauchy-Schwarz, with a_i, b_i the
            # bias-corrected weights of gradient i in the first and second moments.
            a = [(1 - b1) * b1 ** (t - i) / (1 - b1 ** t) for i in range(1, t + 1)]
            b = [(1 - b2) * b2 ** (t - i) / (1 - b2 ** t) for i in range(1, t + 1)]
            total += lr * float(np.sqrt(sum(ai * ai / bi for ai, bi in zip(a, b))))
        return total
    if name == "rmsprop" and not spec.get("centered"):
        rho, momentum = float(spec["rho"]), float(spec.get("momentum", 0.0))
        # Each step moves at most lr * |g| / sqrt((1 - rho) g^2); momentum carries earlier steps.
        velocity = 0.0
        for _ in range(steps):
            velocity = momentum * velocity + lr / np.sqrt(1 - rho)
            total += velocity
        return float(total)
    return None


def judge_weights(lite: np.ndarray, keras: np.ndarray, grad_peaks: np.ndarray | None, tolerance: float,
                  step_bound: float | None, rounding: np.ndarray | None = None) -> tuple[float, int, float]:
    """(largest judged difference, excused coordinates, their largest difference) for one weight.

    `grad_peaks` is the largest |gradient| each coordinate had over the steps on the
    Keras side (None for a weight without a gradient, e.g. BatchNormalization statistics).
    Only under a scale-normalizing optimizer (`step_bound` not None) may a coordinate differ
    by more than `tolerance`, and by at most its share of the optimizer's largest step: all of
    it when its gradient stayed at rounding level against its tensor's largest; otherwise
    ROUNDING_MARGIN x `rounding` / |gradient| of it (`rounding`: what float32 rounding alone
    moved its gradient by, `gradient_rounding`), since such an optimizer divides by the
    gradient's own scale and turns a relative error of the gradient into one of the step.
    """
    diff = np.abs(np.asarray(lite, np.float64) - np.asarray(keras, np.float64))
    if diff.size == 0:
        return 0.0, 0, 0.0
    share = np.zeros(diff.shape)
    if step_bound is not None and grad_peaks is not None and grad_peaks.size:
        peaks = np.asarray(grad_peaks, np.float64)
        share = (peaks <= ROUNDING_LEVEL * float(np.max(peaks))).astype(np.float64)
        if rounding is not None:
            relative = ROUNDING_MARGIN * np.asarray(rounding, np.float64) / np.maximum(peaks, 1e-30)
            share = np.maximum(share, np.minimum(relative, 1.0))
    allowed = tolerance + (step_bound or 0.0) * share
    excused = (diff > tolerance) & (diff <= allowed)
    judged = diff[~excused]
    return (float(judged.max()) if judged.size else 0.0, int(excused.sum()),
            float(diff[excused].max()) if excused.any() else 0.0)


@contextmanager
def _restored(model):
    """Train the model itself without dropout, then put every variable back."""
    from model_export.forward_ops import dropout_disabled

    saved = [np.array(v.numpy()) for v in model.variables]
    try:
        with dropout_disabled():
            yield
    finally:
        for v, value in zip(model.variables, saved):
            v.assign(value)


def keras_train_step(model, optimizer, x, y, proximal_mu: float = 0.0, anchors: list | None = None,
                     corrections: list | None = None) -> tuple[float, list]:
    """One Keras training step with dense gradients.

    Keras's TF backend hands the optimizer an IndexedSlices gradient for Embedding
    tables and Adam squares it per occurrence of a token instead of per row; fedge
    (like standard Adam) uses the dense row gradient. Densifying here keeps the
    reference standard while still using Keras's own model, loss and optimizer code.
    """
    import tensorflow as tf

    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=out)
        objective = loss
        if proximal_mu:  # FedProx: + mu/2 ||w - w_anchor||^2, taped here (the reference formulation)
            # An anchor of None: a personal layer's variable, which has no proximal term.
            objective = loss + proximal_mu / 2.0 * tf.add_n(
                [tf.reduce_sum(tf.square(v - a)) for v, a in zip(model.trainable_variables, anchors) if a is not None])
    grads = [tf.convert_to_tensor(g) for g in tape.gradient(objective, model.trainable_variables)]
    if corrections is not None:  # SCAFFOLD: + (c - c_i), None for a personal layer's variable
        grads = [g if c is None else g + c for g, c in zip(grads, corrections)]
    optimizer.apply(grads, model.trainable_variables)
    return float(loss), [g.numpy() for g in grads]


def gradient_rounding(model, x, y, lite_values: dict | None = None) -> list[np.ndarray]:
    """Per coordinate, how far float32 rounding alone moves the loss's gradient here, as the
    larger of two measurements: the gradient of the same batch summed in the reverse order,
    minus the forward one; and (``lite_values``: LiteRT's weights by path, after its earlier
    steps) the gradient at LiteRT's weights minus the one at Keras's. A coordinate whose
    gradient cancels from large per-example terms comes out as rounding noise whose sign
    depends on the order the kernel sums in (oneDNN's, XNNPack's); under Adam each such
    coordinate moves a full step either way, and the two sides then compute the next steps'
    gradients at weights that differ by those steps. Neither is recognised by a tolerance on
    the size of the gradient alone."""
    import tensorflow as tf

    def grads(xb, yb):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x=xb, y=yb, y_pred=model(xb, training=True))
        return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, model.trainable_variables)]

    # A training-mode call moves BatchNormalization's statistics: every variable is put back.
    saved = [np.array(v.numpy()) for v in model.variables]
    forward, backward = grads(x, y), grads(x[::-1], y[::-1])
    spread = [np.abs(a - b) for a, b in zip(forward, backward)]
    if lite_values:
        for v in model.variables:
            if v.path in lite_values:
                v.assign(np.asarray(lite_values[v.path], v.dtype).reshape(v.shape))
        spread = [np.maximum(s, np.abs(a - b)) for s, a, b in zip(spread, forward, grads(x, y))]
    for v, value in zip(model.variables, saved):
        v.assign(value)
    return spread


def keras_dp_step(model, optimizer, x, y, microbatches: int, clip: float, noise_multiplier: float,
                  noise: np.ndarray) -> tuple[float, list]:
    """The reference DP-SGD step (Abadi et al. 2016, as tensorflow-privacy's optimizers do it):
    each microbatch's gradient clipped to ``clip`` in L2 over all trainable variables, the sum
    noised with ``noise_multiplier * clip * noise`` and divided by the number of microbatches."""
    import tensorflow as tf

    size = len(x) // microbatches
    variables = model.trainable_variables
    summed = [np.zeros(v.shape, np.float64) for v in variables]
    losses = []
    for j in range(microbatches):
        xb, yb = x[j * size:(j + 1) * size], y[j * size:(j + 1) * size]
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x=xb, y=yb, y_pred=model(xb, training=True))
        grads = [np.zeros(v.shape) if g is None else tf.convert_to_tensor(g).numpy().astype(np.float64)
                 for g, v in zip(tape.gradient(loss, variables), variables)]
        norm = float(np.sqrt(sum(float(np.sum(g * g)) for g in grads)))
        scale = clip / max(norm, clip)
        summed = [s + g * scale for s, g in zip(summed, grads)]
        losses.append(float(loss))
    noises = np.split(np.asarray(noise, np.float64), np.cumsum([int(np.prod(v.shape)) for v in variables])[:-1])
    grads = [((s + noise_multiplier * clip * n.reshape(s.shape)) / microbatches).astype(np.float32)
             for s, n in zip(summed, noises)]
    optimizer.apply([tf.constant(g) for g in grads], variables)
    return float(np.mean(losses)), grads


def run_dp_parity(model, tflite_bytes: bytes, manifest: Manifest, steps: int = 3,
                  tolerance: float = DEFAULT_TOLERANCE, seed: int = 0, clip: float = 1.0,
                  noise_multiplier: float = 0.5) -> ParityReport:
    """K ``train_dp`` steps against `keras_dp_step`, both fed the same standard normal noise.
    The clip is small enough that typical gradients are clipped (the clipping is judged)."""
    from model_export.ready import ready_interpreter

    interp = ready_interpreter(tflite_bytes)
    train = interp.get_signature_runner("train_dp")
    microbatches = int(manifest.export_options["dp_microbatches"])
    size = manifest.dp_noise_size
    rng = np.random.default_rng(seed + 2)
    fixed = {"learning_rate": np.full(1, manifest.optimizer["learning_rate"], np.float32),
             "proximal_mu": np.zeros(1, np.float32), "l2_norm_clip": np.full(1, clip, np.float32),
             "noise_multiplier": np.full(1, noise_multiplier, np.float32),
             "sample_weight": np.ones(manifest.batch_size, np.float32)}
    lite_losses, keras_losses = [], []
    peaks: dict[str, np.ndarray] = {}
    with _restored(model):
        optimizer = type(model.optimizer).from_config(model.optimizer.get_config())
        paths = [v.path for v in model.trainable_variables]
        for x, y in random_batches(manifest, steps, seed=seed, vocab=vocab_size(model)):
            noise = rng.standard_normal(size).astype(np.float32)
            lite_losses.append(float(train(x=x, y=y, noise=noise, **fixed)["loss"]))
            loss, grads = keras_dp_step(model, optimizer, x, y, microbatches, clip, noise_multiplier, noise)
            keras_losses.append(loss)
            for path, g in zip(paths, grads):
                peaks[path] = np.maximum(peaks.get(path, 0.0), np.abs(g))
        keras_values = {v.path: np.asarray(v.numpy()) for v in model.variables}
    return _judged(interp, manifest, keras_values, peaks, lite_losses, keras_losses, tolerance,
                   dp_sgd=(clip, noise_multiplier))


def run_parity(model, tflite_bytes: bytes, manifest: Manifest, steps: int = 3,
               tolerance: float = DEFAULT_TOLERANCE, seed: int = 0, proximal_mu: float = 0.0,
               scaffold: bool = False) -> ParityReport:
    """K steps each side; with ``proximal_mu`` > 0, FedProx's step on both (the LiteRT
    anchors set by set_weights with the starting weights, the Keras ones taped); with
    ``scaffold``, a random SCAFFOLD correction on both (set_control / added to the gradients)."""
    from model_export.ready import ready_interpreter

    # As a device does before every round: the anchors become the starting weights, the
    # optimizer's slots and SCAFFOLD's correction start from zero.
    interp = ready_interpreter(tflite_bytes)
    # The step devices run (train_plain without either term, in files that have it).
    signature = manifest.train_signature(proximal_mu, scaffold)
    train = interp.get_signature_runner(signature)
    lr = np.full(1, manifest.optimizer["learning_rate"], np.float32)
    mu = np.full(1, proximal_mu, np.float32)
    extra = {"proximal_mu": mu} if "proximal_mu" in manifest.signatures[signature]["inputs"] else {}
    if proximal_mu and not extra:
        raise ValueError("this file's train signature has no proximal_mu input (exported before FedProx)")
    corrections_by_path: dict = {}
    if scaffold:
        rng = np.random.default_rng(seed + 1)
        trainable = [(i, w) for i, w in enumerate(manifest.weights) if w.trainable]
        values = {f"c{i:03d}": (0.01 * rng.standard_normal(w.shape)).astype(np.float32) for i, w in trainable}
        interp.get_signature_runner("set_control")(**values)
        corrections_by_path = {w.path: values[f"c{i:03d}"] for i, w in trainable}
    ones = np.ones(manifest.batch_size, np.float32)
    lite_losses, keras_losses = [], []
    peaks: dict[str, np.ndarray] = {}  # path -> largest |gradient| per coordinate over the steps
    rounding: dict[str, np.ndarray] = {}  # path -> largest reordering change per coordinate
    with _restored(model):
        optimizer = type(model.optimizer).from_config(model.optimizer.get_config())
        paths = [v.path for v in model.trainable_variables]
        personal = {w.path for w in manifest.personal}
        anchors = [None if v.path in personal else np.array(v.numpy()) for v in model.trainable_variables]
        normalizing = max_normalized_step(manifest.optimizer, steps) is not None
        by_key = {w.key: w.path for w in (*manifest.weights, *manifest.personal)}
        for x, y in random_batches(manifest, steps, seed=seed, vocab=vocab_size(model)):
            lite_before = _lite_weights(interp, manifest, by_key) if normalizing and lite_losses else None
            lite_losses.append(float(train(x=x, y=y, sample_weight=ones, learning_rate=lr, **extra)["loss"]))
            loss, grads = keras_train_step(model, optimizer, x, y, proximal_mu, anchors,
                                           [corrections_by_path.get(v.path) for v in model.trainable_variables]
                                           if scaffold else None)
            keras_losses.append(loss)
            for path, g in zip(paths, grads):
                peaks[path] = np.maximum(peaks.get(path, 0.0), np.abs(g))
            if normalizing:  # only these optimizers excuse anything
                for path, r in zip(paths, gradient_rounding(model, x, y, lite_before)):
                    rounding[path] = np.maximum(rounding.get(path, 0.0), r)
        keras_values = {v.path: np.asarray(v.numpy()) for v in model.variables}
    return _judged(interp, manifest, keras_values, peaks, lite_losses, keras_losses, tolerance, rounding,
                   proximal_mu=proximal_mu, scaffold=scaffold)


def _lite_weights(interp, manifest: Manifest, by_key: dict) -> dict:
    """LiteRT's weights now, by Keras variable path."""
    lite = interp.get_signature_runner("get_weights")()
    if manifest.personal:
        lite.update(interp.get_signature_runner("get_personal")())
    return {by_key[k]: v for k, v in lite.items() if k in by_key}


def _judged(interp, manifest: Manifest, keras_values: dict, peaks: dict, lite_losses: list, keras_losses: list,
            tolerance: float, rounding: dict | None = None, **kind) -> ParityReport:
    """Every travelling and personal weight of the LiteRT side judged against Keras's."""
    lite = interp.get_signature_runner("get_weights")()
    if manifest.personal:  # personal layers train in the same step: judged the same way
        lite.update(interp.get_signature_runner("get_personal")())
    bound = max_normalized_step(manifest.optimizer, len(lite_losses))
    judged = [judge_weights(lite[w.key], keras_values[w.path], peaks.get(w.path), tolerance, bound,
                            (rounding or {}).get(w.path))
              for w in (*manifest.weights, *manifest.personal)]
    return ParityReport(lite_losses, keras_losses, max((j[0] for j in judged), default=0.0), tolerance,
                        excused=sum(j[1] for j in judged), max_excused_diff=max((j[2] for j in judged), default=0.0),
                        excused_bound=bound or 0.0, **kind)
