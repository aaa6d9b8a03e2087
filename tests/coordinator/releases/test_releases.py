"""Model releases on the coordinator: a committed round released to a population, offered at
check-in to the devices in its rollout with a signature that verifies with the key they
pinned at registration; staged, promoted, superseded and rolled back; hostile requests
refused without changing anything. Runs on SQLite and PostgreSQL (the harness)."""

import hashlib

from protocol.releases import ReleaseOffer, in_rollout
from tests.coordinator.conftest import ADMIN
from tests.coordinator.rounds.test_retention import _run_rounds


async def _committed(harness, rounds: int = 2) -> None:
    await harness.setup_task(rounds=rounds, goal_count=2, over_selection=1.0)
    devices = [await harness.register() for _ in range(2)]
    for _ in range(20):
        if harness.coordinator.store.committed_count("t1") >= rounds:
            return
        await _run_rounds(harness, 1, devices)
    raise AssertionError("the rounds did not commit")


async def _release(harness, **body):
    resp = await harness.client.post("/v1/admin/tasks/t1/releases", headers=ADMIN, json={"round": 1, **body})
    return resp.status, await resp.json()


async def _register(harness):
    resp = await harness.client.post("/v1/devices/register", json={"population": "pop"})
    body = await resp.json()
    return {"Authorization": f"Bearer {body['token']}"}, body["device_id"], body["release_key"]


async def _offer(harness, device, **fields):
    full = {"charging": False, "unmetered": True, "idle": True, "battery": 0.9}
    body = {"state": full, "release_channel": "stable", **fields}
    resp = await harness.client.post("/v1/checkin", json=body, headers=device)
    body = await resp.json()
    assert resp.status == 200, body
    return ReleaseOffer.from_dict(body["release"]) if "release" in body else None


async def test_a_released_round_is_offered_signed_and_downloads_as_the_model_with_its_weights(harness):
    await _committed(harness)
    status, release = await _release(harness, note="first")
    assert status == 201, release
    assert release["sequence"] == 1 and release["state"] == "active" and release["percent"] == 100
    device, _, key = await _register(harness)
    offer = await _offer(harness, device)
    assert offer is not None and offer.release_id == release["release_id"]
    offer.verify(key, "pop", 0)  # the pinned key verifies the coordinator's statement
    blob = await harness.client.get(offer.url, headers=device)
    data = await blob.read()
    assert hashlib.sha256(data).hexdigest() == offer.model_sha256 == release["model_sha256"] and len(data) == offer.size
    assert await _offer(harness, device, release_sequence=1) is None  # installed: nothing more to offer
    assert await _offer(harness, device, release_channel="") is None  # a device that takes no releases: none
    kinds = [e["kind"] for e in (await (await harness.client.get("/v1/admin/tasks/t1/audit", headers=ADMIN)).json())
             ["entries"]]
    assert "release" in kinds


async def test_a_staged_rollout_reaches_the_hashed_share_and_only_grows(harness):
    await _committed(harness)
    _, release = await _release(harness, percent=10)
    rid = release["release_id"]
    devices = [await _register(harness) for _ in range(120)]
    offered = {d_id for d, d_id, _ in devices if await _offer(harness, d)}
    assert offered == {d_id for _, d_id, _ in devices if in_rollout(rid, d_id, 10)}
    assert 0 < len(offered) < 40
    down = await harness.client.post(f"/v1/admin/releases/{rid}/promote", headers=ADMIN, json={"percent": 5})
    assert down.status == 409 and (await down.json())["error"]["code"] == "percent_down"
    up = await harness.client.post(f"/v1/admin/releases/{rid}/promote", headers=ADMIN, json={"percent": 100})
    assert up.status == 200 and (await up.json())["percent"] == 100
    harness.clock.advance(2.0)  # past the offers' one-second cache
    assert all([await _offer(harness, d) is not None for d, _, _ in devices])


async def test_rollback_moves_every_device_back_with_a_newer_sequence(harness):
    await _committed(harness)
    _, first = await _release(harness, round=1)
    _, second = await _release(harness, round=2)
    assert second["sequence"] == 2
    listed = (await (await harness.client.get("/v1/admin/releases?population=pop", headers=ADMIN)).json())["releases"]
    assert [(r["sequence"], r["state"]) for r in listed] == [(2, "active"), (1, "superseded")]
    old = await harness.client.post(f"/v1/admin/releases/{first['release_id']}/rollback", headers=ADMIN)
    assert old.status == 409 and (await old.json())["error"]["code"] == "not_active"
    resp = await harness.client.post(f"/v1/admin/releases/{second['release_id']}/rollback", headers=ADMIN)
    back = await resp.json()
    assert resp.status == 201, back
    assert back["sequence"] == 3 and back["model_sha256"] == first["model_sha256"]
    assert back["rollback_of"] == second["release_id"]
    device, _, key = await _register(harness)
    harness.clock.advance(2.0)
    offer = await _offer(harness, device, release_sequence=2)  # a device on the rolled-back release
    assert offer.release_id == back["release_id"] and offer.model_sha256 == first["model_sha256"]
    offer.verify(key, "pop", 2)
    again = await harness.client.post(f"/v1/admin/releases/{second['release_id']}/rollback", headers=ADMIN)
    assert again.status == 409  # rolled back already: nothing changes
    assert len((await (await harness.client.get("/v1/admin/releases", headers=ADMIN)).json())["releases"]) == 3
    shown = (await (await harness.client.get("/v1/status", headers=ADMIN)).json())["releases"]
    assert [(r["sequence"], r["state"]) for r in shown] == [(3, "active"), (2, "rolled_back"), (1, "superseded")]
    assert all("signature" not in r for r in shown)


async def test_hostile_and_impossible_release_requests_change_nothing(harness):
    await _committed(harness, rounds=1)
    _, release = await _release(harness)
    rid = release["release_id"]
    await harness.client.post("/v1/admin/populations", headers=ADMIN, json={"name": "other"})
    outsider = await harness.client.post("/v1/devices/register", json={"population": "other"})
    headers = {"Authorization": f"Bearer {(await outsider.json())['token']}"}
    resp = await harness.client.get(f"/v1/releases/{rid}", headers=headers)
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "other_population"
    assert await _offer(harness, headers) is None  # another population's check-in carries no release
    member, _, _ = await _register(harness)
    assert (await harness.client.get(f"/v1/releases/{rid}", headers=member)).status == 200
    assert (await harness.client.get("/v1/releases/rel-nope", headers=member)).status == 404
    for body, status, code in [({"round": 7}, 409, "not_committed"), ({"round": 1, "percent": 0}, 400, None),
                               ({"round": 1, "percent": 101}, 400, None), ({"round": 1, "channel": "a/b"}, 400, None),
                               ({"round": 1, "require_eval": 0.5}, 409, "no_evaluation"),
                               ({"round": 1, "release_id": rid}, 409, "exists"), ({"round": 1, "x": 1}, 400, None)]:
        resp = await harness.client.post("/v1/admin/tasks/t1/releases", headers=ADMIN, json=body)
        assert resp.status == status, (body, await resp.text())
        if code:
            assert (await resp.json())["error"]["code"] == code
    listed = (await (await harness.client.get("/v1/admin/releases", headers=ADMIN)).json())["releases"]
    assert [r["release_id"] for r in listed] == [rid]
    assert (await harness.client.post(f"/v1/admin/releases/{rid}/promote", json={"percent": 50})).status == 401
