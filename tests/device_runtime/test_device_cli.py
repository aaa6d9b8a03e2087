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
        assert (tmp_path / "state" / "identity.json").exists() and any((tmp_path / "state" / "cache").iterdir())
    finally:
        server.kill9()


def _device_cmd(server, data, state, population="pi", *extra):
    return [sys.executable, "-m", "fedge", "device", "--coordinator", server.url, "--population", population,
            "--data", str(data), "--state-dir", str(state), "--rounds", "1", "--charging", "true",
            "--unmetered", "true", *extra]


def test_fedge_device_joins_a_protected_population_and_keeps_one_identity_per_population(digits_tflite, tmp_path):
    import os

    data = digits_data_dir(tmp_path / "data", 80)
    server = Server(str(tmp_path / "c.db"))
    server.start()
    try:
        assert server.call("POST", "/v1/admin/populations", {"name": "pi", "enrollment_secret": "S3"}, ADMIN)[0] == 201
        status, info = server.call("POST", "/v1/admin/models", headers={**ADMIN, "Content-Type": "application/octet-stream"},
                                   raw=digits_tflite)
        assert status == 201, info
        config = {"rounds": 2, "goal_count": 1, "over_selection": 1.0, "selection_window_s": 30, "report_deadline_s": 60}
        assert server.call("POST", "/v1/admin/populations/pi/tasks", {"model_sha256": info["model_sha256"],
                                                                      "config": config}, ADMIN)[0] == 201
        state = tmp_path / "state"
        refused = subprocess.run(_device_cmd(server, data, state), capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1 and "enrollment secret" in refused.stderr, refused.stderr[-2000:]
        env = {**os.environ, "FEDGE_ENROLLMENT_SECRET": "S3"}
        res = subprocess.run(_device_cmd(server, data, state), capture_output=True, text=True, timeout=120, env=env)
        assert res.returncode == 0 and "uploads 1" in res.stdout, res.stderr[-2000:]
        assert "round: uploaded" in res.stderr  # one line per outcome
        # The same folder for another population: refused, naming both, before any request.
        other = subprocess.run(_device_cmd(server, data, state, "nosuchpop"), capture_output=True, text=True,
                               timeout=120)
        assert other.returncode == 2 and "population 'pi'" in other.stderr and "'nosuchpop'" in other.stderr
    finally:
        server.kill9()
