"""A real HAProxy (Debian's package) from deploy/haproxy/haproxy.cfg in front of a
coordinator on a real PostgreSQL: a fleet trains through the balancer, and when the
database goes away the replica's /readyz fails and HAProxy takes it out of rotation.

Skipped without haproxy or PostgreSQL, unless FEDGE_REQUIRE_HAPROXY=1 / FEDGE_REQUIRE_POSTGRES=1
(set by .ci/run, which installs both) make that a failure.
"""

import asyncio
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from device_runtime.datasets import load_federated
from device_runtime.fleet import Fleet, FleetConfig
from fedge.local_coordinator import LocalCoordinator, free_port
from tests.missing_tool import skip_or_fail

pytestmark = pytest.mark.slow
CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy" / "haproxy.cfg"
TOKEN = "lb-admin"


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _wait_status(url: str, want: int, timeout_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if _status(url) == want:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {want} within {timeout_s} s (last {_status(url)})")


@pytest.fixture
def haproxy_bin() -> str:
    path = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
    if path is None:
        skip_or_fail("haproxy not installed (apt-get install haproxy)", "FEDGE_REQUIRE_HAPROXY")
    return path


async def test_fleet_through_haproxy_and_readiness(haproxy_bin, postgres_server, digits_tflite, tmp_path):
    from fedge.local_postgres import LocalPostgres

    loop = asyncio.get_running_loop()
    pg = await loop.run_in_executor(None, LocalPostgres().start)  # its own: this test stops it
    server = LocalCoordinator(pg.create_database("lb"), TOKEN, ("--data-dir", str(tmp_path / "data"),
                                                                  "--min-retry-s", "0.05", "--max-retry-s", "1",
                                                                  "--ineligible-retry-s", "0.5",
                                                                  "--checkin-rate", "1000"))
    lb_port = free_port()
    lb_url = f"http://127.0.0.1:{lb_port}"
    balancer = None
    try:
        await loop.run_in_executor(None, server.start)
        env = {**os.environ, "FEDGE_LB_PORT": str(lb_port), "FEDGE_REPLICA_1": f"127.0.0.1:{server.port}"}
        subprocess.run([haproxy_bin, "-c", "-f", str(CONFIG)], env=env, check=True, capture_output=True)
        balancer = subprocess.Popen([haproxy_bin, "-db", "-f", str(CONFIG)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await loop.run_in_executor(None, _wait_status, lb_url + "/readyz", 200, 20)

        data = load_federated("digits", 12, "dirichlet:0.5", seed=2)
        cfg = FleetConfig(coordinator=lb_url, admin_token=TOKEN, devices=12, partition="dirichlet:0.5",
                          dropout=0.0, slow_fraction=0.0, seed=2, workers=2, progress=False, population="pop",
                          out_dir=str(tmp_path / "out"))
        task = {"rounds": 3, "goal_count": 4, "over_selection": 1.25, "selection_window_s": 2.0,
                "report_deadline_s": 10.0, "eligibility": "charging", "epochs": 1, "learning_rate": 0.05,
                "codec": "q8"}
        history = await asyncio.wait_for(Fleet(cfg, data).run(digits_tflite, task, task_id="lb"), 180)
        assert [r.state for r in history] == ["committed"] * 3, [(r.round, r.state, r.reason) for r in history]

        # The database goes away: the replica stays alive but is not ready, and the
        # balancer stops sending it traffic (503 from HAProxy itself).
        await loop.run_in_executor(None, pg.stop)
        assert _status(f"http://127.0.0.1:{server.port}/healthz") == 200
        assert _status(f"http://127.0.0.1:{server.port}/readyz") == 503
        took = await loop.run_in_executor(None, _wait_status, lb_url + "/healthz", 503, 10)
        assert took < 5.0  # inter 500ms, fall 2
    finally:
        if balancer is not None:
            balancer.terminate()
            balancer.wait(10)
        server.stop()
        pg.stop()
