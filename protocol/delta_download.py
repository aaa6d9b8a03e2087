"""Delta downloads: a device that holds an earlier checkpoint download of a task fetches only
the quantized difference to the current checkpoint.

The coordinator encodes ``current - base`` (base: the values the device decoded from the blob
it holds) in the task's ``download_delta_codec`` (q4+rot, q8, ...); the device adds the
decoded delta to the base's values. The difference of two nearby checkpoints spans a far
smaller range than the weights, so a 4-bit delta errs less than an 8-bit checkpoint. The
result is the current checkpoint within the delta's quantization error (bounded per chunk by
its scale), so nothing downstream needs to know a delta was used. The device keeps its base
(a full download) rather than the reconstruction, so errors never chain from one delta to the
next; when the base grows too old, the coordinator offers no delta and the device downloads
the checkpoint in full (and that becomes its base).
"""

from __future__ import annotations

import hashlib

import numpy as np

from protocol import codec
from protocol.errors import ProtocolError


def served_seed(*parts: str) -> int:
    """The rounding and rotation seed of a blob the coordinator serves (a quantized checkpoint,
    a delta): a pure function of what it is made from, so every replica makes the same bytes
    under the same digest."""
    return int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:8], "little")


def delta_seed(base_sha: str, target_sha: str, codec_name: str) -> int:
    return served_seed(base_sha, target_sha, codec_name)


def encode_served(values: np.ndarray, counts, spec: codec.CodecSpec, seed: int) -> bytes:
    """``values`` (flat, tensors of ``counts``) in ``spec``, rounding and rotation from ``seed``."""
    arrays = codec.unflatten(np.asarray(values, np.float32), [(n,) for n in counts])
    return codec.encode(arrays, spec, np.random.default_rng(seed), seed=(seed >> 1) | 1 if spec.rotate else None)


def make_delta(base: bytes, target: bytes, spec: codec.CodecSpec, seed: int) -> bytes:
    """The payload a device holding ``base`` adds to reach ``target`` (both FEDU payloads)."""
    b, t = codec.decode(base), codec.decode(target)
    if b.counts != t.counts:
        raise ValueError("base and target checkpoints have different tensor sizes")
    return encode_served(t.values - b.values, t.counts, spec, seed)


def apply_delta(base: bytes, delta: bytes) -> codec.DecodedUpdate:
    """The checkpoint (flat float32 values and tensor sizes): the base's values plus the
    delta's. A delta for other tensor sizes is refused (``shape_mismatch``), never broadcast."""
    b = codec.decode(base)
    d = codec.decode(delta, list(b.counts))
    if d.kept:
        raise ProtocolError("a checkpoint delta is dense: sparse or top-k deltas are not applied", "bad_payload")
    return codec.DecodedUpdate((b.values + d.values).astype(np.float32), b.counts, "f32")
