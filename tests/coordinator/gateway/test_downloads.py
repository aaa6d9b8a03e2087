"""Compressed checkpoint downloads (the task's download_codec): what devices fetch, how many
bytes the round counts, determinism across replicas, retention of old blobs, bad settings."""

from dataclasses import replace

import numpy as np
import pytest

from coordinator.gateway import downloads
from coordinator.gateway.downloads import DownloadBlobs
from protocol import codec
from tests.coordinator.conftest import ADMIN


async def _assigned(harness, n=2):
    devices = [await harness.register() for _ in range(n)]
    return devices, [(await (await harness.checkin(d)).json())["assignment"] for d in devices]


@pytest.mark.parametrize("name,ratio", [("q8", 3.5), ("q4+rot", 6.0)])
async def test_devices_download_the_checkpoint_quantized_within_one_step(harness, name, ratio):
    await harness.setup_task(goal_count=2, over_selection=1.0, download_codec=name)
    devices, assignments = await _assigned(harness)
    task = harness.coordinator.tasks["t1"]
    a = assignments[0]
    assert a["checkpoint_sha256"] != task.checkpoint_sha
    assert assignments[1]["checkpoint_sha256"] == a["checkpoint_sha256"]  # one blob per checkpoint
    resp = await harness.client.get(a["checkpoint_url"])
    body = await resp.read()
    assert resp.status == 200 and codec.decode(body).codec == name
    full = harness.coordinator.store.blobs.read(task.checkpoint_sha)
    truth = codec.decode(full).values
    got = codec.decode(body).values
    spread = float(truth.max() - truth.min()) * (4 if "rot" in name else 1)
    assert np.max(np.abs(got - truth)) <= spread / (2 ** (8 if name == "q8" else 4) - 1) + 1e-6
    assert len(full) / len(body) > ratio
    # The round's bytes out count what was served, at its quantized size.
    await harness.client.get(assignments[1]["checkpoint_url"])
    for i, (d, asg) in enumerate(zip(devices, assignments)):
        assert (await harness.upload(d, asg, harness.payload(seed=i))).status == 201
    harness.tick()
    r1 = (await harness.rounds())[0]
    assert r1["state"] == "committed"
    assert r1["metrics"]["bytes_out"] == 2 * len(body)  # two devices fetched it; the model was not fetched


async def test_the_quantized_blob_is_the_same_on_every_replica_and_old_ones_go(harness, monkeypatch):
    await harness.setup_task(goal_count=2, over_selection=1.0, download_codec="q8")
    await _assigned(harness, 1)
    task = harness.coordinator.tasks["t1"]
    mine = harness.coordinator.gateway.downloads.sha_for(task)
    other = DownloadBlobs(harness.coordinator.store)  # another replica, same store
    assert other.sha_for(task) == mine
    monkeypatch.setattr(downloads, "KEEP_PER_TASK", 2)
    store = harness.coordinator.store
    made = []
    for i in range(4):  # four committed checkpoints in turn
        sha = f"{i:064x}"
        store.blobs.put(sha, store.blobs.read(task.checkpoint_sha)[:-4] + np.float32(i).tobytes())
        made.append(other.sha_for(replace(task, checkpoint_sha=sha)))
    assert not any(store.blobs.exists(s) for s in made[:2])
    assert all(store.blobs.exists(s) for s in made[2:])


async def test_a_bad_download_codec_is_refused(harness):
    await harness.client.post("/v1/admin/populations", json={"name": "pop"}, headers=ADMIN)
    resp = await harness.client.post("/v1/admin/models", data=harness.model,
                                     headers={**ADMIN, "Content-Type": "application/octet-stream"})
    sha = (await resp.json())["model_sha256"]
    for bad in ("q3", "f32+rot", 8):
        resp = await harness.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN,
                                         json={"model_sha256": sha, "config": {"download_codec": bad}})
        assert resp.status == 400, bad


async def test_a_blob_two_tasks_share_stays_while_either_serves_it(harness, monkeypatch):
    """Two tasks on one model with download_codec q8 share their first quantized checkpoint;
    task A's retention must not delete what task B still sends its devices to."""
    await harness.setup_task(goal_count=2, over_selection=1.0, download_codec="q8")
    monkeypatch.setattr(downloads, "KEEP_PER_TASK", 2)
    task_a = harness.coordinator.tasks["t1"]
    task_b = replace(task_a, task_id="t2")
    blobs = harness.coordinator.gateway.downloads
    shared = blobs.sha_for(task_a)
    assert blobs.sha_for(task_b) == shared
    store = harness.coordinator.store
    for i in range(4):  # task A commits four checkpoints; B is still on its first
        sha = f"{i:064x}"
        store.blobs.put(sha, store.blobs.read(task_a.checkpoint_sha)[:-4] + np.float32(i).tobytes())
        blobs.sha_for(replace(task_a, checkpoint_sha=sha))
    assert store.blobs.exists(shared)
    assert blobs.sha_for(task_b) == shared
    resp = await harness.client.get(f"/v1/blobs/{shared}")
    assert resp.status == 200
    # Once B moves on too, nobody sends devices to it: it goes.
    for i in range(4, 7):
        sha = f"{i:064x}"
        store.blobs.put(sha, store.blobs.read(task_a.checkpoint_sha)[:-4] + np.float32(i).tobytes())
        blobs.sha_for(replace(task_b, checkpoint_sha=sha))
    assert not store.blobs.exists(shared)


async def test_a_remembered_blob_deleted_elsewhere_is_made_again(harness):
    await harness.setup_task(goal_count=2, over_selection=1.0, download_codec="q8")
    task = harness.coordinator.tasks["t1"]
    blobs = harness.coordinator.gateway.downloads
    sha = blobs.sha_for(task)
    harness.coordinator.store.blobs.delete(sha)  # another replica's retention
    assert blobs.sha_for(task) == sha and harness.coordinator.store.blobs.exists(sha)
