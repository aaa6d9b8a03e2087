"""A small emulated fleet trains the digits model well above chance."""

import pytest

from device_runtime.datasets import load_federated
from device_runtime.fleet import Fleet, FleetConfig, write_history
from tests.device_runtime.conftest import TOKEN

pytestmark = pytest.mark.slow


async def test_small_fleet_learns(live_coordinator, digits_tflite, tmp_path):
    url = str(live_coordinator.make_url("")).rstrip("/")
    data = load_federated("digits", 20, "dirichlet:0.5", seed=1)
    cfg = FleetConfig(coordinator=url, admin_token=TOKEN, devices=20, partition="dirichlet:0.5", dropout=0.1,
                      seed=1, workers=2, progress=False, population="pop")
    fleet = Fleet(cfg, data)
    task = {"rounds": 5, "goal_count": 8, "over_selection": 1.3, "selection_window_s": 1.0,
            "report_deadline_s": 10.0, "eligibility": "charging and unmetered and idle", "epochs": 5,
            "learning_rate": 0.05, "codec": "q8"}
    history = await fleet.run(digits_tflite, task, task_id="fleet")
    committed = [r for r in history if r.state == "committed"]
    assert len(committed) >= 4
    assert committed[-1].global_accuracy > 0.5  # chance is 0.1
    assert committed[-1].global_accuracy > committed[0].global_accuracy
    paths = write_history(history, tmp_path)
    assert paths["png"].stat().st_size > 5000
    assert paths["csv"].read_text().count("\n") == len(history) + 1
