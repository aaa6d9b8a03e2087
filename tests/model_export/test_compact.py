"""The compacted `.tflite`: names, empty quantization tables and empty per-tensor buffers gone,
smaller, and computing bit for bit what the converter's own file computes."""

import numpy as np
import pytest

from protocol.tflite_file import read_initial_weights, read_manifest


def _model():
    import keras

    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")], name="compact_mlp")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    return model


@pytest.fixture(scope="module")
def both():
    """(as the converter wrote it, compacted): the same model exported twice."""
    from model_export import convert
    from model_export.exporter import export_model

    mp = pytest.MonkeyPatch()
    mp.setattr(convert, "compact", lambda data: data)
    try:
        raw = export_model(_model(), name="compact_mlp", batch_size=8, parity_steps=0)
    finally:
        mp.undo()
    return raw, export_model(_model(), name="compact_mlp", batch_size=8, parity_steps=0)


def _schema(data: bytes):
    from tensorflow.lite.python import schema_py_generated as schema

    return schema.ModelT.InitFromPackedBuf(bytearray(data), 0)


def test_what_no_runtime_reads_is_gone(both):
    raw, compacted = both
    before, after = _schema(raw.tflite), _schema(compacted.tflite)
    tensors = [t for sg in after.subgraphs for t in sg.tensors]
    assert all(t.name is None and t.quantization is None for t in tensors)
    assert any(t.name for sg in before.subgraphs for t in sg.tensors)  # the converter names them
    data = [b.data is not None and len(b.data) > 0 for b in after.buffers]
    assert not data[0]
    # Every tensor without a constant names buffer 0; every other buffer holds bytes.
    assert all(data[t.buffer] or t.buffer == 0 for t in tensors)
    assert all(data[1:]), "an empty buffer other than the sentinel survived"
    assert len(after.buffers) < len(before.buffers) / 4
    assert len(compacted.tflite) < 0.8 * len(raw.tflite)
    # Operators, subgraphs and signatures untouched.
    assert [len(sg.operators) for sg in after.subgraphs] == [len(sg.operators) for sg in before.subgraphs]
    assert read_manifest(compacted.tflite).signatures == read_manifest(raw.tflite).signatures


def test_the_compacted_file_computes_what_the_converted_one_does(both):
    from model_export.ready import ready_interpreter

    rng = np.random.default_rng(0)
    runs = []
    for result in both:
        interp = ready_interpreter(result.tflite)
        train, evaluate = interp.get_signature_runner("train"), interp.get_signature_runner("evaluate")
        steps = np.random.default_rng(1)
        losses = []
        for _ in range(4):
            x = steps.normal(size=(8, 12)).astype(np.float32)
            y = steps.integers(0, 3, 8).astype(np.int32)
            losses.append(float(train(x=x, y=y, sample_weight=np.ones(8, np.float32),
                                      learning_rate=np.full(1, 1e-2, np.float32),
                                      proximal_mu=np.full(1, 0.1, np.float32))["loss"]))
        x = rng.normal(size=(8, 12)).astype(np.float32)
        out = interp.get_signature_runner("infer")(x=x)["output"]
        ev = evaluate(x=x, y=np.zeros(8, np.int32), sample_weight=np.ones(8, np.float32))
        runs.append((losses, interp.get_signature_runner("get_weights")(), out, float(ev["loss_sum"])))
        rng = np.random.default_rng(0)
    (la, wa, oa, ea), (lb, wb, ob, eb) = runs
    assert la == lb and ea == eb and la[0] != la[-1]
    np.testing.assert_array_equal(oa, ob)
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k])


def test_initial_weights_are_read_from_the_compacted_file(both):
    raw, compacted = both
    # initial_buffers index the compacted file's buffers: the weights read back are the export's.
    assert read_manifest(compacted.tflite).initial_buffers != read_manifest(raw.tflite).initial_buffers
    assert read_initial_weights(compacted.tflite) == read_initial_weights(raw.tflite)


def test_a_file_not_laid_out_as_the_converter_writes_is_left_alone(both):
    import flatbuffers

    from model_export.compact import compact

    model = _schema(both[0].tflite)
    model.buffers[0].data = np.frombuffer(b"not empty", np.uint8)  # no empty sentinel
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    odd = bytes(builder.Output())
    assert compact(odd) == odd
