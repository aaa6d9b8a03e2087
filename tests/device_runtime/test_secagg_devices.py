"""Devices run the SecAgg phases against a real coordinator over HTTP."""

import asyncio

import aiohttp
import numpy as np
import pytest

from coordinator.http.app import COORDINATOR
from device_runtime.device import Behaviour
from device_runtime.trainer import Trainer
from tests.device_runtime.conftest import create_task
from tests.device_runtime.test_device import _device, _wait_until


async def _run_fleet(url, coordinator, n, behaviours, floors=None):
    """n devices until task t completes; ``floors``: device index -> its distributed-DP noise floor."""
    trainer = Trainer(2)
    async with aiohttp.ClientSession() as session:
        devices = [_device(session, url, trainer, behaviour=behaviours(i)) for i in range(n)]
        for i, d in enumerate(devices):
            d.rng, d.min_dp_noise = np.random.default_rng(i), (floors or {}).get(i, 0.0)
            await d.client.register("pop")
        stop = asyncio.Event()
        runners = [asyncio.create_task(d.run(stop, after_round_s=0.05)) for d in devices]
        await _wait_until(lambda: coordinator.tasks["t"].state == "completed", timeout=120)
        stop.set()
        await asyncio.gather(*runners)
    trainer.close()
    return devices


@pytest.mark.parametrize("mode", ["secagg", "secagg+"])
async def test_secagg_rounds_commit_with_devices_dropping_at_every_phase(live_coordinator, digits_tflite, mode):
    url = str(live_coordinator.make_url("")).rstrip("/")
    await create_task(url, digits_tflite, rounds=2, goal_count=6, over_selection=1.67, min_reports=4,
                      secagg=mode, clip_norm=2.0, secagg_phase_s=1.0, selection_window_s=3.0,
                      report_deadline_s=4.0)
    coordinator = live_coordinator.app[COORDINATOR]
    phases = ["advertise", "share", "masked_input", "unmask"]
    # Devices 0..3 vanish, every round, before advertising, sharing, masking and unmasking respectively.
    devices = await _run_fleet(url, coordinator, 10,
                               lambda i: Behaviour(dropout=1.0, secagg_drop_phase=phases[i]) if i < 4 else Behaviour())
    rounds = coordinator.admin.rounds("t")
    assert [r["state"] for r in rounds] == ["committed"] * 2
    committed = [r for r in rounds if r["state"] == "committed"]
    # Everyone who dropped before the masked input is not counted; a device that vanished after it is.
    assert all(6 <= r["reported"] <= 7 for r in committed)
    assert sum(d.stats.dropped for d in devices[:4]) >= 4
    assert devices[3].stats.uploads >= 1  # it sent masked inputs, then vanished before unmasking
    assert all(d.stats.uploads == 0 for d in devices[:3])
    # Masked uploads of 8-bit codes on a 16-bit ring: half the float32 bytes, plus the header.
    d = devices[5]
    assert d.stats.bytes_up <= 0.52 * d.stats.float32_bytes * (8192 / 6570)


async def test_scaffold_under_secure_aggregation(live_coordinator, digits_tflite):
    """SCAFFOLD's update (model delta + control delta) is masked as one vector: the coordinator
    unmasks the sum of both and moves the weights and its control variate; no dropouts here, so
    with f32-free SecAgg quantization the server's c is the mean of the devices' c_i (population
    factor 1, fresh variates) within the grid's rounding."""
    url = str(live_coordinator.make_url("")).rstrip("/")
    await create_task(url, digits_tflite, rounds=1, goal_count=3, over_selection=1.0, min_reports=3,
                      secagg="secagg", clip_norm=10.0, secagg_bits=16, secagg_phase_s=2.0, selection_window_s=3.0,
                      report_deadline_s=10.0, scaffold=True)
    coordinator = live_coordinator.app[COORDINATOR]
    devices = await _run_fleet(url, coordinator, 3, lambda i: Behaviour())
    rounds = coordinator.admin.rounds("t")
    assert [r["state"] for r in rounds] == ["committed"] and rounds[0]["reported"] == 3
    from protocol import codec

    task = coordinator.tasks["t"]
    c = codec.decode(coordinator.store.blobs.read(task.control_sha)).values
    mean_ci = np.mean([d.kept.controls["t"] for d in devices], axis=0)  # every c_i started at 0
    assert np.abs(c).max() > 0
    np.testing.assert_allclose(c, mean_ci, atol=2e-3 * max(1.0, float(np.abs(mean_ci).max())))


