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
