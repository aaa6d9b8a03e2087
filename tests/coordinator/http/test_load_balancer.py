"""Two coordinator replicas on one PostgreSQL behind a real HAProxy (Debian's package,
started from deploy/haproxy/haproxy.cfg): a fleet trains through the balancer; the replica
driving the task is killed with SIGKILL mid-run; the other takes the task over when the
lease expires, the task still commits all its rounds, and every upload a device saw
acknowledged is counted exactly once. Then the database goes away: /readyz fails and
HAProxy takes the replicas out of rotation.

Skipped without haproxy or PostgreSQL, unless FEDGE_REQUIRE_HAPROXY=1 / FEDGE_REQUIRE_POSTGRES=1
(set by .ci/run, which installs both) make that a failure.
"""

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from device_runtime.fleet.datasets import load_federated
from device_runtime.fleet.emulator import Fleet, FleetConfig
from fedge.local_coordinator import LocalCoordinator, free_port
from tests.missing_tool import skip_or_fail

pytestmark = pytest.mark.slow
CONFIG = Path(__file__).resolve().parents[3] / "deploy" / "haproxy" / "haproxy.cfg"
TOKEN = "lb-admin"
ROUNDS = 8


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (OSError, ValueError):
        return 0, {}


def _wait_status(url: str, want: int, timeout_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if _get(url)[0] == want:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {want} within {timeout_s} s (last {_get(url)[0]})")


def committed_rounds(db: str, task_id: str) -> int:
    import psycopg

    with psycopg.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM rounds WHERE task_id=%s AND state='committed'",
                            (task_id,)).fetchone()[0]


def assert_every_round_committed_and_counted_once(db: str, task_id: str, rounds_wanted: int, fleet, history) -> None:
    """Every round committed, every upload a device saw acknowledged is stored, and each round's
    reported count is its stored updates (counted once)."""
    import psycopg

    with psycopg.connect(db) as conn:
        rounds = {n: (state, reported) for n, state, reported in conn.execute(
            "SELECT round, state, reported FROM rounds WHERE task_id=%s", (task_id,))}
        stored = set(conn.execute("SELECT device_id, round FROM updates WHERE task_id=%s", (task_id,)).fetchall())
        counts = dict(conn.execute("SELECT round, COUNT(*) FROM updates WHERE task_id=%s GROUP BY round",
                                   (task_id,)).fetchall())
    assert sum(1 for s, _ in rounds.values() if s == "committed") == rounds_wanted, rounds
    assert len([r for r in history if r.state == "committed"]) == rounds_wanted
    acked = {(d.client.token.split(".")[0], rnd) for d in fleet.devices for rnd in d.stats.bytes_by_round}
    assert acked and acked <= stored, sorted(acked - stored)[:5]  # nothing acknowledged was lost
    for n, (state, reported) in rounds.items():
        assert reported == counts.get(n, 0), (n, state, reported, counts.get(n, 0))  # counted once


@pytest.fixture
def haproxy_bin() -> str:
    path = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
    if path is None:
        skip_or_fail("haproxy not installed (apt-get install haproxy)", "FEDGE_REQUIRE_HAPROXY")
    return path


