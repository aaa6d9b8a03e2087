"""The one table of a round's legal changes (coordinator/rounds/states.py), and the driver
applying events through it: an illegal change raises instead of being written."""

from __future__ import annotations

import pytest

from coordinator.rounds import states
from coordinator.rounds.states import Event, IllegalTransition, RoundState as S


@pytest.mark.parametrize("path", [
    [Event.SELECTION_CLOSED, Event.GOAL_REACHED, Event.COMMITTED],  # plain
    [Event.KEYS_REQUESTED, Event.ADVERTISING_CLOSED, Event.SHARING_CLOSED, Event.REPORTING_CLOSED,
     Event.GOAL_REACHED, Event.COMMITTED],  # SecAgg
    [Event.GOAL_REACHED, Event.COMMITTED],  # a plain round that filled while selecting
])
def test_the_lifecycles_reach_committed(path):
    state = S.SELECTING
    for event in path:
        state = states.after(state, event)
    assert state is S.COMMITTED and states.is_final(state)


def test_every_open_state_can_fail_and_a_final_one_cannot_move():
    for state in states.OPEN_STATES:
        assert states.after(state, Event.FAILED) is S.FAILED
    for final in states.FINAL_STATES:
        for event in Event:
            if not states.already_taken(final, event):
                with pytest.raises(IllegalTransition):
                    states.after(final, event)


@pytest.mark.parametrize("state, event", [
    (S.SELECTING, Event.COMMITTED), (S.REPORTING, Event.KEYS_REQUESTED), (S.ADVERTISING, Event.SHARING_CLOSED),
    (S.SHARING, Event.GOAL_REACHED), (S.AGGREGATING, Event.SELECTION_CLOSED), ("no-such-state", Event.FAILED),
])
def test_what_the_table_does_not_allow_raises(state, event):
    with pytest.raises(IllegalTransition, match=event.value):
        states.after(state, event)


def test_rows_read_back_compare_equal_to_the_members():
    assert S("reporting") is S.REPORTING and S.REPORTING == "reporting" and str(S.REPORTING) == "reporting"
    assert "aggregating" in states.OPEN_STATES and "committed" not in states.OPEN_STATES


async def test_the_driver_refuses_an_illegal_change_and_writes_nothing(memory_harness):
    harness = memory_harness
    await harness.setup_task()
    harness.tick()
    c = harness.coordinator
    task = c.tasks["t1"]
    assert c.store.round("t1", 1).state == "selecting"
    with pytest.raises(IllegalTransition):
        c.driver.transition(task, 1, Event.COMMITTED)
    with pytest.raises(IllegalTransition):
        c.driver.transition(task, 1, Event.ADVERTISING_CLOSED)
    assert c.store.round("t1", 1).state == "selecting"
    assert c.driver.transition(task, 1, Event.SELECTION_CLOSED)
    assert c.store.round("t1", 1).state == "reporting"
    assert c.driver.transition(task, 1, Event.GOAL_REACHED)
    assert not c.driver.transition(task, 1, Event.GOAL_REACHED)  # two uploads at the goal at once: one move
    assert c.store.round("t1", 1).state == "aggregating"


async def test_a_round_commits_on_the_in_memory_store_with_nothing_on_disk(memory_harness, tmp_path):
    """The in-memory store runs the whole lifecycle: selection, two uploads, the commit; the
    bytes (model, updates, checkpoints) stay in its MemoryBlobStore."""
    h = memory_harness
    await h.setup_task()
    devices = [await h.register() for _ in range(2)]
    assignments = [(await (await h.checkin(d)).json())["assignment"] for d in devices]
    for i, (d, a) in enumerate(zip(devices, assignments)):
        assert (await h.upload(d, a, h.payload(seed=i))).status == 201
    h.tick()
    first = (await h.rounds())[0]
    assert first["state"] == "committed" and first["reported"] == 2
    store = h.coordinator.store
    assert store.blobs.exists(first["checkpoint_sha"])
    assert list(store.data_dir.glob("**/*.bin")) == [] and not (store.data_dir / "blobs").exists()
