"""Distributed DP under SecAgg through the coordinator: devices noise their own codes
(protocol.secagg.distributed_dp), the coordinator unmasks only a noised sum, adds nothing,
and records the noise and the epsilon spent."""

import json
import math

import numpy as np
import pytest

from coordinator.aggregation.privacy import task_epsilon
from coordinator.tasks.config import TaskConfig
from protocol.secagg import distributed_dp as ddp
from protocol.secagg import ring
from tests.coordinator.conftest import ADMIN
from tests.coordinator.rounds.test_secagg import _advertise_and_share, _checkpoint, _parties, _state

DDP = {"dp_mode": "distributed", "dp_noise_multiplier": 0.5, "clip_norm": 1.0, "min_reports": 4}


def _update(size: int, rng, norm: float) -> np.ndarray:
    v = rng.normal(0.0, 1.0, size)
    return (v * (norm / np.linalg.norm(v))).astype(np.float32)


async def _noised_round(harness, parties, rng, hostile: int | None = None, bits: list[int] | None = None):
    """One round; with ``bits`` (adaptive clipping), each device's clip bit plus its N_Z noise
    in the extra slot; returns each device's codes (and its bit's noised code last)."""
    await _advertise_and_share(harness, parties)
    codes = {}
    for i, party in enumerate(parties):
        v = await party.refresh()
        p = v.params
        if i == hostile:  # any ring element: the largest centred value everywhere
            codes[i] = np.full(p.vector_length, (1 << (p.modulus_bits - 1)) - 1, np.uint32)
        else:
            codes[i] = ddp.encode(_update(p.num_values, rng, 0.9), p.quant_bits, p.modulus_bits, p.value_range,
                                  p.rotation_seed, p.dp_bound, rng.random, ddp.os_noise(p.dp_variance))
            if bits is not None:
                noise = int(ddp.os_noise(p.dp_count_variance)(1)[0])
                codes[i] = np.append(codes[i], np.uint32(ddp.encode_bit(bool(bits[i]), p.modulus_bits, noise)))
        party.codes = codes[i]
        body = ring.pack(party.proto.masked_input(codes[i], v.sharers, v.inbox), p.modulus_bits)
        resp = await harness.upload(party.headers, party.a, body)
        assert resp.status == 201, await resp.text()
    harness.tick()
    for party in parties:
        await party.unmask()
    harness.tick()
    return codes


async def test_the_committed_mean_is_the_devices_noised_sum_and_epsilon_is_recorded(harness):
    parties = await _parties(harness, n=5, **DDP)
    before = await _checkpoint(harness)
    codes = await _noised_round(harness, parties, np.random.default_rng(3))
    p = parties[0].view.params
    assert p.distributed_dp and p.dp_variance >= 1 and p.extra == 0
    assert parties[0].a["plan"]["report_clip_bit"] is False
    rnd = await _state(harness)
    assert rnd["state"] == "committed", rnd["reason"]
    total = np.sum([c.astype(np.uint64) for c in codes.values()], axis=0) & np.uint64((1 << p.modulus_bits) - 1)
    expected = ddp.decode_sum(total, 5, p.num_values, p.quant_bits, p.modulus_bits, p.value_range, p.dp_variance,
                              p.rotation_seed) / 5
    after = await _checkpoint(harness)
    # Nothing added by the coordinator: the new weights are the old plus the devices' noised mean.
    assert np.allclose(after - before, expected, atol=1e-6)
    m = rnd["metrics"]
    cfg = TaskConfig.from_dict({"goal_count": 5, "over_selection": 1.0, "secagg": "secagg", **DDP})
    assert m["epsilon"] == pytest.approx(task_epsilon(cfg, p.num_values, 1, 1.0))
    assert 0 < m["epsilon"] < math.inf and m["dp_device_variance"] == p.dp_variance
    # The ring as used: the bits the centred sum needed (it did not wrap), and bits on the wire.
    signed = np.mod(total.astype(np.int64) + (1 << (p.modulus_bits - 1)), 1 << p.modulus_bits) - (1 << (p.modulus_bits - 1))
    assert m["secagg_modulus_bits"] == p.modulus_bits
    assert m["secagg_sum_bits"] == (2 * int(np.abs(signed).max()) + 1).bit_length() <= p.modulus_bits
    assert m["secagg_wire_bits_per_value"] == pytest.approx(p.modulus_bits * p.length / p.num_values)
    # z times the clip, for the 4 survivors the noise is calibrated for (min_reports).
    assert m["dp_noise_stddev"] == pytest.approx(0.5 * p.dp_bound * (2 * p.value_range / 255), rel=1e-3)


