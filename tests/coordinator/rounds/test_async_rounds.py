"""Asynchronous buffered aggregation (mode = "async") through the real app: assignments pin a
version, every K updates publish one, stale updates weigh less or are refused, nothing
acknowledged counts twice (retries, restarts), and hostile devices get 4xx."""

import numpy as np
import pytest

from coordinator.http.app import create_app
from protocol import codec
from tests.coordinator.conftest import ADMIN, Harness

ASYNC = {"mode": "async", "buffer_size": 2, "concurrency": 3, "rounds": 3, "max_staleness": 5,
         "staleness_weight": "polynomial:0.5"}


async def _assigned(h, device):
    body = await (await h.checkin(device)).json()
    assert body["outcome"] == "assigned", body
    return body["assignment"]


def _weights(h, sha):
    return codec.decode(h.coordinator.store.blobs.read(sha)).values


async def test_assignments_are_capped_by_concurrency_and_pin_their_version(harness):
    h = harness
    await h.setup_task(**ASYNC)
    rows = await h.rounds()
    assert [(r["round"], r["state"]) for r in rows] == [(1, "reporting")]  # a buffer, no selection window
    devices = [await h.register() for _ in range(4)]
    assignments = [await _assigned(h, d) for d in devices[:3]]
    assert {a["round"] for a in assignments} == {1}
    assert all(a["checkpoint_sha256"] == h.coordinator.tasks["t1"].checkpoint_sha for a in assignments)
    # Each assignment's deadline is its own: assigned_at + report_deadline_s.
    assert {a["report_deadline"] for a in assignments} == {h.clock() + 30}
    full = await (await h.checkin(devices[3])).json()
    assert full["outcome"] == "retry" and full["reason"] == "no_slot"
    # A device holding a live assignment is not given a second one.
    again = await (await h.checkin(devices[0])).json()
    assert again["outcome"] == "retry"
    # An update frees its slot: the fourth device is assigned next.
    assert (await h.upload(devices[0], assignments[0], h.payload())).status == 201
    h.tick()
    assert (await _assigned(h, devices[3]))["round"] == 1


async def test_every_k_updates_publish_a_version_and_stale_updates_weigh_less(harness):
    h = harness
    await h.setup_task(**{**ASYNC, "buffer_size": 1, "concurrency": 2, "server_optimizer": {"learning_rate": 1.0}})
    d1, d2 = await h.register(), await h.register()
    a1, a2 = await _assigned(h, d1), await _assigned(h, d2)
    w0 = _weights(h, h.coordinator.tasks["t1"].checkpoint_sha)
    p1, p2 = h.payload(seed=1), h.payload(seed=2)
    assert (await h.upload(d1, a1, p1)).status == 201  # K = 1: version 1 at once
    w1 = _weights(h, h.coordinator.tasks["t1"].checkpoint_sha)
    np.testing.assert_allclose(w1, w0 + codec.decode(p1).values, atol=1e-5)
    # d2 trained from version 0 too; its update lands in buffer 2: staleness 1, weight 1/sqrt(2).
    resp = await h.upload(d2, a2, p2)
    assert resp.status == 201 and await resp.json() == {"accepted": True, "duplicate": False, "round": 2,
                                                        "staleness": 1}
    w2 = _weights(h, h.coordinator.tasks["t1"].checkpoint_sha)
    np.testing.assert_allclose(w2, w1 + codec.decode(p2).values / np.sqrt(2), atol=1e-5)
    rows = await h.rounds()
    assert [(r["round"], r["state"]) for r in rows] == [(1, "committed"), (2, "committed"), (3, "reporting")]
    assert rows[0]["metrics"]["staleness_max"] == 0 and rows[1]["metrics"]["staleness_max"] == 1
    # The next assignment trains from version 2 (its buffer is 3).
    d3 = await h.register()
    a3 = await _assigned(h, d3)
    assert a3["round"] == 3 and a3["checkpoint_sha256"] == rows[1]["checkpoint_sha"]


