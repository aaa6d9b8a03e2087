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

from protocol import sparse
from protocol.codec import hadamard_chunks, rotation_signs
from protocol.errors import ProtocolError

MAGIC = b"FSAM"
VERSION = 2  # 2: values bit-packed in exactly k bits (1 had 16- or 32-bit words)
RANGE_SIGMAS = 4.0
_HEADER = struct.Struct("<4sBBBBI")


def padded_length(num_values: int) -> int:
    return 1 << max(0, (num_values - 1).bit_length())


def modulus_bits(quant_bits: int, n: int) -> int:
    return quant_bits + max(0, math.ceil(math.log2(max(1, n))))


def value_range(clip_norm: float, length: int) -> float:
    return min(clip_norm, RANGE_SIGMAS * clip_norm / math.sqrt(length))


def packed_bytes(bits: int, length: int) -> int:
    """Bytes of `length` values of exactly `bits` bits each, bit-packed (the last byte padded with zeros)."""
    return (bits * length + 7) // 8


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


def keep(codes: np.ndarray, length: int, kept: int, seed: int) -> np.ndarray:
    """Sparse SecAgg: the round's kept codes (protocol.sparse's subset of seed = the
    rotation seed, which every device of the round shares); all of them when ``kept`` is 0."""
    return codes[sparse.kept_positions(seed, length, kept)] if kept else codes


# Tail of the kept part's norm: P(chi^2_m > m + 2 sqrt(m t) + 2 t) <= e^-t (Laurent and
# Massart 2000) with t = 20, i.e. an honest device exceeds it about twice in a billion.
KEPT_TAIL_T = 20.0


def kept_norm_factor(length: int, kept: int) -> float:
    """What the kept part of an honest device's rotated, range-clipped update weighs at most,
    relative to its clip C: sqrt(m / L) kappa. The random-sign rotation makes each of the L
    rotated coordinates sub-Gaussian with variance |x|^2 / L, so the m kept ones' squared norm
    is a chi-square-like sum of mean m C^2 / L (kappa from its tail); and each coordinate is
    clipped to the range, RANGE_SIGMAS C / sqrt(L), which caps kappa at RANGE_SIGMAS."""
    if not kept or kept >= length:
        return 1.0
    kappa = math.sqrt(1.0 + 2.0 * math.sqrt(KEPT_TAIL_T / kept) + 2.0 * KEPT_TAIL_T / kept)
    return min(1.0, math.sqrt(kept / length) * min(kappa, RANGE_SIGMAS))


def sum_norm_bound(n: int, clip: float, quant_bits: int, length: int, kept: int = 0) -> float:
    """The L2 norm n honest devices' decoded sum reaches at most (after the L / m scaling when
    sparse): n times each device's kept weight plus its rounding (at most one grid step per
    kept coordinate, sqrt(m) 2 r / (2^b - 1) <= 2 RANGE_SIGMAS sqrt(m / L) C / (2^b - 1)). The
    coordinator clips the unmasked sum to it, so one hostile device moves the mean by about
    C dense and C kappa / sqrt(F) sparse, which is the scale of an honest device's own sparse
    estimate (its kept coordinates times L / m)."""
    levels = (1 << quant_bits) - 1
    share = math.sqrt(kept / length) if kept else 1.0
    per_device = kept_norm_factor(length, kept) + 2.0 * RANGE_SIGMAS * share / levels
    return n * clip * per_device * (length / kept if kept else 1.0)


def dequantize_sum(code_sum: np.ndarray, count: int, num_values: int, quant_bits: int, vrange: float,
                   seed: int, length: int = 0, kept: int = 0) -> np.ndarray:
    """The float sum of ``count`` updates from the integer sum of their codes; with ``kept``
    (of ``length``), the kept coordinates scaled by L / m and zero elsewhere (unbiased over
    rounds' seeds) before the rotation is undone."""
    step = 2 * vrange / ((1 << quant_bits) - 1)
    rotated = code_sum.astype(np.float64) * step - count * vrange
    if kept:
        full = np.zeros(length, np.float64)
        full[sparse.kept_positions(seed, length, kept)] = rotated * (length / kept)
        rotated = full
    return unrotate(rotated.astype(np.float32), num_values, seed)


def pack(values: np.ndarray, bits: int) -> bytes:
    """Each value in exactly `bits` bits (the ring's k = quant bits + ceil(log2 n)), least
    significant bit first, value after value: a masked coordinate costs k bits, not a 16- or
    32-bit word."""
    values = np.asarray(values, np.uint64)
    if values.size and int(values.max()) >> bits:
        raise ProtocolError(f"a masked value is not below 2^{bits}", "bad_input")
    header = _HEADER.pack(MAGIC, VERSION, bits, 0, 0, values.size)
    if values.size == 0:
        return header
    planes = ((values[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    return header + np.packbits(planes.reshape(-1), bitorder="little").tobytes()


def unpack(data: bytes, bits: int, length: int) -> np.ndarray:
    """Parse and validate a masked input for a round with modulus 2^bits and L = length."""
    if len(data) < _HEADER.size:
        raise ProtocolError("masked input is shorter than its header", "bad_payload")
    magic, version, k, width, reserved, n = _HEADER.unpack_from(data, 0)
    if magic != MAGIC or version != VERSION or width or reserved:
        raise ProtocolError(f"masked input has a bad magic number or version (expected FSAM v{VERSION}, bit-packed)",
                            "bad_payload")
    if k != bits or n != length:
        raise ProtocolError(f"masked input is for modulus 2^{k} and {n} values; this round uses 2^{bits} and "
                            f"{length}", "bad_payload")
    if len(data) != _HEADER.size + packed_bytes(bits, n):
        raise ProtocolError(f"masked input is {len(data)} bytes, expected {_HEADER.size + packed_bytes(bits, n)}",
                            "bad_payload")
    if n == 0:
        return np.zeros(0, np.uint32)
    body = np.frombuffer(data, np.uint8, offset=_HEADER.size)
    if (bits * n) % 8 and int(body[-1]) >> ((bits * n) % 8):
        raise ProtocolError("masked input has bits set after its last value", "bad_payload")
    # Value i starts at bit i k: gather the 5 bytes that can hold it (k <= 32, offset <= 7), shift, mask.
    padded = np.concatenate([body, np.zeros(5, np.uint8)])
    start = np.arange(n, dtype=np.int64) * bits
    first, shift = start >> 3, (start & 7).astype(np.uint64)
    word = np.zeros(n, np.uint64)
    for j in range(5):
        word |= padded[first + j].astype(np.uint64) << np.uint64(8 * j)
    return ((word >> shift) & np.uint64((1 << bits) - 1)).astype(np.uint32)


def packed_size(bits: int, length: int) -> int:
    return _HEADER.size + packed_bytes(bits, length)
