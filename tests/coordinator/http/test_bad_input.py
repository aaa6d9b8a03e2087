"""Malformed input gets a JSON 4xx, never a 500, and changes nothing."""

import json

import pytest

from tests.coordinator.conftest import ADMIN


def _snapshot(harness):
    store = harness.coordinator.store
    return {t: store.all(f"SELECT * FROM {t}") and [tuple(r) for r in store.all(f"SELECT * FROM {t}")]
            for t in ("populations", "devices", "tasks", "rounds", "assignments", "updates")}


async def _expect_error(resp, status: int, code: str | None = None):
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body) == {"error"} and isinstance(body["error"]["message"], str)
    if code:
        assert body["error"]["code"] == code


async def test_checkin_malformed_bodies(harness):
    await harness.setup_task()
    device = await harness.register()
    before = _snapshot(harness)
    c = harness.client
    await _expect_error(await c.post("/v1/checkin", data="{not json", headers={**device, "Content-Type": "application/json"}), 400, "malformed_json")
    await _expect_error(await c.post("/v1/checkin", json={"state": {"charging": "yes"}}, headers=device), 400)
    await _expect_error(await c.post("/v1/checkin", json=[1, 2], headers=device), 400)
    await _expect_error(await c.post("/v1/checkin", data="x", headers={**device, "Content-Type": "text/plain"}), 415)
    await _expect_error(await c.post("/v1/checkin", data=b"{" + b" " * 70_000 + b"}",
                                     headers={**device, "Content-Type": "application/json"}), 413)
    await _expect_error(await c.post("/v1/checkin", json={"state": {}}), 401)
    await _expect_error(await c.post("/v1/checkin", json={"state": {}}, headers={"Authorization": "Bearer d-1.x"}), 401)
    after = _snapshot(harness)
    assert before["assignments"] == after["assignments"] and before["rounds"] == after["rounds"]


async def test_upload_malformed_cases_change_nothing(harness):
    await harness.setup_task(goal_count=2, over_selection=1.0)
    device = await harness.register()
    other = await harness.register()
    a = (await (await harness.checkin(device)).json())["assignment"]
    good = harness.payload()
    # Every malformed case on one assignment (its refusals would end it after three).
    harness.coordinator.gateway.refusals.limit = 100
    before = _snapshot(harness)
    c = harness.client
    base = {**device, "Content-Type": "application/octet-stream", "Fedge-Upload-Token": a["upload_token"],
            "Fedge-Upload": json.dumps({"example_count": 5})}
    await _expect_error(await c.post(a["upload_url"], data=good[:-3], headers=base), 400, "bad_payload")
    await _expect_error(await c.post(a["upload_url"], data=b"garbage" * 10, headers=base), 400, "bad_payload")
    await _expect_error(await c.post(a["upload_url"], data=harness.payload(kind="q4"), headers=base), 400, "wrong_codec")
    await _expect_error(await c.post(a["upload_url"], data=good + b"\0" * 100_000, headers=base), 413)
    await _expect_error(await c.post(a["upload_url"], data=good, headers={**base, "Fedge-Upload": "nope"}), 400)
    await _expect_error(await c.post(a["upload_url"], data=good, headers={**base, "Fedge-Upload": '{"example_count": -1}'}), 400)
    await _expect_error(await c.post(a["upload_url"], data=good, headers={**base, "Content-Type": "application/json"}), 415)
    await _expect_error(await c.post(a["upload_url"], data=good, headers={**base, "Fedge-Upload-Token": "wrong"}), 403)
    await _expect_error(await c.post(a["upload_url"], data=good, headers={**base, **other}), 403)
    await _expect_error(await c.post("/v1/tasks/t1/rounds/abc/update", data=good, headers=base), 400)
    # An unknown task and a task the device holds nothing in answer alike: ids cannot be probed.
    unknown = await c.post("/v1/tasks/nope/rounds/1/update", data=good, headers=base)
    not_mine = await c.post("/v1/tasks/t1/rounds/2/update", data=good, headers=base)
    await _expect_error(unknown, 403)
    await _expect_error(not_mine, 403)
    assert (await unknown.json()) == (await not_mine.json())
    await _expect_error(await c.post("/v1/tasks/t1/rounds/7/update", data=good, headers=base), 403)
    assert _snapshot(harness) == before
    assert ("t1", 1) not in harness.coordinator.sums or harness.coordinator.sums[("t1", 1)].count == 0
    # ...and the good upload still goes through afterwards.
    assert (await c.post(a["upload_url"], data=good, headers=base)).status == 201


