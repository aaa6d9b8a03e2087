"""The committed golden vectors (protocol/golden/) are what protocol/ produces today.

If one of these fails after a deliberate change to the wire format, regenerate with
`python -m protocol.golden` and make the Java core (android_sample/fedge-core) pass too.
"""

import json

import numpy as np
import pytest

from protocol import codec, golden


@pytest.mark.parametrize("name", sorted(golden.all_vectors()))
def test_committed_vectors_match_protocol(name):
    committed = (golden.GOLDEN_DIR / name).read_text()
    assert committed == golden.render(golden.all_vectors()[name]), f"{name} drifted; run python -m protocol.golden"


def test_codec_vectors_decode_within_one_step_of_the_input():
    for case in json.loads((golden.GOLDEN_DIR / "codec.json").read_text()):
        values = np.frombuffer(bytes.fromhex(case["values"]), "<f4")
        decoded = codec.decode(bytes.fromhex(case["payload"]), case["counts"]).values
        assert decoded.tobytes().hex() == case["decoded"]
        if "topk" in case["codec"]:  # the kept values (within a step when quantized), zero elsewhere
            kept = np.flatnonzero(decoded)
            assert len(kept) <= case["kept"] < len(values)
            assert np.abs(values[kept]).min() >= np.abs(np.delete(values, kept)).max() - 1e-6
        elif "sparse" in case["codec"]:  # a subset scaled by L / m: unbiased over seeds, not close per draw
            assert 0 < case["kept"] < len(values)
            if "rot" not in case["codec"]:  # only the kept coordinates are non-zero
                assert np.count_nonzero(decoded) <= case["kept"]
        elif case["codec"] == "f32":
            assert np.array_equal(decoded, values)
        else:
            bits = 8 if case["codec"].startswith("q8") else 4
            spread = float(values.max() - values.min()) * (4 if "rot" in case["codec"] else 1)
            assert np.max(np.abs(decoded - values)) <= spread / (2**bits - 1) + 1e-6, case["name"]


def test_uniforms_fix_the_payload_and_differ_from_other_draws():
    case = next(c for c in json.loads((golden.GOLDEN_DIR / "codec.json").read_text()) if c["name"] == "q8_two_chunks")
    values = np.frombuffer(bytes.fromhex(case["values"]), "<f4")
    uniforms = np.frombuffer(bytes.fromhex(case["uniforms"]), "<f4")
    spec = codec.CodecSpec.parse("q8", 4)
    arrays = codec.unflatten(values, [(5,), (3,)])
    assert codec.encode(arrays, spec, None, uniforms=uniforms).hex() == case["payload"]
    flipped = np.where(uniforms < 0.5, np.float32(0.999), np.float32(0.0))
    assert codec.encode(arrays, spec, None, uniforms=flipped).hex() != case["payload"]
