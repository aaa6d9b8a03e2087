"""One test per defect a hostile device could exploit (each failed before its fix)."""

import asyncio
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from coordinator.http.app import ServeConfig, create_app
from coordinator.http.keys import METRICS
from protocol import codec
from tests.coordinator.conftest import ADMIN


def _f32(harness, value: float) -> bytes:
    return codec.encode([np.full(w.shape, value, np.float32) for w in harness.manifest.weights],
                        codec.CodecSpec("f32"), np.random.default_rng(0))


def _weights(harness, sha: str) -> np.ndarray:
    return codec.decode(harness.coordinator.store.blobs.read(sha)).values


async def _assigned(harness, n: int):
    devices = [await harness.register() for _ in range(n)]
    out = []
    for d in devices:
        body = await (await harness.checkin(d)).json()
        assert body["outcome"] == "assigned", body
        out.append((d, body["assignment"]))
    return out


async def _upload_meta(harness, device, assignment, body: bytes, meta: str):
    headers = {**device, "Content-Type": "application/octet-stream",
               "Fedge-Upload-Token": assignment["upload_token"], "Fedge-Upload": meta}
    return await harness.client.post(assignment["upload_url"], data=body, headers=headers)


async def _error(resp, status: int) -> dict:
    assert resp.status == status, await resp.text()
    return (await resp.json())["error"]


# 1 -- one device froze every task --------------------------------------------------------------
async def test_a_huge_eval_count_is_refused_naming_the_field(harness):
    await harness.setup_task(goal_count=1, over_selection=1.0)
    [(device, a)] = await _assigned(harness, 1)
    for meta, fragment in [('{"example_count": 5, "eval_count": ' + "9" * 400 + "}", "400 digits"),
                           ('{"example_count": 5, "eval_count": 10000001}', "eval_count"),
                           ('{"example_count": 5, "eval_accuracy": 1.5}', "eval_accuracy"),
                           ('{"example_count": 5, "train_loss": 1e300}', "train_loss")]:
        err = await _error(await _upload_meta(harness, device, a, harness.payload(), meta), 400)
        assert fragment in err["message"], err
    assert (await harness.rounds())[0]["reported"] == 0


async def test_an_error_while_driving_one_task_fails_its_round_and_the_others_go_on(harness):
    await harness.setup_task(goal_count=2, over_selection=1.0)
    [(d1, a1), (d2, a2)] = await _assigned(harness, 2)
    assert (await harness.upload(d1, a1, harness.payload())).status == 201
    # A record that got into the store before the door was closed (an older coordinator wrote it).
    store = harness.coordinator.store
    store.execute("UPDATE updates SET meta=? WHERE task_id='t1'", json.dumps({"eval_count": 1,
                                                                               "eval_accuracy": 0.5,
                                                                               "train_loss": "not a number",
                                                                               "eval_loss": 1.0}))
    # A second task, created after the first: it must open and run whatever the first one does.
    sha = harness.coordinator.tasks["t1"].model_sha
    resp = await harness.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN, json={
        "model_sha256": sha, "task_id": "t2", "config": {"goal_count": 1, "over_selection": 1.0, "rounds": 1}})
    assert resp.status == 201
    # The last upload fills the round and commits it in the request: acknowledged, not a 500.
    resp = await harness.upload(d2, a2, harness.payload(seed=1))
    assert resp.status == 201, await resp.text()
    r1 = (await harness.rounds())[0]
    assert r1["state"] == "failed" and "internal error while driving the round" in r1["reason"]
    harness.tick()
    harness.tick()
    assert [r["state"] for r in await harness.rounds()] == ["failed", "selecting"]
    t2 = harness.coordinator.store.one("SELECT state FROM rounds WHERE task_id='t2' AND round=1")
    assert t2 is not None and t2["state"] == "selecting"
    metrics = harness.client.server.app[METRICS].render().decode()
    assert 'fedge_round_driver_errors_total{error="TypeError"} 1.0' in metrics