@pytest.mark.parametrize(
    "config, fragment",
    [
        ({"eligibility": "charging and"}, "syntax error"),
        ({"eligibility": "charging and wifi"}, "column 14"),
        ({"codec": "q3"}, "unknown codec"),
        ({"goal_count": 0}, "goal_count"),
        ({"goal_count": "ten"}, "goal_count"),
        ({"rounds": 1.5}, "rounds"),
        ({"bogus": 1}, "unknown task config"),
        ({"min_reports": 50, "goal_count": 2}, "min_reports"),
        ({"server_optimizer": {"name": "sgd"}}, "server_optimizer"),
    ],
)
async def test_bad_task_config_is_rejected_with_position(harness, config, fragment):
    await harness.setup_task()
    sha = harness.coordinator.tasks["t1"].model_sha
    before = _snapshot(harness)
    resp = await harness.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN,
                                     json={"model_sha256": sha, "config": config, "task_id": "t2"})
    await _expect_error(resp, 400)
    assert fragment in (await resp.json())["error"]["message"]
    assert _snapshot(harness) == before


async def test_admin_errors(harness):
    await harness.setup_task()
    c = harness.client
    await _expect_error(await c.get("/v1/admin/tasks"), 401)
    await _expect_error(await c.get("/v1/admin/tasks", headers={"Authorization": "Bearer nope"}), 401)
    await _expect_error(await c.get("/v1/admin/tasks/missing", headers=ADMIN), 404)
    await _expect_error(await c.post("/v1/admin/tasks/t1/explode", headers=ADMIN), 400)
    await _expect_error(await c.post("/v1/admin/populations", json={"name": "pop"}, headers=ADMIN), 409, "exists")
    await _expect_error(await c.post("/v1/admin/populations", json={"name": "bad name!"}, headers=ADMIN), 400)
    await _expect_error(await c.post("/v1/admin/models", data=b"not a model",
                                     headers={**ADMIN, "Content-Type": "application/octet-stream"}), 400, "bad_model")
    await _expect_error(await c.post("/v1/admin/populations/nope/tasks", json={}, headers=ADMIN), 404)
    await _expect_error(await c.post("/v1/admin/populations/pop/tasks", json={"model_sha256": "0" * 64}, headers=ADMIN), 400)
    sha = harness.coordinator.tasks["t1"].model_sha
    blobs = sorted(p.name for p in harness.coordinator.store.blobs.blob_dir.iterdir())
    for task_id in (7, ["t"], "t1"):
        resp = await c.post("/v1/admin/populations/pop/tasks", json={"model_sha256": sha, "task_id": task_id},
                            headers=ADMIN)
        await _expect_error(resp, 409 if task_id == "t1" else 400)
    assert sorted(p.name for p in harness.coordinator.store.blobs.blob_dir.iterdir()) == blobs
    await _expect_error(await c.post("/v1/devices/register", json={"population": "nope"}), 404)
    await _expect_error(await c.get("/v1/blobs/" + "0" * 64), 404)
    await _expect_error(await c.get("/v1/blobs/..%2F..%2Fetc"), 404)
    await _expect_error(await c.get("/no/such/route"), 404)


async def test_checkin_rate_limit(harness, tmp_path):
    await harness.setup_task()
    harness.coordinator.gateway.checkin_limit.rate, harness.coordinator.gateway.checkin_limit.burst = 1.0, 2.0
    device = await harness.register()
    statuses = [(await harness.checkin(device)).status for _ in range(4)]
    assert statuses[:2] == [200, 200] and statuses[-1] == 429


