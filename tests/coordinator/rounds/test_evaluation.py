"""Federated evaluation through the real app: evaluation tasks (eval_every, or on demand),
devices report counts on their holdout, the coordinator reports the weighted accuracy and
its distribution over devices; a lying device moves it by at most its capped weight."""

import pytest

from coordinator.aggregation.evaluation import summarize
from tests.coordinator.conftest import ADMIN


async def _assigned(h, device):
    body = await (await h.checkin(device)).json()
    assert body["outcome"] == "assigned", body
    return body["assignment"]


async def _report(h, device, a, token=None, **counts):
    return await h.client.post(a["upload_url"], json=counts,
                               headers={**device, "Fedge-Upload-Token": token or a["upload_token"]})


def test_summary_is_weighted_with_a_distribution_and_caps_each_device():
    out = summarize([(10, 9.0, 2.0), (10, 5.0, 6.0), (40, 40.0, 1.0)], cap=100)
    assert out["eval_accuracy"] == pytest.approx(54 / 60) and out["eval_loss"] == pytest.approx(9 / 60)
    assert out["eval_devices"] == 3 and out["eval_examples"] == 60
    assert out["eval_accuracy_p50"] == pytest.approx(0.9)
    assert out["eval_accuracy_p10"] == pytest.approx(0.58) and out["eval_accuracy_p90"] == pytest.approx(0.98)
    # A device claiming a million examples, all wrong, weighs no more than the cap.
    lied = summarize([(10, 9.0, 2.0), (10, 5.0, 6.0), (40, 40.0, 1.0), (1_000_000, 0.0, 0.0)], cap=100)
    assert lied["eval_accuracy"] == pytest.approx(54 / 160)
    assert summarize([], cap=10) == {"eval_devices": 0, "eval_examples": 0}


async def test_eval_every_evaluates_the_committed_checkpoint_on_the_devices(harness):
    h = harness
    await h.setup_task(rounds=1, goal_count=1, over_selection=1.0, eval_every=1, eval_goal_count=3,
                       max_example_count=100)
    d0 = await h.register()
    a0 = await _assigned(h, d0)
    assert (await h.upload(d0, a0, h.payload())).status == 201  # round 1 commits; the task completes
    h.tick()
    task = await (await h.client.get("/v1/admin/tasks/t1", headers=ADMIN)).json()
    assert task["state"] == "completed" and [e["task_id"] for e in task["evaluations"]] == ["t1-eval-1"]
    ev = await (await h.client.get("/v1/admin/tasks/t1-eval-1", headers=ADMIN)).json()
    assert ev["config"]["kind"] == "evaluate" and ev["checkpoint_sha256"] == task["checkpoint_sha256"]
    h.tick()  # opens the evaluation round
    devices = [await h.register() for _ in range(4)]
    assignments = [await _assigned(h, d) for d in devices[:1]]
    a = assignments[0]
    assert a["task_id"] == "t1-eval-1" and a["plan"]["evaluate_only"] is True
    assert a["upload_url"].endswith("/rounds/1/evaluation")
    # Hostile or malformed reports: 4xx, nothing counted.
    for bad in ({"examples": 10, "correct": 11.0, "loss_sum": 1.0}, {"examples": 0, "correct": 0.0, "loss_sum": 0.0},
                {"examples": 10, "correct": 5.0, "loss_sum": -1.0}, {"examples": 10, "correct": 5.0}):
        assert (await _report(h, devices[0], a, **bad)).status == 400, bad
    assert (await _report(h, devices[1], a, examples=10, correct=5.0, loss_sum=1.0)).status == 403  # not assigned
    # An update to an evaluation task is refused, naming the right endpoint.
    resp = await h.upload(devices[0], {**a, "upload_url": a["upload_url"].replace("evaluation", "update")},
                          h.payload())
    assert resp.status == 404 and "evaluation" in (await resp.json())["error"]["message"]
    assert (await _report(h, devices[0], a, examples=10, correct=9.0, loss_sum=2.0)).status == 201
    assert (await _report(h, devices[0], a, examples=10, correct=9.0, loss_sum=2.0)).status == 200  # a retry
    assert (await _report(h, devices[0], a, examples=10, correct=1.0, loss_sum=2.0)).status == 409
    b = await _assigned(h, devices[1])
    assert (await _report(h, devices[1], b, examples=10, correct=5.0, loss_sum=6.0)).status == 201
    c = await _assigned(h, devices[2])  # a liar: a million examples, all wrong; capped at 100
    assert (await _report(h, devices[2], c, examples=1_000_000, correct=0.0, loss_sum=0.0)).status == 201
    # The third report reached the goal: the evaluation round committed.
    h.tick()
    ev = await (await h.client.get("/v1/admin/tasks/t1-eval-1", headers=ADMIN)).json()
    assert ev["state"] == "completed", ev
    m = ev["evaluation"]
    assert m["eval_devices"] == 3 and m["eval_accuracy"] == pytest.approx(14 / 120)
    assert m["eval_accuracy_p50"] == pytest.approx(0.5)
    assert ev["checkpoint_sha256"] == task["checkpoint_sha256"]  # evaluation changes no weights
    task = await (await h.client.get("/v1/admin/tasks/t1", headers=ADMIN)).json()
    assert task["evaluations"][0]["metrics"]["eval_accuracy"] == pytest.approx(14 / 120)
    metrics = await (await h.client.get("/metrics")).text()
    assert 'fedge_federated_eval_accuracy{stat="p50",task="t1"} 0.5' in metrics
    status = await (await h.client.get("/v1/status")).json()
    t1 = next(t for t in status["tasks"] if t["task_id"] == "t1")
    assert t1["evaluations"][0]["metrics"]["eval_accuracy_p50"] == pytest.approx(0.5)


