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


async def _noised_round(harness, parties, rng, hostile: int | None = None):
    await _advertise_and_share(harness, parties)
    codes = {}
    for i, party in enumerate(parties):
        v = await party.refresh()
        p = v.params
        if i == hostile:  # any ring element: the largest centred value everywhere
            codes[i] = np.full(p.length, (1 << (p.modulus_bits - 1)) - 1, np.uint32)
        else:
            codes[i] = ddp.encode(_update(p.num_values, rng, 0.9), p.quant_bits, p.modulus_bits, p.value_range,
                                  p.rotation_seed, p.dp_bound, rng.random, ddp.os_noise(p.dp_variance))
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


@pytest.mark.parametrize("config,code", [
    ({"dp_mode": "distributed", "dp_noise_multiplier": 1.0, "clip_norm": 1.0}, "distributed_dp_needs_secagg"),
    ({**DDP, "secagg": "secagg", "dp_target_quantile": 0.5}, "bad_config"),
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