async def test_too_stale_an_update_is_refused_and_counted(harness):
    h = harness
    await h.setup_task(**{**ASYNC, "buffer_size": 1, "max_staleness": 0})
    d1, d2 = await h.register(), await h.register()
    a1, a2 = await _assigned(h, d1), await _assigned(h, d2)
    assert (await h.upload(d1, a1, h.payload(seed=1))).status == 201
    resp = await h.upload(d2, a2, h.payload(seed=2))
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "stale"
    rows = await h.rounds()
    assert rows[1]["reported"] == 0
    metrics = await (await h.client.get("/metrics")).text()
    assert 'fedge_rejected_uploads_total{reason="stale"} 1.0' in metrics
    # Its slot is free again and the device can train from the current version.
    a2b = await _assigned(h, d2)
    assert a2b["round"] == 2
    assert (await h.upload(d2, a2b, h.payload(seed=3))).status == 201


async def test_hostile_uploads_replays_and_lies_about_the_version(harness):
    h = harness
    await h.setup_task(**ASYNC)
    d1, d2 = await h.register(), await h.register()
    a1 = await _assigned(h, d1)
    body = h.payload(seed=1)
    # Naming another version than the one assigned (a lie about what it trained on): 403.
    lie = {**a1, "upload_url": a1["upload_url"].replace("/rounds/1/", "/rounds/2/")}
    assert (await h.upload(d1, lie, body)).status == 403
    # Another device's assignment, or a wrong token: 403.
    assert (await h.upload(d2, a1, body)).status == 403
    assert (await h.upload(d1, a1, body, token="x" * 32)).status == 403
    # The real upload; its retry is acknowledged again and counted once; different bytes: 403.
    assert (await h.upload(d1, a1, body)).status == 201
    assert (await h.upload(d1, a1, body)).status == 200
    assert (await h.upload(d1, a1, h.payload(seed=9))).status == 403
    rows = await h.rounds()
    assert rows[0]["reported"] == 1
    # After the deadline an assignment is dead: 410, nothing counted.
    a2 = await _assigned(h, d2)
    h.clock.advance(31)
    resp = await h.upload(d2, a2, body)
    assert resp.status == 410
    assert (await h.rounds())[0]["reported"] == 1


async def test_the_task_completes_after_its_versions(harness):
    h = harness
    await h.setup_task(**{**ASYNC, "buffer_size": 1, "rounds": 2, "concurrency": 3})
    devices = [await h.register() for _ in range(3)]
    assignments = [await _assigned(h, d) for d in devices]
    for i in range(2):
        assert (await h.upload(devices[i], assignments[i], h.payload(seed=i))).status == 201
    h.tick()
    rows = await h.rounds()
    assert [r["state"] for r in rows] == ["committed", "committed"]
    assert h.coordinator.tasks["t1"].state == "completed"
    resp = await h.upload(devices[2], assignments[2], h.payload(seed=5))
    assert resp.status == 410


