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
