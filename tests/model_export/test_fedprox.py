"""FedProx in the exported train step: the proximal term is exact, mu = 0 is plain FedAvg (one
train step in the file; files with the older second train_plain step still step with it),
set_weights sets the anchor, the parity report covers mu > 0, and a file exported before
FedProx keeps working for mu = 0 and is refused, with the reason, for mu > 0."""

import numpy as np
import pytest

from protocol import codec
from protocol.errors import ProtocolError
from protocol.tflite_file import read_manifest


def _softmax_model(lr: float = 0.1):
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="softmax", name="dense")],
                             name="prox")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="sparse_categorical_crossentropy")
    return model


@pytest.fixture(scope="module")
def softmax_export():
    from model_export.exporter import export_model

    return export_model(_softmax_model(), name="prox_softmax", batch_size=8)


@pytest.fixture(scope="module")
def old_export(tmp_path_factory):
    """The same model exported the way fedge did before FedProx: no proximal_mu input."""
    import tensorflow as tf

    from model_export.training_graph import TrainingGraph

    class PreFedProxGraph(TrainingGraph):
        def concrete_signatures(self):
            sigs = super().concrete_signatures()
            old = tf.function(lambda x, y, sample_weight, learning_rate: self.train(
                x, y, sample_weight, learning_rate, tf.zeros([1])), autograph=False)
            from model_export.lowering import builtin_lowering

            with builtin_lowering(self._keras.model, stochastic=self.stochastic):
                sigs["train"] = old.get_concrete_function(*self.step_specs())
            return sigs

    return _export_with_four_input_step(PreFedProxGraph, "train", "old_softmax")


@pytest.fixture(scope="module")
def train_plain_export():
    """The same model exported the way fedge did between FedProx and the one-step file: a
    second ``train_plain`` step without the terms, which devices took when neither was on."""
    import tensorflow as tf

    from model_export.lowering import builtin_lowering
    from model_export.training_graph import TrainingGraph

    class TwoStepGraph(TrainingGraph):
        def train_plain(self, x, y, sample_weight, learning_rate):
            loss, grads = self._loss_and_gradients(x, y, sample_weight)
            self.optimizer.apply(grads, learning_rate[0])
            return {"loss": loss}

        def concrete_signatures(self):
            sigs = super().concrete_signatures()
            with builtin_lowering(self._keras.model, stochastic=self.stochastic):
                sigs["train_plain"] = tf.function(self.train_plain, autograph=False).get_concrete_function(
                    *self.step_specs())
            return sigs

    return _export_with_four_input_step(TwoStepGraph, "train_plain", "plain_softmax")


def _export_with_four_input_step(graph_class, key: str, name: str):
    """The softmax model exported with ``graph_class`` and its step ``key`` taking (x, y,
    sample_weight, learning_rate), as earlier releases wrote files."""
    from model_export import exporter

    mp = pytest.MonkeyPatch()
    table = exporter._signature_table
    mp.setattr(exporter, "TrainingGraph", graph_class)
    mp.setattr(exporter, "_signature_table", lambda g: {**table(g), key: {
        "inputs": ["x", "y", "sample_weight", "learning_rate"], "outputs": ["loss"]}})
    try:
        return exporter.export_model(_softmax_model(), name=name, batch_size=8, parity_steps=0)
    finally:
        mp.undo()


def _runners(tflite: bytes):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite)
    return {name: interp.get_signature_runner(name)
            for name in ("train", "get_weights", "set_weights", *(("train_plain",) if "train_plain" in
                                                                   interp.get_signature_list() else ()))}


def _batch(seed: int):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(8, 6)).astype(np.float32), rng.integers(0, 4, 8).astype(np.int32)


