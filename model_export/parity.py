"""Parity report: K training steps in LiteRT and in Keras from the same weights.

Passing means every step's loss and every final weight agree within ``tolerance``
(absolute, default 1e-4 scaled by 1 + |value| for losses). Stochastic layers
(Dropout) are switched off on both sides for the comparison, through a deterministic
build of the same graph.
"""

from __future__ import annotations

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


def _keras_reference(model):
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for layer in clone.layers:
        if layer.__class__.__name__ == "Dropout":
            layer.rate = 0.0
    opt = model.optimizer.__class__.from_config(model.optimizer.get_config())
    clone.compile(optimizer=opt, loss=model.loss)
    return clone


def _keras_train_step(model, x, y) -> float:
    """One Keras training step with dense gradients.

    Keras's TF backend hands Adam an IndexedSlices gradient for Embedding tables and
    squares it per occurrence of a token instead of per row; fedge (like standard
    Adam) uses the dense row gradient. Densifying here keeps the reference standard
    while still using Keras's own model, loss and optimizer code.
    """
    import tensorflow as tf

    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=out)
    grads = tape.gradient(loss, model.trainable_variables)
    model.optimizer.apply([tf.convert_to_tensor(g) for g in grads], model.trainable_variables)
    return float(loss)


def run_parity(model, tflite_bytes: bytes, manifest: Manifest, steps: int = 3,
               tolerance: float = DEFAULT_TOLERANCE, seed: int = 0) -> ParityReport:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite_bytes)
    train = interp.get_signature_runner("train")
    get_weights = interp.get_signature_runner("get_weights")
    reference = _keras_reference(model)
    lr = np.full(1, manifest.optimizer["learning_rate"], np.float32)
    ones = np.ones(manifest.batch_size, np.float32)
    lite_losses, keras_losses = [], []
    for x, y in random_batches(manifest, steps, seed=seed, vocab=vocab_size(model)):
        lite_losses.append(float(train(x=x, y=y, sample_weight=ones, learning_rate=lr)["loss"]))
        keras_losses.append(_keras_train_step(reference, x, y))
    lite = get_weights()
    # clone_model keeps the layer and weight order but may rename paths: pair them by position.
    by_path = {orig.path: np.asarray(ref.numpy()) for orig, ref in zip(model.weights, reference.weights)}
    diffs = [float(np.max(np.abs(lite[w.key] - by_path[w.path]))) if w.size else 0.0 for w in manifest.weights]
    return ParityReport(lite_losses, keras_losses, max(diffs, default=0.0), tolerance)
