"""Each task gets its round kind at the driver and its intake at the gateway, chosen in one
place each from the task's config; the kinds differ where the task kinds do."""

from __future__ import annotations

import pytest

from coordinator.gateway.buffered import BufferedIntake
from coordinator.gateway.evaluation import EvaluationIntake
from coordinator.gateway.intakes import SecAggIntake, SyncIntake
from coordinator.rounds.buffers import BufferedKind
from coordinator.rounds.kinds import EvaluationKind, SecAggKind, SyncKind
from coordinator.rounds.states import RoundState
from coordinator.tasks.config import TaskConfig

CONFIGS = {
    "sync": ({}, SyncKind, SyncIntake),
    "secagg": ({"secagg": "secagg", "clip_norm": 1.0, "goal_count": 3}, SecAggKind, SecAggIntake),
    "async": ({"mode": "async", "buffer_size": 2}, BufferedKind, BufferedIntake),
    "evaluation": ({"kind": "evaluate", "evaluate_of": "t0"}, EvaluationKind, EvaluationIntake),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
async def test_each_task_kind_gets_its_own_round_kind_and_intake(memory_harness, name):
    raw, kind_class, intake_class = CONFIGS[name]
    config = TaskConfig.from_dict(raw)
    c = memory_harness.coordinator
    kind, intake = c.driver.kinds.of(config), c.gateway.intakes.of(config)
    assert type(kind) is kind_class and type(intake) is intake_class and kind.name == config.round_kind
    assert kind.trains == (name != "evaluation")
    assert kind.opens_in == (RoundState.REPORTING if name == "async" else RoundState.SELECTING)
    assert intake.upload_path == ("evaluation" if name == "evaluation" else "update")
    assert intake.takes_unassigned == (name == "async")


async def test_slots_wanted_follow_the_kind(memory_harness):
    """Pace steering's denominator: a round's selection, or about K slots per version."""
    await memory_harness.setup_task(goal_count=4, over_selection=1.5)
    c = memory_harness.coordinator
    task = c.tasks["t1"]
    assert c.gateway.intake(task).wanted(task) == 6
    assert c.gateway.intakes.buffered.wanted(task) == task.config.buffer_goal == 4
