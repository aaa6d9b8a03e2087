"""What a device keeps between rounds (device_runtime/kept_state.py): in memory, and with a
folder on disk across a restart; written whole, read back without pickle."""

from __future__ import annotations

import numpy as np

from device_runtime.kept_state import KeptState
from protocol.dp_sgd import DpSgdEvent


def test_what_a_device_keeps_survives_a_restart(tmp_path):
    kept = KeptState(tmp_path / "state")
    c_i, residual = np.arange(5, dtype=np.float32), np.full(3, 0.5, np.float32)
    personal = [np.ones((2, 2), np.float32), np.zeros(2, np.float32)]
    kept.keep_control("t", c_i)
    kept.keep_residual("t", residual)
    kept.keep_personal("a" * 64, personal)
    epsilon = kept.spend(DpSgdEvent(1.1, 0.01, 100), 1e-5)
    assert epsilon > 0
    again = KeptState(tmp_path / "state")  # a new process: nothing in memory
    np.testing.assert_array_equal(again.control_for("t"), c_i)
    np.testing.assert_array_equal(again.residual_for("t"), residual)
    for a, b in zip(again.personal_for("a" * 64), personal):
        np.testing.assert_array_equal(a, b)
    assert again.spend(DpSgdEvent(1.1, 0.01, 100), 1e-5) > epsilon  # the ledger went on from where it was
    assert not list((tmp_path / "state").glob("*.tmp*"))  # every write was renamed into place


def test_without_a_folder_nothing_touches_the_disk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    kept = KeptState()
    kept.keep_control("t", np.zeros(2, np.float32))
    assert kept.control_for("t") is not None and kept.control_for("u") is None
    assert list(tmp_path.iterdir()) == []