async def test_a_device_refuses_a_round_whose_noise_is_below_its_floor(live_coordinator, digits_tflite):
    """Distributed DP with z = 1 calibrated for min_reports 3 of a roster of 4: the devices' noise
    adds up to sqrt(4 / 3) z. A device whose floor is above that refuses before sharing keys
    (and takes no part); below it, it takes part."""
    from protocol.secagg import distributed_dp

    url = str(live_coordinator.make_url("")).rstrip("/")
    await create_task(url, digits_tflite, rounds=1, goal_count=4, over_selection=1.0, min_reports=3,
                      secagg="secagg", clip_norm=2.0, secagg_phase_s=2.0, selection_window_s=3.0,
                      report_deadline_s=10.0, dp_mode="distributed", dp_noise_multiplier=1.0)
    coordinator = live_coordinator.app[COORDINATOR]
    # sqrt(4/3) = 1.155 (within rounding of the grid's sensitivity): device 0 is above, device 1 below.
    devices = await _run_fleet(url, coordinator, 4, lambda i: Behaviour(), floors={0: 1.5, 1: 1.1})
    [r] = coordinator.admin.rounds("t")
    assert r["state"] == "committed" and r["reported"] == 3
    assert devices[0].stats.refused >= 1 and devices[0].stats.uploads == 0
    assert devices[1].stats.uploads == 1 and devices[1].stats.refused == 0
    import json

    from protocol.secagg.messages import SecAggParams

    row = coordinator.store.one("SELECT params FROM secagg_rounds WHERE task_id = 't' AND round = 1")
    params = SecAggParams.from_dict(json.loads(row["params"]))
    assert 1.1 < distributed_dp.total_noise_multiplier(params, 4) < 1.5  # the floors are on either side


async def test_python_devices_run_adaptive_clipping_under_distributed_dp(live_coordinator, digits_tflite):
    """Two rounds of distributed DP with adaptive clipping: each device noises its clip bit
    before masking it, the coordinator moves the clip from the noised count, and round 2's
    devices clip to (and its grid is sized for) the new clip."""
    url = str(live_coordinator.make_url("")).rstrip("/")
    await create_task(url, digits_tflite, rounds=2, goal_count=4, over_selection=1.0, min_reports=3,
                      secagg="secagg", clip_norm=0.05, secagg_phase_s=2.0, selection_window_s=3.0,
                      report_deadline_s=10.0, dp_mode="distributed", dp_noise_multiplier=0.5,
                      dp_target_quantile=0.5, dp_clipped_count_stddev=1.0, dp_clip_learning_rate=0.5)
    coordinator = live_coordinator.app[COORDINATOR]
    await _run_fleet(url, coordinator, 4, lambda i: Behaviour())
    rounds = coordinator.admin.rounds("t")
    assert [r["state"] for r in rounds] == ["committed"] * 2, rounds
    first = rounds[0]["metrics"]
    from protocol import dp

    assert 0.0 <= first["dp_below_clip"] <= 1.0 and first["dp_clip"] == 0.05
    assert first["dp_next_clip"] == pytest.approx(dp.next_clip(0.05, first["dp_below_clip"], 0.5, 0.5))
    assert rounds[1]["metrics"]["dp_clip"] == pytest.approx(first["dp_next_clip"])
    import json

    from protocol.secagg.messages import SecAggParams

    row = coordinator.store.one("SELECT params FROM secagg_rounds WHERE task_id = 't' AND round = 2")
    params = SecAggParams.from_dict(json.loads(row["params"]))
    assert params.extra == 1 and params.dp_count_variance >= 1
