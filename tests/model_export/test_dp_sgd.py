"""Example-level DP-SGD in the exported file (``fedge export --dp-sgd``): train_dp clips each
microbatch's gradient, adds the noise it is fed at noise_multiplier x clip and divides by the
number of microbatches; its parity check against a reference DP-SGD step catches a wrong
noise scale; models whose examples share statistics are refused."""

import numpy as np
import pytest

from model_export.errors import ExportError
from model_export.ready import ready_interpreter

BATCH = 8


def _softmax_model():
    import keras

    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="softmax", name="dense")],
                             name="dp_softmax")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="sparse_categorical_crossentropy")
    return model


@pytest.fixture(scope="module")
def dp_export():
    from model_export.exporter import export_model

    return export_model(_softmax_model(), name="dp_softmax", batch_size=BATCH, dp_microbatches=BATCH)


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(BATCH, 6)).astype(np.float32), rng.integers(0, 4, BATCH).astype(np.int32)


def _step(tflite, signature, **inputs):
    interp = ready_interpreter(tflite)
    before = interp.get_signature_runner("get_weights")()
    x, y = _batch()
    base = {"x": x, "y": y, "sample_weight": np.ones(BATCH, np.float32), "learning_rate": np.full(1, 0.1, np.float32)}
    interp.get_signature_runner(signature)(**base, **inputs)
    after = interp.get_signature_runner("get_weights")()
    return np.concatenate([(after[k] - before[k]).ravel() for k in sorted(after)])


def _dp_inputs(manifest, clip, z, noise=None):
    size = manifest.dp_noise_size
    return {"proximal_mu": np.zeros(1, np.float32), "l2_norm_clip": np.full(1, clip, np.float32),
            "noise_multiplier": np.full(1, z, np.float32),
            "noise": np.zeros(size, np.float32) if noise is None else noise}


def test_the_file_declares_train_dp(dp_export):
    m = dp_export.manifest
    assert m.supports_dp_sgd and m.export_options["dp_microbatches"] == BATCH
    assert m.signatures["train_dp"]["inputs"][-3:] == ["l2_norm_clip", "noise_multiplier", "noise"]
    assert m.dp_noise_size == 6 * 4 + 4
    assert m.train_signature(0.0, False, dp_sgd=True) == "train_dp"


def test_parity_covers_train_dp_and_passes(dp_export):
    report = dp_export.parity.dp
    assert report is not None and report.passed and dp_export.parity.passed
    assert "DP-SGD parity" in dp_export.parity.render()


def test_without_clipping_or_noise_it_is_the_plain_step(dp_export):
    # The mean of per-example gradients is the batch's gradient: the same update as train at mu 0.
    dp = _step(dp_export.tflite, "train_dp", **_dp_inputs(dp_export.manifest, clip=1e6, z=0.0))
    plain = _step(dp_export.tflite, "train", proximal_mu=np.zeros(1, np.float32))
    assert np.abs(plain).max() > 1e-3
    np.testing.assert_allclose(dp, plain, atol=1e-6)


def test_every_example_is_clipped(dp_export):
    # Softmax regression's per-example gradient in closed form: x (p - onehot) and p - onehot.
    clip = 0.05
    w = ready_interpreter(dp_export.tflite).get_signature_runner("get_weights")()
    kernel, bias = w["w000"].astype(np.float64), w["w001"].astype(np.float64)
    x, y = _batch()
    logits = x @ kernel + bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    err = p - np.eye(4)[y]
    per_example = np.concatenate([np.einsum("bi,bj->bij", x, err).reshape(BATCH, -1), err], axis=1)
    norms = np.linalg.norm(per_example, axis=1)
    assert (norms > clip).all()  # every one of them is clipped here
    expected = -0.1 * (per_example * (clip / np.maximum(norms, clip))[:, None]).mean(0)
    dp = _step(dp_export.tflite, "train_dp", **_dp_inputs(dp_export.manifest, clip=clip, z=0.0))
    np.testing.assert_allclose(dp, expected, atol=1e-7)


def test_the_noise_enters_as_fed_scaled_by_noise_multiplier_and_clip(dp_export):
    m = dp_export.manifest
    noise = np.random.default_rng(1).standard_normal(m.dp_noise_size).astype(np.float32)
    clip, z = 0.5, 2.0
    quiet = _step(dp_export.tflite, "train_dp", **_dp_inputs(m, clip, z))
    noisy = _step(dp_export.tflite, "train_dp", **_dp_inputs(m, clip, z, noise))
    # Weight order: the noise is laid out over the trainable weights in manifest order (kernel, bias).
    by_key = {w.key: w.size for w in m.weights}
    layout = np.concatenate([noise[:by_key["w000"]], noise[by_key["w000"]:]])
    np.testing.assert_allclose(noisy - quiet, -0.1 * z * clip * layout / BATCH, atol=1e-6)


def test_parity_catches_a_wrong_noise_scale(dp_export, monkeypatch):
    from model_export import parity

    honest = parity.keras_dp_step

    def louder(model, optimizer, x, y, microbatches, clip, z, noise):
        return honest(model, optimizer, x, y, microbatches, clip, z * 1.5, noise)

    monkeypatch.setattr(parity, "keras_dp_step", louder)
    report = parity.run_dp_parity(_softmax_model(), dp_export.tflite, dp_export.manifest)
    assert not report.passed and report.max_weight_diff > 1e-3


def test_fewer_microbatches_than_examples_export_with_parity():
    from model_export.exporter import export_model

    result = export_model(_softmax_model(), name="dp_mb", batch_size=BATCH, dp_microbatches=2)
    assert result.parity.dp.passed and result.manifest.export_options["dp_microbatches"] == 2


def test_models_that_share_statistics_across_examples_are_refused():
    import keras

    from model_export.exporter import export_model

    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8), keras.layers.BatchNormalization(),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ExportError, match="BatchNormalization.*LayerNormalization"):
        export_model(model, batch_size=BATCH, dp_microbatches=BATCH, parity_steps=0)
    with pytest.raises(ExportError, match="must divide the batch size"):
        export_model(_softmax_model(), batch_size=BATCH, dp_microbatches=3, parity_steps=0)