async def test_replica_failover_behind_haproxy(haproxy_bin, postgres_server, digits_tflite, tmp_path):
    import psycopg

    from fedge.local_postgres import LocalPostgres

    loop = asyncio.get_running_loop()
    pg = await loop.run_in_executor(None, LocalPostgres().start)  # its own: this test stops it
    db = pg.create_database("lb")
    args = ("--data-dir", str(tmp_path / "data"), "--min-retry-s", "0.05", "--max-retry-s", "1",
            "--trusted-proxy", "127.0.0.1", "--ineligible-retry-s", "0.5", "--checkin-rate", "1000")
    replicas = [LocalCoordinator(db, TOKEN, args) for _ in range(2)]
    lb_port = free_port()
    lb_url = f"http://127.0.0.1:{lb_port}"
    balancer = None
    try:
        for r in replicas:
            await loop.run_in_executor(None, r.start)
        env = {**os.environ, "FEDGE_LB_PORT": str(lb_port), "FEDGE_REPLICA_1": f"127.0.0.1:{replicas[0].port}",
               "FEDGE_REPLICA_2": f"127.0.0.1:{replicas[1].port}"}
        subprocess.run([haproxy_bin, "-c", "-f", str(CONFIG)], env=env, check=True, capture_output=True)
        balancer = subprocess.Popen([haproxy_bin, "-db", "-f", str(CONFIG)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await loop.run_in_executor(None, _wait_status, lb_url + "/readyz", 200, 20)

        data = load_federated("digits", 12, "dirichlet:0.5", seed=2)
        cfg = FleetConfig(coordinator=lb_url, admin_token=TOKEN, devices=12, partition="dirichlet:0.5",
                          dropout=0.0, slow_fraction=0.0, seed=2, workers=2, progress=False, population="pop",
                          retry_for_s=60.0, out_dir=str(tmp_path / "out"))
        fleet = Fleet(cfg, data)
        task = {"rounds": ROUNDS, "goal_count": 4, "over_selection": 1.25, "selection_window_s": 2.0,
                "report_deadline_s": 10.0, "eligibility": "charging", "epochs": 1, "learning_rate": 0.05,
                "codec": "q8"}
        run = asyncio.create_task(fleet.run(digits_tflite, task, task_id="lb"))

        def committed() -> int:
            return committed_rounds(db, "lb")

        while await loop.run_in_executor(None, committed) < 2 and not run.done():
            await asyncio.sleep(0.2)
        # SIGKILL the replica that drives the task (the lease's holder) mid-run.
        with psycopg.connect(db) as conn:
            holder = conn.execute("SELECT holder FROM task_leases WHERE task_id='lb'").fetchone()[0]
        ids = [_get(f"{r.url}/healthz")[1]["replica"] for r in replicas]
        driver, survivor = (replicas[0], replicas[1]) if ids[0] == holder else (replicas[1], replicas[0])
        at_kill = await loop.run_in_executor(None, committed)
        killed_at = time.monotonic()
        await loop.run_in_executor(None, driver.kill9)
        while await loop.run_in_executor(None, committed) <= at_kill and time.monotonic() - killed_at < 60:
            await asyncio.sleep(0.1)
        takeover_s = time.monotonic() - killed_at
        history = await asyncio.wait_for(run, 240)
        print(f"next round committed {takeover_s:.1f} s after SIGKILL of the driving replica")

        with psycopg.connect(db) as conn:
            assert conn.execute("SELECT holder FROM task_leases WHERE task_id='lb'").fetchone()[0] == ids[
                replicas.index(survivor)]
        assert takeover_s < 30, takeover_s
        assert_every_round_committed_and_counted_once(db, "lb", ROUNDS, fleet, history)

        # The database goes away: the survivor stays alive but is not ready, and the
        # balancer stops sending it traffic (503 from HAProxy itself).
        await loop.run_in_executor(None, pg.stop)
        assert _get(f"{survivor.url}/healthz")[0] == 200
        assert _get(f"{survivor.url}/readyz")[0] == 503
        took = await loop.run_in_executor(None, _wait_status, lb_url + "/healthz", 503, 10)
        assert took < 5.0  # inter 500ms, fall 2
    finally:
        if balancer is not None:
            balancer.terminate()
            balancer.wait(10)
        for r in replicas:
            r.stop()
        pg.stop()


def _via_proxy_protocol(port: int, source: str, request: bytes) -> int:
    """One HTTP request to HAProxy as if from `source`: a PROXY protocol v1 line first (what an
    L4 balancer in front of HAProxy sends), so the test needs no second network address."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"PROXY TCP4 {source} 127.0.0.1 40000 {port}\r\n".encode() + request)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    return int(raw.split(b" ", 2)[1])


def _wait_proxy(port: int, request: bytes, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if _via_proxy_protocol(port, "127.0.0.1", request) == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"HAProxy on port {port} did not come up"
        time.sleep(0.2)


def test_client_addresses_through_haproxy(haproxy_bin, tmp_path):
    """deploy/haproxy/haproxy.cfg adds X-Forwarded-For; a coordinator started with
    --trusted-proxy 127.0.0.1 limits registrations per real client and shows its status
    page only to requests from its own host; one that does not trust the balancer treats
    every proxied request as remote (the review's finding: 300 of 300 registrations and the
    operator pages were open through a same-host forwarder)."""
    trusting = LocalCoordinator(str(tmp_path / "a.db"), TOKEN, ("--register-rate", "1", "--trusted-proxy", "127.0.0.1"))
    unaware = LocalCoordinator(str(tmp_path / "b.db"), TOKEN, ("--register-rate", "1",))
    balancers = []
    try:
        for c in (trusting, unaware):
            c.start()
            urllib.request.urlopen(urllib.request.Request(
                f"{c.url}/v1/admin/populations", data=b'{"name": "p"}', method="POST",
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}), timeout=10)
        ports = []
        for c in (trusting, unaware):
            port = free_port()
            # The shipped file, with PROXY protocol accepted on the bind line for this test's client.
            cfg = tmp_path / f"haproxy-{port}.cfg"
            cfg.write_text(CONFIG.read_text().replace('bind 127.0.0.1:"${FEDGE_LB_PORT}"',
                                                      'bind 127.0.0.1:"${FEDGE_LB_PORT}" accept-proxy'))
            env = {**os.environ, "FEDGE_LB_PORT": str(port), "FEDGE_REPLICA_1": f"127.0.0.1:{c.port}",
                   "FEDGE_REPLICA_2": f"127.0.0.1:{c.port}"}
            balancers.append(subprocess.Popen([haproxy_bin, "-db", "-f", str(cfg)], env=env,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            ports.append(port)
        body = b'{"population": "p"}'
        register = (b"POST /v1/devices/register HTTP/1.1\r\nHost: lb\r\nContent-Type: application/json\r\n"
                    b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        status_page = b"GET /v1/status HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n"
        healthz = b"GET /healthz HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n"
        for port in ports:
            _wait_proxy(port, healthz)

        # Trusting the balancer: each client has its own bucket (a burst of 10 at 1/s).
        a = [_via_proxy_protocol(ports[0], "203.0.113.7", register) for _ in range(12)]
        assert a.count(201) <= 11 and a[-1] == 429, a
        assert _via_proxy_protocol(ports[0], "203.0.113.8", register) == 201
        assert _via_proxy_protocol(ports[0], "203.0.113.7", status_page) == 401
        assert [_via_proxy_protocol(ports[0], "127.0.0.1", register) for _ in range(15)] == [201] * 15

        assert _via_proxy_protocol(ports[0], "127.0.0.1", status_page) == 200

        # Not trusting it: everything through the balancer is remote (and shares one bucket).
        assert _via_proxy_protocol(ports[1], "127.0.0.1", status_page) == 401
        b = [_via_proxy_protocol(ports[1], f"203.0.113.{i}", register) for i in range(30)]
        assert b.count(201) <= 11 and b[-1] == 429, b
        assert _get(f"{unaware.url}/v1/status")[0] == 200  # direct, from this host: local
    finally:
        for p in balancers:
            p.terminate()
            p.wait(10)
        trusting.stop()
        unaware.stop()