def test_the_proximal_term_is_exact_and_mu_zero_is_fedavg(softmax_export):
    manifest = softmax_export.manifest
    assert manifest.supports_proximal and "proximal_mu" in manifest.signatures["train"]["inputs"]
    a, b = _runners(softmax_export.tflite), _runners(softmax_export.tflite)
    anchor = a["get_weights"]()
    ones, lr = np.ones(8, np.float32), np.full(1, 0.1, np.float32)
    for r in (a, b):
        r["set_weights"](**anchor)  # the anchor: the round's starting weights
        x, y = _batch(0)  # step 1 on both: w == anchor, so mu cannot matter yet
        r["train"](x=x, y=y, sample_weight=ones, learning_rate=lr, proximal_mu=np.full(1, 0.0 if r is a else 2.0,
                                                                                     np.float32))
    w1a, w1b = a["get_weights"](), b["get_weights"]()
    for k in anchor:
        np.testing.assert_array_equal(w1a[k], w1b[k])
    x, y = _batch(1)
    a["train"](x=x, y=y, sample_weight=ones, learning_rate=lr, proximal_mu=np.zeros(1, np.float32))
    b["train"](x=x, y=y, sample_weight=ones, learning_rate=lr, proximal_mu=np.full(1, 2.0, np.float32))
    w2a, w2b = a["get_weights"](), b["get_weights"]()
    for k in anchor:  # plain SGD: the difference is exactly -lr * mu * (w1 - anchor)
        np.testing.assert_allclose(w2b[k] - w2a[k], -0.1 * 2.0 * (w1a[k] - anchor[k]), atol=1e-6)
        assert np.abs(w1a[k] - anchor[k]).max() > 1e-3  # so the check above is not vacuous


def test_one_train_step_and_mu_zero_without_correction_is_plain_sgd(softmax_export):
    """The file holds the training graph once (no train_plain); at mu = 0 with the correction
    set_weights zeroed, train is softmax regression's SGD step in closed form."""
    assert "train_plain" not in softmax_export.manifest.signatures
    assert softmax_export.manifest.train_signature(0.0, False) == "train"
    r = _runners(softmax_export.tflite)
    w = r["get_weights"]()
    kernel, bias = (w[k].astype(np.float64) for k in sorted(w))  # w000 kernel [6, 4], w001 bias [4]
    r["set_weights"](**w)
    ones, lr = np.ones(8, np.float32), np.full(1, 0.1, np.float32)
    for step in range(3):
        x, y = _batch(10 + step)
        r["train"](x=x, y=y, sample_weight=ones, learning_rate=lr, proximal_mu=np.zeros(1, np.float32))
        logits = x @ kernel + bias
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(8), y] -= 1.0  # d loss / d logits, per example; the loss is the batch mean
        kernel, bias = kernel - 0.1 * x.T @ p / 8, bias - 0.1 * p.sum(0) / 8
    got = r["get_weights"]()
    np.testing.assert_allclose(got["w000"], kernel, atol=2e-6)
    np.testing.assert_allclose(got["w001"], bias, atol=2e-6)
    assert np.abs(got["w000"] - w["w000"]).max() > 1e-3  # so the check above is not vacuous


def test_the_device_steps_with_train_plain_only_when_no_term_is_on(softmax_export, old_export, train_plain_export):
    from device_runtime.litert_model import LocalModel

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 6)).astype(np.float32), rng.integers(0, 4, 16).astype(np.int32)

    def steps_by_signature(tflite: bytes, mu: float, control: bool) -> dict:
        model = LocalModel(tflite)
        calls = {"train": 0, "train_plain": 0}

        def counted(name, runner):
            def run(**kwargs):
                calls[name] += 1
                return runner(**kwargs)
            run.get_input_details = runner.get_input_details
            return run
        plain_is_train = model.manifest.train_signature(0.0, False) == "train"
        model._train = counted("train", model._train)
        model._train_plain = model._train if plain_is_train else counted("train_plain", model._train_plain)
        model.set_weights(model.get_weights())
        if control:
            model.set_control([np.zeros(w.shape, np.float32) for w in model.manifest.weights])
        model.train(x, y, epochs=1, learning_rate=0.1, rng=rng, proximal_mu=mu)
        return calls

    # A file exported with the second step: train_plain when no term is on, train otherwise.
    assert steps_by_signature(train_plain_export.tflite, 0.0, False) == {"train": 0, "train_plain": 2}
    assert steps_by_signature(train_plain_export.tflite, 0.5, False) == {"train": 2, "train_plain": 0}
    assert steps_by_signature(train_plain_export.tflite, 0.0, True) == {"train": 2, "train_plain": 0}
    # Files with one step (today's, and those from before FedProx): always train.
    assert steps_by_signature(softmax_export.tflite, 0.0, False) == {"train": 2, "train_plain": 0}
    assert steps_by_signature(old_export.tflite, 0.0, False) == {"train": 2, "train_plain": 0}


