import json
import subprocess
import sys

import pytest

from protocol.errors import ProtocolError
from protocol.manifest import Manifest
from protocol.tflite_file import read_initial_weights, read_manifest


def test_manifest_round_trips_through_json(digits_tflite):
    manifest = read_manifest(digits_tflite)
    again = Manifest.from_json(manifest.to_json())
    assert again == manifest
    assert manifest.num_parameters == 64 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10
    assert [w.key for w in manifest.weights] == ["w000", "w001", "w002", "w003", "w004", "w005"]
    assert manifest.signatures["train"]["inputs"] == ["x", "y", "sample_weight", "learning_rate", "proximal_mu"]
    assert manifest.supports_proximal
    assert len(manifest.content_sha256) == 64 and not manifest.requires_flex


def test_manifest_is_read_without_tensorflow(digits_tflite, tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(digits_tflite)
    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "from protocol.tflite_file import read_manifest\n"
        f"m = read_manifest(open({str(path)!r}, 'rb').read()); print(m.model_name, m.num_parameters)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["digits_mlp", "6570"]


def test_initial_weights_are_embedded(digits_tflite):
    from protocol import codec

    decoded = codec.decode(read_initial_weights(digits_tflite), [w.size for w in read_manifest(digits_tflite).weights])
    assert decoded.values.size == 6570 and decoded.values.std() > 0


def test_not_a_model_and_missing_manifest_are_clear_errors():
    with pytest.raises(ProtocolError, match="not a TFLite model"):
        read_manifest(b"hello world, not a model")
    with pytest.raises(ProtocolError):
        read_manifest(b"\x00\x00\x00\x00TFL3" + b"\xff" * 8)


def test_manifest_validation_rejects_bad_fields(digits_tflite):
    raw = json.loads(read_manifest(digits_tflite).to_json())
    with pytest.raises(ProtocolError, match="format"):
        Manifest.from_dict({**raw, "format": 99})
    bad = dict(raw)
    bad["weights"] = list(reversed(raw["weights"]))
    with pytest.raises(ProtocolError, match="update order"):
        Manifest.from_dict(bad)
    with pytest.raises(ProtocolError):
        Manifest.from_dict({k: v for k, v in raw.items() if k != "input"})
