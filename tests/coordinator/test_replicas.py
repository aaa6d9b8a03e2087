"""Coordinator replicas on one PostgreSQL database: any replica takes check-ins and
uploads, exactly one drives each task's rounds (a lease in the database), a dead
replica's tasks are taken over when its lease expires, and no round commits twice. Each
test runs twice: replicas sharing one data directory, and replicas that share nothing but
the database and an S3-compatible bucket (each its own empty folder)."""

import numpy as np
import pytest

from coordinator.service import Coordinator
from coordinator.store.factory import open_store
from coordinator.store.s3_blobs import S3BlobStore
from protocol import codec
from protocol.messages import CheckinRequest, RegisterRequest, UploadMeta
from protocol.tflite_file import read_initial_weights, read_manifest
from tests.coordinator.conftest import FakeClock

STATE = {"state": {"charging": True, "unmetered": True, "idle": True, "battery": 0.9}}


@pytest.fixture(params=["shared_folder", "share_nothing"])
def replicas(request, postgres_url, tmp_path):
    clock = FakeClock()
    if request.param == "share_nothing":
        url = request.getfixturevalue("s3_blobs_url")
        stores = [open_store(postgres_url, str(tmp_path / f"replica{i}"), blobs=S3BlobStore(url)) for i in range(2)]
    else:
        stores = [open_store(postgres_url, str(tmp_path / "data")) for _ in range(2)]
    coordinators = [Coordinator(s, clock=clock, checkin_rate=1e6) for s in stores]
    yield coordinators, clock
    for c in coordinators:
        c.close()
        c.store.close()


def _setup(a: Coordinator, model: bytes, **config):
    a.admin.create_population("pop")
    sha = a.admin.put_model(model)["model_sha256"]
    a.admin.create_task("pop", {"model_sha256": sha, "task_id": "t", "config": {
        "rounds": 3, "goal_count": 4, "over_selection": 1.0, "selection_window_s": 30, "report_deadline_s": 60,
        "codec": "q8", **config}})


def _device(c: Coordinator):
    token = c.gateway.registration.register(RegisterRequest("pop"))["token"]
    return c.gateway.authenticate(f"Bearer {token}")


