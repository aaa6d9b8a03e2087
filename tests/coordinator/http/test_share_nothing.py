"""Replicas that share nothing but PostgreSQL and an S3-compatible bucket: each replica in a
network namespace of its own with its own empty --data-dir; PostgreSQL, the object store
(SeaweedFS) and HAProxy on the host, reached from a namespace only by its veth pair's host
address (tests/network_namespaces.py). Devices come in through the balancer and download
by presigned URL from the store's public address. A SecAgg task whose devices talk to both
replicas commits; then the replica holding the training task's lease is SIGKILLed mid-run,
every round still commits, every acknowledged upload is counted once, and neither replica's
folder holds a single file.

Skipped without root network namespaces, haproxy, PostgreSQL or SeaweedFS, unless .ci/run's
FEDGE_REQUIRE_* variables make that a failure.
"""

import asyncio
import os
import subprocess
import time

import pytest

from device_runtime.fleet.datasets import load_federated
from device_runtime.fleet.emulator import Fleet, FleetConfig
from fedge.local_coordinator import LocalCoordinator, free_port
from tests.coordinator.http.test_load_balancer import (CONFIG, _get, _wait_status,  # noqa: F401
                                                       assert_every_round_committed_and_counted_once, committed_rounds,
                                                       haproxy_bin)
from tests.missing_tool import skip_or_fail
from tests.network_namespaces import Namespace, available

pytestmark = pytest.mark.slow
TOKEN = "sn-admin"
BUCKET = "share-nothing"
ROUNDS = 6


def _fleet(lb_url: str, population: str, out: str, devices: int = 12) -> Fleet:
    data = load_federated("digits", devices, "dirichlet:0.5", seed=3)
    cfg = FleetConfig(coordinator=lb_url, admin_token=TOKEN, devices=devices, partition="dirichlet:0.5",
                      dropout=0.0, slow_fraction=0.0, seed=3, workers=2, progress=False, population=population,
                      retry_for_s=60.0, out_dir=out)
    return Fleet(cfg, data)


def _files(folder) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file())


