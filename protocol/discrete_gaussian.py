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

import math
import secrets
from fractions import Fraction
from typing import Callable

import numpy as np

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


# -- many samples at once: the same algorithms on int64 arrays --------------------------------
# A device noises every coordinate of its update (10^4 to 10^6 of them): one Fraction-based
# sample costs ~50 us. The vectorized path runs algorithms 1-3 on numpy int64 arrays, every
# probability still an exact ratio of integers (a uniform integer below the denominator
# compared with the numerator), for an integer variance. Numbers stay below 2^62 by the
# checks in `sample_many`; what would not fit falls back to the scalar path above.

_SAFE = 1 << 62
_MAX_K = 64  # algorithm 1's K beyond this has probability below 1/64!: such elements go scalar


class SecureUniforms:
    """Uniform int64 draws in [0, high) per element, from the OS CSPRNG (os.urandom),
    exactly uniform (rejection of the top partial range of 2^64); ``randbelow`` for the
    scalar path's integers of any size."""

    randbelow = staticmethod(secrets.randbelow)

    def below(self, high: np.ndarray) -> np.ndarray:
        import os

        high = np.asarray(high, np.uint64)
        out = np.empty(high.shape, np.uint64)
        todo = np.arange(high.size)
        while todo.size:
            words = np.frombuffer(os.urandom(8 * todo.size), np.uint64)
            h = high[todo]
            # 2^64 mod h without 2^64: (2^64 - h) mod h; accept words >= that, then reduce.
            floor = (np.uint64(0) - h) % h
            ok = words >= floor
            out[todo[ok]] = words[ok] % h[ok]
            todo = todo[~ok]
        return out.astype(np.int64)


def _bernoulli(num: np.ndarray, den: np.ndarray, u) -> np.ndarray:
    return u.below(den) < num


def _bernoulli_exp_small(num: np.ndarray, den: np.ndarray, u) -> np.ndarray:
    """exp(-num/den) for num/den in [0, 1], per element (algorithm 1)."""
    k = np.ones(num.shape, np.int64)
    live = np.arange(num.size)
    while live.size:
        go_on = _bernoulli(num[live], den[live] * k[live], u)
        k[live[go_on]] += 1
        live = live[go_on]
        if live.size and int(k[live].max()) > _MAX_K:
            raise OverflowError("algorithm 1 ran past its bound")  # ~1/64!: never in practice
    return k % 2 == 1


def _bernoulli_exp(num: np.ndarray, den: np.ndarray, u) -> np.ndarray:
    """exp(-num/den) for num/den >= 0: floor(gamma) draws of exp(-1), then the fraction."""
    whole, frac = num // den, num % den
    result = np.ones(num.shape, bool)
    ones = np.ones(num.shape, np.int64)
    live = np.nonzero(whole > 0)[0]
    while live.size:
        ok = _bernoulli_exp_small(ones[live], ones[live], u)
        result[live[~ok]] = False
        whole[live] -= 1
        live = live[ok & (whole[live] > 0)]
    live = np.nonzero(result)[0]
    result[live] = _bernoulli_exp_small(frac[live], den[live], u)
    return result


def _discrete_laplace_many(t: int, size: int, u) -> np.ndarray:
    """``size`` draws of P(x) proportional to exp(-|x| / t) (algorithm 2)."""
    out = np.zeros(size, np.int64)
    todo = np.arange(size)
    tt = np.full(size, t, np.int64)
    ones = np.ones(size, np.int64)
    while todo.size:
        n = todo.size
        uu = u.below(tt[:n])
        keep = _bernoulli_exp(uu, tt[:n], u)
        v = np.zeros(n, np.int64)
        live = np.nonzero(keep)[0]
        while live.size:
            more = _bernoulli_exp_small(ones[live], ones[live], u)
            v[live[more]] += 1
            live = live[more]
        magnitude = uu + t * v
        negative = u.below(np.full(n, 2, np.int64)) == 1
        good = keep & ~(negative & (magnitude == 0))
        out[todo[good]] = np.where(negative[good], -magnitude[good], magnitude[good])
        todo = todo[~good]
    return out


def sample_many(variance: int, size: int, uniforms=None) -> np.ndarray:
    """``size`` independent exact samples of N_Z(0, variance), an integer variance >= 1, as
    int64 (algorithm 3 per element). ``uniforms.below(high)`` draws; the OS CSPRNG by default."""
    variance = int(variance)
    if variance < 1:
        raise ValueError("sample_many takes an integer variance >= 1")
    u = uniforms or SecureUniforms()
    t = math.isqrt(variance) + 1
    den = 2 * variance * t * t  # gamma = (|y| t - variance)^2 / (2 variance t^2)
    if den * _MAX_K >= _SAFE:  # too large for int64 arithmetic: the scalar path, exactly
        return np.array([discrete_gaussian(Fraction(variance), u.randbelow) for _ in range(size)], np.int64)
    out = np.zeros(size, np.int64)
    todo = np.arange(size)
    limit = math.isqrt(_SAFE - 1)
    while todo.size:
        y = _discrete_laplace_many(t, todo.size, u)
        diff = np.abs(y) * t - variance
        big = np.abs(diff) > limit  # |y| beyond ~2^31 / t: astronomically rare, decided by the scalar path
        num = np.where(big, 0, diff) ** 2
        accept = _bernoulli_exp(num, np.full(todo.size, den, np.int64), u)
        for i in np.nonzero(big)[0]:
            accept[i] = bernoulli_exp(Fraction(int(diff[i]) ** 2, den), u.randbelow)
        out[todo[accept]] = y[accept]
        todo = todo[~accept]
    return out