async def test_evaluate_on_demand_and_its_errors(harness):
    h = harness
    await h.setup_task(rounds=3, goal_count=1, over_selection=1.0)
    resp = await h.client.post("/v1/admin/tasks/t1/evaluate", json={"round": 2}, headers=ADMIN)
    assert resp.status == 404  # not committed
    resp = await h.client.post("/v1/admin/tasks/t1/evaluate", json={"round": 0, "goal_count": 5}, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    ev = await resp.json()
    assert ev["task_id"] == "t1-eval-0" and ev["config"]["goal_count"] == 5 and ev["config"]["evaluate_round"] == 0
    assert (await h.client.post("/v1/admin/tasks/t1-eval-0/evaluate", json={}, headers=ADMIN)).status == 400
    assert (await h.client.post("/v1/admin/tasks/t1/evaluate", json={"round": 0}, headers=ADMIN)).status == 409
    assert (await h.client.post("/v1/admin/tasks/t1/evaluate", json={"bogus": 1}, headers=ADMIN)).status == 400
    assert (await h.client.post("/v1/admin/tasks/t1/evaluate", json={}, headers={})).status == 401


def test_personalized_summary_reports_the_lift_per_device():
    from coordinator.aggregation.evaluation import summarize_personalized

    out = summarize_personalized([(10, 5.0, 9.0, 8.0, 4.0), (10, 9.0, 2.0, 9.0, 2.0), (20, 10.0, 20.0, 18.0, 6.0)],
                                 cap=100)
    assert out["personalized_accuracy"] == pytest.approx(35 / 40)
    assert out["personalization_lift_p50"] == pytest.approx(0.3)  # lifts 0.3, 0.0, 0.4
    assert out["personalization_lift_p10"] == pytest.approx(0.06)
    assert out["personalized_devices"] == 3


async def test_a_personalized_evaluation_round(harness):
    h = harness
    await h.setup_task(rounds=3, goal_count=1, over_selection=1.0)
    resp = await h.client.post("/v1/admin/tasks/t1/evaluate",
                               json={"round": 0, "goal_count": 2, "personalize_steps": 5}, headers=ADMIN)
    assert resp.status == 201
    h.tick()
    await h.client.post("/v1/admin/tasks/t1/pause", headers=ADMIN)  # devices go to the evaluation
    d1, d2 = await h.register(), await h.register()
    a1 = await _assigned(h, d1)
    assert a1["plan"]["personalize_steps"] == 5
    # Half a pair of personalized counts is refused.
    assert (await _report(h, d1, a1, examples=10, correct=5.0, loss_sum=9.0,
                          personalized_correct=8.0)).status == 400
    assert (await _report(h, d1, a1, examples=10, correct=5.0, loss_sum=9.0, personalized_correct=8.0,
                          personalized_loss_sum=4.0)).status == 201
    a2 = await _assigned(h, d2)
    assert (await _report(h, d2, a2, examples=10, correct=9.0, loss_sum=2.0, personalized_correct=9.0,
                          personalized_loss_sum=2.0)).status == 201
    ev = await (await h.client.get("/v1/admin/tasks/t1-eval-0", headers=ADMIN)).json()
    m = ev["evaluation"]
    assert m["personalized_accuracy"] == pytest.approx(0.85) and m["eval_accuracy"] == pytest.approx(0.7)
    assert m["personalization_lift_p50"] == pytest.approx(0.15)


async def test_eval_every_works_for_a_task_id_of_any_allowed_length(harness):
    """`{id}-eval-N` of a 60-character id is longer than a name may be: the evaluation's id is
    shortened (with a digest of the whole id) instead of failing the driver after the commit."""
    from coordinator.admin.operations import evaluation_task_id
    from protocol.names import MAX_NAME_LENGTH, valid_name

    h = harness
    await h.setup_task()
    long_id = "a" * 60
    sha = h.coordinator.tasks["t1"].model_sha
    cfg = {"rounds": 1, "goal_count": 1, "over_selection": 1.0, "selection_window_s": 10, "report_deadline_s": 30,
           "codec": "q8", "eval_every": 1}
    await h.client.post("/v1/admin/tasks/t1/cancel", headers=ADMIN)
    resp = await h.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN,
                               json={"model_sha256": sha, "config": cfg, "task_id": long_id})
    assert resp.status == 201, await resp.text()
    h.tick()
    d0 = await h.register()
    a0 = await _assigned(h, d0)
    assert a0["task_id"] == long_id
    assert (await h.upload(d0, a0, h.payload())).status == 201
    h.tick()
    task = await (await h.client.get(f"/v1/admin/tasks/{long_id}", headers=ADMIN)).json()
    expected = evaluation_task_id(long_id, 1)
    assert [e["task_id"] for e in task["evaluations"]] == [expected]
    assert len(expected) == MAX_NAME_LENGTH and valid_name(expected, "task_id") == expected
    assert evaluation_task_id("a" * 59 + "b", 1) != expected  # two long ids with one start differ
    assert evaluation_task_id("t1", 3) == "t1-eval-3"


async def test_personalized_counts_nobody_asked_for_are_refused(harness):
    h = harness
    await h.setup_task(rounds=3, goal_count=1, over_selection=1.0)
    resp = await h.client.post("/v1/admin/tasks/t1/evaluate", json={"round": 0, "goal_count": 2}, headers=ADMIN)
    assert resp.status == 201
    h.tick()
    await h.client.post("/v1/admin/tasks/t1/pause", headers=ADMIN)
    d1 = await h.register()
    a1 = await _assigned(h, d1)
    assert a1["plan"]["personalize_steps"] == 0
    resp = await _report(h, d1, a1, examples=10, correct=5.0, loss_sum=9.0, personalized_correct=10.0,
                         personalized_loss_sum=0.0)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "unrequested_field"
    assert (await _report(h, d1, a1, examples=10, correct=5.0, loss_sum=9.0)).status == 201
