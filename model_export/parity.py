"""Parity report: K training steps in LiteRT and in Keras from the same weights.

The Keras side is the model itself, trained by Keras's own code (its ``call``, its
compiled loss, a fresh copy of its optimizer) with TensorFlow's own gradients; every
variable is put back afterwards. Passing means every step's loss and every travelling
weight agree within ``tolerance`` (absolute, scaled by 1 + |value| for losses).
Dropout is switched off on both sides (a deterministic build of the same graph).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from model_export.sample_data import random_batches, vocab_size
from protocol.manifest import Manifest

DEFAULT_TOLERANCE = 1e-4


@dataclass
class ParityReport:
    litert_losses: list[float]
    keras_losses: list[float]
    max_weight_diff: float
    tolerance: float

    @property
    def max_loss_diff(self) -> float:
        return max(abs(a - b) / (1.0 + abs(b)) for a, b in zip(self.litert_losses, self.keras_losses))

    @property
    def passed(self) -> bool:
        return self.max_loss_diff <= self.tolerance and self.max_weight_diff <= self.tolerance

    def render(self) -> str:
        lines = ["parity: LiteRT train signature vs a Keras train step, same initial weights",
                 f"{'step':>4}  {'LiteRT loss':>12}  {'Keras loss':>12}  {'|diff|':>9}"]
        for i, (a, b) in enumerate(zip(self.litert_losses, self.keras_losses), 1):
            lines.append(f"{i:>4}  {a:>12.6f}  {b:>12.6f}  {abs(a - b):>9.2e}")
        lines.append(f"max |weight diff| after {len(self.litert_losses)} steps: {self.max_weight_diff:.2e} "
                     f"(tolerance {self.tolerance:.0e})  ->  {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)


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


def keras_train_step(model, optimizer, x, y) -> float:
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
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply([tf.convert_to_tensor(g) for g in grads], model.trainable_variables)
    return float(loss)


def run_parity(model, tflite_bytes: bytes, manifest: Manifest, steps: int = 3,
               tolerance: float = DEFAULT_TOLERANCE, seed: int = 0) -> ParityReport:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite_bytes)
    train = interp.get_signature_runner("train")
    get_weights = interp.get_signature_runner("get_weights")
    lr = np.full(1, manifest.optimizer["learning_rate"], np.float32)
    ones = np.ones(manifest.batch_size, np.float32)
    lite_losses, keras_losses = [], []
    with _restored(model):
        optimizer = type(model.optimizer).from_config(model.optimizer.get_config())
        for x, y in random_batches(manifest, steps, seed=seed, vocab=vocab_size(model)):
            lite_losses.append(float(train(x=x, y=y, sample_weight=ones, learning_rate=lr)["loss"]))
            keras_losses.append(keras_train_step(model, optimizer, x, y))
        keras_values = {v.path: np.asarray(v.numpy()) for v in model.variables}
    lite = get_weights()
    diffs = [float(np.max(np.abs(lite[w.key] - keras_values[w.path]))) if w.size else 0.0 for w in manifest.weights]
    return ParityReport(lite_losses, keras_losses, max(diffs, default=0.0), tolerance)