async def test_share_nothing_replicas_in_their_own_namespaces(haproxy_bin, s3_server, digits_tflite, tmp_path):
    import psycopg

    from fedge.local_postgres import LocalPostgres, find_bin_dir
    from fedge.local_s3 import LocalS3

    why = available()
    if why:
        skip_or_fail(why, "FEDGE_REQUIRE_NETNS")
    if find_bin_dir() is None:
        skip_or_fail("PostgreSQL not installed (apt-get install postgresql)", "FEDGE_REQUIRE_POSTGRES")
    loop = asyncio.get_running_loop()
    spaces = [Namespace(i).create() for i in range(2)]
    pg = store = balancer = None
    replicas: list[LocalCoordinator] = []
    try:
        pg = await loop.run_in_executor(None, LocalPostgres(
            listen=("127.0.0.1", *(ns.host_ip for ns in spaces)), trust_from=("198.18.0.0/15",)).start)
        pg.create_database("sn")
        # The store listens on every address: replicas write to it through their namespace's
        # host address; devices download from its public one (loopback here).
        store = await loop.run_in_executor(None, LocalS3(s3_server.weed, bind="0.0.0.0").start)
        await loop.run_in_executor(None, store.create_bucket, BUCKET)
        for i, ns in enumerate(spaces):
            folder = tmp_path / f"replica{i}"
            folder.mkdir()
            args = ("--data-dir", str(folder), "--blobs", f"s3://{BUCKET}/fedge",
                    "--blobs-public-endpoint", store.endpoint, "--trusted-proxy", ns.host_ip,
                    "--min-retry-s", "0.05", "--max-retry-s", "1", "--ineligible-retry-s", "0.5",
                    "--checkin-rate", "1000")
            replicas.append(LocalCoordinator(pg.url("sn", host=ns.host_ip), TOKEN, args, host=ns.ip,
                                             prefix=ns.exec_prefix, env=store.env(host=ns.host_ip),
                                             log=open(tmp_path / f"replica{i}.log", "wb")))
        for i, r in enumerate(replicas):
            try:
                await loop.run_in_executor(None, r.start)
            except RuntimeError as exc:
                raise AssertionError(f"{exc}: {(tmp_path / f'replica{i}.log').read_text()[-3000:]}") from None
        lb_port = free_port()
        lb_url = f"http://127.0.0.1:{lb_port}"
        env = {**os.environ, "FEDGE_LB_PORT": str(lb_port), "FEDGE_REPLICA_1": f"{spaces[0].ip}:{replicas[0].port}",
               "FEDGE_REPLICA_2": f"{spaces[1].ip}:{replicas[1].port}"}
        balancer = subprocess.Popen([haproxy_bin, "-db", "-f", str(CONFIG)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await loop.run_in_executor(None, _wait_status, lb_url + "/readyz", 200, 20)

        # 1. SecAgg through the balancer (round robin: every device's requests reach both replicas).
        secagg_fleet = _fleet(lb_url, "secagg", str(tmp_path / "secagg"), devices=8)
        secagg = {"rounds": 2, "goal_count": 6, "over_selection": 1.3, "selection_window_s": 3.0,
                  "report_deadline_s": 30.0, "eligibility": "charging", "epochs": 1, "learning_rate": 0.05,
                  "secagg": "secagg", "secagg_phase_s": 30.0, "clip_norm": 1.0}
        # A phase ends early once every device has answered; its deadline only bounds the wait.
        # At 10 s, on 2 loaded CI cores (two replicas, PostgreSQL, the store, HAProxy and the
        # devices' training), a round's unmasking once closed with 3 of the 5 reveals it needs.
        history = await asyncio.wait_for(secagg_fleet.run(digits_tflite, secagg, task_id="sa"), 420)
        assert [r.state for r in history] == ["committed", "committed"], [(r.state, r.reason) for r in history]

        # 2. A training task; the replica holding its lease is SIGKILLed after round 2.
        fleet = _fleet(lb_url, "pop", str(tmp_path / "out"))
        task = {"rounds": ROUNDS, "goal_count": 4, "over_selection": 1.25, "selection_window_s": 2.0,
                "report_deadline_s": 10.0, "eligibility": "charging", "epochs": 1, "learning_rate": 0.05,
                "codec": "q8"}
        run = asyncio.create_task(fleet.run(digits_tflite, task, task_id="sn"))
        db = pg.url("sn")

        while await loop.run_in_executor(None, committed_rounds, db, "sn") < 2 and not run.done():
            await asyncio.sleep(0.2)
        with psycopg.connect(db) as conn:
            holder = conn.execute("SELECT holder FROM task_leases WHERE task_id='sn'").fetchone()[0]
        ids = [_get(f"{r.url}/healthz")[1]["replica"] for r in replicas]
        driver = replicas[ids.index(holder)]
        assert not run.done()  # mid-run
        killed_at = time.monotonic()
        await loop.run_in_executor(None, driver.kill9)
        history = await asyncio.wait_for(run, 240)
        print(f"share-nothing: {ROUNDS} rounds committed {time.monotonic() - killed_at:.1f} s after the SIGKILL")

        assert_every_round_committed_and_counted_once(db, "sn", ROUNDS, fleet, history)
        # Every download came from the store and every upload's bytes went there (each round's
        # are deleted once it ends): the bucket holds the models, the checkpoints and the
        # signing key, and the replicas' folders hold nothing at all.
        assert all(d.stats.download_failures == 0 for d in fleet.devices)
        objects = store.objects(BUCKET, "fedge/")
        assert sum(k.startswith("fedge/blobs/") for k in objects) >= 3 and "fedge/audit_key.pem" in objects
        assert _files(tmp_path / "replica0") == [] and _files(tmp_path / "replica1") == []
    finally:
        if balancer is not None:
            balancer.terminate()
            balancer.wait(10)
        for r in replicas:
            r.stop()
        if store is not None:
            store.stop()
        if pg is not None:
            pg.stop()
        for ns in spaces:
            ns.delete()
