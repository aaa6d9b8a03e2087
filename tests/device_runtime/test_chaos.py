"""Chaos: a fleet trains while its coordinator is killed with SIGKILL again and again and
restarted on the same database. The fleet finishes, and every upload a device saw
acknowledged is counted exactly once in the round it was sent to."""

import asyncio
import random
import sqlite3

import pytest

from device_runtime.fleet.datasets import load_federated
from device_runtime.fleet.emulator import Fleet, FleetConfig
from fedge.local_coordinator import LocalCoordinator

pytestmark = pytest.mark.slow
TOKEN = "chaos-admin"
KILLS = 10


async def test_fleet_survives_repeated_kill9(digits_tflite, tmp_path):
    db = str(tmp_path / "c.db")
    server = LocalCoordinator(db, TOKEN, ("--min-retry-s", "0.05", "--max-retry-s", "1", "--ineligible-retry-s",
                                          "0.5", "--checkin-rate", "1000"))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, server.start)
    try:
        data = load_federated("digits", 30, "dirichlet:0.5", seed=3)
        cfg = FleetConfig(coordinator=server.url, admin_token=TOKEN, devices=30, partition="dirichlet:0.5",
                          dropout=0.0, slow_fraction=0.0, seed=3, workers=2, progress=False, population="pop",
                          retry_for_s=60.0, out_dir=str(tmp_path / "out"))
        fleet = Fleet(cfg, data)
        task = {"rounds": 25, "goal_count": 6, "over_selection": 1.3, "selection_window_s": 1.0,
                "report_deadline_s": 6.0, "eligibility": "charging", "epochs": 1, "learning_rate": 0.05,
                "codec": "q8"}
        run = asyncio.create_task(fleet.run(digits_tflite, task, task_id="chaos"))
        rng = random.Random(0)
        kills = 0
        while not fleet.devices and not run.done():  # the task exists and the devices registered
            await asyncio.sleep(0.05)
        while kills < KILLS:
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            await loop.run_in_executor(None, server.kill9)
            kills += 1
            await loop.run_in_executor(None, server.start)
        history = await asyncio.wait_for(run, 300)
    finally:
        server.stop()
    assert kills == KILLS and not run.exception()
    committed = {r.round for r in history if r.state == "committed"}
    assert len(committed) == task["rounds"], [(r.round, r.state, r.reason) for r in history]

    acked = {(d.client.token.split(".")[0], rnd) for d in fleet.devices for rnd in d.stats.bytes_by_round}
    assert acked, "no upload was acknowledged"
    con = sqlite3.connect(db)
    stored = set(con.execute("SELECT device_id, round FROM updates WHERE task_id='chaos'").fetchall())
    rounds = {r: (state, reported) for r, state, reported in
              con.execute("SELECT round, state, reported FROM rounds WHERE task_id='chaos'")}
    counts = dict(con.execute("SELECT round, COUNT(*) FROM updates WHERE task_id='chaos' GROUP BY round").fetchall())
    con.close()
    # Every acknowledged upload is stored for its round: the rows are unique per (device, round),
    # so it is counted once; and each round's counter equals its rows (no double increments).
    assert acked <= stored, sorted(acked - stored)[:5]
    for rnd, (state, reported) in rounds.items():
        assert reported == counts.get(rnd, 0), (rnd, state, reported, counts.get(rnd, 0))
    for rnd in committed:
        assert rounds[rnd][0] == "committed"
        assert {d for d, r in acked if r == rnd} <= {d for d, r in stored if r == rnd}
