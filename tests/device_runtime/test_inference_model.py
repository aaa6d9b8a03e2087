"""A model release as devices get it: the exported model with a round's weights, exposing only
its inference signatures (protocol.tflite_file.inference_only), opened by InferenceModel; its
predictions are the full model's with the same weights."""

import numpy as np
import pytest

from device_runtime.litert_model import InferenceModel, LocalModel
from protocol import codec
from protocol.errors import ProtocolError
from protocol.tflite_file import inference_only, read_manifest, signature_keys, with_weights
from tests.device_runtime.conftest import digits_shard


def test_a_release_exposes_only_infer_and_evaluate_and_predicts_as_the_full_model(digits_tflite):
    manifest = read_manifest(digits_tflite)
    rng = np.random.default_rng(3)
    weights = [rng.normal(0, 0.1, w.shape).astype(np.float32) for w in manifest.weights]
    full = with_weights(digits_tflite, codec.encode(weights, codec.CodecSpec("f32"), None))
    released = inference_only(full)
    assert len(released) == len(full) and set(signature_keys(full)) >= {"train", "get_weights", "set_weights"}
    assert sorted(signature_keys(released)) == ["evaluate", "infer"]
    model = InferenceModel(released)
    assert model.signatures == {"infer", "evaluate"}
    x, _ = digits_shard(37, seed=9)
    reference = LocalModel(full).interpreter.get_signature_runner("infer")
    batch = reference.get_input_details()["x"]["shape"][0]
    padded = np.concatenate([x, np.zeros((batch - len(x) % batch, x.shape[1]), x.dtype)]).astype(np.float32)
    expected = np.concatenate([reference(x=padded[i:i + batch])["output"] for i in range(0, len(padded), batch)])
    np.testing.assert_array_equal(model.predict(x), expected[:len(x)])
    assert read_manifest(released) == manifest  # the manifest and the weights' buffers stay in place


def test_a_file_without_an_infer_signature_or_broken_is_refused(digits_tflite):
    with pytest.raises(ProtocolError, match="no nope signature"):
        inference_only(digits_tflite, keep=("infer", "nope"))
    with pytest.raises(ProtocolError):
        inference_only(b"TFL3" + b"\0" * 40)
