"""Exact sampling from the discrete Gaussian N_Z(0, sigma^2), the noise of distributed DP
under secure aggregation (Kairouz, Liu and Steinke, ICML 2021): Canonne, Kamath and Steinke,
"The Discrete Gaussian for Differential Privacy" (NeurIPS 2020), algorithms 1-3, in exact
rational arithmetic: no floating point anywhere, so the distribution is exactly the one the
privacy analysis assumes (a float shortcut leaks through rounding).

Randomness comes from ``uniform(n)``, a uniform integer in [0, n): by default from the
operating system's CSPRNG (`secrets.randbelow`). The Java core implements the same
algorithm; fed the same draws, it returns the same samples (protocol/golden/
discrete_gaussian.json records draws and samples).
"""

from __future__ import annotations

import secrets
from fractions import Fraction
from typing import Callable

Uniform = Callable[[int], int]


def bernoulli(p: Fraction, uniform: Uniform) -> bool:
    """True with probability p (0 <= p <= 1): one uniform draw over p's denominator."""
    return uniform(p.denominator) < p.numerator


def bernoulli_exp_small(gamma: Fraction, uniform: Uniform) -> bool:
    """True with probability exp(-gamma), 0 <= gamma <= 1 (CKS algorithm 1: K is the first
    k with Bernoulli(gamma / k) false; exp(-gamma) is the probability that K is odd)."""
    k = 1
    while bernoulli(gamma / k, uniform):
        k += 1
    return k % 2 == 1


def bernoulli_exp(gamma: Fraction, uniform: Uniform) -> bool:
    """True with probability exp(-gamma), gamma >= 0: floor(gamma) draws of exp(-1), then the rest."""
    while gamma > 1:
        if not bernoulli_exp_small(Fraction(1), uniform):
            return False
        gamma -= 1
    return bernoulli_exp_small(gamma, uniform)


def discrete_laplace(t: int, uniform: Uniform) -> int:
    """P(x) proportional to exp(-|x| / t), for an integer t >= 1 (CKS algorithm 2)."""
    while True:
        u = uniform(t)
        if not bernoulli_exp(Fraction(u, t), uniform):
            continue
        v = 0
        while bernoulli_exp(Fraction(1), uniform):
            v += 1
        magnitude = u + t * v
        negative = uniform(2) == 1
        if negative and magnitude == 0:
            continue
        return -magnitude if negative else magnitude


def discrete_gaussian(sigma2: Fraction, uniform: Uniform | None = None) -> int:
    """One sample of N_Z(0, sigma2), sigma2 > 0 a rational (CKS algorithm 3)."""
    sigma2 = Fraction(sigma2)
    if sigma2 <= 0:
        raise ValueError("the discrete Gaussian's variance must be > 0")
    draw = uniform or secrets.randbelow
    t = _isqrt_floor(sigma2) + 1
    while True:
        y = discrete_laplace(t, draw)
        gamma = (abs(y) - sigma2 / t) ** 2 / (2 * sigma2)
        if bernoulli_exp(gamma, draw):
            return y


def _isqrt_floor(q: Fraction) -> int:
    """floor(sqrt(q)) for a rational q >= 0, exactly."""
    n = q.numerator // q.denominator
    r = _isqrt(n)
    while (r + 1) * (r + 1) <= q:
        r += 1
    while r * r > q:
        r -= 1
    return r


def _isqrt(n: int) -> int:
    import math

    return math.isqrt(n)