async def test_a_restart_folds_the_open_buffer_again_with_the_same_weights(harness, aiohttp_client):
    h = harness
    await h.setup_task(**{**ASYNC, "buffer_size": 2, "concurrency": 4})
    devices = [await h.register() for _ in range(4)]
    assignments = [await _assigned(h, d) for d in devices]
    payloads = [h.payload(seed=10 + i) for i in range(4)]
    for i in range(2):  # version 1
        assert (await h.upload(devices[i], assignments[i], payloads[i])).status == 201
    w1 = _weights(h, h.coordinator.tasks["t1"].checkpoint_sha)
    assert (await h.upload(devices[2], assignments[2], payloads[2])).status == 201  # buffer 2, staleness 1
    # Restart the coordinator on the same database: the buffer is rebuilt from the stored update.
    await h.client.close()
    app = create_app(h.config, run_ticker=False, clock=h.clock)
    h2 = Harness(await aiohttp_client(app), h.clock, h.model)
    h2.tick()
    assert h2.coordinator.running.sums[("t1", 2)].count == 1
    assert (await h2.upload(devices[3], assignments[3], payloads[3])).status == 201
    # The acknowledged retry after the restart is a duplicate, not a second contribution.
    assert (await h2.upload(devices[2], assignments[2], payloads[2])).status == 200
    rows = await h2.rounds()
    assert rows[1]["state"] == "committed" and rows[1]["reported"] == 2
    w2 = _weights(h2, h2.coordinator.tasks["t1"].checkpoint_sha)
    expected = w1 + (codec.decode(payloads[2]).values + codec.decode(payloads[3]).values) / np.sqrt(2) / 2
    np.testing.assert_allclose(w2, expected, atol=1e-5)


@pytest.mark.parametrize("config,code", [
    ({"secagg": "secagg", "clip_norm": 1.0}, "async_secagg"),
    ({"dp_noise_multiplier": 1.0, "clip_norm": 1.0, "dp_mode": "distributed", "secagg": "off"}, "async_dp"),
    ({"dp_noise_multiplier": 1.0, "clip_norm": 1.0, "dp_target_quantile": 0.5}, "async_dp"),
    ({"staleness_weight": "linear"}, "bad_staleness_weight"),
    ({"concurrency": 1, "buffer_size": 2}, "bad_request"),
    ({"mode": "later"}, "bad_request"),
])
async def test_what_async_cannot_combine_with_is_refused_at_creation(harness, config, code):
    h = harness
    await h.client.post("/v1/admin/populations", json={"name": "pop"}, headers=ADMIN)
    resp = await h.client.post("/v1/admin/models", data=h.model,
                               headers={**ADMIN, "Content-Type": "application/octet-stream"})
    sha = (await resp.json())["model_sha256"]
    resp = await h.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN,
                               json={"model_sha256": sha, "config": {"mode": "async", **config}})
    assert resp.status == 400
    body = await resp.json()
    assert body["error"]["code"] == code, body


async def test_a_device_contributes_once_per_version(harness):
    h = harness
    await h.setup_task(**{**ASYNC, "buffer_size": 3, "concurrency": 3})
    fast, other = await h.register(), await h.register()
    a1 = await _assigned(h, fast)
    body = h.payload(seed=1)
    assert (await h.upload(fast, a1, body)).status == 201
    # Its update is in the open buffer: no second assignment until a version is published.
    again = await (await h.checkin(fast)).json()
    assert again["outcome"] == "retry"
    assert (await _assigned(h, other))["round"] == 1
    # Its acknowledged bytes stay as they were (never overwritten by a later upload).
    upd = h.coordinator.store.update("t1", 1, next(iter(
        u.device_id for u in h.coordinator.store.updates("t1", 1))))
    assert h.coordinator.store.blobs.read_object(upd.blob) == body


async def test_status_and_metrics_show_concurrency_versions_and_staleness(harness):
    h = harness
    await h.setup_task(**{**ASYNC, "buffer_size": 1, "concurrency": 3, "rounds": 5, "max_staleness": 1})
    devices = [await h.register() for _ in range(3)]
    assignments = [await _assigned(h, d) for d in devices]
    assert (await h.upload(devices[0], assignments[0], h.payload(seed=1))).status == 201  # version 1, s = 0
    h.clock.advance(6)
    assert (await h.upload(devices[1], assignments[1], h.payload(seed=2))).status == 201  # version 2, s = 1
    h.clock.advance(6)
    assert (await h.upload(devices[2], assignments[2], h.payload(seed=3))).status == 409  # s = 2 > 1
    h.tick()
    status = await (await h.client.get("/v1/status")).json()
    task = next(t for t in status["tasks"] if t["task_id"] == "t1")
    cur = task["current"]
    assert task["mode"] == "async" and cur["mode"] == "async"
    assert cur["round"] == 3 and cur["state"] == "reporting" and cur["goal"] == 1
    assert cur["live"] == 0 and cur["concurrency"] == 3
    assert cur["staleness_counts"] == {"0": 1, "1": 1}
    assert cur["stale_refused"] == 1
    assert cur["versions_per_min"] == pytest.approx(60 / 6)
    metrics = await (await h.client.get("/metrics")).text()
    assert 'fedge_update_staleness_versions_count{task="t1"} 2.0' in metrics
    assert 'fedge_async_concurrency_target{task="t1"} 3.0' in metrics


