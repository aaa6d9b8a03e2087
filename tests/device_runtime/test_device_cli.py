"""`fedge device` as a process against `fedge serve` as a process."""

import subprocess
import sys

import pytest

from tests.device_runtime.conftest import digits_data_dir
from tests.serve_process import ADMIN, Server

pytestmark = pytest.mark.slow


def test_fedge_device_completes_rounds(digits_tflite, tmp_path):
    data = digits_data_dir(tmp_path / "data", 80)
    server = Server(str(tmp_path / "c.db"))
    server.start()
    try:
        server.setup_task("pi", digits_tflite, {"rounds": 2, "goal_count": 1, "over_selection": 1.0,
                                                "selection_window_s": 30, "report_deadline_s": 60, "codec": "q4",
                                                "eligibility": "charging and unmetered"})
        res = subprocess.run(
            [sys.executable, "-m", "fedge", "device", "--coordinator", server.url, "--population", "pi",
             "--data", str(data), "--state-dir", str(tmp_path / "state"), "--rounds", "2",
             "--charging", "true", "--unmetered", "true", "--log-level", "WARNING"],
            capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert "uploads 2" in res.stdout
        rounds = server.call("GET", "/v1/admin/tasks/t", headers=ADMIN)[1]["rounds"]
        assert [r["reported"] for r in rounds[:2]] == [1, 1]
        assert (tmp_path / "state" / "token").exists() and any((tmp_path / "state" / "cache").iterdir())
    finally:
        server.kill9()
