"""Check-in, selection, deadlines, commit and failure, through the real HTTP app."""

import hashlib

import numpy as np

from coordinator.gateway.pace import INPUTS_TTL_S
from protocol import codec
from protocol.tflite_file import read_initial_weights, read_manifest, weight_spans
from tests.coordinator.conftest import ADMIN


async def test_eligibility_outcomes(harness):
    await harness.setup_task(eligibility="charging and unmetered and idle and battery >= 0.3")
    device = await harness.register()
    for state in ({"charging": False}, {"unmetered": False}, {"idle": False}, {"battery": 0.1}):
        resp = await harness.checkin(device, **state)
        body = await resp.json()
        assert resp.status == 200 and body["outcome"] == "retry" and body["reason"] == "ineligible", state
        assert body["retry_at"] > harness.clock()
    body = await (await harness.checkin(device)).json()
    assert body["outcome"] == "assigned"
    a = body["assignment"]
    assert a["round"] == 1 and a["plan"]["codec"] == "q8" and a["model_url"].endswith(a["model_sha256"])


async def test_over_selection_then_no_slot_with_pace_steering(harness):
    await harness.setup_task(goal_count=2, over_selection=1.5)  # selects ceil(3)
    devices = [await harness.register() for _ in range(5)]
    outcomes = [(await (await harness.checkin(d)).json()) for d in devices]
    assert [o["outcome"] for o in outcomes] == ["assigned"] * 3 + ["retry"] * 2
    assert {o["reason"] for o in outcomes[3:]} == {"no_slot"}
    rounds = await harness.rounds()
    assert rounds[0]["state"] == "reporting" and rounds[0]["selected"] == 3
    # The same device checking in again keeps its one assignment and is not counted twice.
    again = await (await harness.checkin(devices[0])).json()
    assert again["outcome"] == "retry"
    assert (await harness.rounds())[0]["selected"] == 3


async def test_round_commits_at_goal_and_moves_the_model(harness):
    await harness.setup_task(goal_count=2, over_selection=1.0)
    devices = [await harness.register() for _ in range(2)]
    assignments = [(await (await harness.checkin(d)).json())["assignment"] for d in devices]
    before = harness.coordinator.tasks["t1"].checkpoint_sha
    for i, (d, a) in enumerate(zip(devices, assignments)):
        resp = await harness.upload(d, a, harness.payload(seed=i), examples=10 * (i + 1))
        assert resp.status == 201, await resp.text()
    harness.tick()
    r1 = (await harness.rounds())[0]
    assert r1["state"] == "committed" and r1["reported"] == 2 and r1["examples"] == 30
    after = harness.coordinator.tasks["t1"].checkpoint_sha
    assert after != before and r1["checkpoint_sha"] == after
    # The new global model is the old one plus the example-weighted mean of the decoded deltas.
    store = harness.coordinator.store
    old = codec.decode(store.blobs.read(before)).values
    new = codec.decode(store.blobs.read(after)).values
    deltas = [codec.decode(harness.payload(seed=i)).values for i in range(2)]
    # Stochastic rounding differs per encode, so compare with the q8 error bound instead of exactly.
    expected = old + (10 * deltas[0] + 20 * deltas[1]) / 30
    assert np.max(np.abs(new - expected)) < 0.01
    harness.tick()
    assert (await harness.rounds())[-1]["round"] == 2


async def test_deadline_commits_with_min_reports_and_rejects_late_upload(harness):
    await harness.setup_task(goal_count=3, over_selection=1.0, min_reports=1)
    devices = [await harness.register() for _ in range(3)]
    assignments = [(await (await harness.checkin(d)).json())["assignment"] for d in devices]
    assert (await harness.upload(devices[0], assignments[0], harness.payload())).status == 201
    harness.clock.advance(41)  # past selection window (10) + reporting deadline (30)
    harness.tick()
    assert (await harness.rounds())[0]["state"] == "committed"
    late = await harness.upload(devices[1], assignments[1], harness.payload(seed=1))
    assert late.status == 410 and (await late.json())["error"]["code"] == "round_closed"


async def test_round_fails_below_min_reports_and_next_round_opens(harness):
    await harness.setup_task(goal_count=2, over_selection=1.0, min_reports=2)
    devices = [await harness.register() for _ in range(2)]
    assignments = [(await (await harness.checkin(d)).json())["assignment"] for d in devices]
    await harness.upload(devices[0], assignments[0], harness.payload())
    before = harness.coordinator.tasks["t1"].checkpoint_sha
    harness.clock.advance(41)
    harness.tick()
    r1 = (await harness.rounds())[0]
    assert r1["state"] == "failed" and "1 reports" in r1["reason"]
    assert harness.coordinator.tasks["t1"].checkpoint_sha == before  # nothing committed
    harness.tick()
    assert [r["round"] for r in await harness.rounds()] == [1, 2]


