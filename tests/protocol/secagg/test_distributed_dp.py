"""Distributed discrete Gaussian (protocol.secagg.distributed_dp): each device's noised codes,
their modular sum decoded, the rounding bound, the modulus, and KLS theorem 1's epsilon."""

import math

import numpy as np
import pytest

from protocol.errors import ProtocolError
from protocol.secagg import distributed_dp as ddp
from protocol.secagg import ring, server
from protocol.secagg.messages import SecAggParams


def _devices(n: int, size: int, clip: float, rng) -> list[np.ndarray]:
    out = []
    for _ in range(n):
        v = rng.normal(0.0, 1.0, size).astype(np.float32)
        out.append((v * (clip * rng.uniform(0.2, 1.0) / np.linalg.norm(v))).astype(np.float32))
    return out


def _encode_all(updates, p: ddp.NoisePlan, bits: int, k: int, seed: int, rng, noise=None):
    return [ddp.encode(u, bits, k, p.value_range, seed, p.bound, rng.random,
                       noise or (lambda L: np.zeros(L, np.int64))) for u in updates]


def test_without_noise_the_decoded_sum_is_the_sum_of_the_updates_up_to_rounding():
    rng = np.random.default_rng(0)
    n, size, clip, bits = 12, 300, 1.0, 12
    p = ddp.plan(1.0, clip, bits, size, n)
    k = ddp.modulus_bits(n, bits, p.variance)
    updates = _devices(n, size, clip, rng)
    codes = _encode_all(updates, p, bits, k, 77, rng)
    total = np.zeros(p.length, np.uint64)
    for c in codes:
        assert c.dtype == np.uint32 and int(c.max()) < 1 << k
        total = (total + c) & np.uint64((1 << k) - 1)
    decoded = ddp.decode_sum(total, n, size, bits, k, p.value_range, p.variance, 77)
    truth = np.sum(updates, axis=0)
    # Unbiased rounding: n devices' errors of at most one step each, about sqrt(n) steps in total.
    step = 1.0 / p.per_level
    assert np.max(np.abs(decoded - truth)) < 6 * math.sqrt(n) * step
    assert abs(float(np.mean(decoded - truth))) < 0.2 * step


def test_negative_sums_wrap_and_decode_centred():
    rng = np.random.default_rng(1)
    n, size, bits = 5, 64, 8
    p = ddp.plan(0.5, 1.0, bits, size, n)
    k = ddp.modulus_bits(n, bits, p.variance)
    updates = [-np.abs(u) for u in _devices(n, size, 1.0, rng)]  # every coordinate's sum is negative
    codes = _encode_all(updates, p, bits, k, 5, rng)
    total = np.sum([c.astype(np.uint64) for c in codes], axis=0) & np.uint64((1 << k) - 1)
    decoded = ddp.decode_sum(total, n, size, bits, k, p.value_range, p.variance, 5)
    assert np.allclose(decoded, np.sum(updates, axis=0), atol=6 * math.sqrt(n) / p.per_level)


def test_the_summed_noise_has_the_planned_deviation():
    rng = np.random.default_rng(2)
    n, size, clip, bits, z = 20, 1000, 1.0, 8, 1.0
    p = ddp.plan(z, clip, bits, size, n)
    k = ddp.modulus_bits(n, bits, p.variance)
    noise = ddp.os_noise(p.variance)
    zeros = [np.zeros(size, np.float32)] * n
    codes = _encode_all(zeros, p, bits, k, 9, rng, noise)
    total = np.sum([c.astype(np.uint64) for c in codes], axis=0) & np.uint64((1 << k) - 1)
    decoded = ddp.decode_sum(total, n, size, bits, k, p.value_range, p.variance, 9)
    # n devices' noise: z * Delta in grid units, Delta just above the clip: about z * C per coordinate
    # of the sum before the rotation is undone (the rotation keeps the L2 norm).
    expected = p.sum_stddev * math.sqrt(p.length / size)
    assert p.sum_stddev == pytest.approx(z * p.bound / p.per_level, rel=1e-3)
    assert p.bound / p.per_level == pytest.approx(clip, rel=0.01)
    assert float(np.std(decoded)) == pytest.approx(expected, rel=0.1)


def test_conditional_rounding_keeps_the_bound_and_redraws_when_it_must():
    rng = np.random.default_rng(3)
    size, bits, seed = 256, 4, 4
    p = ddp.plan(1.0, 1.0, bits, size, 1)
    x = rng.normal(0.0, 1.0, size).astype(np.float32)
    x /= np.float32(np.linalg.norm(x))  # at the clip
    scaled = np.clip(ring.rotate(x, p.length, seed), -p.value_range, p.value_range) * p.per_level
    attempts = []

    def adversarial(length):  # first attempt: every coordinate rounds away from zero; then fair draws
        attempts.append(length)
        return np.where(scaled >= 0, 0.999999, 0.0) if len(attempts) == 1 else rng.random(length)

    away = np.floor(scaled + np.where(scaled >= 0, 0.999999, 0.0))
    assert np.linalg.norm(away) > p.bound  # that draw must be refused
    codes = ddp.encode(x, bits, 20, p.value_range, seed, p.bound, adversarial, lambda L: np.zeros(L, np.int64))
    signed = np.where(codes >= 1 << 19, codes.astype(np.int64) - (1 << 20), codes.astype(np.int64))
    assert len(attempts) >= 2 and float(np.linalg.norm(signed)) <= p.bound
    with pytest.raises(ProtocolError, match="conditional rounding"):
        ddp.encode(x, bits, 20, p.value_range, seed, p.bound, lambda L: np.where(scaled >= 0, 0.999999, 0.0),
                   lambda L: np.zeros(L, np.int64))


