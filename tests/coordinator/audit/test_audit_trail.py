"""The audit trail: every task's history in a signed hash chain, verifiable offline; any
edited, removed, inserted or reordered entry is found and named; the key survives restarts."""

import copy
import json

import pytest

from coordinator.http.app import create_app
from protocol import audit
from tests.coordinator.conftest import ADMIN, Harness


async def _trail(h, task_id="t1"):
    resp = await h.client.get(f"/v1/admin/tasks/{task_id}/audit", headers=ADMIN)
    assert resp.status == 200
    return (await resp.json())["entries"]


async def _key(h):
    resp = await h.client.get("/v1/audit/key")
    assert resp.status == 200
    return audit.load_public(await resp.read())


async def test_a_tasks_history_is_recorded_and_verifies(harness, aiohttp_client):
    h = harness
    await h.setup_task(rounds=2, goal_count=1, over_selection=1.0, selection_window_s=5, report_deadline_s=5)
    d = await h.register()
    a = (await (await h.checkin(d)).json())["assignment"]
    assert (await h.upload(d, a, h.payload())).status == 201  # round 1 commits
    await h.client.post("/v1/admin/tasks/t1/pause", headers=ADMIN)
    await h.client.post("/v1/admin/tasks/t1/resume", headers=ADMIN)
    h.clock.advance(20)
    h.tick()  # round 2 fails: nobody was selected
    entries = await _trail(h)
    kinds = [e["kind"] for e in entries]
    assert kinds[:4] == ["task_created", "round_committed", "admin_action", "admin_action"] and "round_failed" in kinds
    created, committed = entries[0]["data"], entries[1]["data"]
    assert created["config"]["rounds"] == 2 and len(created["model_sha256"]) == 64
    assert committed["round"] == 1 and committed["reports"] == 1
    assert committed["checkpoint_sha256"] == (await h.rounds())[0]["checkpoint_sha"]
    assert entries[2]["data"]["action"] == "pause" and entries[2]["data"]["by"].startswith("admin token from")
    key = await _key(h)
    assert audit.verify(entries, key).ok
    # The same key after a restart: old and new entries verify together.
    await h.client.close()
    h2 = Harness(await aiohttp_client(create_app(h.config, run_ticker=False, clock=h.clock)), h.clock, h.model)
    await h2.client.post("/v1/admin/tasks/t1/cancel", headers=ADMIN)
    again = await _trail(h2)
    assert again[len(entries)]["data"]["action"] == "cancel"
    # The round that was open when the task was cancelled ends in the trail too.
    open_round = max(r["round"] for r in await h2.rounds())
    assert again[-1]["kind"] == "round_failed" and again[-1]["data"] == {"round": open_round,
                                                                        "reason": "task cancelled"}
    assert audit.public_pem(await _key(h2)) == audit.public_pem(key)
    assert audit.verify(again, key).ok


def _sealed_chain(n=5):
    key = audit.new_key()
    entries, prev = [], audit.GENESIS
    for seq in range(1, n + 1):
        e = audit.seal({"seq": seq, "task_id": "t", "time": 1.0 + seq, "kind": "round_committed",
                        "data": {"round": seq, "reports": 10}, "prev": prev}, key)
        entries.append(e)
        prev = e["hash"]
    return entries, key


@pytest.mark.parametrize("tamper,failing,words", [
    (lambda es: es[2]["data"].update(reports=11), 3, "edited"),
    (lambda es: es.pop(2), 3, "sequence number"),
    (lambda es: es.__setitem__(slice(1, 3), [es[2], es[1]]), 2, "sequence number"),
    (lambda es: es.insert(2, copy.deepcopy(es[1])), 3, "sequence number"),
    (lambda es: es[4].update(signature=es[3]["signature"]), 5, "signature"),
    (lambda es: es[3].update(prev="1" * 64), 4, "chain"),
    (lambda es: es[0].update(task_id="other"), 1, "edited"),
])
def test_any_tampering_is_found_and_the_first_bad_entry_named(tamper, failing, words):
    entries, key = _sealed_chain()
    assert audit.verify(entries, key.public_key()).ok
    tamper(entries)
    verdict = audit.verify(entries, key.public_key())
    assert not verdict.ok and verdict.failure.startswith(f"entry {failing}") and words in verdict.failure, verdict


def test_another_key_does_not_verify():
    entries, _ = _sealed_chain()
    assert "signature" in audit.verify(entries, audit.new_key().public_key()).failure


def test_a_renumbered_chain_does_not_verify():
    # Removing an entry and renumbering the rest still breaks the chain (each names its predecessor's hash).
    entries, key = _sealed_chain()
    del entries[1]
    for i, e in enumerate(entries):
        e["seq"] = i + 1
    verdict = audit.verify(entries, key.public_key())
    assert not verdict.ok and verdict.failure.startswith("entry 2")


def test_entries_are_canonical_json():
    entries, _ = _sealed_chain(1)
    assert json.loads(audit.canonical(entries[0])) == {k: entries[0][k] for k in audit.FIELDS}


def _export(n=5, task_id="t"):
    entries, key = _sealed_chain(n)
    return {"task_id": task_id, "entries": entries, "head": audit.sign_head(task_id, entries, 100.0, key)}, key


def test_an_export_verifies_with_its_task_and_count_named():
    trail, key = _export()
    verdict = audit.verify_trail(trail, key.public_key())
    assert verdict.ok and verdict.task_id == "t" and verdict.entries == 5 and verdict.as_of == 100.0


@pytest.mark.parametrize("tamper,words", [
    (lambda t: t["entries"].pop(), "cut off"),  # the last entries removed
    (lambda t: t["entries"].clear(), "cut off"),
    (lambda t: t.update(task_id="other"), "the file says task 'other'"),  # relabelled
    (lambda t: t.pop("head"), "no signed head"),
    (lambda t: t["head"].update(length=4), "bad signature"),  # the head edited to match a cut trail
    (lambda t: t["head"].update(task_id="other"), "bad signature"),
])
def test_an_export_cut_short_emptied_or_relabelled_fails(tamper, words):
    trail, key = _export()
    tamper(trail)
    verdict = audit.verify_trail(trail, key.public_key())
    assert not verdict.ok and words in verdict.failure, verdict


def test_another_tasks_entries_under_this_tasks_signed_head_fail():
    mine, key = _export(task_id="a")
    theirs = [dict(e, task_id="b") for e in mine["entries"]]  # (re-sealed by the same coordinator)
    prev, resealed = audit.GENESIS, []
    for e in theirs:
        e = audit.seal({**e, "prev": prev}, key)
        resealed.append(e)
        prev = e["hash"]
    verdict = audit.verify_trail({**mine, "entries": resealed}, key.public_key())
    assert not verdict.ok and "belong to task 'b'" in verdict.failure
    empty = {"task_id": "a", "entries": [], "head": audit.sign_head("a", [], 1.0, key)}
    assert "lists no entries" in audit.verify_trail(empty, key.public_key()).failure