async def _raw_request(harness, head: bytes, body: bytes = b"") -> tuple[int, dict]:
    """An HTTP/1.1 request written byte for byte (aiohttp's client will not send non-UTF-8 headers)."""
    import asyncio

    server = harness.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(head + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


@pytest.mark.parametrize("header", [b"Authorization: Bearer \xff\xfe\xc3(", b"Authorization: \x80\x81"])
async def test_non_utf8_admin_token_is_401(harness, header):
    status, body = await _raw_request(harness, b"GET /v1/admin/tasks HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n")
    assert status == 401 and body["error"]["code"] == "unauthorized"


async def test_non_utf8_device_and_upload_tokens_are_4xx_and_change_nothing(harness):
    await harness.setup_task(goal_count=2, over_selection=1.0)
    device = await harness.register()
    a = (await (await harness.checkin(device)).json())["assignment"]
    before = _snapshot(harness)
    path = a["upload_url"].encode()
    auth = device["Authorization"].encode()
    body = harness.payload()
    common = b"Content-Type: application/octet-stream\r\nFedge-Upload: {\"example_count\": 5}\r\nHost: x\r\n"
    status, _ = await _raw_request(harness, b"POST " + path + b" HTTP/1.1\r\n" + common + b"Authorization: " + auth
                                   + b"\r\nFedge-Upload-Token: \xff\xfe\x80tok\r\n", body)
    assert status == 403
    status, _ = await _raw_request(harness, b"POST " + path + b" HTTP/1.1\r\n" + common
                                   + b"Authorization: Bearer d-1.\xff\xfe\r\nFedge-Upload-Token: x\r\n", body)
    assert status == 401
    status, _ = await _raw_request(harness, b"POST /v1/checkin HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                                   b"\r\nAuthorization: Bearer \xc3\x28.\xa0\xa1\r\n", b'{"state": {}}')
    assert status == 401
    assert _snapshot(harness) == before


def _model_with_manifest(model: bytes, manifest_text: bytes) -> bytes:
    from model_export.embed import embed_metadata
    from protocol.manifest import MANIFEST_METADATA_NAME

    return embed_metadata(model, {MANIFEST_METADATA_NAME: manifest_text})


@pytest.mark.parametrize("mutate", [
    lambda m: "[" * 3000 + "]" * 3000,
    lambda m: m.replace('"num_classes": 10', '"num_classes": 1e400'),
    lambda m: m.replace('"num_classes": 10', '"num_classes": 100000000000000000000'),
    lambda m: m.replace('"batch_size": 32', '"batch_size": 1e300'),
    lambda m: m.replace('"num_classes": 10', '"num_classes": NaN'),
    lambda m: m.replace('"num_classes": 10', '"num_classes": "10"'),
])
async def test_a_malformed_manifest_inside_a_model_is_400_and_stores_nothing(harness, mutate):
    text = harness.manifest.to_json()
    bad = mutate(text)
    assert bad != text
    blobs = sorted(p.name for p in harness.coordinator.store.blobs.blob_dir.iterdir())
    resp = await harness.client.post("/v1/admin/models", data=_model_with_manifest(harness.model, bad.encode()),
                                     headers={**ADMIN, "Content-Type": "application/octet-stream"})
    await _expect_error(resp, 400, "bad_manifest")
    assert sorted(p.name for p in harness.coordinator.store.blobs.blob_dir.iterdir()) == blobs


@pytest.mark.parametrize("config", [
    {"aggregator": "krum", "goal_count": 1_000_000},
    {"aggregator": "median", "goal_count": 100_000, "over_selection": 10},
    {"aggregator": "trimmed_mean", "goal_count": 200_000},
])
async def test_a_robust_aggregator_that_would_exhaust_memory_is_refused_at_creation(harness, config):
    await harness.setup_task()
    before = _snapshot(harness)
    sha = harness.coordinator.tasks["t1"].model_sha
    resp = await harness.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN,
                                     json={"model_sha256": sha, "task_id": "t9", "config": config})
    await _expect_error(resp, 400, "aggregation_too_large")
    assert "MiB" in (await resp.json())["error"]["message"]
    assert _snapshot(harness) == before


async def test_a_robust_aggregator_within_the_limit_is_accepted(harness):
    from coordinator.aggregation.reducers import peak_bytes

    await harness.setup_task()
    sha = harness.coordinator.tasks["t1"].model_sha
    n = harness.manifest.num_parameters
    assert peak_bytes("krum", 130, n) < harness.coordinator.admin.max_aggregation_bytes
    resp = await harness.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN,
                                     json={"model_sha256": sha, "task_id": "t9",
                                           "config": {"aggregator": "krum", "goal_count": 100}})
    assert resp.status == 201, await resp.text()


def test_the_openapi_schema_states_the_parsers_bounds():
    """The served schema said attestation maxLength 1024 and cached_models maxItems 8; the
    parser allows 16 KiB and 256: both now come from protocol.messages."""
    from coordinator.http.openapi import OPENAPI
    from protocol.messages import MAX_ATTESTATION, MAX_CACHED_MODELS, MAX_SECRET

    schemas = OPENAPI["components"]["schemas"]
    assert schemas["RegisterRequest"]["properties"]["attestation"]["maxLength"] == MAX_ATTESTATION == 16 * 1024
    assert schemas["RegisterRequest"]["properties"]["enrollment_secret"]["maxLength"] == MAX_SECRET
    checkin = schemas["CheckinRequest"]["properties"]["cached_models"]
    assert checkin["maxItems"] == MAX_CACHED_MODELS == 256
