"""Export every zoo model builtins-only; train it in LiteRT; match Keras."""

import numpy as np
import pytest

from model_export.exporter import export_model
from model_export.ready import ready_interpreter
from model_export.sample_data import random_batches, vocab_size
from model_export.zoo import ZOO

MU0 = np.zeros(1, np.float32)  # proximal_mu: plain FedAvg

pytestmark = pytest.mark.slow


def _litert_losses(tflite: bytes, manifest, model, steps: int, lr: float):
    from ai_edge_litert.interpreter import Interpreter

    interp = ready_interpreter(tflite)
    train = interp.get_signature_runner("train")
    x, y = next(random_batches(manifest, 1, seed=3, vocab=vocab_size(model)))
    ones = np.ones(manifest.batch_size, np.float32)
    return [float(train(x=x, y=y, sample_weight=ones, learning_rate=np.full(1, lr, np.float32), proximal_mu=MU0)["loss"]) for _ in range(steps)]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_exports_builtins_only_and_trains(name):
    model = ZOO[name]()
    result = export_model(model, name=name, parity_steps=3)
    m = result.manifest
    assert not m.requires_flex and m.flex_ops == ()
    assert result.parity.passed, result.parity.render()
    assert result.parity.max_weight_diff < 1e-4
    # Repeated steps on one batch must drive its loss down (it can memorise a batch).
    losses = _litert_losses(result.tflite, m, model, 30, m.optimizer["learning_rate"])
    assert losses[-1] < 0.7 * losses[0], losses


def test_sample_weight_zero_rows_do_not_train():
    from ai_edge_litert.interpreter import Interpreter

    model = ZOO["digits_mlp"]()
    result = export_model(model, parity_steps=0)
    interp = ready_interpreter(result.tflite)
    train, get = interp.get_signature_runner("train"), interp.get_signature_runner("get_weights")
    before = get()
    x = np.random.default_rng(0).normal(size=(32, 64)).astype(np.float32)
    y = np.zeros(32, np.int32)
    train(x=x, y=y, sample_weight=np.zeros(32, np.float32), learning_rate=np.full(1, 0.1, np.float32), proximal_mu=MU0)
    after = get()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_set_weights_round_trips_and_evaluate_counts_correct():
    from ai_edge_litert.interpreter import Interpreter

    model = ZOO["digits_mlp"]()
    result = export_model(model, parity_steps=0)
    interp = Interpreter(model_content=result.tflite)
    get, put = interp.get_signature_runner("get_weights"), interp.get_signature_runner("set_weights")
    evaluate = interp.get_signature_runner("evaluate")
    weights = {k: v * 0 for k, v in get().items()}
    put(**weights)
    assert all(not v.any() for v in get().values())
    x = np.random.default_rng(1).normal(size=(32, 64)).astype(np.float32)
    out = evaluate(x=x, y=np.zeros(32, np.int32), sample_weight=np.ones(32, np.float32))
    # All-zero weights: uniform logits, argmax 0 everywhere, loss log(10) per example.
    assert float(out["correct"]) == 32.0
    assert float(out["loss_sum"]) == pytest.approx(32 * np.log(10), rel=1e-5)


