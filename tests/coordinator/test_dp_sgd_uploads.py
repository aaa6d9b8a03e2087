"""A task with example-level DP-SGD: its plan carries the noise multiplier, clip and delta;
an upload must report its DP-SGD steps at that noise (bounded, finite) or is refused and
changes nothing; the committed round records the largest example-level epsilon one device
spent in it; a model without train_dp or a half-set config is refused at creation."""

import json

import pytest

from coordinator.aggregation.privacy import epsilon
from coordinator.http.app import ServeConfig, create_app
from tests.coordinator.conftest import ADMIN, FakeClock, Harness
from tests.coordinator.http.test_bad_input import _expect_error, _snapshot

DP = {"dp_sgd_noise_multiplier": 1.1, "dp_sgd_clip": 0.5, "dp_sgd_delta": 1e-6}


@pytest.fixture
async def dp_harness(aiohttp_client, digits_dp_tflite, tmp_path):
    clock = FakeClock()
    app = create_app(ServeConfig(db=str(tmp_path / "c.db"), data_dir=str(tmp_path / "data"),
                                 admin_token="admin-secret", checkin_rate=1000.0), run_ticker=False, clock=clock)
    return Harness(await aiohttp_client(app), clock, digits_dp_tflite)


def _headers(device, a, meta):
    return {**device, "Content-Type": "application/octet-stream", "Fedge-Upload-Token": a["upload_token"],
            "Fedge-Upload": json.dumps(meta)}


async def test_uploads_report_their_steps_and_the_round_records_epsilon(dp_harness):
    h = dp_harness
    await h.setup_task(goal_count=2, over_selection=1.0, **DP)
    devices = [await h.register() for _ in range(2)]
    assignments = [(await (await h.checkin(d)).json())["assignment"] for d in devices]
    assert all(a["plan"]["dp_sgd_noise_multiplier"] == 1.1 and a["plan"]["dp_sgd_clip"] == 0.5
               and a["plan"]["dp_sgd_delta"] == 1e-6 for a in assignments)
    events = [{"noise_multiplier": 1.1, "sampling_rate": 0.4, "steps": 6},
              {"noise_multiplier": 1.1, "sampling_rate": 0.05, "steps": 40}]
    for d, a, event, own in zip(devices, assignments, events, (0.9, 2.5)):
        resp = await h.client.post(a["upload_url"], data=h.payload(), headers=_headers(
            d, a, {"example_count": 10, "dp_sgd": event, "dp_sgd_epsilon": own}))
        assert resp.status == 201, await resp.text()
    h.tick()
    r1 = (await h.rounds())[0]
    assert r1["state"] == "committed"
    worst = max(epsilon(e["noise_multiplier"], e["sampling_rate"], e["steps"], 1e-6) for e in events)
    assert r1["metrics"]["dp_sgd_round_epsilon"] == pytest.approx(worst)
    assert r1["metrics"]["dp_sgd_device_epsilon"] == 2.5


async def test_an_upload_without_its_dp_sgd_steps_or_with_hostile_ones_is_refused(dp_harness):
    h = dp_harness
    await h.setup_task(goal_count=2, over_selection=1.0, **DP)
    device = await h.register()
    a = (await (await h.checkin(device)).json())["assignment"]
    before = _snapshot(h)
    post = h.client.post
    good = {"noise_multiplier": 1.1, "sampling_rate": 0.4, "steps": 6}
    for meta, code in (({"example_count": 10}, "no_dp_sgd"),
                       ({"example_count": 10, "dp_sgd": {**good, "noise_multiplier": 0.5}}, "no_dp_sgd"),
                       ({"example_count": 10, "dp_sgd": {**good, "sampling_rate": 1.5}}, "bad_meta"),
                       ({"example_count": 10, "dp_sgd": {**good, "steps": -1}}, "bad_meta"),
                       ({"example_count": 10, "dp_sgd": {**good, "sampling_rate": 0.0}}, "bad_meta"),
                       ({"example_count": 10, "dp_sgd": [1.1, 0.4, 6]}, "bad_meta"),
                       ({"example_count": 10, "dp_sgd": good, "dp_sgd_epsilon": -1.0}, "bad_meta")):
        await _expect_error(await post(a["upload_url"], data=h.payload(), headers=_headers(device, a, meta)),
                            400, code)
    raw = '{"example_count": 10, "dp_sgd": {"noise_multiplier": NaN, "sampling_rate": 0.4, "steps": 6}}'
    await _expect_error(await post(a["upload_url"], data=h.payload(), headers={
        **_headers(device, a, {}), "Fedge-Upload": raw}), 400)
    assert _snapshot(h) == before
    resp = await post(a["upload_url"], data=h.payload(), headers=_headers(device, a, {"example_count": 10,
                                                                                       "dp_sgd": good}))
    assert resp.status == 201, await resp.text()