async def test_selection_window_without_enough_devices_fails(harness):
    await harness.setup_task(goal_count=4, min_reports=2)
    device = await harness.register()
    await harness.checkin(device)
    harness.clock.advance(11)
    harness.tick()
    r1 = (await harness.rounds())[0]
    assert r1["state"] == "failed" and "selection window" in r1["reason"]


async def test_duplicate_upload_is_idempotent_and_a_different_one_conflicts(harness):
    await harness.setup_task(goal_count=2, over_selection=1.0)
    devices = [await harness.register() for _ in range(2)]
    a = (await (await harness.checkin(devices[0])).json())["assignment"]
    body = harness.payload()
    first = await harness.upload(devices[0], a, body)
    again = await harness.upload(devices[0], a, body)
    assert first.status == 201 and again.status == 200 and (await again.json())["duplicate"] is True
    other = await harness.upload(devices[0], a, harness.payload(seed=9))
    assert other.status == 409
    r1 = (await harness.rounds())[0]
    assert r1["reported"] == 1 and harness.coordinator.sums[("t1", 1)].count == 1


async def test_task_completes_after_its_rounds(harness):
    await harness.setup_task(rounds=1, goal_count=1, over_selection=1.0)
    device = await harness.register()
    a = (await (await harness.checkin(device)).json())["assignment"]
    await harness.upload(device, a, harness.payload())
    harness.tick()
    harness.tick()
    resp = await harness.client.get("/v1/admin/tasks/t1", headers=ADMIN)
    assert (await resp.json())["state"] == "completed"
    body = await (await harness.checkin(device)).json()
    assert body["outcome"] == "retry" and body["reason"] == "no_task"


async def test_pause_resume_cancel(harness):
    await harness.setup_task()
    resp = await harness.client.post("/v1/admin/tasks/t1/pause", headers=ADMIN)
    assert (await resp.json())["state"] == "paused"
    device = await harness.register()
    assert (await (await harness.checkin(device)).json())["reason"] == "no_task"
    await harness.client.post("/v1/admin/tasks/t1/resume", headers=ADMIN)
    assert (await (await harness.checkin(device)).json())["outcome"] == "assigned"
    await harness.client.post("/v1/admin/tasks/t1/cancel", headers=ADMIN)
    assert (await harness.rounds())[0]["state"] == "failed"


async def test_blob_download_is_content_addressed_and_cacheable(harness):
    await harness.setup_task()
    device = await harness.register()
    a = (await (await harness.checkin(device)).json())["assignment"]
    plain = {"Accept-Encoding": "identity"}
    resp = await harness.client.get(a["model_url"], headers=plain)
    body = await resp.read()
    assert resp.status == 200 and hashlib.sha256(body).hexdigest() == a["model_sha256"]
    # The task's model with its weights zeroed (devices load the checkpoint's): nothing else differs.
    assert read_manifest(body) == read_manifest(harness.model) and len(body) == len(harness.model)
    assert not codec.decode(read_initial_weights(body)).values.any()
    assert codec.decode(read_initial_weights(harness.model)).values.any()
    spans = [s for s in weight_spans(harness.model, read_manifest(harness.model)) if s is not None]
    outside = bytearray(harness.model)
    for start, end in spans:
        outside[start:end] = body[start:end]
    assert bytes(outside) == body
    assert "immutable" in resp.headers["Cache-Control"] and resp.headers["ETag"] == f'"{a["model_sha256"]}"'
    assert "Content-Encoding" not in resp.headers
    cached = await harness.client.get(a["model_url"], headers={**plain, "If-None-Match": resp.headers["ETag"]})
    assert cached.status == 304


