import numpy as np
import pytest

from protocol.errors import ProtocolError
from protocol.secagg import crypto, graph, prg, ring


def test_key_agreement_is_symmetric_and_bound_to_context_and_purpose():
    a, b = crypto.generate_keypair(), crypto.generate_keypair()
    k_ab = crypto.agree(a.private, b.public, b"t|1", crypto.PURPOSE_MASK)
    assert k_ab == crypto.agree(b.private, a.public, b"t|1", crypto.PURPOSE_MASK)
    assert k_ab != crypto.agree(b.private, a.public, b"t|2", crypto.PURPOSE_MASK)
    assert k_ab != crypto.agree(b.private, a.public, b"t|1", crypto.PURPOSE_SHARES)
    assert crypto.public_of(a.private) == a.public
    with pytest.raises(ProtocolError):
        crypto.agree(a.private, bytes(32), b"t|1", crypto.PURPOSE_MASK)  # low-order point


def test_sealing_authenticates_ciphertext_and_associated_data():
    key = bytes(range(32))
    blob = crypto.seal(key, b"shares", b"aad")
    assert crypto.open_sealed(key, blob, b"aad") == b"shares"
    with pytest.raises(ProtocolError):
        crypto.open_sealed(key, blob, b"other aad")
    with pytest.raises(ProtocolError):
        crypto.open_sealed(key, blob[:-1] + bytes([blob[-1] ^ 1]), b"aad")


def test_prg_is_deterministic_bounded_and_roughly_uniform():
    seed = bytes(32)
    a = prg.expand(seed, 100_000, 12)
    assert np.array_equal(a, prg.expand(seed, 100_000, 12))
    assert a.max() < 1 << 12 and a.dtype == np.uint32
    assert not np.array_equal(a, prg.expand(bytes([1]) + bytes(31), 100_000, 12))
    counts = np.bincount(a >> 8, minlength=16)
    assert counts.min() > 0.9 * 100_000 / 16 and counts.max() < 1.1 * 100_000 / 16
    # Known answer: RFC 7539 section 2.3.2's all-zero key, nonce and counter 0 block begins 76 b8 e0 ad.
    assert prg.expand(bytes(32), 1, 32)[0] == 0xADE0B876


@pytest.mark.parametrize("n,degree", [(10, 4), (50, 18), (7, 100), (100, 20)])
def test_harary_graph_is_symmetric_and_regular(n, degree):
    g = graph.neighbours(n, degree, b"s" * 32)
    want = graph.effective_degree(n, degree)
    for u, vs in g.items():
        assert u not in vs and len(vs) == want
        assert all(u in g[v] for v in vs)
    assert g != graph.neighbours(n, degree, b"t" * 32) or want == n - 1


def test_ring_quantization_is_unbiased_and_the_sum_decodes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=1000).astype(np.float32)
    x *= 0.9 / np.linalg.norm(x)
    length = ring.padded_length(x.size)
    vr = ring.value_range(1.0, length)
    codes = [ring.quantize(x, 8, vr, 7, rng) for _ in range(400)]
    total = np.sum(codes, axis=0, dtype=np.uint64)
    mean = ring.dequantize_sum(total, len(codes), x.size, 8, vr, 7) / len(codes)
    assert np.abs(mean - x).max() < 0.01 and abs(float(np.mean(mean - x))) < 1e-3
    one = ring.dequantize_sum(codes[0].astype(np.uint64), 1, x.size, 8, vr, 7)
    step = 2 * vr / 255
    assert np.linalg.norm(one - x) < step * np.sqrt(length)


