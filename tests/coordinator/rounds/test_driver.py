"""The round driver commits off the event loop: the last upload of a round is answered
before the commit, and check-ins are answered while a commit computes."""

import asyncio
import json
import time

import numpy as np

from coordinator.rounds import commit as commit_module
from coordinator.http.app import COORDINATOR, ServeConfig, create_app
from protocol import codec
from protocol.tflite_file import read_manifest

ADMIN = {"Authorization": "Bearer admin-secret"}
SLOW_S = 1.0


async def test_check_ins_are_answered_while_a_round_commits(aiohttp_client, digits_tflite, tmp_path, monkeypatch):
    real = commit_module.compute_commit

    def slow_commit(inputs):  # stands for the commit of a large model: CPU-bound for a second
        time.sleep(SLOW_S)
        return real(inputs)

    monkeypatch.setattr("coordinator.rounds.driver.compute_commit", slow_commit)
    config = ServeConfig(db=str(tmp_path / "c.db"), admin_token="admin-secret", tick_s=0.02, checkin_rate=1000.0,
                         min_retry_s=0.05, max_retry_s=0.5)
    client = await aiohttp_client(create_app(config))
    coordinator = client.server.app[COORDINATOR]
    await client.post("/v1/admin/populations", json={"name": "pop"}, headers=ADMIN)
    resp = await client.post("/v1/admin/models", data=digits_tflite,
                             headers={**ADMIN, "Content-Type": "application/octet-stream"})
    sha = (await resp.json())["model_sha256"]
    resp = await client.post("/v1/admin/populations/pop/tasks", headers=ADMIN, json={
        "model_sha256": sha, "task_id": "t1",
        "config": {"rounds": 2, "goal_count": 1, "over_selection": 1.0, "selection_window_s": 30,
                   "report_deadline_s": 60, "codec": "q8"}})
    assert resp.status == 201
    tokens = []
    for _ in range(2):
        resp = await client.post("/v1/devices/register", json={"population": "pop"})
        tokens.append({"Authorization": f"Bearer {(await resp.json())['token']}"})
    for _ in range(100):  # the driver opens round 1
        body = await (await client.post("/v1/checkin", json={"state": {}}, headers=tokens[0])).json()
        if body["outcome"] == "assigned":
            break
        await asyncio.sleep(0.02)
    a = body["assignment"]
    manifest = read_manifest(digits_tflite)
    rng = np.random.default_rng(0)
    payload = codec.encode([rng.normal(size=w.shape).astype(np.float32) * 0.01 for w in manifest.weights],
                           codec.CodecSpec.parse("q8"), rng)
    started = time.perf_counter()
    resp = await client.post(a["upload_url"], data=payload, headers={
        **tokens[0], "Content-Type": "application/octet-stream", "Fedge-Upload-Token": a["upload_token"],
        "Fedge-Upload": json.dumps({"example_count": 5})})
    assert resp.status == 201 and time.perf_counter() - started < SLOW_S / 2  # answered before the commit
    await asyncio.sleep(0.1)  # the driver has started the commit
    assert ("t1", 1) in coordinator.driver.committing
    latencies = []
    for _ in range(5):
        t = time.perf_counter()
        resp = await client.post("/v1/checkin", json={"state": {"charging": False}}, headers=tokens[1])
        assert resp.status == 200
        latencies.append(time.perf_counter() - t)
    assert max(latencies) < SLOW_S / 4, latencies  # not queued behind the commit
    assert coordinator.gateway.round_row("t1", 1).state == "aggregating"
    for _ in range(100):
        if coordinator.gateway.round_row("t1", 1).state == "committed":
            break
        await asyncio.sleep(0.05)
    assert coordinator.gateway.round_row("t1", 1).state == "committed"
    assert coordinator.gateway.round_row("t1", 2).state == "selecting"