async def test_a_task_model_travels_gzip_compressed_to_a_device_that_accepts_it(harness):
    import gzip

    await harness.setup_task()
    device = await harness.register()
    a = (await (await harness.checkin(device)).json())["assignment"]
    gz = {"Accept-Encoding": "gzip, deflate"}
    resp = await harness.client.get(a["model_url"], headers=gz, auto_decompress=False)
    body = await resp.read()
    assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
    assert hashlib.sha256(gzip.decompress(body)).hexdigest() == a["model_sha256"]
    # Zeroed weights compress to almost nothing: the download is a fraction of the weights alone.
    weights = 4 * sum(w.size for w in read_manifest(harness.model).weights)
    assert len(body) < 0.5 * weights, (len(body), weights)
    assert resp.headers["ETag"] == f'"{a["model_sha256"]}-gzip"' and resp.headers["Vary"] == "Accept-Encoding"
    again = await harness.client.get(a["model_url"], headers={**gz, "If-None-Match": resp.headers["ETag"]})
    assert again.status == 304
    # The identity representation's tag does not validate the compressed one.
    other = await harness.client.get(a["model_url"], headers={**gz, "If-None-Match": f'"{a["model_sha256"]}"'})
    assert other.status == 200
    # Checkpoints (fetched every round, float32 or codes) are never compressed.
    ckpt = await harness.client.get(a["checkpoint_url"], headers=gz, auto_decompress=False)
    assert ckpt.status == 200 and "Content-Encoding" not in ckpt.headers
    assert len(await ckpt.read()) == int(ckpt.headers["Content-Length"])


async def test_metrics_and_status_page(harness):
    await harness.setup_task()
    device = await harness.register()
    await harness.checkin(device)
    text = await (await harness.client.get("/metrics")).text()
    assert 'fedge_checkins_total{outcome="assigned"} 1.0' in text
    page = await (await harness.client.get("/")).text()
    assert "/v1/status" in page and "uPlot" in page  # the page draws from /v1/status
    assert (await harness.client.get("/static/uplot/uPlot.iife.min.js")).status == 200
    status = await (await harness.client.get("/v1/status")).json()
    [pop] = status["populations"]
    assert pop["name"] == "pop" and pop["registered"] == 1 and pop["checkins"]["outcomes"] == {"assigned": 1}
    [task] = status["tasks"]
    assert task["task_id"] == "t1" and task["model_name"] == "digits_mlp"
    assert task["current"]["state"] == "selecting" and task["current"]["selected"] == 1
    spec = await (await harness.client.get("/v1/openapi.json")).json()
    assert "/v1/checkin" in spec["paths"]


async def test_global_model_download_carries_the_committed_weights(harness):
    from device_runtime.litert_model import LocalModel

    await harness.setup_task(goal_count=1, over_selection=1.0)
    device = await harness.register()
    a = (await (await harness.checkin(device)).json())["assignment"]
    await harness.upload(device, a, harness.payload(scale=0.5))
    harness.tick()
    resp = await harness.client.get("/v1/admin/tasks/t1/model", headers=ADMIN)
    assert resp.status == 200
    data = await resp.read()
    assert len(data) == len(harness.model) and data != harness.model
    store = harness.coordinator.store
    committed = codec.decode(store.blobs.read(harness.coordinator.tasks["t1"].checkpoint_sha)).values
    loaded = codec.flatten(LocalModel(data).get_weights())
    np.testing.assert_array_equal(loaded, committed)
    assert (await harness.client.get("/v1/admin/tasks/t1/model")).status == 401


async def test_long_poll_checkin_is_assigned_when_the_next_round_opens(harness):
    import asyncio

    await harness.setup_task(goal_count=1, over_selection=1.0)
    first, second = await harness.register(), await harness.register()
    a = (await (await harness.checkin(first)).json())["assignment"]
    state = {"charging": True, "unmetered": True, "idle": True, "battery": 0.9}
    waiting = asyncio.create_task(harness.client.post("/v1/checkin", json={"state": state, "wait_s": 5.0},
                                                      headers=second))
    await asyncio.sleep(0.1)
    assert not waiting.done()  # held: round 1 is full
    assert (await harness.upload(first, a, harness.payload())).status == 201  # commits round 1, opens round 2
    body = await (await asyncio.wait_for(waiting, 2.0)).json()
    assert body["outcome"] == "assigned" and body["assignment"]["round"] == 2
    # Without wait_s the answer is immediate.
    body = await (await harness.checkin(first)).json()
    assert body["outcome"] == "retry"


async def test_held_check_ins_are_capped_and_the_rest_answered_at_once(harness):
    import asyncio

    from coordinator.http.keys import ROUND_OPENED

    waiters = harness.client.server.app[ROUND_OPENED]
    waiters.max_held = 2
    await harness.setup_task(goal_count=1, over_selection=1.0)
    first = await harness.register()
    assert (await (await harness.checkin(first)).json())["outcome"] == "assigned"  # round 1 is full now
    others = [await harness.register() for _ in range(3)]
    state = {"charging": True, "unmetered": True, "idle": True, "battery": 0.9}
    held = [asyncio.create_task(harness.client.post("/v1/checkin", json={"state": state, "wait_s": 5.0},
                                                    headers=d)) for d in others[:2]]
    await asyncio.sleep(0.1)
    assert waiters.held == 2 and not any(t.done() for t in held)
    # The third is not held: it gets its retry time at once.
    third = await asyncio.wait_for(harness.client.post("/v1/checkin", json={"state": state, "wait_s": 5.0},
                                                       headers=others[2]), 1.0)
    assert (await third.json())["outcome"] == "retry"
    for t in held:
        t.cancel()
    await asyncio.gather(*held, return_exceptions=True)
    await asyncio.sleep(0.1)
    assert waiters.held == 0  # a hold that ends (here: the client left) releases its place


