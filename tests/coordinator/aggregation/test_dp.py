"""User-level DP-FedAvg on the coordinator: noise, adaptive clip, accounted epsilon, budget stop."""

import numpy as np
import pytest
from dp_accounting import dp_event, rdp

from protocol import codec
from protocol.dp import clip_l2, next_clip, update_noise_multiplier
from tests.coordinator.conftest import ADMIN


def _constant_update(harness, norm: float = 0.0) -> bytes:
    """An f32 update whose every coordinate is equal, of L2 norm ``norm``."""
    size = harness.manifest.num_parameters
    return codec.encode([np.full(w.shape, norm / np.sqrt(size), np.float32) for w in harness.manifest.weights],
                        codec.CodecSpec("f32"), np.random.default_rng(0))


async def _round_of_zero_updates(harness, devices, norm: float = 0.0):
    """Every device checks in and uploads a constant update (all zero by default); returns the last assignment."""
    for headers in devices:
        body = await (await harness.checkin(headers)).json()
        assert body["outcome"] == "assigned", body
        resp = await harness.upload(headers, body["assignment"], _constant_update(harness, norm))
        assert resp.status == 201, await resp.text()
    return body["assignment"]


async def _checkpoint(harness):
    resp = await harness.client.get("/v1/admin/tasks/t1", headers=ADMIN)
    sha = (await resp.json())["checkpoint_sha256"]
    return codec.decode(await (await harness.client.get(f"/v1/blobs/{sha}")).read()).values


def _accountant_epsilon(z, q, rounds, delta):
    acc = rdp.RdpAccountant([1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0,
                             32.0, 48.0, 64.0, 128.0, 256.0])
    acc.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(z)), rounds)
    return acc.get_epsilon(delta)


async def test_noise_has_the_configured_stddev_and_epsilon_matches_the_accountant(harness):
    z, clip, goal = 1.3, 0.5, 4
    await harness.setup_task(codec="f32", goal_count=goal, over_selection=1.0, clip_norm=clip, rounds=3,
                             dp_noise_multiplier=z, dp_delta=1e-4, dp_population=40)
    devices = [await harness.register() for _ in range(goal)]
    previous = await _checkpoint(harness)
    for rnd in range(1, 4):
        await _round_of_zero_updates(harness, devices)
        record = (await harness.rounds())[rnd - 1]
        assert record["state"] == "committed"
        now = await _checkpoint(harness)
        noise = (now - previous).astype(np.float64)
        previous = now
        # The sum of zero updates plus N(0, (z C)^2) per coordinate, over the fixed denominator goal.
        expected_std = z * clip / goal
        assert abs(noise.std() / expected_std - 1) < 0.05, (noise.std(), expected_std)
        assert abs(noise.mean()) < 4 * expected_std / np.sqrt(noise.size)
        m = record["metrics"]
        assert m["dp_noise_stddev"] == z * clip and m["dp_sampling_rate"] == goal / 40
        assert np.isclose(m["epsilon"], _accountant_epsilon(z, goal / 40, rnd, 1e-4), rtol=1e-9)
    status = await (await harness.client.get("/v1/status")).json()
    assert [r["epsilon"] for r in status["tasks"][0]["history"]] == [r["metrics"]["epsilon"]
                                                                   for r in await harness.rounds()]


async def test_task_stops_before_the_budget_would_be_exceeded(harness):
    z, q, delta = 1.0, 0.5, 1e-3
    budget = (_accountant_epsilon(z, q, 2, delta) + _accountant_epsilon(z, q, 3, delta)) / 2  # room for 2 rounds
    await harness.setup_task(codec="f32", goal_count=2, over_selection=1.0, clip_norm=1.0, rounds=10,
                             dp_noise_multiplier=z, dp_delta=delta, dp_population=4, dp_epsilon_budget=budget)
    devices = [await harness.register() for _ in range(2)]
    for _ in range(2):
        await _round_of_zero_updates(harness, devices)
    resp = await harness.client.get("/v1/admin/tasks/t1", headers=ADMIN)
    task = await resp.json()
    assert task["state"] == "completed"
    assert "privacy budget" in task["reason"] and "stopped after 2 rounds" in task["reason"]
    assert [r["state"] for r in task["rounds"]] == ["committed", "committed"]
    assert task["rounds"][-1]["metrics"]["epsilon"] <= budget
    body = await (await harness.checkin(devices[0])).json()
    assert body["outcome"] == "retry"  # no round is open any more


