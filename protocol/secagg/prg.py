"""Mask expansion: a 32-byte seed -> a vector of integers mod 2^bits.

The ChaCha20 key stream (key = seed, 16-byte nonce/counter block all zero, i.e. RFC 7539
nonce 0 and counter 0) read as little-endian uint32 words, each reduced mod 2^bits.
2^bits divides 2^32, so the reduction keeps the words uniform.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from protocol.errors import ProtocolError

_ZERO_NONCE = bytes(16)


def expand(seed: bytes, length: int, bits: int) -> np.ndarray:
    if len(seed) != 32:
        raise ProtocolError("a mask seed is 32 bytes", "bad_key")
    if not 1 <= bits <= 32:
        raise ProtocolError("mask bits must be in [1, 32]", "bad_params")
    stream = Cipher(algorithms.ChaCha20(seed, _ZERO_NONCE), mode=None).encryptor().update(bytes(4 * length))
    words = np.frombuffer(stream, "<u4").astype(np.uint32)
    if bits < 32:
        words &= np.uint32((1 << bits) - 1)
    return words


class MaskSum:
    """A running sum of expanded masks, in place, for the server's unmasking: uint32 words
    added and subtracted mod 2^32 (2^k divides 2^32, so reducing to k bits once at the end
    gives what reducing every mask would), each keystream written into one reused buffer. No
    per-mask allocation, no uint64 copies: at n = 1,000 and d = 10^6 the server expands about
    4,000 masks of 4 MB."""

    def __init__(self, length: int):
        self.length = length
        self.total = np.zeros(length, np.uint32)
        self._zeros = bytes(4 * length)
        self._buf = bytearray(4 * length + 64)  # update_into wants room for a block beyond the data
        self._words = np.frombuffer(self._buf, "<u4", count=length)

    def _stream(self, seed: bytes) -> np.ndarray:
        if len(seed) != 32:
            raise ProtocolError("a mask seed is 32 bytes", "bad_key")
        Cipher(algorithms.ChaCha20(seed, _ZERO_NONCE), mode=None).encryptor().update_into(self._zeros, self._buf)
        return self._words

    def add(self, seed: bytes) -> None:
        np.add(self.total, self._stream(seed), out=self.total)

    def subtract(self, seed: bytes) -> None:
        np.subtract(self.total, self._stream(seed), out=self.total)

    def reduced(self, bits: int) -> np.ndarray:
        """The sum mod 2^bits, as uint64 (what `expand`'s callers add up)."""
        return (self.total & np.uint32((1 << bits) - 1 if bits < 32 else 0xFFFFFFFF)).astype(np.uint64)