async def test_a_task_whose_driver_raises_does_not_stop_the_tick_for_the_next(harness, monkeypatch):
    await harness.setup_task()
    sha = harness.coordinator.tasks["t1"].model_sha
    await harness.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN, json={
        "model_sha256": sha, "task_id": "t2", "config": {"goal_count": 1, "rounds": 1}})
    c = harness.coordinator
    kind = c.driver.kind(c.tasks["t1"])
    real = kind.advance

    def exploding(task, rnd, now):
        if task.task_id == "t1":
            raise RuntimeError("boom")
        return real(task, rnd, now)

    monkeypatch.setattr(kind, "advance", exploding)
    harness.tick()  # t1's round 1 is open: its driver raises; t2 opens round 1 all the same
    assert c.store.one("SELECT state FROM rounds WHERE task_id='t2' AND round=1")["state"] == "selecting"
    r1 = c.store.one("SELECT state, reason FROM rounds WHERE task_id='t1' AND round=1")
    assert r1["state"] == "failed" and "RuntimeError: boom" in r1["reason"]


# 2 -- poisoned updates were committed -------------------------------------------------------------
async def test_a_huge_update_moves_the_model_by_at_most_max_update_norm(harness):
    await harness.setup_task(goal_count=1, over_selection=1.0, codec="f32", max_update_norm=2.0)
    before = _weights(harness, harness.coordinator.tasks["t1"].checkpoint_sha)
    [(device, a)] = await _assigned(harness, 1)
    assert (await harness.upload(device, a, _f32(harness, 1e30))).status == 201
    r1 = (await harness.rounds())[0]
    assert r1["state"] == "committed"
    after = _weights(harness, r1["checkpoint_sha"])
    assert np.all(np.isfinite(after))
    assert np.linalg.norm(after - before) <= 2.0 * (1 + 1e-5)
    assert 'fedge_clipped_updates_total{bound="server_bound"} 1.0' in \
        harness.client.server.app[METRICS].render().decode()


async def test_a_non_finite_update_is_refused(harness):
    await harness.setup_task(goal_count=1, over_selection=1.0, codec="f32")
    [(device, a)] = await _assigned(harness, 1)
    # Our encoder refuses to write infinity: patch every float32 1.0 of a valid body into +inf.
    body = _f32(harness, 1.0).replace(np.float32(1.0).tobytes(), np.float32(np.inf).tobytes())
    err = await _error(await harness.upload(device, a, body), 400)
    assert err["code"] == "non_finite"  # the codec's decoder refuses it
    assert (await harness.rounds())[0]["reported"] == 0


async def test_a_claimed_example_count_weighs_at_most_max_example_count(harness):
    await harness.setup_task(goal_count=2, over_selection=1.0, codec="f32", max_example_count=100)
    before = _weights(harness, harness.coordinator.tasks["t1"].checkpoint_sha)
    [(d1, a1), (d2, a2)] = await _assigned(harness, 2)
    assert (await harness.upload(d1, a1, _f32(harness, 0.001), examples=10)).status == 201
    assert (await harness.upload(d2, a2, _f32(harness, -0.001), examples=10_000_000)).status == 201
    after = _weights(harness, (await harness.rounds())[0]["checkpoint_sha"])
    expected = (10 * 0.001 + 100 * -0.001) / 110
    assert np.allclose(after - before, expected, atol=1e-7)


# 3 -- DP trusted the device to clip ---------------------------------------------------------------
async def test_dp_clips_on_the_server_whatever_the_device_sent(harness):
    await harness.setup_task(goal_count=1, over_selection=1.0, codec="f32", clip_norm=1.0, rounds=1,
                             dp_noise_multiplier=1e-4, dp_population=100)
    before = _weights(harness, harness.coordinator.tasks["t1"].checkpoint_sha)
    [(device, a)] = await _assigned(harness, 1)
    body = _f32(harness, 100.0)  # L2 norm 100 sqrt(6570) ~ 8,105
    assert np.linalg.norm(codec.decode(body).values) > 8000
    assert (await harness.upload(device, a, body)).status == 201
    after = _weights(harness, (await harness.rounds())[0]["checkpoint_sha"])
    # The clipped update (norm 1) plus noise of stddev 1e-4 per coordinate, over goal 1.
    assert np.linalg.norm(after - before) < 1.0 + 5 * 1e-4 * math.sqrt(before.size)


