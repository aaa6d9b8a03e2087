"""The update codec: how a device's weight delta travels, and how models are served.

Binary layout (all little-endian), version 1::

    offset  size  field
    0       4     magic  b"FEDU"
    4       1     format version (1)
    5       1     codec: 0 = float32, 1 = 8-bit, 2 = 4-bit stochastic quantization
    6       1     flags: bit 0 = randomized Hadamard rotation before quantizing,
                         bit 1 = sparse (a round-shared random subset of the coordinates),
                         bit 2 = top-k (the device's largest coordinates, their indices listed)
    7       1     reserved (0)
    8       4     u32 T, number of tensors
    12      4     u32 C, chunk size (elements per quantization chunk; 0 for float32)
    16      8     u64 rotation seed (0 without rotation)
    24      4*T   u32 element count of each tensor, in manifest update order
    only when sparse: u64 S, the round's sparse seed (non-zero); u32 m, the kept count
    only when top-k: u32 m, the kept count; then m u32 indices, strictly increasing, < N
    then the body:
      float32: N float32 values, N = sum of the counts (the tensors, flattened, concatenated)
      quantized: let L = N, or with rotation L = N rounded up to a multiple of C;
        K = ceil(L / C) chunk headers, each (f32 min, f32 step);
        then L codes: one byte each (8-bit) or two per byte, low nibble first (4-bit).
      A value decodes as ``min + code * step`` of its chunk.
      sparse: the body is that of the m kept values (protocol.sparse: the m positions of
        [0, L) that seed S selects, increasing; L = N for float32), a float32 or quantized
        body of length m (K = ceil(m / C)); decoding puts each kept value times float32(L / m)
        at its position and zero elsewhere (unbiased over S), then un-rotates. m = ceil(F L)
        for the codec's fraction F (``+sparse:F``): the receiver checks it, the payload
        carries only m.
      top-k (``+topk:F``, not with rotation): the body is that of the values at the m
        listed indices (the m of largest magnitude, ties by lower index; m = ceil(F N));
        decoding puts them there unscaled and zero elsewhere. Top-k is biased: devices
        keep what they did not send and add it to their next update (error feedback).

Quantization is stochastic and unbiased: ``code = floor((x - min) / step + u)`` with
``u ~ U[0, 1)``, where ``step = (max - min) / (2**bits - 1)`` over the chunk.

Rotation: the flat vector is zero-padded to L, multiplied by pseudo-random signs, then
each chunk of C (a power of two) is multiplied by the orthonormal Hadamard matrix
``H_C / sqrt(C)``. The signs are the bits of SHA-256(seed u64 LE || b u32 LE) for
b = 0, 1, ... concatenated, least significant bit of each byte first; a set bit is -1. Spreading the
coordinates this way shrinks the quantization range, so 4-bit updates lose less.
The exact body length is implied by the header, and anything else is rejected.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass

import numpy as np

from protocol import sparse
from protocol.errors import ProtocolError

MAGIC = b"FEDU"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sBBBBIIQ")
_CODEC_IDS = {"f32": 0, "q8": 1, "q4": 2}
_CODEC_BITS = {0: 32, 1: 8, 2: 4}
FLAG_ROTATE = 1
FLAG_SPARSE = 2
FLAG_TOPK = 4
_SPARSE = struct.Struct("<QI")
DEFAULT_CHUNK = 256


@dataclass(frozen=True)
class CodecSpec:
    """Which codec a task uses: 'f32', 'q8', 'q4', optionally '+rot', optionally '+sparse:F'
    (keep a round-shared fraction F of the coordinates); chunk size C."""

    kind: str = "q8"
    rotate: bool = False
    chunk_size: int = DEFAULT_CHUNK
    sparse: float = 0.0  # the kept fraction F in (0, 1); 0: every coordinate
    topk: float = 0.0  # the fraction F of largest coordinates kept (indices on the wire); 0: none

    @classmethod
    def parse(cls, text: str, chunk_size: int = DEFAULT_CHUNK) -> "CodecSpec":
        kind, *extras = str(text).split("+")
        rotate = extras[:1] == ["rot"]
        rest = extras[1:] if rotate else extras
        fraction, topk = 0.0, False
        if rest and rest[0].startswith(("sparse:", "topk:")):
            label, _, number = rest[0].partition(":")
            try:
                fraction = float(number)
            except ValueError:
                fraction = -1.0
            if not 0.0 < fraction < 1.0:
                raise ProtocolError(f"codec {text!r}: the {label} fraction must be a number in (0, 1), e.g. "
                                    f"q4+{label}:0.1", "bad_codec")
            topk = label == "topk"
            rest = rest[1:]
        if kind not in _CODEC_IDS or rest:
            raise ProtocolError(f"unknown codec {text!r}; use f32, q8 or q4, then optionally +rot, then optionally "
                                "+sparse:F or +topk:F (e.g. q8+rot+sparse:0.1, q8+topk:0.01)", "bad_codec")
        if kind == "f32" and rotate:
            raise ProtocolError("rotation only applies to quantized codecs", "bad_codec")
        if topk and rotate:
            raise ProtocolError("top-k keeps the largest coordinates, which a rotation spreads out: use q8+topk:F "
                                "without +rot", "bad_codec")
        if chunk_size < 1 or chunk_size > 1 << 20 or (rotate and chunk_size & (chunk_size - 1)):
            raise ProtocolError("chunk_size must be in [1, 2^20], and a power of two with rotation", "bad_codec")
        return cls(kind, rotate, int(chunk_size), 0.0 if topk else fraction, fraction if topk else 0.0)

    @property
    def name(self) -> str:
        return self.wire_name + (f":{self.sparse or self.topk:g}" if self.sparse or self.topk else "")

    @property
    def wire_name(self) -> str:
        """What a payload's header says (a sparse or top-k payload carries its kept count, not F)."""
        return (self.kind + ("+rot" if self.rotate else "") + ("+sparse" if self.sparse else "")
                + ("+topk" if self.topk else ""))

    @property
    def bits(self) -> int:
        return _CODEC_BITS[_CODEC_IDS[self.kind]]

    def coded_length(self, num_values: int) -> int:
        """L: the coordinates a sparse subset is drawn from (N, padded to whole chunks with rotation)."""
        return _padded_length(num_values, self.chunk_size, self.rotate) if self.kind != "f32" else num_values

    def kept(self, num_values: int) -> int:
        """How many coordinates travel: m = ceil(F L) when sparse, else all L."""
        length = self.coded_length(num_values)
        fraction = self.sparse or self.topk
        return sparse.kept_count(fraction, length) if fraction else length

    def max_payload_bytes(self, num_tensors: int, num_values: int) -> int:
        """Exact size of an encoded update; uploads larger than this are refused unread."""
        header = _HEADER.size + 4 * num_tensors + (_SPARSE.size if self.sparse else 0)
        if self.topk:
            header += 4 + 4 * self.kept(num_values)  # m, then the indices
        if self.kind == "f32":
            return header + 4 * self.kept(num_values)
        length = self.kept(num_values)
        chunks = -(-length // self.chunk_size)
        codes = length if self.bits == 8 else -(-length // 2)
        return header + 8 * chunks + codes


def _padded_length(n: int, chunk: int, rotate: bool) -> int:
    return -(-n // chunk) * chunk if rotate else n


def rotation_signs(seed: int, length: int) -> np.ndarray:
    """±1 float32 signs: bit j of SHA-256(seed u64 LE || block u32 LE) for j in 0..255, per block."""
    blocks = -(-length // 256)
    stream = b"".join(hashlib.sha256(struct.pack("<QI", seed, b)).digest() for b in range(blocks))
    bits = np.unpackbits(np.frombuffer(stream, np.uint8), bitorder="little")[:length]
    return (1.0 - 2.0 * bits).astype(np.float32)


def hadamard_chunks(x: np.ndarray, chunk: int) -> np.ndarray:
    """Orthonormal fast Walsh-Hadamard transform of each chunk of a (K*chunk,) vector."""
    y = x.reshape(-1, chunk).astype(np.float64, copy=True)
    h = 1
    while h < chunk:
        y = y.reshape(y.shape[0], -1, 2, h)
        a, b = y[:, :, 0, :].copy(), y[:, :, 1, :]
        y[:, :, 0, :] += b
        y[:, :, 1, :] = a - b
        y = y.reshape(y.shape[0], chunk)
        h *= 2
    return (y / math.sqrt(chunk)).reshape(-1).astype(np.float32)


def flatten(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(a, np.float32).reshape(-1) for a in arrays]) if arrays else np.zeros(0, np.float32)


def unflatten(flat: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    out, pos = [], 0
    for shape in shapes:
        n = math.prod(shape)
        out.append(flat[pos : pos + n].reshape(shape))
        pos += n
    return out


def encode(arrays: list[np.ndarray], spec: CodecSpec, rng: np.random.Generator | None, seed: int | None = None,
           uniforms: np.ndarray | None = None, sparse_seed: int = 0) -> bytes:
    """Encode tensors (in manifest order) with the codec; ``rng`` draws the stochastic rounding.

    ``uniforms`` (float32 in [0, 1), one per grid cell: K*C values, the last chunk's
    padding included) replaces the draws, so other implementations can be checked
    against this one bit for bit (protocol/golden/). A sparse codec needs the round's
    ``sparse_seed`` (the plan's)."""
    counts = [int(np.asarray(a).size) for a in arrays]
    flat = flatten(arrays)
    if not np.all(np.isfinite(flat)):
        raise ProtocolError("update has non-finite values", "non_finite")
    codec_id = _CODEC_IDS[spec.kind]
    rot_seed = 0
    if spec.rotate:
        rot_seed = int(rng.integers(1, 2**63)) if seed is None else int(seed)
    flags = (FLAG_ROTATE if spec.rotate else 0) | (FLAG_SPARSE if spec.sparse else 0) | (FLAG_TOPK if spec.topk else 0)
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, codec_id, flags, 0,
                          len(counts), 0 if spec.kind == "f32" else spec.chunk_size, rot_seed)
    header += struct.pack(f"<{len(counts)}I", *counts)
    c = spec.chunk_size
    n = flat.size
    length = spec.coded_length(n)
    if spec.rotate:
        padded = np.zeros(length, np.float32)
        padded[:n] = flat
        values = hadamard_chunks(padded * rotation_signs(rot_seed, length), c)
    else:
        values = flat
    if spec.sparse:
        kept = spec.kept(n)
        values = values[sparse.kept_positions(sparse_seed, length, kept)]
        header += _SPARSE.pack(sparse_seed, kept)
        length = kept
    elif spec.topk:
        kept = spec.kept(n)
        indices = top_k_indices(values, kept)
        header += struct.pack("<I", kept) + indices.astype("<u4").tobytes()
        values = values[indices]
        length = kept
    if spec.kind == "f32":
        return header + values.astype("<f4").tobytes()
    return header + _quantize(values, length, spec, rng, uniforms)


def top_k_indices(values: np.ndarray, kept: int) -> np.ndarray:
    """The ``kept`` indices of largest magnitude (ties: the lower index first), increasing."""
    order = np.lexsort((np.arange(values.size), -np.abs(values.astype(np.float64))))[:kept]
    return np.sort(order)


def _quantize(values: np.ndarray, length: int, spec: CodecSpec, rng: np.random.Generator | None,
              uniforms: np.ndarray | None) -> bytes:
    """Chunk headers and codes of ``length`` values (the last chunk edge-padded for its draws)."""
    c = spec.chunk_size
    k = -(-length // c)
    grid = np.pad(values, (0, k * c - length), mode="edge") if length and k * c > length else values
    grid = grid.reshape(k, c) if length else np.zeros((0, c), np.float32)
    lo = grid.min(axis=1) if k else np.zeros(0, np.float32)
    hi = grid.max(axis=1) if k else np.zeros(0, np.float32)
    levels = (1 << spec.bits) - 1
    step = ((hi - lo) / levels).astype(np.float32)
    safe = np.where(step > 0, step, 1.0)
    scaled = (grid - lo[:, None]) / safe[:, None]
    u = rng.random(grid.shape, dtype=np.float32) if uniforms is None else np.asarray(uniforms, np.float32).reshape(grid.shape)
    codes = np.floor(scaled + u)
    codes = np.clip(codes, 0, levels).astype(np.uint8).reshape(-1)[:length]
    chunk_headers = np.stack([lo, step], axis=1).astype("<f4").tobytes()
    if spec.bits == 4:
        if codes.size % 2:
            codes = np.append(codes, np.uint8(0))
        codes = (codes[0::2] | (codes[1::2] << 4)).astype(np.uint8)
    return chunk_headers + codes.tobytes()


@dataclass(frozen=True)
class DecodedUpdate:
    values: np.ndarray  # flat float32, manifest order
    counts: tuple[int, ...]
    codec: str  # the wire name: f32, q8, q4, with +rot, with +sparse (whose F the payload does not carry)
    kept: int = 0  # sparse or top-k: how many coordinates travelled (0 when dense)
    sparse_seed: int = 0  # sparse: the seed the device says its round gave it

    def matches(self, spec: CodecSpec) -> bool:
        """Whether this is an update in ``spec``'s codec (with its kept count when sparse)."""
        return self.codec == spec.wire_name and (not (spec.sparse or spec.topk)
                                                 or self.kept == spec.kept(sum(self.counts)))


def decode(payload: bytes, expected_counts: list[int] | None = None,
           sparse_seed: int | None = None, expected: CodecSpec | None = None) -> DecodedUpdate:
    """Decode and validate a payload; with ``expected_counts`` the tensor sizes must match,
    with ``sparse_seed`` a sparse payload must be on that seed's subset, with ``expected`` its
    codec, chunk size and kept count must be the plan's ("wrong_codec"). Every header field is
    checked and the payload's size compared with what the header implies before any work that
    grows with what the header claims (a subset, a chunk's transform): a hostile header costs
    microseconds."""
    data = memoryview(payload)
    if len(data) < _HEADER.size:
        raise ProtocolError("update payload is shorter than its header", "bad_payload")
    magic, version, codec_id, flags, reserved, t, chunk, rot_seed = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise ProtocolError("update payload has a bad magic number (expected FEDU)", "bad_payload")
    if version != FORMAT_VERSION:
        raise ProtocolError(f"unsupported update format version {version}", "bad_payload")
    if codec_id not in _CODEC_BITS or reserved or flags & ~(FLAG_ROTATE | FLAG_SPARSE | FLAG_TOPK):
        raise ProtocolError("update payload has an unknown codec or flags", "bad_payload")
    rotate, is_sparse, is_topk = bool(flags & FLAG_ROTATE), bool(flags & FLAG_SPARSE), bool(flags & FLAG_TOPK)
    if is_topk and (rotate or is_sparse):
        raise ProtocolError("update payload has an unknown codec or flags", "bad_payload")
    table = _HEADER.size + 4 * t + (_SPARSE.size if is_sparse else 0) + (4 if is_topk else 0)
    if t > 1 << 16 or len(data) < table:
        raise ProtocolError("update payload tensor table is truncated", "bad_payload")
    counts = struct.unpack_from(f"<{t}I", data, _HEADER.size)
    if expected_counts is not None and list(counts) != list(expected_counts):
        raise ProtocolError(
            f"update tensor sizes {list(counts)[:8]} do not match the model's {list(expected_counts)[:8]}",
            "shape_mismatch",
        )
    n = sum(counts)
    kind = {0: "f32", 1: "q8", 2: "q4"}[codec_id]
    if kind == "f32" and rotate:
        raise ProtocolError("update payload has an unknown codec or flags", "bad_payload")
    if kind != "f32" and (chunk < 1 or chunk > 1 << 20 or (rotate and chunk & (chunk - 1))):
        raise ProtocolError("update payload has a bad chunk size", "bad_payload")
    spec = CodecSpec(kind, rotate, chunk if kind != "f32" else DEFAULT_CHUNK)
    name = kind + ("+rot" if rotate else "") + ("+sparse" if is_sparse else "") + ("+topk" if is_topk else "")
    length = spec.coded_length(n)
    expected_seed = sparse_seed
    sparse_seed, kept = _SPARSE.unpack_from(data, _HEADER.size + 4 * t) if is_sparse else (0, length)
    body = _HEADER.size + 4 * t + (_SPARSE.size if is_sparse else 0)
    if is_topk:
        (kept,) = struct.unpack_from("<I", data, body)
    if expected is not None:
        _check_plan(expected, name, chunk, kept if is_sparse or is_topk else 0, n)
    if is_sparse and expected_seed is not None and sparse_seed != expected_seed:
        raise ProtocolError("the sparse update's seed is not its round's: its coordinates would not line up with "
                            "the other devices'", "wrong_seed")
    if (is_sparse or is_topk) and not 0 < kept <= length:
        raise ProtocolError(f"a {name} update keeps {kept} of {length} coordinates", "bad_payload")
    if is_topk:
        body += 4 + 4 * kept
    if kind == "f32":
        size = body + 4 * kept
    else:
        codes = kept if spec.bits == 8 else -(-kept // 2)
        size = body + 8 * -(-kept // chunk) + codes
    if len(data) != size:
        raise ProtocolError(f"{kind} update is {len(data)} bytes, expected {size}", "bad_payload")
    if is_sparse:
        positions = sparse.kept_positions(sparse_seed, length, kept)  # refuses a zero seed
    if is_topk:
        positions = np.frombuffer(data, "<u4", count=kept, offset=body - 4 * kept).astype(np.int64)
        if positions[-1] >= length or (kept > 1 and np.any(np.diff(positions) <= 0)):
            raise ProtocolError("a top-k update's indices must increase strictly and stay below the update's "
                                "length", "bad_payload")
    if kind == "f32":
        values = np.frombuffer(data, "<f4", count=kept, offset=body).astype(np.float32)
    else:
        values = _dequantize(data, body, kept, chunk, spec.bits)
    if is_sparse or is_topk:
        full = np.zeros(length, np.float32)
        full[positions] = values * np.float32(length / kept) if is_sparse else values
        values = full
    if rotate:
        values = hadamard_chunks(values.astype(np.float32), chunk) * rotation_signs(rot_seed, length)
    values = values[:n].astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise ProtocolError("update has non-finite values", "non_finite")
    return DecodedUpdate(values, tuple(counts), name, kept if is_sparse or is_topk else 0, sparse_seed)


def _check_plan(spec: CodecSpec, name: str, chunk: int, kept: int, num_values: int) -> None:
    """The header against the task's plan: codec and flags, chunk size, kept count."""
    want_kept = spec.kept(num_values) if spec.sparse or spec.topk else 0
    if name != spec.wire_name or kept != want_kept or (spec.kind != "f32" and chunk != spec.chunk_size):
        shown = f"{name}{f' keeping {kept} coordinates' if kept else ''}{f', chunk {chunk}' if spec.kind != 'f32' else ''}"
        wanted = (f"{spec.name}{f' keeping {want_kept} coordinates' if want_kept else ''}"
                  f"{f', chunk {spec.chunk_size}' if spec.kind != 'f32' else ''}")
        raise ProtocolError(f"update uses codec {shown}; this task expects {wanted}", "wrong_codec")


def _dequantize(data: memoryview, pos: int, length: int, chunk: int, bits: int) -> np.ndarray:
    k = -(-length // chunk)
    heads = np.frombuffer(data, "<f4", count=2 * k, offset=pos).reshape(k, 2)
    pos += 8 * k
    raw = np.frombuffer(data, np.uint8, offset=pos)
    if bits == 4:
        codes = np.empty(raw.size * 2, np.uint8)
        codes[0::2], codes[1::2] = raw & 0x0F, raw >> 4
        codes = codes[:length]
    else:
        codes = raw[:length]
    # Per chunk: min + code * step, as one broadcast over a (chunks, chunk) view (gathering
    # each value's chunk header by index cost 4x as much).
    grid = np.zeros(k * chunk, np.float32)
    grid[:length] = codes
    grid = grid.reshape(k, chunk)
    grid *= heads[:, 1:2]
    grid += heads[:, 0:1]
    return grid.reshape(-1)[:length]
