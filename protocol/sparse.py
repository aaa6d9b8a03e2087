"""Round-shared random subsets for sparse uploads (the codecs' ``+sparse:F``).

Every device of a round keeps the same coordinates, chosen from a seed the round shares,
so the coordinator can add their updates coordinate by coordinate and secure aggregation's
masked sums stay aligned (a per-device subset would need indices on the wire and could
not be masked). The subset is the m positions p of [0, L) with the smallest key w_p, ties
broken by position, listed in increasing order, where w_p is little-endian u32 word p of
the stream SHA-256(b"FEDS" || seed u64 LE || b u32 LE) for b = 0, 1, ... (8 words a block).
Keeping the kept coordinates scaled by L / m makes the decoded update unbiased over the
seed; every round has a seed of its own (`round_seed`, derived from the task and round).
"""

from __future__ import annotations

import functools
import hashlib
import math
import struct

import numpy as np

from protocol.errors import ProtocolError

_DOMAIN = b"FEDS"


def kept_count(fraction: float, length: int) -> int:
    """m for a vector of L coordinates: ceil(F L), at least 1 and at most L."""
    return max(1, min(length, math.ceil(fraction * length))) if length else 0


def _keys(seed: int, length: int) -> np.ndarray:
    blocks = -(-length // 8)
    prefix = _DOMAIN + struct.pack("<Q", seed)
    stream = b"".join(hashlib.sha256(prefix + struct.pack("<I", b)).digest() for b in range(blocks))
    return np.frombuffer(stream, "<u4", count=length)


@functools.lru_cache(maxsize=16)
def _positions(seed: int, length: int, kept: int) -> np.ndarray:
    order = np.argsort(_keys(seed, length), kind="stable")[:kept]
    positions = np.sort(order).astype(np.int64)
    positions.setflags(write=False)
    return positions


def kept_positions(seed: int, length: int, kept: int) -> np.ndarray:
    """The m kept positions of [0, L), increasing (cached: a round's uploads share them)."""
    if not 0 < seed < 2**64:
        raise ProtocolError("a sparse update needs the round's non-zero seed", "bad_payload")
    if not 0 < kept <= length:
        raise ProtocolError(f"a sparse update keeps {kept} of {length} coordinates", "bad_payload")
    return _positions(int(seed), int(length), int(kept))


def round_seed(task_id: str, round_num: int) -> int:
    """The seed a task's round (or asynchronous version) shares: derived, not drawn, so every
    coordinator replica hands out and checks the same one without storing it."""
    digest = hashlib.sha256(b"fedge-sparse-seed\0" + task_id.encode("utf-8") + b"\0"
                            + struct.pack("<Q", round_num)).digest()
    return (int.from_bytes(digest[:8], "little") & (2**53 - 1)) or 1  # exact in any JSON parser