def test_rounding_bound_is_kls_eq_5():
    c, d = 100.0, 64
    tight = math.sqrt(c * c + d / 4 + math.sqrt(2 * 0.5) * (c + math.sqrt(d) / 2))
    assert ddp.rounding_bound(c, d) == pytest.approx(min(c + 8, tight))
    assert c < ddp.rounding_bound(c, d) < c + math.sqrt(d)


def test_epsilon_follows_kls_theorem_1():
    # Large sigma: tau vanishes and eps is the Gaussian mechanism's Delta / (sqrt(n) sigma).
    assert ddp.round_epsilon(100.0, 50.0 ** 2, 4, 1024) == pytest.approx(100.0 / (2 * 50.0), rel=1e-9)
    # Small sigma: tau (the discreteness penalty) is no longer negligible and eps grows.
    small = ddp.round_epsilon(1.0, 0.3, 1000, 1024)
    assert small > 1.0 / math.sqrt(1000 * 0.3)
    # More noise, less epsilon; fewer survivors, more epsilon.
    assert ddp.round_epsilon(10, 100, 10, 64) < ddp.round_epsilon(10, 50, 10, 64)
    assert ddp.round_epsilon(10, 100, 5, 64) > ddp.round_epsilon(10, 100, 10, 64)


def test_modulus_has_room_for_codes_and_noise_and_refuses_beyond_32_bits():
    p = ddp.plan(1.0, 1.0, 8, 2000, 100)
    k = ddp.modulus_bits(1000, 8, p.variance)
    assert (1 << (k - 1)) > ddp.reach(1000, 8, p.variance) and k <= 32
    with pytest.raises(ProtocolError, match="lower secagg_bits"):
        ddp.modulus_bits(100_000, 24, 1e6)


def test_round_parameters_carry_the_noise_and_parse_back():
    params = server.choose_params(10, plus=False, threshold_fraction=0.5, degree=0, quant_bits=8, clip_norm=1.0,
                                  num_values=300, rotation_seed=3, graph_seed=bytes(32),
                                  dp_noise_multiplier=1.0, dp_min_survivors=6)
    assert params.distributed_dp and params.dp_variance >= 1 and params.dp_bound > 0
    again = SecAggParams.from_dict(params.to_dict())
    assert again == params
    plain = server.choose_params(10, plus=False, threshold_fraction=0.5, degree=0, quant_bits=8, clip_norm=1.0,
                                 num_values=300, rotation_seed=3, graph_seed=bytes(32))
    assert "dp_variance" not in plain.to_dict() and plain.modulus_bits == ring.modulus_bits(8, 10)
    for bad in ({"dp_variance": 0.5, "dp_bound": 3.0}, {"dp_variance": 4.0, "dp_bound": 0.0},
                {"dp_variance": 4.0, "dp_bound": 3.0, "extra": 1}, {"dp_variance": -1.0}):
        with pytest.raises(ProtocolError):
            SecAggParams.from_dict({**params.to_dict(), **bad})


def test_variance_is_an_integer_and_anything_else_is_refused():
    p = ddp.plan(0.7, 0.3, 8, 500, 7)
    v = ddp.exact_variance(p.variance)
    assert v.denominator == 1 and float(v) == p.variance and p.variance >= 1
    assert all(isinstance(int(d), int) for d in ddp.os_noise(p.variance)(50))
    for bad in (0.5, 2.5, 0.0):
        with pytest.raises(ProtocolError, match="integer"):
            ddp.exact_variance(bad)


def test_a_whole_secagg_round_with_noised_codes_unmasks_their_exact_modular_sum():
    from protocol.secagg.simulation import simulate

    r = simulate(8, 300, drop={"masked_input": 0.25}, plus=True, dp_noise_multiplier=1.0)
    assert r.params.distributed_dp and r.params.modulus_bits > ring.modulus_bits(8, 8)
    assert r.failure == "" and r.unmasked is not None and np.array_equal(r.unmasked, r.expected)
    assert r.client_s["encode"] > 0


def test_the_device_noise_floor_counts_only_the_devices_it_saw():
    params = server.choose_params(10, plus=False, threshold_fraction=0.5, degree=0, quant_bits=8, clip_norm=1.0,
                                  num_values=300, rotation_seed=3, graph_seed=bytes(32),
                                  dp_noise_multiplier=1.0, dp_min_survivors=6)
    z = ddp.total_noise_multiplier(params, 10)
    assert abs(z - (10 / 6) ** 0.5) < 0.05  # z sqrt(n / m), up to the integer variance's rounding
    assert ddp.total_noise_multiplier(params, 6) < z  # a roster of 6 keys: only their noise counts
    ddp.check_noise_floor(params, 10, 0.0)
    ddp.check_noise_floor(params, 10, 0.9 * z)
    with pytest.raises(ProtocolError) as low:
        ddp.check_noise_floor(params, 10, 1.1 * z)
    assert low.value.code == "dp_floor"
    # A coordinator that claimed 100 survivors would have made each device's share 10x smaller.
    lying = server.choose_params(10, plus=False, threshold_fraction=0.5, degree=0, quant_bits=8, clip_norm=1.0,
                                 num_values=300, rotation_seed=3, graph_seed=bytes(32),
                                 dp_noise_multiplier=1.0, dp_min_survivors=100)
    with pytest.raises(ProtocolError):
        ddp.check_noise_floor(lying, 10, 0.9)
    plain = server.choose_params(10, plus=False, threshold_fraction=0.5, degree=0, quant_bits=8, clip_norm=1.0,
                                 num_values=300, rotation_seed=3, graph_seed=bytes(32))
    with pytest.raises(ProtocolError, match="no device noise"):
        ddp.check_noise_floor(plain, 10, 0.5)
