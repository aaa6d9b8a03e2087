"""Who shares keys and masks with whom.

SecAgg (Bonawitz et al.) pairs every device with every other: degree n - 1. SecAgg+
(Bell et al. 2020) uses a random Harary graph H(n, k): the devices are placed on a ring
in a random order and each is joined to the k/2 nearest on either side, so each device
does O(k) = O(log n) work instead of O(n). The order is the devices' indices sorted by
SHA-256(graph_seed || index u32 LE), which every participant computes the same way.
"""

from __future__ import annotations

import hashlib
import math
import struct

from protocol.errors import ProtocolError


def auto_degree(n: int) -> int:
    """SecAgg+ default: the smallest even degree >= 3 log2(n), at most n - 1."""
    if n < 2:
        return 0
    k = 2 * math.ceil(1.5 * math.log2(n))
    return min(n - 1, k)


def neighbours(n: int, degree: int, graph_seed: bytes) -> dict[int, frozenset[int]]:
    """Neighbours of each index 1..n (never itself)."""
    if n < 1 or degree < 1:
        raise ProtocolError("a SecAgg graph needs n >= 1 and degree >= 1", "bad_params")
    nodes = range(1, n + 1)
    half = -(-degree // 2)  # an odd degree is rounded up
    if 2 * half >= n - 1:
        return {u: frozenset(v for v in nodes if v != u) for u in nodes}
    order = sorted(nodes, key=lambda i: hashlib.sha256(graph_seed + struct.pack("<I", i)).digest())
    out = {}
    for pos, u in enumerate(order):
        out[u] = frozenset(order[(pos + d) % n] for d in range(-half, half + 1) if d)
    return out


def effective_degree(n: int, degree: int) -> int:
    half = -(-degree // 2)
    return n - 1 if 2 * half >= n - 1 else 2 * half
