"""Pace steering's window and its inputs (coordinator/gateway/pace.py), over the in-memory store."""

from types import SimpleNamespace

from coordinator.gateway.pace import INPUTS_TTL_S, SAFETY, PaceConfig, PaceSteering
from coordinator.store.memory import MemoryStore
from coordinator.store.records import DeviceRecord


def test_the_window_is_worked_out_with_its_inputs_once_per_count():
    store = MemoryStore()
    store.add_devices([DeviceRecord(f"d{i}", "p", "h", "", 0.0, 0.0, 1000.0) for i in range(300)])
    task = SimpleNamespace(task_id="t", population="p", config=SimpleNamespace(selection_window_s=30.0))
    asked = []
    pace = PaceSteering(store, PaceConfig(max_retry_s=600.0), lambda t: asked.append(t) or 100)
    # 300 present, no rounds yet (the selection window stands for the period), 100 a round.
    assert pace.inputs(task, 0.0) == (300, 30.0)
    assert pace.window(task, 0.0) == 300 * 30.0 / (SAFETY * 100) and len(asked) == 1
    store.touch_devices({f"d{i}": (1.0, 2.0) for i in range(200)})  # 200 now overdue after t = 2
    assert pace.window(task, INPUTS_TTL_S - 1.0) == 60.0 and len(asked) == 1  # the count stands until its TTL
    assert pace.inputs(task, INPUTS_TTL_S) == (100, 30.0)
    assert pace.window(task, INPUTS_TTL_S) == 100 * 30.0 / (SAFETY * 100) and len(asked) == 2