# 4 -- epsilon could be lowered from outside -------------------------------------------------------
async def test_dp_needs_an_explicit_population(harness):
    await harness.setup_task()
    sha = harness.coordinator.tasks["t1"].model_sha
    resp = await harness.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN, json={
        "model_sha256": sha, "task_id": "t2", "config": {"clip_norm": 1.0, "dp_noise_multiplier": 0.5}})
    assert (await _error(resp, 400))["code"] == "population_required"


async def test_registrations_do_not_change_the_sampling_rate(harness):
    await harness.setup_task(goal_count=2, clip_norm=1.0, dp_noise_multiplier=0.5, dp_population=10)
    task = harness.coordinator.tasks["t1"]
    q = harness.coordinator.driver.dp_sampling_rate(task)
    for _ in range(200):
        await harness.register()
    assert harness.coordinator.driver.dp_sampling_rate(task) == q == 0.2


# 5 -- NaN / Infinity were stored and served -------------------------------------------------------
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_non_finite_numbers_in_the_upload_header_are_refused(harness, literal):
    await harness.setup_task(goal_count=1, over_selection=1.0)
    [(device, a)] = await _assigned(harness, 1)
    meta = '{"example_count": 5, "train_loss": %s}' % literal
    assert (await _error(await _upload_meta(harness, device, a, harness.payload(), meta), 400))["code"] == "bad_meta"
    assert harness.coordinator.store.one("SELECT COUNT(*) AS n FROM updates")["n"] == 0


async def test_the_admin_api_never_sends_non_json_numbers(harness):
    await harness.setup_task()
    # A value an older coordinator let in: the API answers null for it, in standard JSON.
    harness.coordinator.store.execute("UPDATE rounds SET metrics=? WHERE task_id='t1'",
                                      json.dumps({"train_loss": float("nan"), "epsilon": float("inf")}))
    text = await (await harness.client.get("/v1/admin/tasks/t1", headers=ADMIN)).text()

    def refuse(name):
        raise AssertionError(f"{name} in the API's JSON")

    body = json.loads(text, parse_constant=refuse)
    assert body["rounds"][0]["metrics"] == {"train_loss": None, "epsilon": None}


# 6 -- 500s instead of 400s --------------------------------------------------------------------
async def test_hostile_json_is_a_400_not_a_500(harness):
    await harness.setup_task()
    device = await harness.register()
    c = harness.client
    json_headers = {"Content-Type": "application/json"}
    cases = [
        ("/v1/devices/register", "[" * 5000, {}),
        ("/v1/checkin", "[" * 3000 + "]" * 3000, device),
        ("/v1/checkin", '{"state": {}, "wait_s": ' + "1" * 5000 + "}", device),
        ("/v1/checkin", '{"state": {"battery": ' + "1" * 401 + "}}", device),
        ("/v1/checkin", '{"state": {}, "wait_s": ' + "1" * 401 + "}", device),
        ("/v1/checkin", '{"state": {"battery": 1e308}}', device),
        ("/v1/devices/register", '{"population": "pop", "label": ' + '"x"' + ', "n": ' + "7" * 5000 + "}", {}),
    ]
    for path, body, headers in cases:
        err = await _error(await c.post(path, data=body, headers={**json_headers, **headers}), 400)
        assert err["code"] in ("malformed_json", "bad_request"), err
    [(d, a)] = [(device, (await (await harness.checkin(device)).json())["assignment"])]
    meta = '{"example_count": ' + "5" * 5000 + "}"
    assert (await _error(await _upload_meta(harness, d, a, harness.payload(), meta), 400))["code"] == "bad_meta"
    # Match the label, not the text: a *_created timestamp can contain "500".
    rendered = harness.client.server.app[METRICS].render().decode()
    error_lines = [line for line in rendered.splitlines() if line.startswith("fedge_http_errors_total{")]
    assert error_lines and not [line for line in error_lines if 'status="500"' in line], error_lines