async def test_a_hostile_ring_element_moves_the_mean_by_a_bounded_amount(harness):
    parties = await _parties(harness, n=5, **DDP)
    before = await _checkpoint(harness)
    await _noised_round(harness, parties, np.random.default_rng(4), hostile=2)
    rnd = await _state(harness)
    assert rnd["state"] == "committed", rnd["reason"]
    p = parties[0].view.params
    step = 2 * p.value_range / ((1 << p.quant_bits) - 1)
    bound = 5 * p.dp_bound * step + 1.5 * math.sqrt(p.length * 5 * p.dp_variance) * step
    moved = float(np.linalg.norm((await _checkpoint(harness)) - before))
    assert moved <= bound / 5 + 1e-4


async def test_adaptive_clipping_follows_the_devices_noised_bits(harness):
    from protocol import dp

    cfg = {**DDP, "dp_target_quantile": 0.5, "dp_clipped_count_stddev": 2.0}
    parties = await _parties(harness, n=5, **cfg)
    assert all(p.a["plan"]["report_clip_bit"] for p in parties)
    bits = [1, 1, 0, 1, 0]
    codes = await _noised_round(harness, parties, np.random.default_rng(5), bits=bits)
    p = parties[0].view.params
    # Each device's bit carries its own share of the count's noise: ceil(2^2 / 4 survivors) = 1.
    assert p.extra == 1 and p.dp_count_variance == ddp.count_variance(2.0, 4) == 1.0
    rnd = await _state(harness)
    assert rnd["state"] == "committed", rnd["reason"]
    k = p.modulus_bits
    slot = int(sum(int(c[-1]) for c in codes.values()) % (1 << k))
    count = ddp.decode_count(slot, 5, k)
    m = rnd["metrics"]
    assert m["dp_below_clip"] == pytest.approx(count / 5)
    assert m["dp_next_clip"] == pytest.approx(dp.next_clip(1.0, count / 5, 0.5, 0.2))
    assert harness.coordinator.tasks["t1"].dp_clip == pytest.approx(m["dp_next_clip"])
    # The bits' release is accounted too: more epsilon than the same noise with a fixed clip.
    with_bits = TaskConfig.from_dict({"goal_count": 5, "over_selection": 1.0, "secagg": "secagg", **cfg})
    fixed = TaskConfig.from_dict({"goal_count": 5, "over_selection": 1.0, "secagg": "secagg", **DDP})
    assert m["epsilon"] == pytest.approx(task_epsilon(with_bits, p.num_values, 1, 1.0))
    assert m["epsilon"] > task_epsilon(fixed, p.num_values, 1, 1.0)
    # The next round's devices are told the new clip, and its grid is sized for it.
    headers = await harness.register()
    a = (await (await harness.checkin(headers)).json())["assignment"]
    assert a["round"] == 2 and a["plan"]["clip_norm"] == pytest.approx(m["dp_next_clip"])


async def test_a_hostile_clip_bit_moves_the_count_by_at_most_the_roster(harness):
    parties = await _parties(harness, n=5, **DDP, dp_target_quantile=0.5, dp_clipped_count_stddev=2.0)
    await _noised_round(harness, parties, np.random.default_rng(6), hostile=1, bits=[0, 0, 0, 0, 0])
    rnd = await _state(harness)
    assert rnd["state"] == "committed", rnd["reason"]
    assert 0.0 <= rnd["metrics"]["dp_below_clip"] <= 1.0


def test_distributed_params_never_carry_a_noise_free_clip_bit():
    from protocol.errors import ProtocolError
    from protocol.secagg.messages import SecAggParams

    good = SecAggParams(5, 4, 3, 8, 20, 0.1, 10, 16, 3, bytes(32), extra=1, dp_variance=4.0, dp_bound=30.0,
                        dp_count_variance=1.0).to_dict()
    assert SecAggParams.from_dict(good).dp_count_variance == 1.0
    for bad in ({**good, "dp_count_variance": 0.0}, {**good, "dp_count_variance": 1.5},
                {**{k: v for k, v in good.items() if k not in ("dp_variance", "dp_bound")}}):
        with pytest.raises(ProtocolError):
            SecAggParams.from_dict(bad)


@pytest.mark.parametrize("config,code", [
    ({"dp_mode": "distributed", "dp_noise_multiplier": 1.0, "clip_norm": 1.0}, "distributed_dp_needs_secagg"),
    ({"dp_mode": "distributed", "secagg": "secagg", "clip_norm": 1.0}, "bad_config"),
    ({**DDP, "secagg": "secagg", "dp_mode": "local"}, "bad_request"),
])
async def test_distributed_dp_settings_are_validated(harness, config, code):
    await harness.client.post("/v1/admin/populations", json={"name": "pop"}, headers=ADMIN)
    resp = await harness.client.post("/v1/admin/models", data=harness.model,
                                     headers={**ADMIN, "Content-Type": "application/octet-stream"})
    sha = (await resp.json())["model_sha256"]
    resp = await harness.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN,
                                     json={"model_sha256": sha, "config": {"goal_count": 5, **config}})
    assert resp.status == 400 and (await resp.json())["error"]["code"] == code, json.dumps(config)


