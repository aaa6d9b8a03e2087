import struct

import numpy as np
import pytest

from protocol import codec
from protocol.errors import ProtocolError

SPECS = ["q8", "q4", "q8+rot", "q4+rot"]


def _tensors(rng, scale=1.0):
    return [rng.normal(size=(40, 25)).astype(np.float32) * scale, rng.normal(size=13).astype(np.float32)]


def test_float32_round_trip_is_exact():
    rng = np.random.default_rng(0)
    arrays = _tensors(rng)
    out = codec.decode(codec.encode(arrays, codec.CodecSpec("f32"), rng), [1000, 13])
    assert np.array_equal(out.values, codec.flatten(arrays))
    assert out.codec == "f32"


@pytest.mark.parametrize("name", SPECS)
def test_quantized_error_within_one_step_of_its_chunk(name):
    rng = np.random.default_rng(1)
    arrays = _tensors(rng)
    spec = codec.CodecSpec.parse(name, chunk_size=64)
    payload = codec.encode(arrays, spec, rng, seed=7)
    assert len(payload) == spec.max_payload_bytes(2, 1013)
    decoded = codec.decode(payload, [1000, 13]).values
    flat = codec.flatten(arrays)
    if not spec.rotate:
        # Each value lands on one of the two grid points around it: error < step of its chunk.
        for start in range(0, flat.size, 64):
            chunk = flat[start : start + 64]
            step = (chunk.max() - chunk.min()) / ((1 << spec.bits) - 1)
            assert np.max(np.abs(decoded[start : start + 64] - chunk)) <= step * (1 + 1e-5) + 1e-7
    else:
        # Rotation is orthonormal: the error vector's norm is bounded by the rotated-domain one.
        assert np.linalg.norm(decoded - flat) < 0.5 * np.linalg.norm(flat)


@pytest.mark.parametrize("name", SPECS)
def test_quantization_is_unbiased(name):
    rng = np.random.default_rng(2)
    arrays = [rng.normal(size=300).astype(np.float32)]
    flat = arrays[0]
    spec = codec.CodecSpec.parse(name, chunk_size=64)
    draws = np.stack([codec.decode(codec.encode(arrays, spec, rng, seed=11)).values for _ in range(400)])
    mean_error = draws.mean(axis=0) - flat
    single_error = np.abs(draws[0] - flat).mean()
    # The mean of 400 draws shrinks the error by ~sqrt(400) = 20 if unbiased.
    assert np.abs(mean_error).mean() < single_error / 8
    assert abs(mean_error.mean()) < single_error / 20


def test_dequantized_values_round_trip_exactly():
    rng = np.random.default_rng(3)
    spec = codec.CodecSpec.parse("q8")
    once = codec.decode(codec.encode(_tensors(rng), spec, rng)).values
    twice = codec.decode(codec.encode([once], spec, rng)).values
    np.testing.assert_allclose(twice, once, rtol=0, atol=1e-6)


def test_four_bit_is_about_half_of_eight_bit():
    n = 100_000
    q8 = codec.CodecSpec.parse("q8").max_payload_bytes(1, n)
    q4 = codec.CodecSpec.parse("q4").max_payload_bytes(1, n)
    f32 = codec.CodecSpec.parse("f32").max_payload_bytes(1, n)
    assert q8 < 0.27 * f32 and q4 < 0.55 * q8


def test_rotation_helps_heavy_tailed_updates():
    rng = np.random.default_rng(4)
    x = [rng.standard_t(1.5, size=4096).astype(np.float32)]
    err = {}
    for name in ("q4", "q4+rot"):
        d = codec.decode(codec.encode(x, codec.CodecSpec.parse(name, 256), rng, seed=5)).values
        err[name] = np.linalg.norm(d - x[0])
    assert err["q4+rot"] < err["q4"]


def test_rotation_signs_are_the_documented_sha256_bits():
    import hashlib

    digest = hashlib.sha256(struct.pack("<QI", 42, 0)).digest()
    first = digest[0]
    signs = codec.rotation_signs(42, 8)
    assert list(signs) == [-1.0 if (first >> i) & 1 else 1.0 for i in range(8)]


@pytest.mark.parametrize(
    "mutate, code",
    [
        (lambda p: p[:10], "bad_payload"),
        (lambda p: b"XXXX" + p[4:], "bad_payload"),
        (lambda p: p[:4] + b"\x09" + p[5:], "bad_payload"),
        (lambda p: p[:-1], "bad_payload"),
        (lambda p: p + b"\x00", "bad_payload"),
        (lambda p: p[:5] + b"\x07" + p[6:], "bad_payload"),
    ],
)
def test_malformed_payloads_are_rejected(mutate, code):
    rng = np.random.default_rng(5)
    payload = codec.encode(_tensors(rng), codec.CodecSpec.parse("q8"), rng)
    with pytest.raises(ProtocolError) as exc:
        codec.decode(mutate(payload), [1000, 13])
    assert exc.value.code == code