def test_masked_body_round_trips_and_rejects_malformed():
    values = np.arange(1024, dtype=np.uint32) % (1 << 15)
    body = ring.pack(values, 15)
    # Exactly k = 15 bits a value, not a 16-bit word: 1,920 bytes for 1,024 values.
    assert len(body) == ring.packed_size(15, 1024) == 12 + 1920
    assert np.array_equal(ring.unpack(body, 15, 1024), values)
    with pytest.raises(ProtocolError):
        ring.unpack(body, 16, 1024)
    with pytest.raises(ProtocolError):
        ring.unpack(body[:-2], 15, 1024)
    with pytest.raises(ProtocolError):  # a value of k bits or more cannot even be packed
        ring.pack(np.full(1024, 1 << 15, np.uint32), 15)
    with pytest.raises(ProtocolError):
        ring.unpack(b"XXXX" + body[4:], 15, 1024)
    odd = ring.pack(np.full(3, 7, np.uint32), 3)  # 9 bits: 7 padding bits in the last byte
    assert np.array_equal(ring.unpack(odd, 3, 3), [7, 7, 7])
    with pytest.raises(ProtocolError, match="after its last value"):
        ring.unpack(odd[:-1] + bytes([odd[-1] | 0x80]), 3, 3)


@pytest.mark.parametrize("bits", [1, 2, 7, 8, 9, 17, 18, 24, 31, 32])
def test_bit_packing_is_exact_for_every_width(bits):
    rng = np.random.default_rng(bits)
    values = rng.integers(0, 1 << bits, 999, dtype=np.uint64).astype(np.uint32)
    values[:2] = [0, (1 << bits) - 1]
    body = ring.pack(values, bits)
    assert len(body) == 12 + (bits * 999 + 7) // 8
    assert np.array_equal(ring.unpack(body, bits, 999), values)


def test_sparse_ring_codes_decode_unbiased_over_rounds():
    """Keeping a round's subset of the rotated codes (ring.keep) and decoding it scaled by
    L / m (ring.dequantize_sum with kept) estimates the update without bias over rounds."""
    from protocol import sparse
    from protocol.secagg import ring

    rng = np.random.default_rng(4)
    x = rng.normal(size=200).astype(np.float32)
    x *= 0.8 / np.linalg.norm(x)
    length = ring.padded_length(x.size)
    kept = sparse.kept_count(0.25, length)
    vrange = ring.value_range(1.0, length)
    draws = []
    for seed in range(1, 401):
        codes = ring.keep(ring.quantize(x, 8, vrange, seed, rng), length, kept, seed)
        assert codes.shape == (kept,)
        draws.append(ring.dequantize_sum(codes.astype(np.uint64), 1, x.size, 8, vrange, seed, length, kept))
    one = draws[0]
    assert np.linalg.norm(one - x) > 0.5 * np.linalg.norm(x)  # one round's estimate is far off...
    mean = np.mean(draws, axis=0)
    assert np.linalg.norm(mean - x) < 0.15 * np.linalg.norm(x)  # ...their mean is not (sqrt(3 / 400) ~ 0.09)


def test_the_in_place_mask_sum_is_the_sum_of_the_expanded_masks_on_any_number_of_threads(monkeypatch):
    """The server's unmasking adds and subtracts masks in uint32 in place (prg.MaskSum) and
    splits them over threads; reduced to k bits it is what expanding each mask to k bits and
    summing in uint64 gives, whatever the number of workers."""
    import numpy as np

    from protocol.secagg import prg, server

    rng = np.random.default_rng(0)
    seeds = [(rng.bytes(32), bool(rng.integers(2))) for _ in range(13)]
    length, bits = 1003, 19
    expected = np.zeros(length, np.uint64)
    for seed, positive in seeds:
        mask = prg.expand(seed, length, bits).astype(np.uint64)
        expected = expected + mask if positive else expected - mask
    expected &= np.uint64((1 << bits) - 1)
    acc = prg.MaskSum(length)
    for seed, positive in seeds:
        (acc.add if positive else acc.subtract)(seed)
    assert np.array_equal(acc.reduced(bits), expected)
    for workers in (1, 2, 3):
        monkeypatch.setattr(server, "UNMASK_WORKERS", workers)
        summed = server._sum_masks(seeds, length).astype(np.uint64) & np.uint64((1 << bits) - 1)
        assert np.array_equal(summed, expected), workers
