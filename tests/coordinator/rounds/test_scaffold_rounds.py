"""SCAFFOLD through the real app: an update is the model delta followed by the control delta,
the server moves the weights by the mean model delta and its control variate by the mean
control delta, assignments hand the variate out, and what SCAFFOLD is not combined with is
refused."""

import numpy as np
import pytest

from coordinator.http.app import create_app
from protocol import codec
from tests.coordinator.conftest import ADMIN, Harness


async def _assigned(h, device):
    body = await (await h.checkin(device)).json()
    assert body["outcome"] == "assigned", body
    return body["assignment"]


def _payload(h, seed, scale=0.01):
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=w.shape).astype(np.float32) * scale for w in h.manifest.weights] * 2
    arrays = arrays[: len(h.manifest.weights)] + [a * 3 for a in arrays[len(h.manifest.weights):]]
    return codec.encode(arrays, codec.CodecSpec("f32"), rng)


async def test_scaffold_moves_weights_and_control_variate(harness, aiohttp_client):
    h = harness
    await h.setup_task(goal_count=2, over_selection=1.0, codec="f32", scaffold=True)
    d1, d2 = await h.register(), await h.register()
    a1 = await _assigned(h, d1)
    assert a1["plan"]["scaffold"] is True and a1["control_url"] == f"/v1/blobs/{a1['control_sha256']}"
    c0 = codec.decode(await (await h.client.get(a1["control_url"])).read()).values
    assert not c0.any() and c0.size == h.manifest.num_parameters  # c = 0 before the first round
    # A plain-sized update (no control delta) is refused.
    assert (await h.upload(d1, a1, h.payload(kind="f32"))).status == 400
    a2 = await _assigned(h, d2)
    p1, p2 = _payload(h, 1), _payload(h, 2)
    w0 = codec.decode(h.coordinator.store.blobs.read(h.coordinator.tasks["t1"].checkpoint_sha)).values
    assert (await h.upload(d1, a1, p1, examples=10)).status == 201
    assert (await h.upload(d2, a2, p2, examples=30)).status == 201
    n = h.manifest.num_parameters
    v1, v2 = codec.decode(p1).values, codec.decode(p2).values
    mean = (10 * v1 + 30 * v2) / 40
    task = h.coordinator.tasks["t1"]
    w1 = codec.decode(h.coordinator.store.blobs.read(task.checkpoint_sha)).values
    c1 = codec.decode(h.coordinator.store.blobs.read(task.control_sha)).values
    np.testing.assert_allclose(w1, w0 + mean[:n], atol=1e-6)
    np.testing.assert_allclose(c1, mean[n:], atol=1e-6)
    rows = await h.rounds()
    assert rows[0]["metrics"]["control_sha"] == task.control_sha
    a3 = await _assigned(h, d1)
    assert a3["control_sha256"] == task.control_sha
    # After a restart the task hands out the same variate.
    await h.client.close()
    h2 = Harness(await aiohttp_client(create_app(h.config, run_ticker=False, clock=h.clock)), h.clock, h.model)
    assert h2.coordinator.tasks["t1"].control_sha == task.control_sha


async def test_scaffold_under_central_dp_noises_weights_and_control_as_one_vector(harness):
    """DP clips each update (model delta + control delta) as one vector and adds the noise to
    the sum of both: the weights and the control variate move by the noised mean's halves."""
    h = harness
    clip, z = 0.5, 1.0
    await h.setup_task(goal_count=2, over_selection=1.0, codec="f32", scaffold=True, clip_norm=clip,
                       dp_noise_multiplier=z, dp_population=100, min_reports=2)
    d1, d2 = await h.register(), await h.register()
    a1, a2 = await _assigned(h, d1), await _assigned(h, d2)
    w0 = codec.decode(h.coordinator.store.blobs.read(h.coordinator.tasks["t1"].checkpoint_sha)).values
    p1, p2 = _payload(h, 1, scale=1.0), _payload(h, 2, scale=1.0)  # norms far above the clip: clipped whole
    assert (await h.upload(d1, a1, p1, examples=10)).status == 201
    assert (await h.upload(d2, a2, p2, examples=30)).status == 201
    h.tick()
    task = h.coordinator.tasks["t1"]
    [r] = [r for r in await h.rounds() if r["round"] == 1]
    assert r["state"] == "committed" and r["metrics"]["epsilon"] > 0 and r["metrics"]["dp_noise_stddev"] == z * clip
    n = h.manifest.num_parameters
    v = [codec.decode(p).values for p in (p1, p2)]
    clipped = sum(x * min(1.0, clip / np.linalg.norm(x)) for x in v)  # weight 1 each under DP
    w1 = codec.decode(h.coordinator.store.blobs.read(task.checkpoint_sha)).values
    c1 = codec.decode(h.coordinator.store.blobs.read(task.control_sha)).values
    # new = old + (clipped sum + noise) / goal: the residual is the noise / 2 in both halves.
    noise = np.concatenate([w1 - w0, c1]) * 2 - clipped
    assert abs(np.std(noise) / (z * clip) - 1) < 0.1  # N(0, (z C)^2) on every coordinate, weights and c alike
    assert abs(np.std(noise[:n]) - np.std(noise[n:])) < 0.1 * z * clip


@pytest.mark.parametrize("extra", [{"aggregator": "median"}, {"mode": "async"}])
async def test_what_scaffold_is_not_combined_with_is_refused(harness, extra):
    h = harness
    await h.client.post("/v1/admin/populations", json={"name": "pop"}, headers=ADMIN)
    sha = (await (await h.client.post("/v1/admin/models", data=h.model, headers={
        **ADMIN, "Content-Type": "application/octet-stream"})).json())["model_sha256"]
    resp = await h.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN,
                               json={"model_sha256": sha, "config": {"scaffold": True, **extra}})
    assert resp.status == 400 and (await resp.json())["error"]["code"] in ("bad_scaffold", "async_secagg")


def test_scaffold_with_a_robust_aggregator_is_refused_for_that_reason():
    """It was refused with a message about async mode."""
    import pytest

    from coordinator.errors import BadRequest
    from coordinator.tasks.config import TaskConfig

    with pytest.raises(BadRequest, match="fedavg aggregator, not 'krum'") as info:
        TaskConfig.from_dict({"scaffold": True, "aggregator": "krum", "goal_count": 10})
    assert "async" not in str(info.value)
