"""Every corpus model exports builtins-only, trains in LiteRT, and matches Keras.

Also: only trainable variables (and trained BatchNormalization statistics) travel, so
a frozen base's update is the head's size.
"""

import numpy as np
import pytest

from model_export.corpus import CORPUS
from model_export.exporter import export_model
from model_export.sample_data import random_batches, vocab_size

MU0 = np.zeros(1, np.float32)  # proximal_mu: plain FedAvg

pytestmark = pytest.mark.slow


def _train_one_batch(tflite: bytes, manifest, model, steps: int) -> list[float]:
    from model_export.ready import ready_interpreter

    train = ready_interpreter(tflite).get_signature_runner("train")
    x, y = next(random_batches(manifest, 1, seed=5, vocab=vocab_size(model)))
    ones = np.ones(manifest.batch_size, np.float32)
    lr = np.full(1, manifest.optimizer["learning_rate"], np.float32)
    return [float(train(x=x, y=y, sample_weight=ones, learning_rate=lr, proximal_mu=MU0)["loss"]) for _ in range(steps)]


@pytest.mark.parametrize("entry", CORPUS, ids=[c.name for c in CORPUS])
def test_corpus_model_exports_trains_and_matches_keras(entry):
    model = entry.build()
    result = export_model(model, name=entry.name, parity_steps=3, tolerance=entry.tolerance)
    m = result.manifest
    assert not m.requires_flex
    assert result.parity.passed, result.parity.render()
    # What travels: exactly the trainable variables plus statistics a trainable BatchNormalization updates.
    trained_stats = {v.path for layer in model._flatten_layers() if type(layer).__name__ == "BatchNormalization"
                     and layer.trainable for v in (layer.moving_mean, layer.moving_variance)}
    assert {w.path for w in m.weights} == {v.path for v in model.trainable_variables} | trained_stats
    losses = _train_one_batch(result.tflite, m, model, 15)
    assert all(np.isfinite(losses)) and min(losses[1:]) < losses[0], losses


def test_a_frozen_base_does_not_travel():
    entry = next(c for c in CORPUS if c.name == "mobilenet_v2_frozen")
    model = entry.build()
    result = export_model(model, parity_steps=0)
    total = sum(int(np.prod(v.shape)) for v in model.weights)
    update = result.manifest.num_parameters
    assert update == sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert update / total < 0.05, (update, total)
    # The frozen base is in the file (inference works) but not among the weights a device sends.
    assert not any("Conv1" in w.path or "block_" in w.path for w in result.manifest.weights)