async def test_health_and_readiness(harness):
    assert (await (await harness.client.get("/healthz")).json()) == {"status": "ok",
                                                                      "replica": harness.coordinator.driver.replica_id}
    assert (await (await harness.client.get("/readyz")).json()) == {"status": "ready"}
    harness.coordinator.store.close()  # the database goes away: not ready, still alive
    resp = await harness.client.get("/readyz")
    assert resp.status == 503 and (await resp.json())["status"] == "unavailable"
    assert (await harness.client.get("/healthz")).status == 200


async def test_a_device_is_read_from_the_store_once(harness):
    await harness.setup_task()
    device = await harness.register()
    store = harness.coordinator.store
    calls = []
    real = store.device
    store.device = lambda device_id: calls.append(device_id) or real(device_id)
    for _ in range(3):
        assert (await harness.checkin(device)).status == 200
    assert calls == []  # registered here: in memory from the start
    harness.coordinator.gateway._device_cache.clear()  # as after a restart, or registered on another replica
    for _ in range(3):
        assert (await harness.checkin(device)).status == 200
    assert len(calls) == 1  # read once, then from memory
    bad = {"Authorization": device["Authorization"][:-4] + "xxxx"}  # right id, wrong token
    assert (await harness.client.post("/v1/checkin", json={"state": {}}, headers=bad)).status == 401


async def test_holds_that_time_out_leave_nothing_behind(harness):
    """Short long polls during a long reporting phase: each hold that times out is forgotten
    at once, not kept until a slot frees (it was ~170 bytes each, without bound)."""
    import asyncio

    from coordinator.http.keys import ROUND_OPENED

    waiters = harness.client.server.app[ROUND_OPENED]
    await harness.setup_task(goal_count=1, over_selection=1.0)
    first = await harness.register()
    assert (await (await harness.checkin(first)).json())["outcome"] == "assigned"  # round 1 is full now
    devices = [await harness.register() for _ in range(20)]
    state = {"charging": True, "unmetered": True, "idle": True, "battery": 0.9}
    for _ in range(3):
        answers = await asyncio.gather(*(harness.client.post("/v1/checkin", json={"state": state, "wait_s": 0.05},
                                                             headers=d) for d in devices))
        assert [(await a.json())["outcome"] for a in answers] == ["retry"] * len(devices)
    await asyncio.sleep(0.05)
    assert waiters.held == 0 and waiters.waiting() == 0


async def test_devices_that_stopped_checking_in_stop_counting_for_pace_steering(harness):
    """A population is mostly devices that are asleep, uninstalled or gone (a fleet's earlier
    runs): once a device is overdue (its retry time plus a grace, without a check-in), pace
    steering stops counting it, so the devices that are here are not told to come back late."""
    await harness.setup_task(goal_count=2, over_selection=1.0, selection_window_s=10)
    c = harness.coordinator
    task = c.tasks["t1"]

    def flush():  # the batch of last_seen / due writes, on the intake thread where there is one
        harness.tick()
        if c.intake is not None:
            c.intake.executor.submit(lambda: None).result()
        harness.clock.advance(INPUTS_TTL_S + 0.5)  # past the pace inputs' cache

    gone = [await harness.register() for _ in range(60)]
    for _ in range(2):  # the second time, pace steering counts them: realistic retry times
        answers = [await (await harness.checkin(d)).json() for d in gone]
        flush()
    assert c.gateway.pace_steering.inputs(task, c.clock())[0] >= 58
    longest = max(a["retry_at"] for a in answers if a["outcome"] == "retry") - c.clock()
    assert longest > 5.0
    # None of them comes back; a while after the last one was due, a new device checks in.
    harness.clock.advance(longest * 1.5 + 60)
    here = await harness.register()
    body = await (await harness.checkin(here)).json()
    flush()
    assert c.gateway.pace_steering.inputs(task, c.clock())[0] <= 3  # the new device, at most two in their round
    assert c.store.count_devices("pop") == 61  # registered, and costing nothing
    if body["outcome"] == "retry":
        assert body["retry_at"] - c.clock() < longest / 4