def test_distributed_epsilon_grows_with_rounds_and_falls_with_noise():
    def eps(z, rounds):
        cfg = TaskConfig.from_dict({"goal_count": 10, "secagg": "secagg", "clip_norm": 1.0, "min_reports": 10,
                                    "dp_mode": "distributed", "dp_noise_multiplier": z})
        return task_epsilon(cfg, 2000, rounds, 1.0)

    assert eps(1.0, 10) > eps(1.0, 1) > 0
    assert eps(2.0, 10) < eps(1.0, 10)


async def test_a_target_epsilon_is_calibrated_to_the_smallest_noise_that_meets_it(harness):
    await harness.client.post("/v1/admin/populations", json={"name": "pop"}, headers=ADMIN)
    resp = await harness.client.post("/v1/admin/models", data=harness.model,
                                     headers={**ADMIN, "Content-Type": "application/octet-stream"})
    sha = (await resp.json())["model_sha256"]
    base = {"goal_count": 10, "min_reports": 8, "rounds": 20, "secagg": "secagg", "clip_norm": 1.0,
            "dp_mode": "distributed", "dp_delta": 1e-5}
    resp = await harness.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN,
                                     json={"model_sha256": sha, "task_id": "cal",
                                           "config": {**base, "dp_target_epsilon": 8.0}})
    assert resp.status == 201, await resp.text()
    task = harness.coordinator.tasks["cal"]
    z, size = task.config.dp_noise_multiplier, task.update_size
    assert z > 0.1
    spent = task_epsilon(task.config, size, 20, 1.0)
    lower = TaskConfig.from_dict({**base, "dp_noise_multiplier": z * 0.99})
    assert spent <= 8.0 < task_epsilon(lower, size, 20, 1.0)  # the smallest: 1% less noise spends more
    resp = await harness.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN,
                                     json={"model_sha256": sha, "config": {**base, "dp_target_epsilon": 1e-4}})
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "epsilon_unreachable"


async def test_a_margin_for_dishonest_devices_adds_noise_and_keeps_the_target(harness):
    """dp_honest_fraction h: each device adds enough noise that h of the minimum reports alone
    reach the calibrated total; a device that skips its share (here: 4 of 8) leaves the
    epsilon the task reports intact instead of a (m - k) / m share of the noise."""
    await harness.client.post("/v1/admin/populations", json={"name": "pop"}, headers=ADMIN)
    resp = await harness.client.post("/v1/admin/models", data=harness.model,
                                     headers={**ADMIN, "Content-Type": "application/octet-stream"})
    sha = (await resp.json())["model_sha256"]
    base = {"goal_count": 10, "min_reports": 8, "rounds": 20, "secagg": "secagg", "clip_norm": 1.0,
            "dp_mode": "distributed", "dp_delta": 1e-5, "dp_target_epsilon": 8.0}
    tasks = {}
    for task_id, fraction in (("all-honest", 1.0), ("half-honest", 0.5)):
        resp = await harness.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN, json={
            "model_sha256": sha, "task_id": task_id, "config": {**base, "dp_honest_fraction": fraction}})
        assert resp.status == 201, await resp.text()
        tasks[task_id] = harness.coordinator.tasks[task_id]
    honest, half = tasks["all-honest"].config, tasks["half-honest"].config
    assert (honest.dp_noise_reporters, half.dp_noise_reporters) == (8, 4)
    size = tasks["all-honest"].update_size
    per_device = {k: ddp.plan(t.config.dp_noise_multiplier, 1.0, t.config.secagg_bits, size,
                              t.config.dp_noise_reporters).variance for k, t in tasks.items()}
    # Four honest devices of the half-honest task add what eight add in the all-honest one.
    assert 4 * per_device["half-honest"] >= 8 * per_device["all-honest"] * 0.98
    # Each reports the target for its assumption; the half-honest one's holds with 4 noise-free devices.
    assert task_epsilon(half, size, 20, 1.0) <= 8.0 and task_epsilon(honest, size, 20, 1.0) <= 8.0
    # If 4 of the all-honest task's 8 skip their noise, half the variance is left: z / sqrt(2).
    cfg = {k: v for k, v in base.items() if k != "dp_target_epsilon"}
    skipped = TaskConfig.from_dict({**cfg, "dp_noise_multiplier": honest.dp_noise_multiplier / 2 ** 0.5})
    assert task_epsilon(skipped, size, 20, 1.0) > 1.5 * 8.0