async def test_adaptive_clip_moves_toward_the_target_quantile(harness):
    goal, clip, gamma, eta = 4, 2.0, 0.5, 0.2
    await harness.setup_task(codec="f32", goal_count=goal, over_selection=1.0, clip_norm=clip, rounds=2,
                             dp_noise_multiplier=0.02, dp_target_quantile=gamma, dp_clip_learning_rate=eta,
                             dp_clipped_count_stddev=0.05, dp_population=goal)
    devices = [await harness.register() for _ in range(goal)]
    assignment = await _round_of_zero_updates(harness, devices, norm=1.5 * clip)
    assert assignment["plan"]["report_clip_bit"] is True and assignment["plan"]["clip_norm"] == clip
    # Every update was above the clip: the server measures that itself (the devices claimed nothing),
    # fraction 0 -> the clip grows.
    m = (await harness.rounds())[0]["metrics"]
    assert abs(m["dp_below_clip"]) < 0.05
    assert np.isclose(m["dp_next_clip"], next_clip(clip, m["dp_below_clip"], gamma, eta))
    assert m["dp_next_clip"] > clip
    body = await (await harness.checkin(devices[0])).json()
    assert body["assignment"]["plan"]["clip_norm"] == m["dp_next_clip"]
    # The update noise leaves room for the bits' noise (Andrew et al. 2021, Thm 1).
    assert np.isclose(m["dp_noise_stddev"], update_noise_multiplier(0.02, 0.05) * clip)


def test_clipped_updates_never_exceed_the_norm():
    rng = np.random.default_rng(0)
    for _ in range(500):
        delta = rng.standard_cauchy(100).astype(np.float32)
        clip = float(rng.uniform(0.01, 10))
        clipped, norm = clip_l2(delta, clip)
        assert np.linalg.norm(clipped) <= clip * (1 + 1e-6)
        assert norm == np.float32(np.linalg.norm(delta)) or np.isclose(norm, np.linalg.norm(delta))


def test_update_noise_split_keeps_the_total_multiplier():
    z, sb = 1.0, 2.0
    zu = update_noise_multiplier(z, sb)
    assert np.isclose(zu ** -2 + (2 * sb) ** -2, z ** -2)
    assert update_noise_multiplier(z, 0.0) == z


async def test_a_target_epsilon_is_calibrated_at_creation_and_met(harness):
    """dp_target_epsilon: the coordinator picks the noise multiplier with dp-accounting; the
    epsilon the task's rounds spend at that multiplier equals the target within accounting
    precision (and never exceeds it)."""
    from coordinator.aggregation.privacy import epsilon, sampling_rate

    await harness.setup_task()
    sha = harness.coordinator.tasks["t1"].model_sha
    config = {"rounds": 20, "goal_count": 10, "clip_norm": 1.0, "dp_population": 1000, "dp_target_epsilon": 2.0,
              "dp_delta": 1e-5}
    resp = await harness.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN,
                                     json={"model_sha256": sha, "task_id": "cal", "config": config})
    assert resp.status == 201, await resp.text()
    z = (await resp.json())["config"]["dp_noise_multiplier"]
    spent = epsilon(z, sampling_rate(10, 1000), 20, 1e-5)
    assert 1.99 <= spent <= 2.0, (z, spent)
    assert epsilon(z * 0.99, sampling_rate(10, 1000), 20, 1e-5) > 2.0  # the smallest such multiplier


@pytest.mark.parametrize("config, code, fragment", [
    ({"dp_target_epsilon": 1e-4, "rounds": 1000, "goal_count": 500, "dp_population": 1000}, "epsilon_unreachable",
     "smallest reachable epsilon"),
    ({"dp_target_epsilon": 2.0, "dp_noise_multiplier": 1.0, "dp_population": 1000}, "bad_config", "not both"),
    ({"dp_target_epsilon": 2.0, "dp_population": 1}, "population_required", "dp_population"),
])
async def test_target_epsilon_refusals(harness, config, code, fragment):
    await harness.setup_task()
    sha = harness.coordinator.tasks["t1"].model_sha
    resp = await harness.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN, json={
        "model_sha256": sha, "task_id": "cal", "config": {"clip_norm": 1.0, "goal_count": 10, **config}})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == code and fragment in error["message"], error
    assert "cal" not in harness.coordinator.tasks