def test_wrong_shapes_and_non_finite_are_rejected():
    rng = np.random.default_rng(6)
    payload = codec.encode(_tensors(rng), codec.CodecSpec.parse("f32"), rng)
    with pytest.raises(ProtocolError) as exc:
        codec.decode(payload, [999, 14])
    assert exc.value.code == "shape_mismatch"
    bad = bytearray(payload)
    bad[-4:] = struct.pack("<f", float("nan"))
    with pytest.raises(ProtocolError) as exc:
        codec.decode(bytes(bad))
    assert exc.value.code == "non_finite"
    with pytest.raises(ProtocolError):
        codec.encode([np.array([np.inf], np.float32)], codec.CodecSpec("q8"), rng)


def test_codec_spec_parsing():
    assert codec.CodecSpec.parse("q4+rot", 128).name == "q4+rot"
    for bad in ("q3", "f32+rot", "q8+zip"):
        with pytest.raises(ProtocolError):
            codec.CodecSpec.parse(bad)
    with pytest.raises(ProtocolError):
        codec.CodecSpec.parse("q8+rot", chunk_size=100)


# -- sparse: a round-shared subset ------------------------------------------------------

SPARSE = ["f32+sparse:0.1", "q8+sparse:0.25", "q4+rot+sparse:0.05"]