def test_set_weights_moves_the_anchor(softmax_export):
    r = _runners(softmax_export.tflite)
    start = r["get_weights"]()
    moved = {k: v + 0.5 for k, v in start.items()}
    r["set_weights"](**moved)
    x, y = _batch(2)
    # With a huge mu and a tiny learning rate the step pulls toward the anchor only: from the
    # anchor itself, nothing moves beyond the data gradient's lr-sized step.
    r["train"](x=x, y=y, sample_weight=np.ones(8, np.float32), learning_rate=np.full(1, 1e-4, np.float32),
               proximal_mu=np.full(1, 100.0, np.float32))
    after = r["get_weights"]()
    for k in start:
        assert np.abs(after[k] - moved[k]).max() < 1e-3  # anchored at `moved`, not at the file's weights


def test_the_parity_report_covers_fedprox(softmax_export):
    report = softmax_export.parity
    assert report.passed and report.proximal is not None and report.proximal.passed
    assert report.proximal.proximal_mu > 0 and "parity (proximal_mu" in report.render()
    # The check can fail: LiteRT with the proximal term against Keras without it parts.
    from model_export.parity import run_parity

    model = _softmax_model()
    wrong = run_parity(model, softmax_export.tflite, softmax_export.manifest, steps=3, proximal_mu=5.0)
    assert wrong.passed  # the same term on both sides
    from model_export import parity as parity_module

    real_step = parity_module.keras_train_step
    try:
        parity_module.keras_train_step = lambda m, o, x, y, mu=0.0, anchors=None, corrections=None: real_step(
            m, o, x, y)
        mismatch = run_parity(model, softmax_export.tflite, softmax_export.manifest, steps=3, proximal_mu=5.0)
    finally:
        parity_module.keras_train_step = real_step
    assert not mismatch.passed and mismatch.max_weight_diff > 1e-3


def test_a_file_exported_before_fedprox(old_export, softmax_export):
    from device_runtime.litert_model import LocalModel
    from device_runtime.training import TrainJob, train_round
    from protocol.messages import Plan

    manifest = read_manifest(old_export.tflite)
    assert not manifest.supports_proximal
    model = LocalModel(old_export.tflite)
    assert not model.supports_proximal
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 6)).astype(np.float32), rng.integers(0, 4, 20).astype(np.int32)
    weights = model.get_weights()
    plain = Plan(epochs=1, batch_size=8, learning_rate=0.1, codec="f32", chunk_size=256)
    result = train_round(model, weights, TrainJob(plain, x, y, x[:4], y[:4], rng))  # mu = 0: trains as before
    assert result.example_count == 20 and np.abs(codec.decode(result.payload).values).max() > 0
    prox = Plan(epochs=1, batch_size=8, learning_rate=0.1, codec="f32", chunk_size=256, proximal_mu=0.1)
    with pytest.raises(ProtocolError, match="exported before FedProx"):
        train_round(model, weights, TrainJob(prox, x, y, x[:4], y[:4], rng))
    # The same plan on a current file runs.
    assert train_round(LocalModel(softmax_export.tflite), weights, TrainJob(prox, x, y, x[:4], y[:4], rng)).example_count == 20


def test_the_coordinator_refuses_fedprox_on_a_file_that_cannot_run_it(old_export, softmax_export, tmp_path):
    from coordinator import errors as E
    from coordinator.service import Coordinator
    from coordinator.store.factory import open_store

    c = Coordinator(open_store(str(tmp_path / "c.db")))
    try:
        c.admin.create_population("pop")
        old = c.admin.put_model(old_export.tflite)["model_sha256"]
        new = c.admin.put_model(softmax_export.tflite)["model_sha256"]
        with pytest.raises(E.BadRequest, match="exported before FedProx") as refused:
            c.admin.create_task("pop", {"model_sha256": old, "config": {"proximal_mu": 0.01}})
        assert refused.value.code == "unsupported_plan"
        c.admin.create_task("pop", {"model_sha256": old, "config": {"proximal_mu": 0.0}})  # FedAvg: fine
        c.admin.create_task("pop", {"model_sha256": new, "config": {"proximal_mu": 0.01}})
    finally:
        c.close()
        c.store.close()
