"""The initial weights live in the variables' own initializer constants (no second copy in
the file) where each weight has one of its own, and in the ``fedge_initial_weights``
metadata for the rest; both are read without TensorFlow, and a global model's download
overwrites both in place. A manifest that points elsewhere is refused."""

import json

import numpy as np
import pytest

from protocol import codec
from protocol.errors import ProtocolError
from protocol.manifest import INITIAL_WEIGHTS_METADATA_NAME, MANIFEST_METADATA_NAME
from protocol.tflite_file import metadata_entries, read_initial_weights, read_manifest, with_weights


def test_the_weights_are_read_from_their_initializers_with_no_copy(digits_tflite):
    manifest = read_manifest(digits_tflite)
    assert len(manifest.initial_buffers) == 6 and min(manifest.initial_buffers) > 0
    assert INITIAL_WEIGHTS_METADATA_NAME not in metadata_entries(digits_tflite)
    from ai_edge_litert.interpreter import Interpreter

    # What LiteRT itself starts from (before any set_weights) is what the reader returns.
    raw = Interpreter(model_content=digits_tflite).get_signature_runner("get_weights")()
    np.testing.assert_array_equal(codec.decode(read_initial_weights(digits_tflite)).values,
                                  codec.flatten([raw[w.key] for w in manifest.weights]))
    assert len(digits_tflite) < 4.2 * 4 * manifest.num_parameters  # the weights once, plus the graph


def test_a_global_models_download_overwrites_them_in_place(digits_tflite):
    from ai_edge_litert.interpreter import Interpreter

    manifest = read_manifest(digits_tflite)
    new = [np.random.default_rng(i).normal(size=w.shape).astype(np.float32) for i, w in enumerate(manifest.weights)]
    moved = with_weights(digits_tflite, codec.encode(new, codec.CodecSpec("f32"), None))
    assert len(moved) == len(digits_tflite)
    np.testing.assert_array_equal(codec.decode(read_initial_weights(moved)).values, codec.flatten(new))
    raw = Interpreter(model_content=moved).get_signature_runner("get_weights")()
    np.testing.assert_array_equal(codec.flatten([raw[w.key] for w in manifest.weights]), codec.flatten(new))
    with pytest.raises(ProtocolError):
        with_weights(digits_tflite, codec.encode(new[:-1], codec.CodecSpec("f32"), None))


@pytest.fixture(scope="module")
def conv_tflite():
    """A convolution whose zero bias shares its constant with the gradient's own zero bias:
    that weight keeps its copy in the metadata, the others are read from their initializers."""
    import keras

    from model_export.exporter import export_model

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    return export_model(model, name="conv", batch_size=4, parity_steps=0).tflite


def test_weights_without_a_constant_of_their_own_keep_a_copy_in_the_metadata(conv_tflite):
    from device_runtime.litert_model import LocalModel

    manifest = read_manifest(conv_tflite)
    in_metadata = [w for w, b in zip(manifest.weights, manifest.initial_buffers) if b < 0]
    assert in_metadata and len(in_metadata) < len(manifest.weights)
    payload = metadata_entries(conv_tflite)[INITIAL_WEIGHTS_METADATA_NAME]
    assert codec.decode(payload).counts == tuple(w.size for w in in_metadata)  # only those
    model = LocalModel(conv_tflite)
    np.testing.assert_array_equal(codec.flatten(model.get_weights()), codec.decode(read_initial_weights(conv_tflite)).values)
    new = [np.full(w.shape, 0.5, np.float32) for w in manifest.weights]
    moved = with_weights(conv_tflite, codec.encode(new, codec.CodecSpec("f32"), None))
    assert np.all(codec.flatten(LocalModel(moved).get_weights()) == 0.5)


def _with_manifest(model: bytes, **changes) -> bytes:
    from model_export.embed import embed_metadata

    raw = json.loads(metadata_entries(model)[MANIFEST_METADATA_NAME])
    return embed_metadata(model, {MANIFEST_METADATA_NAME: json.dumps({**raw, **changes}).encode()})


@pytest.mark.parametrize("buffers, code", [
    ([10**6, 1, 2, 3, 4, 5], "bad_model"),  # no such buffer
    ([1, 2, 3, 4, 5, 6], "bad_model"),  # buffers of other sizes
    ([7, 7, 8, 9, 10, 11], "bad_manifest"),  # one buffer for two weights
    ([1, 2, 3], "bad_manifest"),  # not one per weight
    ([-1] * 6, "bad_model"),  # every weight in metadata that is not there
    (["1", 2, 3, 4, 5, 6], "bad_manifest"),
])
def test_a_manifest_pointing_elsewhere_is_refused(digits_tflite, buffers, code):
    hostile = _with_manifest(digits_tflite, initial_buffers=buffers)
    with pytest.raises(ProtocolError) as refused:
        read_initial_weights(hostile)
    assert refused.value.code == code
