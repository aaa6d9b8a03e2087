"""The bound the coordinator clips an unmasked SecAgg sum to (ring.sum_norm_bound): honest
sums stay inside it, dense and sparse, and one hostile device moves the mean by no more
than the documented C dense and about C kappa / sqrt(F) sparse (not C L / m)."""

import math

import numpy as np
import pytest

from protocol import dp, sparse
from protocol.secagg import ring

N, D, CLIP, BITS = 20, 3000, 1.0, 8


def _honest_updates(shape: str, rng) -> list[np.ndarray]:
    if shape == "random":
        xs = [rng.normal(size=D) for _ in range(N)]
    elif shape == "aligned":  # every device pushes the same way (the usual FL case)
        common = rng.normal(size=D)
        xs = [common + 0.1 * rng.normal(size=D) for _ in range(N)]
    elif shape == "spike":  # all the mass on one coordinate
        xs = [np.eye(1, D, 17)[0] for _ in range(N)]
    else:  # one small block (one layer's biases)
        xs = [np.concatenate([np.zeros(100), rng.normal(size=10), np.zeros(D - 110)]) for _ in range(N)]
    return [(x * (CLIP / dp.exact_l2_norm(x))).astype(np.float32) for x in xs]


def _decoded_sum(codes: list[np.ndarray], length: int, kept: int, seed: int) -> np.ndarray:
    total = np.sum([ring.keep(c, length, kept, seed).astype(np.int64) for c in codes], axis=0)
    vrange = ring.value_range(CLIP, length)
    return ring.dequantize_sum(total, len(codes), D, BITS, vrange, seed, length, kept).astype(np.float64)


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.05, 0.01])
@pytest.mark.parametrize("shape", ["random", "aligned", "spike", "block"])
def test_honest_sums_stay_inside_the_bound(fraction, shape):
    length = ring.padded_length(D)
    kept = sparse.kept_count(fraction, length) if fraction else 0
    bound = ring.sum_norm_bound(N, CLIP, BITS, length, kept)
    vrange = ring.value_range(CLIP, length)
    for round_seed in range(1, 11):
        rng = np.random.default_rng(round_seed)
        seed = 2**40 + round_seed
        codes = [ring.quantize(x, BITS, vrange, seed, rng) for x in _honest_updates(shape, rng)]
        assert dp.l2_norm(_decoded_sum(codes, length, kept, seed)) <= bound, (fraction, shape, round_seed)


@pytest.mark.parametrize("fraction", [0.2, 0.05, 0.01])
def test_one_hostile_device_moves_the_mean_by_about_c_over_root_f(fraction):
    length = ring.padded_length(D)
    kept = sparse.kept_count(fraction, length)
    bound = ring.sum_norm_bound(N, CLIP, BITS, length, kept)
    # The documented scale: C kappa / sqrt(F) per device of the mean, far below C L / m.
    kappa = ring.kept_norm_factor(length, kept) * math.sqrt(length / kept)
    per_device = bound / N
    assert per_device <= CLIP * (kappa + 0.1) * math.sqrt(length / kept)
    assert per_device < 0.6 * CLIP * length / kept
    rng = np.random.default_rng(0)
    seed = 2**40 + 3
    vrange = ring.value_range(CLIP, length)
    honest = [ring.quantize(x, BITS, vrange, seed, rng) for x in _honest_updates("aligned", rng)[1:]]
    honest_sum = _decoded_sum(honest, length, kept, seed)
    levels = (1 << BITS) - 1
    # A hostile device masks any ring element: the unmasked sum's codes can be anywhere the
    # coordinator's per-coordinate clamp allows, [0, n (2^b - 1)]. Here: at the end of that
    # range that points against the honest mean, on every kept coordinate.
    direction = ring.keep(ring.rotate(-honest_sum.astype(np.float32), length, seed), length, kept, seed)
    codes = np.where(direction > 0, N * levels, 0).astype(np.int64)
    total = ring.dequantize_sum(codes, N, D, BITS, vrange, seed, length, kept).astype(np.float64)
    honest_mean = honest_sum / (N - 1)
    unbounded = dp.l2_norm(total / N - honest_mean)
    clipped, _ = dp.clip_l2(total, bound)
    moved = dp.l2_norm(clipped / N - honest_mean)
    assert unbounded > 1.5 * per_device  # without the bound it would have gone further
    assert moved <= per_device + dp.l2_norm(honest_mean)
    print(f"F={fraction}: unbounded {unbounded:.1f} C, bounded {moved:.1f} C, documented {per_device:.1f} C")