def test_batchnorm_and_dropout_model_exports_and_trains():
    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((12,)),
        keras.layers.Dense(16),
        keras.layers.BatchNormalization(),
        keras.layers.Activation("relu"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
    result = export_model(model, batch_size=16, parity_steps=3)
    assert result.parity.passed, result.parity.render()
    names = [w.path for w in result.manifest.weights]
    assert any("moving_mean" in n for n in names)
    moving = [w for w in result.manifest.weights if "moving" in w.path]
    assert moving and not any(w.trainable for w in moving)
    # Dropout is live in the exported train signature: the same step twice gives different losses.
    from ai_edge_litert.interpreter import Interpreter

    interp = ready_interpreter(result.tflite)
    train = interp.get_signature_runner("train")
    get, put = interp.get_signature_runner("get_weights"), interp.get_signature_runner("set_weights")
    x = np.random.default_rng(2).normal(size=(16, 12)).astype(np.float32)
    y = np.random.default_rng(3).integers(0, 3, 16).astype(np.int32)
    start = get()
    args = dict(x=x, y=y, sample_weight=np.ones(16, np.float32), learning_rate=np.zeros(1, np.float32), proximal_mu=MU0)
    losses = set()
    for _ in range(4):
        put(**start)
        losses.add(round(float(train(**args)["loss"]), 6))
    assert len(losses) > 1


def test_an_op_without_a_builtin_kernel_fails_naming_the_op_and_its_layer():
    import keras

    from model_export.errors import ExportError

    model = keras.Sequential([keras.Input((6,)), keras.layers.GaussianNoise(0.1, name="noise"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ExportError) as caught:
        export_model(model)
    message = str(caught.value)
    assert "StatelessRandomNormalV2 (layer 'noise', GaussianNoise)" in message, message
    assert "--allow-flex" in message and "\n" not in message


def test_allow_flex_exports_and_the_manifest_names_the_flex_ops():
    import keras

    from device_runtime.litert_model import LocalModel
    from protocol.errors import ProtocolError

    model = keras.Sequential([keras.Input((6,)), keras.layers.GaussianNoise(0.1, name="noise"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    result = export_model(model, allow_flex=True, parity_steps=0)
    assert result.manifest.requires_flex and "StatelessRandomNormalV2" in result.manifest.flex_ops
    # A device with the stock runtime refuses it up front, naming the ops.
    with pytest.raises(ProtocolError, match="StatelessRandomNormalV2"):
        LocalModel(result.tflite)


class _ColumnPicker:
    """A custom layer gathering columns of its weight (axis 1: no builtin gradient covers it)."""

    @staticmethod
    def build():
        import keras

        class ColumnPicker(keras.layers.Layer):
            def build(self, input_shape):
                self.table = self.add_weight(shape=(input_shape[-1], 8), name="table")

            def call(self, x):
                return keras.ops.matmul(x, keras.ops.take(self.table, [0, 2, 4], axis=1))

        return ColumnPicker(name="picker")


def test_an_op_use_no_builtin_gradient_covers_fails_naming_the_layer():
    import keras

    from model_export.errors import ExportError

    model = keras.Sequential([keras.Input((5,)), _ColumnPicker.build(), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ExportError, match=r"no builtin gradient for GatherV2 \(layer 'picker', ColumnPicker\)"):
        export_model(model)


def test_uncompiled_and_unsupported_optimizer_are_clear():
    import keras

    from model_export.errors import ExportError

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(ExportError, match="not compiled"):
        export_model(model)
    model.compile(optimizer="adamax", loss="sparse_categorical_crossentropy")
    with pytest.raises(ExportError, match="Adamax.*SGD, Adam, AdamW, RMSprop, Adagrad"):
        export_model(model)
    model.compile(optimizer="sgd", loss="poisson")
    with pytest.raises(ExportError, match="poisson"):
        export_model(model)


def test_recurrent_dropout_alone_gets_the_dropout_free_parity_build():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4, recurrent_dropout=0.3),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    result = export_model(model, batch_size=8)
    assert result.parity.passed, result.parity.render()


def test_a_subclassed_model_gets_a_clear_error_and_exports_once_wrapped():
    import keras

    from model_export.errors import ExportError

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(8, activation="relu")
            self.out = keras.layers.Dense(3, activation="softmax")

        def call(self, x):
            return self.out(self.hidden(x))

    net = Net()
    net(keras.ops.zeros((1, 4)))
    net.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ExportError, match="subclassed keras.Model"):
        export_model(net)
    inp = keras.Input((4,))
    wrapped = keras.Model(inp, net(inp))
    wrapped.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    result = export_model(wrapped, batch_size=8)
    assert result.parity.passed, result.parity.render()
    assert len(result.manifest.weights) == 4  # the subclassed model's own variables travel
