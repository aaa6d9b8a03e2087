"""The coordinator's side of SecAgg: what each phase must contain, and the unmasking.

The coordinator only ever sees public keys, sealed shares it cannot open, masked inputs,
and - in the last phase - the shares that remove the masks from the *sum*. Each device
is asked for b-shares of survivors or s_sk-shares of dropped devices, never both for
the same owner, so no individual input can be unmasked.
"""

from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Mapping, Sequence

import numpy as np

from protocol import sparse
from protocol.errors import ProtocolError
from protocol.secagg import crypto, graph, prg, shamir
from protocol.secagg.client import pairwise_sign
from protocol.secagg.messages import MASK_KEY, SELF_MASK, EncryptedShare, PublicKeys, RevealedShare, SecAggParams


class BelowThreshold(ProtocolError):
    def __init__(self, message: str):
        super().__init__(message, "below_threshold")


def round_graph(params: SecAggParams) -> dict[int, frozenset[int]]:
    return graph.neighbours(params.n, params.degree, params.graph_seed)


def check_shares(sender: int, shares: Sequence[EncryptedShare], neighbours: frozenset[int]) -> None:
    """A ShareKeys message holds one sealed share for each of the sender's neighbours, from the sender."""
    receivers = [s.receiver for s in shares]
    if any(s.sender != sender for s in shares) or sorted(receivers) != sorted(neighbours):
        raise ProtocolError("shares must come from you and go once to each of your neighbours", "bad_shares")


def expected_reveals(responder: int, neighbours: frozenset[int], sharers: Iterable[int],
                     survivors: Iterable[int]) -> set[tuple[int, str]]:
    """(owner, kind) pairs a responder must reveal: one per neighbour that shared keys, and its own self-mask."""
    alive = set(survivors)
    return {(v, SELF_MASK if v in alive else MASK_KEY) for v in (neighbours | {responder}) & set(sharers)}


def check_reveals(responder: int, shares: Sequence[RevealedShare], neighbours: frozenset[int],
                  sharers: Iterable[int], survivors: Iterable[int]) -> None:
    got = [(s.owner, s.kind) for s in shares]
    if len(set(got)) != len(got) or set(got) != expected_reveals(responder, neighbours, sharers, survivors):
        raise ProtocolError("reveal exactly the self-mask shares of surviving neighbours and the mask-key shares "
                            "of dropped neighbours", "bad_reveal")
    for s in shares:
        shamir.share_from_bytes(s.share)


def unmask_sum(masked_sum: np.ndarray, params: SecAggParams, keys: Mapping[int, PublicKeys],
               sharers: Iterable[int], survivors: Iterable[int],
               reveals: Mapping[int, Sequence[RevealedShare]], context: bytes) -> np.ndarray:
    """The sum of the survivors' codes mod 2^k, from the sum of their masked inputs.

    Raises `BelowThreshold` (nothing is unmasked) unless every needed secret has at least
    t shares among the responders.
    """
    g = round_graph(params)
    alive = set(survivors)
    dropped = set(sharers) - alive
    collected: dict[tuple[int, str], dict[int, int]] = defaultdict(dict)
    for responder, shares in reveals.items():
        for s in shares:
            collected[(s.owner, s.kind)][responder] = shamir.share_from_bytes(s.share)
    short = [(v, kind) for v, kind in [(v, SELF_MASK) for v in alive] + [(v, MASK_KEY) for v in dropped]
             if len(collected[(v, kind)]) < params.threshold]
    if short:
        v, kind = short[0]
        raise BelowThreshold(f"{len(short)} secret(s) lack shares: device {v}'s {kind} has "
                             f"{len(collected[(v, kind)])}, threshold {params.threshold}")
    rebuild = shamir.Reconstructor(params.threshold)
    # Every mask to take out: survivors' self masks, and for each dropped device v the pairwise
    # masks its surviving neighbours u added with sign(u, v) (subtracted back when +).
    removals: list[tuple[bytes, bool]] = [(rebuild(collected[(v, SELF_MASK)]), True) for v in sorted(alive)]
    for v in sorted(dropped):
        s_sk = rebuild(collected[(v, MASK_KEY)])
        if crypto.public_of(s_sk) != keys[v].s_public:
            raise ProtocolError(f"the shares of device {v}'s mask key rebuild a different key", "bad_share")
        for u in sorted(g[v] & alive):
            seed = crypto.agree(s_sk, keys[u].s_public, context, crypto.PURPOSE_MASK)
            removals.append((seed, pairwise_sign(u, v) > 0))
    masks = _sum_masks(removals, params.vector_length)
    total = np.asarray(masked_sum, np.uint64) - masks.astype(np.uint64)
    return total & np.uint64((1 << params.modulus_bits) - 1)


