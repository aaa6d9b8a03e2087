"""The whole protocol in one process: n clients and the server's steps, with devices
dropping out at chosen phases. Used by the tests and by bench/secagg_bench.py; the
coordinator and the device runtime run the same steps over HTTP."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from protocol import dp
from protocol.secagg import ring, server
from protocol.secagg.client import SecAggClient
from protocol.secagg.messages import SecAggParams, UnmaskRequest

PHASES = ("advertise", "share", "masked_input", "unmask")


@dataclass
class SimulationResult:
    params: SecAggParams
    survivors: list[int]
    unmasked: np.ndarray | None  # None when the round failed
    expected: np.ndarray  # plain sum of the survivors' codes mod 2^k
    failure: str = ""
    verified: bool = True  # False when only some clients masked for real (timing runs)
    client_s: dict[str, float] = field(default_factory=dict)  # per-client seconds, by phase (mean)
    server_s: float = 0.0
    bytes_up: dict[str, int] = field(default_factory=dict)  # per client, by phase (mean)
    masked: dict[int, np.ndarray] = field(default_factory=dict)


def simulate(n: int, num_values: int, *, drop: dict[str, float] | None = None, plus: bool = False,
             threshold_fraction: float = 0.5, degree: int = 0, quant_bits: int = 8, seed: int = 0,
             context: bytes = b"sim|1", timed_clients: int | None = None,
             dp_noise_multiplier: float = 0.0, sparse_fraction: float = 0.0) -> SimulationResult:
    """``drop[phase]`` is the fraction of the still-active devices that vanish *before* sending that phase.

    With ``timed_clients`` only that many clients compute real masks (the others send random
    vectors of the right shape), so large n x d runs measure client and server time without
    paying n full clients; the unmasked sum is then not checked.

    With ``sparse_fraction`` F only the round's kept m = ceil(F L) codes are masked and
    summed (the codec's ``+sparse:F``).

    With ``dp_noise_multiplier`` the round uses distributed DP (noise calibrated for n / 2
    survivors): each timed client encodes a random update at the clip with its noise
    (`protocol.secagg.distributed_dp`, timed as the "encode" phase) instead of drawing codes.
    """
    rng = np.random.default_rng(seed)
    drop = drop or {}
    clients = {i: SecAggClient(context) for i in range(1, n + 1)}
    clock: dict[str, float] = {p: 0.0 for p in (*PHASES, "encode")}
    sent: dict[str, int] = {p: 0 for p in (*PHASES, "encode")}

    def vanish(active: list[int], phase: str) -> list[int]:
        k = int(round(drop.get(phase, 0.0) * len(active)))
        gone = set(rng.choice(active, k, replace=False).tolist()) if k else set()
        return [i for i in active if i not in gone]

    active = vanish(list(clients), "advertise")
    keys = {}
    for new_index, i in enumerate(active, start=1):  # the roster renumbers those that advertised
        keys[new_index] = clients[i].public_keys()
    clients = {new: clients[old] for new, old in enumerate(active, start=1)}
    sent["advertise"] = 64 * n
    params = server.choose_params(len(clients), plus=plus, threshold_fraction=threshold_fraction, degree=degree,
                                  quant_bits=quant_bits, clip_norm=1.0, num_values=num_values,
                                  rotation_seed=seed + 1, graph_seed=rng.bytes(32),
                                  dp_noise_multiplier=dp_noise_multiplier, dp_min_survivors=max(1, n // 2),
                                  sparse_fraction=sparse_fraction)
    g = server.round_graph(params)
    code_bits = params.modulus_bits if params.distributed_dp else quant_bits
    codes = {i: rng.integers(0, 1 << code_bits, params.vector_length, dtype=np.uint32) for i in clients}
    if params.distributed_dp:
        from protocol.secagg import distributed_dp

        noise = distributed_dp.os_noise(params.dp_variance)
        for i in list(clients)[: timed_clients if timed_clients is not None else len(clients)]:
            update = rng.normal(0.0, 1.0, num_values).astype(np.float32)
            update /= np.float32(dp.l2_norm(update))  # at the clip (1.0)
            t0 = time.perf_counter()
            codes[i] = distributed_dp.encode(update, quant_bits, params.modulus_bits, params.value_range,
                                             params.rotation_seed, params.dp_bound, rng.random, noise)
            clock["encode"] += time.perf_counter() - t0
            sent["encode"] += 1

    active = vanish(list(clients), "share")
    outbox = {}
    for i in active:
        t0 = time.perf_counter()
        outbox[i] = clients[i].share_keys(i, params, keys)
        clock["share"] += time.perf_counter() - t0
        server.check_shares(i, outbox[i], g[i])
        sent["share"] += sum(len(s.ciphertext) + 8 for s in outbox[i])
    sharers = sorted(active)

    active = vanish(active, "masked_input")
    masked = {}
    inboxes: dict[int, list] = {i: [] for i in active}
    for j in sharers:
        for s in outbox[j]:
            if s.receiver in inboxes:
                inboxes[s.receiver].append(s)
    timed = set(active[:timed_clients]) if timed_clients is not None else set(active)
    for i in active:
        t0 = time.perf_counter()
        clients[i].receive_shares(sharers, inboxes[i])
        if i in timed:
            masked[i] = clients[i].mask(codes[i])
            clock["masked_input"] += time.perf_counter() - t0
        else:
            masked[i] = rng.integers(0, 1 << params.modulus_bits, params.vector_length, dtype=np.uint32)
    survivors = sorted(active)
    mod_mask = np.uint64((1 << params.modulus_bits) - 1)
    expected = np.zeros(params.vector_length, np.uint64)
    for i in survivors:
        expected += codes[i]
    expected &= mod_mask
    result = SimulationResult(params, survivors, None, expected, masked=masked, verified=timed >= set(survivors))
    if len(survivors) < params.threshold:
        result.failure = f"{len(survivors)} masked inputs, threshold {params.threshold}"
        return result

    request = UnmaskRequest(tuple(survivors), tuple(sorted(set(sharers) - set(survivors))))
    reveals = {}
    for i in vanish(survivors, "unmask"):
        t0 = time.perf_counter()
        reveals[i] = clients[i].unmask(request)
        clock["unmask"] += time.perf_counter() - t0
        server.check_reveals(i, reveals[i], g[i], sharers, survivors)
        sent["unmask"] += 80 * len(reveals[i])

    t0 = time.perf_counter()
    total = np.zeros(params.vector_length, np.uint64)
    for y in masked.values():
        total += y
    try:
        result.unmasked = server.unmask_sum(total, params, keys, sharers, survivors, reveals, context)
    except server.BelowThreshold as exc:
        result.failure = str(exc)
    result.server_s = time.perf_counter() - t0
    counts = {"advertise": n, "share": len(sharers), "masked_input": len(timed & set(survivors)),
              "unmask": len(reveals)}
    result.client_s = {p: clock[p] / max(1, counts[p]) for p in PHASES}
    result.client_s["encode"] = clock["encode"] / max(1, sent["encode"])
    result.bytes_up = {p: sent[p] // max(1, counts[p]) for p in PHASES}
    result.bytes_up["masked_input"] = ring.packed_size(params.modulus_bits, params.vector_length)
    return result