async def test_participation_gap_keeps_a_fast_device_out_for_some_versions(harness):
    h = harness
    await h.setup_task(**{**ASYNC, "buffer_size": 1, "concurrency": 2, "rounds": 6, "participation_gap": 2})
    fast, d2, d3 = await h.register(), await h.register(), await h.register()
    a = await _assigned(h, fast)
    assert (await h.upload(fast, a, h.payload(seed=1))).status == 201  # version 1 (its update in buffer 1)
    assert (await (await h.checkin(fast)).json())["outcome"] == "retry"  # buffer 2 open: 2 <= 1 + 2
    b = await _assigned(h, d2)
    assert (await h.upload(d2, b, h.payload(seed=2))).status == 201  # version 2
    assert (await (await h.checkin(fast)).json())["outcome"] == "retry"  # buffer 3: 3 <= 3
    c = await _assigned(h, d3)
    assert (await h.upload(d3, c, h.payload(seed=3))).status == 201  # version 3
    assert (await _assigned(h, fast))["round"] == 4  # buffer 4: its turn again


async def test_dp_fedbuff_noises_each_version_and_accounts_each_release(harness):
    """DP with async: every version's clipped, staleness-weighted sum gets N(0, (z C)^2) and is
    divided by buffer_size; each published version is one Gaussian release (no sampling
    amplification claimed), and the budget stops the task before a version would pass it."""
    from tests.coordinator.aggregation.test_dp import _accountant_epsilon, _constant_update

    h = harness
    z, clip, k, delta = 1.3, 0.5, 2, 1e-4
    budget = (_accountant_epsilon(z, 1.0, 2, delta) + _accountant_epsilon(z, 1.0, 3, delta)) / 2  # room for 2
    await h.setup_task(**{**ASYNC, "buffer_size": k, "concurrency": 4, "rounds": 5, "codec": "f32",
                          "clip_norm": clip, "dp_noise_multiplier": z, "dp_delta": delta,
                          "dp_epsilon_budget": budget})
    devices = [await h.register() for _ in range(4)]
    previous = _weights(h, h.coordinator.tasks["t1"].checkpoint_sha)
    for version in (1, 2):
        for d in devices[2 * version - 2: 2 * version]:
            a = await _assigned(h, d)
            assert (await h.upload(d, a, _constant_update(h, 0.0))).status == 201
        h.tick()
        row = (await h.rounds())[version - 1]
        assert row["state"] == "committed", row
        now = _weights(h, row["checkpoint_sha"])
        noise = (now - previous).astype(np.float64)
        previous = now
        assert abs(noise.std() / (z * clip / k) - 1) < 0.05, (noise.std(), z * clip / k)
        m = row["metrics"]
        assert m["dp_sampling_rate"] == 1.0 and m["dp_noise_stddev"] == pytest.approx(z * clip)
        assert np.isclose(m["epsilon"], _accountant_epsilon(z, 1.0, version, delta), rtol=1e-9)
    h.tick()
    resp = await h.client.get("/v1/admin/tasks/t1", headers=ADMIN)
    task = await resp.json()
    assert task["state"] == "completed" and "privacy budget" in task["reason"], task
    assert [r["state"] for r in task["rounds"]] == ["committed", "committed"]