def _payload(manifest, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return codec.encode([rng.normal(size=w.shape).astype(np.float32) * 0.01 for w in manifest.weights],
                        codec.CodecSpec("q8"), rng)


def test_uploads_on_either_replica_commit_once_on_the_driving_one(replicas, digits_tflite):
    (a, b), clock = replicas
    _setup(a, digits_tflite)
    for c in (a, b):
        c.tick()
    assert [c.driver.holds_lease(c.tasks["t"]) for c in (a, b)] == [True, False]  # a ticked first
    assert len(a.store.rounds("t")) == 1  # b did not open a round of its own
    manifest = read_manifest(digits_tflite)
    replica_of = [a, b, a, b]  # half the devices talk to each replica; b takes the last upload
    devices = [_device(c) for c in replica_of]
    payloads = [_payload(manifest, i) for i in range(4)]
    for i, (c, d) in enumerate(zip(replica_of, devices)):
        assignment = c.gateway.checkin(d, CheckinRequest.from_dict(STATE)).assignment
        c.gateway.upload(d, "t", 1, assignment.upload_token, UploadMeta(example_count=10), payloads[i])
    # The goal-reaching upload landed on b: b marks the round aggregating and leaves the
    # commit to a, the driving replica, which folds the round again from the store (it saw
    # only its own two updates) and commits all four.
    assert a.store.round("t", 1).state == "aggregating"
    for c in (b, a, b):
        c.tick()
    [r1] = [r for r in a.store.rounds("t") if r.round == 1]
    assert r1.state == "committed" and r1.reported == 4
    base = codec.decode(read_initial_weights(digits_tflite)).values
    expected = base + np.mean([codec.decode(p).values for p in payloads], axis=0)
    committed = codec.decode(a.store.blobs.read(r1.checkpoint_sha)).values
    np.testing.assert_allclose(committed, expected, atol=1e-5)
    assert b.tasks["t"].checkpoint_sha == r1.checkpoint_sha  # b picked up a's commit
    assert ("t", 1) not in b.sums  # and dropped its half of the closed round


def test_a_dead_replicas_tasks_are_taken_over_after_the_lease(replicas, digits_tflite):
    (a, b), clock = replicas
    _setup(a, digits_tflite, selection_window_s=5)
    a.tick()
    b.tick()
    assert not b.driver.holds_lease(b.tasks["t"])
    # a dies (it stops ticking); its round's selection window passes with nobody selected.
    clock.advance(10.0)
    b.tick()  # the lease has expired: b drives now, fails round 1 and opens round 2
    rounds = {r.round: r for r in b.store.rounds("t")}
    assert rounds[1].state == "failed" and "selection window" in rounds[1].reason
    assert rounds[2].state == "selecting"
    assert b.driver.holds_lease(b.tasks["t"]) and not a.driver.holds_lease(a.tasks["t"])


def test_two_replicas_racing_to_commit_a_round_commit_it_once(replicas, digits_tflite):
    (a, b), clock = replicas
    _setup(a, digits_tflite, goal_count=1)
    a.tick()
    d = _device(a)
    assignment = a.gateway.checkin(d, CheckinRequest.from_dict(STATE)).assignment
    a.driver.defer_commits = True  # a has the round aggregating but has not committed yet
    payload = _payload(read_manifest(digits_tflite), 0)
    a.gateway.upload(d, "t", 1, assignment.upload_token, UploadMeta(example_count=10), payload)
    assert a.store.round("t", 1).state == "aggregating"
    # Both compute the commit (b as if it had taken the lease over meanwhile); one wins.
    b.driver.sync_from_store()
    first = a.driver._commit_inputs(a.tasks["t"], 1)
    second = b.driver._commit_inputs(b.tasks["t"], 1)
    from coordinator.rounds.commit import compute_commit

    a.driver._apply_commit(a.tasks["t"], 1, compute_commit(first), clock())
    b.driver._apply_commit(b.tasks["t"], 1, compute_commit(second), clock())
    committed = [r for r in a.store.rounds("t") if r.state == "committed"]
    assert [r.round for r in committed] == [1]
    assert a.store.task("t").checkpoint_sha == committed[0].checkpoint_sha
    assert len([r for r in a.store.rounds("t") if r.round == 2]) == 1  # one round 2, opened once


def test_async_buffers_survive_the_driving_replica_dying_mid_commit(replicas, digits_tflite):
    (a, b), clock = replicas
    _setup(a, digits_tflite, mode="async", rounds=2, buffer_size=2, concurrency=4)
    a.tick()
    b.tick()
    assert a.driver.holds_lease(a.tasks["t"]) and not b.driver.holds_lease(b.tasks["t"])
    manifest = read_manifest(digits_tflite)
    replica_of = [a, b, b, b]
    devices = [_device(c) for c in replica_of]
    payloads = [_payload(manifest, 20 + i) for i in range(4)]
    assignments = [c.gateway.checkin(d, CheckinRequest.from_dict(STATE)).assignment
                   for c, d in zip(replica_of, devices)]
    assert {x.round for x in assignments} == {1}

    def upload(i):
        c = replica_of[i]
        return c.gateway.upload(devices[i], "t", assignments[i].round, assignments[i].upload_token,
                                UploadMeta(example_count=10), payloads[i])

    upload(0)
    upload(1)  # buffer 1 is full, but b does not drive the task: a moves it on at its tick
    a.driver.defer_commits = True
    a.tick()  # a starts aggregating buffer 1 (buffer 2 opens) ... and dies before committing
    assert a.store.round("t", 1).state == "aggregating"
    upload(2)  # into buffer 2 through b: staleness 1
    clock.advance(10.0)
    b.tick()  # the lease expired: b commits buffer 1 (folding a's update from the store)
    assert b.store.round("t", 1).state == "committed"
    upload(3)  # version 2
    b.tick()
    rounds = {r.round: r for r in b.store.rounds("t")}
    assert sorted(rounds) == [1, 2] and [rounds[n].reported for n in (1, 2)] == [2, 2]
    assert rounds[2].state == "committed" and b.store.task("t").state == "completed"
    values = [codec.decode(p).values for p in payloads]
    w1 = codec.decode(read_initial_weights(digits_tflite)).values + (values[0] + values[1]) / 2
    expected = w1 + (values[2] + values[3]) / np.sqrt(2) / 2
    committed = codec.decode(b.store.blobs.read(rounds[2].checkpoint_sha)).values
    np.testing.assert_allclose(committed, expected, atol=1e-5)


def test_the_audit_trail_stays_one_chain_across_replicas_and_a_take_over(replicas, digits_tflite):
    from protocol import audit

    (a, b), clock = replicas
    _setup(a, digits_tflite, goal_count=1, rounds=3, selection_window_s=5)
    a.tick()
    b.tick()
    d = _device(b)
    assignment = b.gateway.checkin(d, CheckinRequest.from_dict(STATE)).assignment
    b.gateway.upload(d, "t", 1, assignment.upload_token, UploadMeta(example_count=10),
                     _payload(read_manifest(digits_tflite), 0))
    a.tick()  # a drives the task: commits round 1
    b.admin.set_task_state("t", "pause", by="admin on replica b")  # an admin action through the other replica
    b.admin.set_task_state("t", "resume", by="admin on replica b")
    clock.advance(10.0)  # a dies; b takes the task over and fails round 2 (nobody selected)
    b.tick()
    b.tick()
    entries = b.audit.entries("t")
    kinds = [e["kind"] for e in entries]
    assert kinds[:4] == ["task_created", "round_committed", "admin_action", "admin_action"], kinds
    assert "round_failed" in kinds
    assert a.audit.public_pem == b.audit.public_pem  # one key in the shared data directory
    assert audit.verify(entries, audit.load_public(b.audit.public_pem)).ok