# 7 -- a short body held the connection; a disconnect was a 500 ----------------------------------
@pytest.fixture
async def short_timeout_server(tmp_path):
    """Served as `fedge serve` serves (aiohttp's test server cancels a handler whose client
    left, which production does not)."""
    from aiohttp import web

    from fedge.local_coordinator import free_port

    app = create_app(ServeConfig(db=str(tmp_path / "c.db"), admin_token="a", body_timeout_s=0.5), run_ticker=False)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield SimpleNamespace(host="127.0.0.1", port=port, app=app)
    await runner.cleanup()


async def _send_partial(server, close: bool) -> bytes:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"POST /v1/devices/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"population\"")
    await writer.drain()
    if close:
        writer.close()
        await asyncio.sleep(0.3)
        return b""
    data = await asyncio.wait_for(reader.read(4096), 5.0)
    writer.close()
    return data


async def test_a_body_shorter_than_its_length_gets_408(short_timeout_server):
    answer = await _send_partial(short_timeout_server, close=False)
    assert answer.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in answer


async def test_a_client_that_disconnects_is_not_a_500(short_timeout_server):
    await _send_partial(short_timeout_server, close=True)
    metrics = short_timeout_server.app[METRICS].render().decode()
    assert 'code="client_closed_request",status="499"} 1.0' in metrics
    assert 'status="500"' not in metrics


# 8 -- '..' was a task id ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["..", ".", "a.b", "a/b", "-x", "", "x" * 65, "dé"])
async def test_names_follow_one_pattern(harness, name):
    await harness.setup_task()
    sha = harness.coordinator.tasks["t1"].model_sha
    resp = await harness.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN,
                                     json={"model_sha256": sha, "task_id": name})
    assert (await _error(resp, 400))["code"] == "bad_name"
    resp = await harness.client.post("/v1/admin/populations", headers=ADMIN, json={"name": name})
    assert (await _error(resp, 400))["code"] == "bad_name"
    assert set(harness.coordinator.tasks) == {"t1"}


async def test_an_upload_being_stored_cannot_be_sent_twice_at_once(harness):
    """The storing step may run on the intake thread (PostgreSQL): a second copy of the same
    device's upload meanwhile is a 409, never a second row or a 500."""
    from protocol.messages import UploadMeta

    await harness.setup_task(goal_count=2, over_selection=1.0)
    device = await harness.register()
    a = (await (await harness.checkin(device)).json())["assignment"]
    g = harness.coordinator.gateway
    record = g.authenticate(device["Authorization"])
    body = harness.payload()
    step = g.begin_upload(record, "t1", 1, a["upload_token"], UploadMeta(example_count=5), body)
    second = await harness.upload(device, a, body)
    assert second.status == 409 and (await second.json())["error"]["code"] == "in_progress"
    try:
        reported = g.persist_upload(step, harness.coordinator.store)
    finally:
        g.end_upload(step)
    assert g.finish_upload(step, reported) == {"accepted": True, "duplicate": False}
    again = await harness.upload(device, a, body)  # now an ordinary retry: the same bytes, acknowledged
    assert again.status == 200 and (await again.json())["duplicate"] is True
    assert harness.coordinator.store.round("t1", 1).reported == 1


async def test_one_devices_eval_count_weighs_no_more_than_the_plans_example_cap(harness):
    await harness.setup_task(goal_count=3, over_selection=1.0, max_example_count=100)
    pairs = await _assigned(harness, 3)
    metas = [{"example_count": 50, "eval_accuracy": 0.95, "eval_loss": 0.1, "eval_count": 100},
             {"example_count": 50, "eval_accuracy": 0.95, "eval_loss": 0.1, "eval_count": 100},
             {"example_count": 50, "eval_accuracy": 0.0, "eval_loss": 1e9, "eval_count": 10**7}]
    for (d, a), meta in zip(pairs, metas):
        resp = await _upload_meta(harness, d, a, harness.payload(), json.dumps(meta))
        assert resp.status == 201, await resp.text()
    harness.tick()
    m = (await harness.rounds())[0]["metrics"]
    assert m["eval_accuracy"] == pytest.approx(0.95 * 200 / 300)  # the liar weighs 100, not 10^7
