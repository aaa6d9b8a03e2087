"""Shamir t-out-of-n secret sharing over the prime field GF(p), p = 2^521 - 1.

A 32-byte secret s is the constant term of a random polynomial f of degree t - 1;
the share of the participant with x-coordinate x (1..n) is f(x). Any t shares give s
by Lagrange interpolation at 0; fewer reveal nothing about it. p is a Mersenne prime
far above 2^256, so every 32-byte secret is a field element.
"""

from __future__ import annotations

import secrets
from typing import Mapping, Sequence

from protocol.errors import ProtocolError

PRIME = (1 << 521) - 1
SECRET_BYTES = 32
SHARE_BYTES = 66  # ceil(521 / 8)


def _check_xs(xs: Sequence[int]) -> None:
    if len(set(xs)) != len(xs):
        raise ProtocolError("share x-coordinates must be distinct", "bad_share")
    if any(not 0 < x < PRIME for x in xs):
        raise ProtocolError("share x-coordinates must be in [1, p)", "bad_share")


def split(secret: bytes, xs: Sequence[int], threshold: int, randbelow=secrets.randbelow) -> dict[int, int]:
    """Shares of ``secret`` for the points ``xs``; any ``threshold`` of them recover it."""
    if len(secret) != SECRET_BYTES:
        raise ProtocolError(f"a secret is {SECRET_BYTES} bytes", "bad_share")
    if not 1 <= threshold <= len(xs):
        raise ProtocolError(f"threshold {threshold} must be in [1, {len(xs)}]", "bad_share")
    _check_xs(xs)
    coefficients = [int.from_bytes(secret, "big")] + [randbelow(PRIME) for _ in range(threshold - 1)]
    shares = {}
    for x in xs:
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % PRIME
        shares[x] = y
    return shares


def lagrange_at_zero(xs: Sequence[int]) -> dict[int, int]:
    """Coefficients l_i with f(0) = sum l_i f(x_i) for any f of degree < len(xs)."""
    _check_xs(xs)
    out = {}
    for i in xs:
        num, den = 1, 1
        for j in xs:
            if j != i:
                num = num * j % PRIME
                den = den * (j - i) % PRIME
        out[i] = num * pow(den, -1, PRIME) % PRIME
    return out


class Reconstructor:
    """Recovers secrets from shares, caching Lagrange coefficients per set of x-coordinates
    (the unmasking step recovers many secrets from the same responders)."""

    def __init__(self, threshold: int):
        self.threshold = threshold
        self._coefficients: dict[tuple[int, ...], dict[int, int]] = {}

    def __call__(self, shares: Mapping[int, int]) -> bytes:
        if len(shares) < self.threshold:
            raise ProtocolError(f"{len(shares)} shares, need {self.threshold}", "below_threshold")
        xs = tuple(sorted(shares)[: self.threshold])
        if xs not in self._coefficients:
            self._coefficients[xs] = lagrange_at_zero(xs)
        coefficients = self._coefficients[xs]
        secret = sum(coefficients[x] * shares[x] for x in xs) % PRIME
        if secret >> (8 * SECRET_BYTES):
            raise ProtocolError("shares are inconsistent (the recovered value is not a 32-byte secret)", "bad_share")
        return secret.to_bytes(SECRET_BYTES, "big")


def reconstruct(shares: Mapping[int, int], threshold: int) -> bytes:
    return Reconstructor(threshold)(shares)


def share_to_bytes(y: int) -> bytes:
    return y.to_bytes(SHARE_BYTES, "big")


def share_from_bytes(data: bytes) -> int:
    if len(data) != SHARE_BYTES:
        raise ProtocolError(f"a share is {SHARE_BYTES} bytes", "bad_share")
    y = int.from_bytes(data, "big")
    if y >= PRIME:
        raise ProtocolError("share is not a field element", "bad_share")
    return y