async def test_dp_sgd_configs_that_cannot_work_are_refused(dp_harness, digits_tflite):
    h = dp_harness
    await h.setup_task()
    post = h.client.post
    sha = h.coordinator.tasks["t1"].model_sha
    for config, code in (({"dp_sgd_noise_multiplier": 1.0}, "bad_dp_sgd"),
                         ({"dp_sgd_clip": 1.0}, "bad_dp_sgd"),
                         # Personalized evaluation would fine-tune outside DP-SGD's guarantee.
                         ({"dp_sgd_noise_multiplier": 1.0, "dp_sgd_clip": 1.0, "personalize_steps": 5}, "bad_dp_sgd"),
                         ({"dp_sgd_noise_multiplier": -1.0, "dp_sgd_clip": 1.0}, None)):
        resp = await post("/v1/admin/populations/pop/tasks", headers=ADMIN,
                          json={"model_sha256": sha, "config": config, "task_id": "bad"})
        await _expect_error(resp, 400, code)
    resp = await post("/v1/admin/models", data=digits_tflite, headers={**ADMIN, "Content-Type": "application/octet-stream"})
    plain_sha = (await resp.json())["model_sha256"]
    resp = await post("/v1/admin/populations/pop/tasks", headers=ADMIN,
                      json={"model_sha256": plain_sha, "config": DP, "task_id": "bad"})
    await _expect_error(resp, 400, "unsupported_plan")
    assert "fedge export --dp-sgd" in (await resp.json())["error"]["message"]


async def test_a_dp_sgd_task_is_evaluated_without_personalization(dp_harness):
    h = dp_harness
    await h.setup_task(goal_count=1, over_selection=1.0, **DP)
    device = await h.register()
    a = (await (await h.checkin(device)).json())["assignment"]
    resp = await h.client.post(a["upload_url"], data=h.payload(), headers=_headers(
        device, a, {"example_count": 10, "dp_sgd": {"noise_multiplier": 1.1, "sampling_rate": 0.4, "steps": 6}}))
    assert resp.status == 201, await resp.text()
    h.tick()
    url = "/v1/admin/tasks/t1/evaluate"
    await _expect_error(await h.client.post(url, headers=ADMIN, json={"personalize_steps": 5}), 400, "bad_dp_sgd")
    resp = await h.client.post(url, headers=ADMIN, json={})
    assert resp.status == 201, await resp.text()


async def test_a_device_cannot_inflate_or_shrink_the_reported_epsilons(dp_harness):
    """Steps beyond the plan are refused; a claimed noise above the task's is accounted at the
    task's; a device's own ledger counts at most what every planned step at q = 1 would spend."""
    h = dp_harness
    await h.setup_task(goal_count=2, over_selection=1.0, **DP)
    devices = [await h.register() for _ in range(2)]
    assignments = [(await (await h.checkin(d)).json())["assignment"] for d in devices]
    cfg = h.coordinator.tasks["t1"].config
    most = cfg.epochs * -(-cfg.max_example_count // h.manifest.batch_size)
    await _expect_error(await h.client.post(assignments[0]["upload_url"], data=h.payload(), headers=_headers(
        devices[0], assignments[0], {"example_count": 10, "dp_sgd": {"noise_multiplier": 1.1, "sampling_rate": 0.4,
                                                                     "steps": most + 1}})), 400, "bad_dp_sgd")
    honest = {"noise_multiplier": 1.1, "sampling_rate": 0.4, "steps": 6}
    loud = {"noise_multiplier": 500.0, "sampling_rate": 0.4, "steps": most}  # "so much noise it costs nothing"
    for d, a, event, own in zip(devices, assignments, (honest, loud), (0.9, 1e9)):
        resp = await h.client.post(a["upload_url"], data=h.payload(), headers=_headers(
            d, a, {"example_count": 10, "dp_sgd": event, "dp_sgd_epsilon": own}))
        assert resp.status == 201, await resp.text()
    h.tick()
    m = (await h.rounds())[0]["metrics"]
    assert m["dp_sgd_round_epsilon"] == pytest.approx(epsilon(1.1, 0.4, most, 1e-6))  # at the task's noise
    ceiling = epsilon(1.1, 1.0, most * cfg.rounds, 1e-6)
    assert m["dp_sgd_device_epsilon"] == pytest.approx(ceiling) and ceiling < 1e9


async def test_dp_sgd_fields_in_a_task_without_it_are_refused(harness):
    await harness.setup_task(goal_count=2, over_selection=1.0)
    device = await harness.register()
    a = (await (await harness.checkin(device)).json())["assignment"]
    for meta in ({"example_count": 10, "dp_sgd": {"noise_multiplier": 1.0, "sampling_rate": 0.1, "steps": 10**6}},
                 {"example_count": 10, "dp_sgd_epsilon": 1e9}):
        await _expect_error(await harness.client.post(a["upload_url"], data=harness.payload(),
                                                      headers=_headers(device, a, meta)), 400, "unrequested_field")
