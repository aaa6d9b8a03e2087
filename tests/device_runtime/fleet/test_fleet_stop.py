"""`fedge fleet` stopped mid-run (SIGTERM, as Ctrl-C): what it measured is written, the task
it created is named and cancelled, and the exit status says it was stopped."""

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.serve_process import ADMIN, TOKEN, Server

pytestmark = pytest.mark.slow


def test_a_stopped_fleet_writes_its_history_and_cancels_its_task(digits_tflite, tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(digits_tflite)
    server = Server(str(tmp_path / "c.db"))
    server.start()
    try:
        (tmp_path / "c.db.admin-token").write_text(TOKEN)  # as `fedge serve` writes it: no token flag needed
        proc = subprocess.Popen(
            [sys.executable, "-m", "fedge", "fleet", "--coordinator", server.url, "--db", str(tmp_path / "c.db"),
             "--model", str(model), "--devices", "12", "--goal-count", "4", "--rounds", "500", "--epochs", "1",
             "--population", "stoppers", "--no-progress", "--out", str(tmp_path / "out")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 180
        first = ""
        while time.time() < deadline and not first.startswith("round"):
            first = proc.stdout.readline()
            assert first or proc.poll() is None, proc.stderr.read()[-3000:]
        assert first.startswith("round"), "no round ended in time"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err[-3000:]
        assert "stopped after" in out and "partial history" in out
        task_line = next(line for line in out.splitlines() if line.startswith("task "))
        task_id = task_line.split()[1].rstrip(":")
        assert task_line.endswith("cancelled")
        history = json.loads((tmp_path / "out" / "history.json").read_text())
        assert history and any(r.get("state") == "committed" for r in history if isinstance(r, dict))
        status, task = server.call("GET", f"/v1/admin/tasks/{task_id}", headers=ADMIN)
        assert status == 200 and task["state"] == "cancelled" and task["config"]["rounds"] == 500
        status, pops = server.call("GET", "/v1/admin/populations", headers=ADMIN)
        assert "stoppers" in {p["name"] for p in pops["populations"]}
    finally:
        server.kill9()