UNMASK_WORKERS = max(1, min(8, os.cpu_count() or 1))


def _sum_masks(removals: list[tuple[bytes, bool]], length: int) -> np.ndarray:
    """sum of +-PRG(seed) mod 2^32 (+ for True), over threads: ChaCha20 through `cryptography`
    and numpy's in-place arithmetic both release the GIL on buffers this size, so each core
    expands its share of the seeds into a running sum of its own (prg.MaskSum)."""
    workers = min(UNMASK_WORKERS, max(1, len(removals) // 4))

    def run(part: list[tuple[bytes, bool]]) -> np.ndarray:
        acc = prg.MaskSum(length)
        for seed, positive in part:
            (acc.add if positive else acc.subtract)(seed)
        return acc.total

    if workers == 1:
        return run(removals)
    with ThreadPoolExecutor(workers, thread_name_prefix="fedge-unmask") as pool:
        parts = list(pool.map(run, [removals[i::workers] for i in range(workers)]))
    total = parts[0]
    for part in parts[1:]:
        np.add(total, part, out=total)
    return total


def choose_params(n: int, *, plus: bool, threshold_fraction: float, degree: int, quant_bits: int, clip_norm: float,
                  num_values: int, rotation_seed: int, graph_seed: bytes, extra: int = 0,
                  dp_noise_multiplier: float = 0.0, dp_min_survivors: int = 0,
                  sparse_fraction: float = 0.0, dp_count_stddev: float = 0.0) -> SecAggParams:
    """Round parameters once the roster of n devices is known.

    Degree: n - 1 (SecAgg) or ``degree`` / `graph.auto_degree` (SecAgg+). A secret has
    degree + 1 holders (the neighbours and its owner); threshold: more than
    ``threshold_fraction`` of them, at least 2: with the default 1/2 an honest-but-curious
    coordinator needs a majority of a device's neighbourhood to collude with it to unmask
    that device.

    With ``dp_noise_multiplier`` > 0 (distributed DP), each device adds discrete Gaussian noise
    calibrated so that ``dp_min_survivors`` devices' noise sums to z times the sensitivity, and
    the modulus makes room for it (`protocol.secagg.distributed_dp`).

    With adaptive clipping (``extra`` 1, the clip bit) under distributed DP, each device also
    noises its bit so that ``dp_min_survivors`` bits carry ``dp_count_stddev`` of noise.

    With ``sparse_fraction`` F, only m = ceil(F L) of the L rotated codes are masked and
    summed (the codec's ``+sparse:F``; not with distributed DP).
    """
    from protocol.secagg import ring

    if n < 3:
        raise BelowThreshold(f"secure aggregation needs at least 3 devices, got {n}")
    d = graph.effective_degree(n, (degree or graph.auto_degree(n)) if plus else n - 1)
    t = min(d + 1, max(2, int(threshold_fraction * (d + 1)) + 1))
    length = ring.padded_length(num_values)
    if dp_noise_multiplier > 0:
        from protocol.secagg import distributed_dp

        survivors = max(1, dp_min_survivors)
        noise = distributed_dp.plan(dp_noise_multiplier, clip_norm, quant_bits, num_values, survivors)
        count = distributed_dp.count_variance(dp_count_stddev, survivors) if extra else 0.0
        return SecAggParams(n, d, t, quant_bits, distributed_dp.modulus_bits(n, quant_bits, noise.variance, count),
                            noise.value_range, num_values, length, rotation_seed, graph_seed, extra,
                            dp_variance=noise.variance, dp_bound=noise.bound, dp_count_variance=count)
    bits = ring.modulus_bits(quant_bits, n)
    if bits > 32:
        raise ProtocolError(f"{quant_bits}-bit codes for {n} devices need more than 32 bits", "bad_params")
    kept = sparse.kept_count(sparse_fraction, length) if sparse_fraction else 0
    return SecAggParams(n, d, t, quant_bits, bits, ring.value_range(clip_norm, length), num_values, length,
                        rotation_seed, graph_seed, extra, kept=kept)