@pytest.mark.parametrize("name", SPARSE)
def test_a_sparse_update_keeps_the_rounds_subset_scaled_to_be_unbiased(name):
    from protocol import sparse

    rng = np.random.default_rng(11)
    tensors = _tensors(rng)
    spec = codec.CodecSpec.parse(name, 64)
    payload = codec.encode(tensors, spec, rng, seed=5, sparse_seed=99)
    assert len(payload) == spec.max_payload_bytes(2, 1013)
    decoded = codec.decode(payload, [1000, 13])
    length = spec.coded_length(1013)
    assert decoded.codec == spec.wire_name and decoded.kept == spec.kept(1013) == -(-int(spec.sparse * length * 1e6)
                                                                                  // int(1e6))
    assert decoded.sparse_seed == 99 and decoded.matches(spec)
    if not spec.rotate:  # outside the kept positions nothing travels
        kept = sparse.kept_positions(99, length, decoded.kept)
        outside = np.ones(length, bool)
        outside[kept] = False
        assert not decoded.values[outside].any()
        if spec.kind == "f32":
            np.testing.assert_allclose(decoded.values[kept], codec.flatten(tensors)[kept] * (length / decoded.kept),
                                       rtol=1e-6)
    # Averaged over seeds, the decoded update is the update (the error of the mean of S draws
    # shrinks as sqrt((1/F - 1) / S)).
    flat = codec.flatten(tensors)
    mean = np.mean([codec.decode(codec.encode(tensors, spec, rng, sparse_seed=s)).values for s in range(1, 301)],
                   axis=0)
    expected = np.sqrt((1 / spec.sparse - 1) / 300)
    assert np.linalg.norm(mean - flat) / np.linalg.norm(flat) < 1.5 * expected + 0.02


def test_every_device_of_a_round_keeps_the_same_coordinates_and_rounds_differ():
    from protocol import sparse

    a = sparse.kept_positions(sparse.round_seed("t1", 4), 1000, 100)
    np.testing.assert_array_equal(a, sparse.kept_positions(sparse.round_seed("t1", 4), 1000, 100))
    assert len(np.unique(a)) == 100 and np.all(np.diff(a) > 0) and a.max() < 1000
    assert len(np.intersect1d(a, sparse.kept_positions(sparse.round_seed("t1", 5), 1000, 100))) < 40
    assert sparse.round_seed("t1", 4) != sparse.round_seed("t2", 4)


def test_sparse_keys_are_the_documented_sha256_words():
    import hashlib

    from protocol import sparse

    words = np.frombuffer(hashlib.sha256(b"FEDS" + struct.pack("<QI", 7, 0)).digest(), "<u4")
    assert list(sparse.kept_positions(7, 8, 3)) == sorted(np.argsort(words, kind="stable")[:3].tolist())


@pytest.mark.parametrize("field, value", [("seed", 0), ("kept", 0), ("kept", 10_000)])
def test_a_sparse_payload_with_a_bad_seed_or_kept_count_is_refused(field, value):
    rng = np.random.default_rng(12)
    payload = bytearray(codec.encode(_tensors(rng), codec.CodecSpec.parse("q8+sparse:0.1"), rng, sparse_seed=3))
    at = 24 + 4 * 2 + (0 if field == "seed" else 8)
    struct.pack_into("<Q" if field == "seed" else "<I", payload, at, value)
    with pytest.raises(ProtocolError) as exc:
        codec.decode(bytes(payload), [1000, 13])
    assert exc.value.code == "bad_payload"


def test_a_seed_that_is_not_the_rounds_is_refused_before_its_subset_is_drawn(monkeypatch):
    from protocol import sparse

    rng = np.random.default_rng(15)
    payload = codec.encode(_tensors(rng), codec.CodecSpec.parse("q8+sparse:0.1"), rng, sparse_seed=7)
    assert codec.decode(payload, [1000, 13], sparse_seed=7).sparse_seed == 7

    def drawn(*args):
        raise AssertionError("the subset of a hostile seed was computed")

    monkeypatch.setattr(sparse, "_positions", drawn)
    with pytest.raises(ProtocolError) as exc:
        codec.decode(payload, [1000, 13], sparse_seed=8)
    assert exc.value.code == "wrong_seed"


def test_a_sparse_payload_in_another_fraction_does_not_match_the_tasks_codec():
    rng = np.random.default_rng(13)
    payload = codec.encode(_tensors(rng), codec.CodecSpec.parse("q8+sparse:0.2"), rng, sparse_seed=3)
    decoded = codec.decode(payload, [1000, 13])
    assert decoded.matches(codec.CodecSpec.parse("q8+sparse:0.2"))
    assert not decoded.matches(codec.CodecSpec.parse("q8+sparse:0.1"))
    assert not decoded.matches(codec.CodecSpec.parse("q8"))
    dense = codec.decode(codec.encode(_tensors(rng), codec.CodecSpec.parse("q8"), rng), [1000, 13])
    assert not dense.matches(codec.CodecSpec.parse("q8+sparse:0.2"))


def test_sparse_codec_names():
    assert codec.CodecSpec.parse("q4+rot+sparse:0.03").name == "q4+rot+sparse:0.03"
    assert codec.CodecSpec.parse("f32+sparse:0.5").wire_name == "f32+sparse"
    for bad in ("q8+sparse:0", "q8+sparse:1", "q8+sparse:-0.1", "q8+sparse:nan", "q8+sparse:", "q8+sparse:0.1+rot",
                "q8+rot+rot", "q8+sparse:0.1+sparse:0.2"):
        with pytest.raises(ProtocolError) as exc:
            codec.CodecSpec.parse(bad)
        assert exc.value.code == "bad_codec"


# -- top-k: the device's largest coordinates, indices on the wire ---------------------------


def test_top_k_keeps_the_largest_magnitudes_ties_by_lower_index():
    values = np.array([0.5, -2.0, 0.5, 1.0, -0.5, 0.0], np.float32)
    assert codec.top_k_indices(values, 3).tolist() == [0, 1, 3]  # 0.5 at 0, 2 and -0.5 at 4 tie: index 0 first
    spec = codec.CodecSpec.parse("f32+topk:0.5")
    decoded = codec.decode(codec.encode([values], spec, None), [6])
    assert decoded.codec == "f32+topk" and decoded.kept == 3 and decoded.matches(spec)
    assert decoded.values.tolist() == [0.5, -2.0, 0.0, 1.0, 0.0, 0.0]  # unscaled: top-k is biased on purpose


def _topk_payload():
    rng = np.random.default_rng(14)
    return bytearray(codec.encode(_tensors(rng), codec.CodecSpec.parse("q8+topk:0.01"), rng))


@pytest.mark.parametrize("mutate", [
    lambda p: struct.pack_into("<I", p, 32 + 8, 0),  # the second index not above the first
    lambda p: struct.pack_into("<I", p, 32 + 4 * 11, 5000),  # the last index past the end
    lambda p: struct.pack_into("<I", p, 32, 0),  # keeps nothing
    lambda p: struct.pack_into("<I", p, 32, 2000),  # keeps more than there is
    lambda p: struct.pack_into("<I", p, 32, 12),  # one more than the payload holds
    lambda p: struct.pack_into("<B", p, 6, 4 | 1),  # top-k with rotation
])
def test_malformed_top_k_payloads_are_refused(mutate):
    payload = _topk_payload()
    assert struct.unpack_from("<I", payload, 32)[0] == 11  # ceil(0.01 * 1013)
    struct.pack_into("<11I", payload, 32 + 4, *range(0, 1000, 91))
    codec.decode(bytes(payload), [1000, 13])  # still valid: other indices, increasing, in range
    mutate(payload)
    with pytest.raises(ProtocolError) as exc:
        codec.decode(bytes(payload), [1000, 13])
    assert exc.value.code == "bad_payload"


def test_top_k_codec_names():
    assert codec.CodecSpec.parse("q8+topk:0.01").name == "q8+topk:0.01"
    assert codec.CodecSpec.parse("q4+topk:0.1").wire_name == "q4+topk"
    for bad in ("q8+rot+topk:0.1", "q8+topk:0", "q8+topk:1", "q8+topk:0.1+sparse:0.1", "q8+sparse:0.1+topk:0.1"):
        with pytest.raises(ProtocolError) as exc:
            codec.CodecSpec.parse(bad)
        assert exc.value.code == "bad_codec"
