"""Disk retention: a long task keeps the last N checkpoints and every K-th, its round
details for the last M rounds, and no empty folders; the operator status reports disk use."""

import pytest

from coordinator.rounds.retention import keeps_checkpoint
from tests.coordinator.conftest import ADMIN


async def _run_rounds(harness, n: int, devices):
    for _ in range(n):
        for device in devices:
            resp = await harness.checkin(device)
            body = await resp.json()
            if body.get("assignment"):
                await harness.upload(device, body["assignment"], harness.payload())
        harness.tick()  # commits the full round (synchronously in the harness)
        harness.clock.advance(1.0)
        harness.tick()


def test_keep_every():
    assert keeps_checkpoint(20, 10) and not keeps_checkpoint(21, 10) and not keeps_checkpoint(20, 0)


async def test_a_long_task_keeps_a_bounded_disk(harness):
    await harness.setup_task(rounds=12, goal_count=2, over_selection=1.0, keep_checkpoints=3, keep_every=5,
                             keep_round_details=2)
    devices = [await harness.register() for _ in range(2)]
    c = harness.coordinator
    store = c.store
    for _ in range(40):
        if store.committed_count("t1") >= 12:
            break
        await _run_rounds(harness, 1, devices)
    rounds = [r for r in store.rounds("t1") if r.state == "committed"]
    assert len(rounds) == 12, [(r.round, r.state, r.reason) for r in store.rounds("t1")]
    kept = {r.round for r in rounds if store.blobs.exists(r.checkpoint_sha)}
    # The last 3 committed rounds and every 5th; every other checkpoint is gone.
    newest = sorted(r.round for r in rounds)[-3:]
    assert kept == set(newest) | {r.round for r in rounds if r.round % 5 == 0}, kept
    # Round rows stay (the task's history); details only for the last 2 rounds.
    assert len(store.rounds("t1")) >= 12
    detail_rounds = {r["round"] for r in store.all("SELECT DISTINCT round FROM assignments WHERE task_id='t1'")}
    detail_rounds |= {r["round"] for r in store.all("SELECT DISTINCT round FROM updates WHERE task_id='t1'")}
    last = max(r.round for r in store.rounds("t1"))
    assert detail_rounds and min(detail_rounds) > last - 2 - 1, (detail_rounds, last)
    # No empty per-round update folders remain, and the server optimizer keeps at most two states.
    task_updates = store.blobs.root / "updates" / "t1"
    assert not task_updates.exists() or all(any(d.iterdir()) for d in task_updates.iterdir())
    opt = store.data_dir / "server_opt" / "t1"
    assert not opt.exists() or len(list(opt.iterdir())) <= 2
    # The current checkpoint is always downloadable.
    assert (await harness.client.get(f"/v1/blobs/{c.tasks['t1'].checkpoint_sha}")).status == 200


async def test_status_reports_disk_use(harness):
    await harness.setup_task()
    status = await (await harness.client.get("/v1/status", headers=ADMIN)).json()
    disk = status["disk"]
    assert set(disk) == {"blobs", "updates", "server_opt", "database", "total"}
    assert disk["blobs"] >= len(harness.model)  # the model itself
    assert disk["total"] == sum(v for k, v in disk.items() if k != "total")
    objects = status["objects"]  # the blob store's own count: here the data directory
    assert objects["location"] == str(harness.coordinator.store.data_dir)
    assert objects["objects"] >= 2 and objects["bytes"] >= len(harness.model)  # the model, its initial checkpoint


async def test_retention_deletes_objects_from_the_bucket_and_the_status_counts_them(s3_harness, s3_server):
    harness = s3_harness
    await harness.setup_task(rounds=6, goal_count=2, over_selection=1.0, keep_checkpoints=2, keep_every=0,
                             keep_round_details=1)
    devices = [await harness.register() for _ in range(2)]
    store = harness.coordinator.store
    for _ in range(20):
        if store.committed_count("t1") >= 6:
            break
        await _run_rounds(harness, 1, devices)
    rounds = sorted((r for r in store.rounds("t1") if r.state == "committed"), key=lambda r: r.round)
    assert len(rounds) == 6
    prefix = store.blobs.url.split("/", 3)[3] + "/"
    listed = s3_server.objects("fedge-tests", prefix)
    in_bucket = {key[len(prefix):] for key in listed}
    kept = {r.round for r in rounds if f"blobs/{r.checkpoint_sha}" in in_bucket}
    assert kept == {r.round for r in rounds[-2:]}, kept  # the older checkpoints' objects are gone
    update_rounds = {int(key.split("/")[2]) for key in in_bucket if key.startswith("updates/")}
    assert update_rounds <= {rounds[-1].round}, update_rounds  # round details of the last round only
    status = await (await harness.client.get("/v1/status", headers=ADMIN)).json()
    assert status["objects"] == {"location": store.blobs.url, "objects": len(listed), "bytes": sum(listed.values())}
    assert status["disk"]["blobs"] == 0  # nothing on local disk


@pytest.mark.parametrize("config", [{"keep_checkpoints": 0}, {"keep_every": -1}, {"keep_round_details": "x"}])
async def test_retention_keys_are_validated(harness, config):
    await harness.setup_task()
    sha = harness.coordinator.tasks["t1"].model_sha
    resp = await harness.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN,
                                     json={"model_sha256": sha, "task_id": "t9", "config": config})
    assert resp.status == 400
