"""The update as integers mod 2^k, on a quantization grid shared by every device.

Masking needs integers, and the integer sum must decode to the sum of the updates, so
unlike the per-chunk codec all devices use one grid: the clipped delta (L2 norm <= C) is
zero-padded to a power of two L, rotated by the randomized Hadamard transform of
`protocol.codec` (signs from the round's rotation seed), which spreads its mass so each
coordinate is about N(0, |x|^2 / L); coordinates are clipped to [-r, r], r = 4 C / sqrt(L),
and stochastically rounded (unbiased) to 2^b levels. The sum of n codes is below
n * 2^b <= 2^k with k = b + ceil(log2 n): it never wraps mod 2^k.

Masked input body, little-endian::

    offset size  field
    0      4     magic b"FSAM"
    4      1     version (1)
    5      1     k, modulus bits
    6      1     w, bytes per value (2 if k <= 16, else 4)
    7      1     reserved (0)
    8      4     u32 L, number of values
    12     w*L   the values, each < 2^k
"""

from __future__ import annotations

import math
import struct

import numpy as np

from protocol.codec import hadamard_chunks, rotation_signs
from protocol.errors import ProtocolError

MAGIC = b"FSAM"
VERSION = 1
RANGE_SIGMAS = 4.0
_HEADER = struct.Struct("<4sBBBBI")


def padded_length(num_values: int) -> int:
    return 1 << max(0, (num_values - 1).bit_length())


def modulus_bits(quant_bits: int, n: int) -> int:
    return quant_bits + max(0, math.ceil(math.log2(max(1, n))))


def value_range(clip_norm: float, length: int) -> float:
    return min(clip_norm, RANGE_SIGMAS * clip_norm / math.sqrt(length))


def container_bytes(bits: int) -> int:
    return 2 if bits <= 16 else 4


def rotate(flat: np.ndarray, length: int, seed: int) -> np.ndarray:
    padded = np.zeros(length, np.float32)
    padded[: flat.size] = flat
    return hadamard_chunks(padded * rotation_signs(seed, length), length)


def unrotate(rotated: np.ndarray, num_values: int, seed: int) -> np.ndarray:
    length = rotated.size
    return (hadamard_chunks(rotated.astype(np.float32), length) * rotation_signs(seed, length))[:num_values]


def quantize(flat: np.ndarray, quant_bits: int, vrange: float, seed: int, rng: np.random.Generator | None,
             uniforms: np.ndarray | None = None) -> np.ndarray:
    """Codes in [0, 2^b - 1] (uint32, length L) of the rotated, range-clipped vector.

    ``uniforms`` (float64, length L) replaces the rounding draws of ``rng``: the golden
    vectors record them so another client can reproduce the codes exactly.
    """
    length = padded_length(flat.size)
    x = np.clip(rotate(np.asarray(flat, np.float32), length, seed), -vrange, vrange).astype(np.float64)
    levels = (1 << quant_bits) - 1
    scaled = (x + vrange) * (levels / (2 * vrange))
    draws = rng.random(length) if uniforms is None else np.asarray(uniforms, np.float64)
    if draws.shape != (length,):
        raise ValueError(f"need {length} rounding draws, got {draws.shape}")
    codes = np.floor(scaled + draws)
    return np.clip(codes, 0, levels).astype(np.uint32)


def dequantize_sum(code_sum: np.ndarray, count: int, num_values: int, quant_bits: int, vrange: float,
                   seed: int) -> np.ndarray:
    """The float sum of ``count`` updates from the integer sum of their codes."""
    step = 2 * vrange / ((1 << quant_bits) - 1)
    rotated = code_sum.astype(np.float64) * step - count * vrange
    return unrotate(rotated.astype(np.float32), num_values, seed)


def pack(values: np.ndarray, bits: int) -> bytes:
    width = container_bytes(bits)
    dtype = "<u2" if width == 2 else "<u4"
    return _HEADER.pack(MAGIC, VERSION, bits, width, 0, values.size) + values.astype(dtype).tobytes()


def unpack(data: bytes, bits: int, length: int) -> np.ndarray:
    """Parse and validate a masked input for a round with modulus 2^bits and L = length."""
    if len(data) < _HEADER.size:
        raise ProtocolError("masked input is shorter than its header", "bad_payload")
    magic, version, k, width, reserved, n = _HEADER.unpack_from(data, 0)
    if magic != MAGIC or version != VERSION or reserved:
        raise ProtocolError("masked input has a bad magic number or version (expected FSAM v1)", "bad_payload")
    if k != bits or width != container_bytes(bits) or n != length:
        raise ProtocolError(f"masked input is for modulus 2^{k} and {n} values; this round uses 2^{bits} and "
                            f"{length}", "bad_payload")
    if len(data) != _HEADER.size + width * n:
        raise ProtocolError(f"masked input is {len(data)} bytes, expected {_HEADER.size + width * n}", "bad_payload")
    values = np.frombuffer(data, "<u2" if width == 2 else "<u4", count=n, offset=_HEADER.size).astype(np.uint32)
    if bits < 32 and values.size and int(values.max()) >> bits:
        raise ProtocolError(f"masked input has values of {bits} bits or more", "bad_payload")
    return values


def packed_size(bits: int, length: int) -> int:
    return _HEADER.size + container_bytes(bits) * length
