"""Uploads with the blobs in an S3-compatible store: acknowledged only once the object is in
the bucket, a replay is recognised and counted once, a second body for the same assignment is
refused and changes nothing."""

from tests.coordinator.conftest import ADMIN


async def test_an_acknowledged_update_is_in_the_bucket_and_a_replay_counts_once(s3_harness, s3_server):
    h = s3_harness
    await h.setup_task(goal_count=2)
    device = await h.register()
    assignment = (await (await h.checkin(device)).json())["assignment"]
    body = h.payload(seed=1)
    first = await h.upload(device, assignment, body)
    assert first.status == 201, await first.text()
    store = h.coordinator.store
    (row,) = store.updates("t1", assignment["round"])
    prefix = store.blobs.url.split("/", 3)[3] + "/"
    assert s3_server.objects("fedge-tests", prefix)[prefix + row.blob] == len(body)
    replay = await h.upload(device, assignment, body)
    assert replay.status == 200 and (await replay.json())["duplicate"] is True
    other = await h.upload(device, assignment, h.payload(seed=2))
    assert other.status == 409
    assert store.blobs.read_object(row.blob) == body  # the acknowledged bytes were not replaced
    rnd = next(r for r in (await (await h.client.get("/v1/admin/tasks/t1", headers=ADMIN)).json())["rounds"]
               if r["round"] == assignment["round"])
    assert rnd["reported"] == 1
