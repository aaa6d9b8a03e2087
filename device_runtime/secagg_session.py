"""The device's SecAgg round over HTTP: the phases of `protocol.secagg.client`, in order,
each after the coordinator has closed the one before (long-polled, not busy-polled).

Training runs in parallel with the key phases (it needs no keys), so SecAgg adds little
to a round's wall time; the update is put on the round's grid and masked once the
coordinator says who shared keys.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import numpy as np

from device_runtime.client import CoordinatorClient
from device_runtime.training import LocalResult
from protocol.messages import Assignment, UploadMeta
from protocol.secagg import distributed_dp, ring
from protocol.secagg.client import SecAggClient
from protocol.secagg.messages import SecAggView, round_context

PHASES = ("advertise", "share", "masked_input", "unmask")


@dataclass
class SecAggOutcome:
    outcome: str  # uploaded | dropped | excluded | failed
    detail: str = ""
    payload_bytes: int = 0
    result: LocalResult | None = None


async def run_secagg_round(client: CoordinatorClient, a: Assignment, train: Callable[[], Awaitable[LocalResult]],
                           rng: np.random.Generator, drop_at: str = "", long_poll_s: float = 10.0,
                           clock: Callable[[], float] = time.time, min_dp_noise: float = 0.0,
                           spend: Callable[[LocalResult], dict] = lambda result: {}) -> SecAggOutcome:
    """One round; ``drop_at`` (a phase name) emulates a device vanishing before sending that phase;
    ``spend(result)`` records its DP-SGD steps as its masked input leaves (the upload's fields);
    ``min_dp_noise`` > 0: refuse (before sharing keys) a round whose devices' noise adds up to
    less than that many times the sensitivity (`distributed_dp.check_noise_floor`)."""
    proto = SecAggClient(round_context(a.task_id, a.round))

    async def wait_past(*states: str) -> SecAggView:
        view = await client.secagg_view(a, wait_s=0.0)
        while view.state in states:
            view = await client.secagg_view(a, since=view.state, wait_s=long_poll_s)
        return view

    if drop_at == "advertise":
        return SecAggOutcome("dropped", "before advertising keys")
    await client.secagg_post(a, "keys", proto.public_keys().to_dict())
    training = asyncio.ensure_future(train())
    try:
        view = await wait_past("selecting", "advertising")
        if view.params is None or not view.my_index:
            return SecAggOutcome("excluded", view.reason or f"not in the roster ({view.state})")
        distributed_dp.check_noise_floor(view.params, len(view.keys), min_dp_noise)
        if drop_at == "share":
            return SecAggOutcome("dropped", "before sharing keys")
        shares = proto.share_keys(view.my_index, view.params, view.keys)
        await client.secagg_post(a, "shares", {"shares": [s.to_dict() for s in shares]})
        result = await training
    finally:
        if not training.done():
            training.cancel()
    view = await wait_past("sharing")
    if view.state != "reporting":
        return SecAggOutcome("failed", view.reason or view.state, result=result)
    if drop_at == "masked_input" or clock() > a.report_deadline:
        return SecAggOutcome("dropped", "before sending the masked input", result=result)
    p = view.params
    # Exact sampling of distributed DP's noise costs ~60 us a coordinate: off the event loop,
    # which other devices share.
    codes = (await asyncio.to_thread(input_codes, result, p, rng) if p.distributed_dp
             else input_codes(result, p, rng))
    payload = ring.pack(proto.masked_input(codes, view.sharers, view.inbox), p.modulus_bits)
    await client.upload(a, payload, UploadMeta(result.example_count, result.train_loss, result.eval_loss,
                                               result.eval_accuracy, result.eval_count, **spend(result)))
    view = await wait_past("reporting")
    if drop_at == "unmask":
        return SecAggOutcome("dropped", "after the masked input, before unmasking", len(payload), result)
    if view.state == "unmasking" and view.unmask is not None:
        reveals = proto.unmask(view.unmask)
        await client.secagg_post(a, "reveals", {"shares": [s.to_dict() for s in reveals]})
    return SecAggOutcome("uploaded", f"{len(payload)} bytes masked", len(payload), result)


def input_codes(result: LocalResult, p, rng: np.random.Generator) -> np.ndarray:
    """The device's input to the masked sum, before masking: its clipped delta on the round's
    grid (with its share of distributed DP's noise, or only the round's sparse subset), and the
    adaptive-clipping bit when the round asks for it. ``p``: the round's SecAggParams."""
    if p.distributed_dp:  # its share of the noise, on the grid, before masking: the server never sees less
        codes = distributed_dp.encode(result.delta, p.quant_bits, p.modulus_bits, p.value_range, p.rotation_seed,
                                      p.dp_bound, rng.random, distributed_dp.os_noise(p.dp_variance))
    else:
        codes = ring.quantize(result.delta, p.quant_bits, p.value_range, p.rotation_seed, rng)
        codes = ring.keep(codes, p.length, p.kept, p.rotation_seed)  # sparse: the round's subset only
    if p.extra:  # the adaptive-clipping bit travels masked, summed with everyone else's
        bit = int(result.below_clip)
        if p.distributed_dp:  # with its own noise: nobody unmasks a noise-free count either
            noise = int(distributed_dp.os_noise(p.dp_count_variance)(1)[0])
            bit = distributed_dp.encode_bit(result.below_clip, p.modulus_bits, noise)
        codes = np.concatenate([codes, np.array([bit], np.uint32)])
    return codes
