"""The exact discrete Gaussian sampler: its distribution, its exactness (rational arithmetic,
no floats), and its golden vectors (the Java core replays the same draws)."""

import math
import random
from fractions import Fraction

import numpy as np
import pytest

from protocol import discrete_gaussian as dg


def test_bernoulli_exp_matches_exp_minus_gamma():
    rng = random.Random(0)
    for gamma in (Fraction(0), Fraction(1, 3), Fraction(1), Fraction(5, 2)):
        hits = sum(dg.bernoulli_exp(gamma, rng.randrange) for _ in range(20000))
        assert hits / 20000 == pytest.approx(math.exp(-float(gamma)), abs=0.015)


@pytest.mark.parametrize("sigma2", [Fraction(1, 2), Fraction(4), Fraction(100)])
def test_samples_follow_the_discrete_gaussian(sigma2):
    rng = random.Random(int(sigma2 * 10))
    samples = np.array([dg.discrete_gaussian(sigma2, rng.randrange) for _ in range(6000)], float)
    # Its exact moments: P(x) proportional to exp(-x^2 / (2 sigma2)) over the integers.
    xs = np.arange(-200, 201)
    p = np.exp(-xs.astype(float) ** 2 / (2 * float(sigma2)))
    p /= p.sum()
    variance = float((p * xs * xs).sum())
    assert abs(samples.mean()) < 4 * math.sqrt(variance / 6000)
    assert samples.var() == pytest.approx(variance, rel=0.08)
    # P(0), the mode, within 4 standard errors.
    p0 = float(p[200])
    assert abs(np.mean(samples == 0) - p0) < 4 * math.sqrt(p0 * (1 - p0) / 6000)


def test_no_floating_point_in_the_algorithm():
    # Every probability is a Fraction: a float would make the bernoulli draw's bound a float.
    asked = []

    def uniform(n):
        assert isinstance(n, int)
        asked.append(n)
        return random.Random(len(asked)).randrange(n)

    dg.discrete_gaussian(Fraction(37, 3), uniform)
    assert asked and all(isinstance(n, int) for n in asked)
    with pytest.raises(ValueError):
        dg.discrete_gaussian(Fraction(0))
    assert isinstance(dg.discrete_gaussian(Fraction(2)), int)  # the OS CSPRNG by default


def test_isqrt_floor_is_exact_for_rationals():
    for q in (Fraction(0), Fraction(1, 2), Fraction(4), Fraction(37, 3), Fraction(10**30 + 1, 7)):
        r = dg._isqrt_floor(q)
        assert r * r <= q < (r + 1) * (r + 1)


class _Seeded:
    """Reproducible draws for the vectorized sampler (the device's are the OS CSPRNG's)."""

    def __init__(self, seed: int):
        self.rng, self.r, self.highs = np.random.default_rng(seed), random.Random(seed), []

    def below(self, high):
        high = np.asarray(high)
        assert high.dtype.kind in "iu"  # every probability is a ratio of integers
        self.highs.append(int(high.max()) if high.size else 0)
        return self.rng.integers(0, high.astype(np.int64))

    def randbelow(self, n: int) -> int:
        assert isinstance(n, int)
        return self.r.randrange(n)


@pytest.mark.parametrize("variance", [1, 4, 37, 400, 250_000])
def test_many_samples_at_once_follow_the_discrete_gaussian(variance):
    u = _Seeded(variance)
    samples = dg.sample_many(variance, 20_000, u).astype(float)
    half = int(12 * math.sqrt(variance)) + 5
    xs = np.arange(-half, half + 1)
    p = np.exp(-xs.astype(float) ** 2 / (2 * variance))
    p /= p.sum()
    exact_var = float((p * xs * xs).sum())
    assert abs(samples.mean()) < 4 * math.sqrt(exact_var / 20_000)
    assert samples.var() == pytest.approx(exact_var, rel=0.05)
    p0 = float(p[half])
    assert abs(np.mean(samples == 0) - p0) < 4 * math.sqrt(p0 * (1 - p0) / 20_000)
    assert max(u.highs) < 2**62  # int64 arithmetic never overflowed


def test_many_samples_agree_with_the_scalar_sampler_in_distribution():
    # Same variance, two algorithms' outputs: a two-sample chi-square over the central bins.
    vec = dg.sample_many(9, 30_000, _Seeded(1))
    rng = random.Random(2)
    scalar = np.array([dg.discrete_gaussian(Fraction(9), rng.randrange) for _ in range(30_000)])
    bins = np.arange(-8, 9)
    a = np.array([np.sum(vec == b) for b in bins], float)
    b = np.array([np.sum(scalar == b) for b in bins], float)
    chi2 = float(np.sum((a - b) ** 2 / (a + b)))
    assert chi2 < 45  # 16 degrees of freedom: p < 3e-4 above this


def test_a_variance_too_large_for_int64_takes_the_exact_scalar_path():
    u = _Seeded(5)
    samples = dg.sample_many(10**12, 300, u)
    assert not u.highs  # no vectorized draw: every one went through randbelow
    assert np.std(samples) == pytest.approx(1e6, rel=0.15)
    with pytest.raises(ValueError):
        dg.sample_many(0, 3)


def test_secure_uniforms_are_below_their_bound_and_cover_it():
    u = dg.SecureUniforms()
    highs = np.array([1, 2, 3, 7, 2**40 + 3, 2**62], np.int64).repeat(2000)
    draws = u.below(highs)
    assert np.all((draws >= 0) & (draws < highs))
    assert set(draws[highs == 3].tolist()) == {0, 1, 2} and np.all(draws[highs == 1] == 0)


def test_a_candidate_too_large_for_int64_is_judged_exactly(monkeypatch):
    real = dg._discrete_laplace_many
    calls = []

    def with_a_giant(t, size, u):  # the first batch holds a candidate past int64's reach
        out = real(t, size, u)
        if not calls:
            out[0] = 10**12
        calls.append(size)
        return out

    monkeypatch.setattr(dg, "_discrete_laplace_many", with_a_giant)
    samples = dg.sample_many(100, 50, _Seeded(3))
    assert len(calls) >= 2 and np.max(np.abs(samples)) < 100  # exp(-huge): the giant was refused, redrawn
