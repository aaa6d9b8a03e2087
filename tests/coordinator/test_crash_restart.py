"""kill -9 the real `fedge serve` process at several points of a round; nothing acknowledged is lost
or counted twice."""

import json
import time
import urllib.request

import numpy as np
import pytest

from protocol import codec
from protocol.tflite_file import read_manifest
from tests.serve_process import ADMIN, Server

pytestmark = pytest.mark.slow


def _setup(server: Server, model: bytes):
    server.call("POST", "/v1/admin/populations", {"name": "pop"}, ADMIN)
    _, info = server.call("POST", "/v1/admin/models", headers={**ADMIN, "Content-Type": "application/octet-stream"},
                          raw=model)
    cfg = {"rounds": 2, "goal_count": 2, "over_selection": 1.0, "selection_window_s": 120,
           "report_deadline_s": 300, "codec": "q8"}
    status, _ = server.call("POST", "/v1/admin/populations/pop/tasks",
                            {"model_sha256": info["model_sha256"], "config": cfg, "task_id": "t"}, ADMIN)
    assert status == 201


def _device(server):
    _, body = server.call("POST", "/v1/devices/register", {"population": "pop"})
    return {"Authorization": f"Bearer {body['token']}"}


def _checkin(server, dev):
    for _ in range(100):  # the round driver opens round 1 within a tick
        status, body = server.call("POST", "/v1/checkin", {"state": {"charging": True}}, dev)
        if body["outcome"] == "assigned":
            return body["assignment"]
        time.sleep(0.05)
    raise AssertionError(body)


def _upload(server, dev, a, payload, examples):
    headers = {**dev, "Content-Type": "application/octet-stream", "Fedge-Upload-Token": a["upload_token"],
               "Fedge-Upload": json.dumps({"example_count": examples})}
    return server.call("POST", a["upload_url"], headers=headers, raw=payload)


def _rounds(server):
    return server.call("GET", "/v1/admin/tasks/t", headers=ADMIN)[1]["rounds"]


def _wait_round(server, num, state):
    for _ in range(200):
        rounds = _rounds(server)
        if len(rounds) >= num and rounds[num - 1]["state"] == state:
            return rounds[num - 1]
        time.sleep(0.05)
    raise AssertionError(_rounds(server))


def test_kill9_at_each_point_of_a_round(digits_tflite, store_db):
    manifest = read_manifest(digits_tflite)
    rng = np.random.default_rng(0)
    payloads = [codec.encode([rng.normal(size=w.shape).astype(np.float32) * 0.01 for w in manifest.weights],
                             codec.CodecSpec("q8"), rng) for _ in range(2)]
    db, data_dir = store_db  # SQLite and PostgreSQL
    server = Server(db, data_dir=data_dir)
    server.start()
    try:
        _setup(server, digits_tflite)
        d1, d2 = _device(server), _device(server)
        a1 = _checkin(server, d1)

        # 1. Killed after an assignment was acknowledged: the device can still report with its token.
        server.kill9()
        server.start()
        a2 = _checkin(server, d2)
        assert _rounds(server)[0]["selected"] == 2

        # 2. Killed after one update was acknowledged: it is recovered and not counted twice.
        assert _upload(server, d1, a1, payloads[0], 10)[0] == 201
        server.kill9()
        server.start()
        assert _rounds(server)[0]["reported"] == 1
        status, body = _upload(server, d1, a1, payloads[0], 10)  # the device's retry after no answer
        assert status == 200 and body["duplicate"] is True
        assert _upload(server, d2, a2, payloads[1], 30)[0] == 201
        r1 = _wait_round(server, 1, "committed")
        assert r1["reported"] == 2 and r1["examples"] == 40

        # 3. Killed after the commit: the committed model stays, and round 2 continues.
        server.kill9()
        server.start()
        _, task = server.call("GET", "/v1/admin/tasks/t", headers=ADMIN)
        assert task["checkpoint_sha256"] == r1["checkpoint_sha"]
        expected = codec.decode(read_initial_weights_bytes(digits_tflite)).values + (
            10 * codec.decode(payloads[0]).values + 30 * codec.decode(payloads[1]).values) / 40
        with urllib.request.urlopen(server.url + f"/v1/blobs/{r1['checkpoint_sha']}") as resp:
            committed = codec.decode(resp.read()).values
        np.testing.assert_allclose(committed, expected, atol=1e-5)
        a1b = _checkin(server, d1)
        assert a1b["round"] == 2
    finally:
        if server.proc and server.proc.poll() is None:
            server.kill9()


def read_initial_weights_bytes(model: bytes) -> bytes:
    from protocol.tflite_file import read_initial_weights

    return read_initial_weights(model)


def test_kill9_in_async_mode_counts_each_acknowledged_update_once(digits_tflite, store_db):
    """Asynchronous buffers: updates acknowledged before a kill -9 are in exactly one version,
    a retry after the restart is a duplicate, and the versions go on being published."""
    manifest = read_manifest(digits_tflite)
    rng = np.random.default_rng(1)
    payloads = [codec.encode([rng.normal(size=w.shape).astype(np.float32) * 0.01 for w in manifest.weights],
                             codec.CodecSpec("q8"), rng) for _ in range(4)]
    db, data_dir = store_db
    server = Server(db, data_dir=data_dir)
    server.start()
    try:
        server.call("POST", "/v1/admin/populations", {"name": "pop"}, ADMIN)
        _, info = server.call("POST", "/v1/admin/models", headers={**ADMIN, "Content-Type": "application/octet-stream"},
                              raw=digits_tflite)
        cfg = {"mode": "async", "rounds": 2, "buffer_size": 2, "concurrency": 4, "report_deadline_s": 300,
               "codec": "q8", "staleness_weight": "polynomial:0.5"}
        status, _ = server.call("POST", "/v1/admin/populations/pop/tasks",
                                {"model_sha256": info["model_sha256"], "config": cfg, "task_id": "t"}, ADMIN)
        assert status == 201
        devices = [_device(server) for _ in range(4)]
        assignments = [_checkin(server, d) for d in devices]
        assert {a["round"] for a in assignments} == {1}
        assert _upload(server, devices[0], assignments[0], payloads[0], 10)[0] == 201
        server.kill9()  # one update acknowledged in buffer 1
        server.start()
        assert _rounds(server)[0]["reported"] == 1
        status, body = _upload(server, devices[0], assignments[0], payloads[0], 10)
        assert status == 200 and body["duplicate"] is True
        assert _upload(server, devices[1], assignments[1], payloads[1], 10)[0] == 201  # version 1
        _wait_round(server, 1, "committed")
        assert _upload(server, devices[2], assignments[2], payloads[2], 10)[0] == 201  # buffer 2, staleness 1
        server.kill9()
        server.start()
        assert _upload(server, devices[3], assignments[3], payloads[3], 10)[0] == 201  # version 2
        r2 = _wait_round(server, 2, "committed")
        rounds = _rounds(server)
        assert [r["reported"] for r in rounds] == [2, 2] and r2["metrics"]["staleness_max"] == 1
        w1 = codec.decode(read_initial_weights_bytes(digits_tflite)).values + (
            codec.decode(payloads[0]).values + codec.decode(payloads[1]).values) / 2
        expected = w1 + (codec.decode(payloads[2]).values + codec.decode(payloads[3]).values) / np.sqrt(2) / 2
        with urllib.request.urlopen(server.url + f"/v1/blobs/{r2['checkpoint_sha']}") as resp:
            committed = codec.decode(resp.read()).values
        np.testing.assert_allclose(committed, expected, atol=1e-5)
        _, task = server.call("GET", "/v1/admin/tasks/t", headers=ADMIN)
        assert task["state"] == "completed"
    finally:
        if server.proc and server.proc.poll() is None:
            server.kill9()
