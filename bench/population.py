"""Population scale: P lightweight simulated devices against a real `fedge serve`.

Each simulated device is a real HTTP client that does what `fedge device` does minus the
training: registers, checks in with a long poll, obeys 'come back at T', and when
selected waits a fixed "training" delay and uploads a q8 update of the digits MLP. So the
numbers are the coordinator's and pace steering's, not LiteRT's.

    python bench/population.py [--devices 1000 10000] [--goal 200] [--rounds 5] [--backend postgres]

Prints, per population size: rounds committed / failed, rounds per minute, how long the
selection window took to fill (open -> last assignment), check-ins per second, p50 / p99
check-in latency (measured by 20 probe devices that check in without a long poll every
0.1 s: the population's own check-ins are held on purpose), the arrival rate pace steering
aims at (SAFETY x K per measured round period: every device's return, whether after a
retry time or right after its upload) next to the population's observed arrival rate once
it is all online, uploads refused as late (the
over-selected devices that report after the round reached its goal), and the
coordinator's peak memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import aiohttp
import numpy as np

from coordinator.gateway.pace import SAFETY
from fedge.local_coordinator import LocalCoordinator
from protocol import codec
from protocol.tflite_file import read_manifest

TOKEN = "population-bench"
PROBES = 20
STATE = {"charging": True, "unmetered": True, "idle": True, "battery": 0.9}


class Stats:
    def __init__(self):
        self.latency: list[float] = []  # check-ins answered without a hold
        self.checkins = 0
        self.assigned: dict[int, list[float]] = defaultdict(list)  # round -> assignment times
        self.uploads = 0
        self.late = 0
        self.upload_errors: dict[str, int] = defaultdict(int)
        self.arrivals: list[float] = []  # when each population check-in was sent
        self.after_upload: list[float] = []  # the check-ins sent right after an upload

    def after_upload_in(self, since: float) -> int:
        return sum(1 for t in self.after_upload if t >= since)


async def _probes(url: str, population: str, seconds: float, delay_s: float = 0.0) -> list[float]:
    """Check-in latency as a device sees it: PROBES devices checking in without a long poll
    every 0.1 s, ineligible (never selected). In a process of their own, so that the
    population's 10,000 coroutines in this one do not add their scheduling delay."""
    state = {**STATE, "charging": False}
    latency: list[float] = []
    async with aiohttp.ClientSession() as s:
        tokens = []
        for _ in range(PROBES):
            async with s.post(f"{url}/v1/devices/register", json={"population": population}) as r:
                tokens.append({"Authorization": f"Bearer {(await r.json())['token']}"})
        await asyncio.sleep(delay_s)
        end = time.time() + seconds

        async def one(headers):
            while time.time() < end:
                t = time.perf_counter()
                async with s.post(f"{url}/v1/checkin", json={"state": state}, headers=headers) as r:
                    await r.read()
                latency.append(time.perf_counter() - t)
                await asyncio.sleep(0.1)

        await asyncio.gather(*(one(h) for h in tokens))
    return latency


def _probe_process(url: str, population: str, seconds: float, delay_s: float, out, cpus=None) -> None:
    if cpus:  # --pin: the probes measure from the coordinator's side of the machine
        os.sched_setaffinity(0, cpus)
    out.send(asyncio.run(_probes(url, population, seconds, delay_s)))


async def device(session, url, headers, payload, stats: Stats, stop: asyncio.Event, train_s: float, wait_s: float):
    just_uploaded = False
    while not stop.is_set():
        stats.arrivals.append(time.time())
        if just_uploaded:
            stats.after_upload.append(stats.arrivals[-1])
        just_uploaded = False
        try:
            async with session.post(f"{url}/v1/checkin", json={"state": STATE, "wait_s": wait_s},
                                    headers=headers) as r:
                body = await r.json()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            await asyncio.sleep(1.0)
            continue
        stats.checkins += 1
        if body.get("outcome") == "assigned":
            a = body["assignment"]
            stats.assigned[a["round"]].append(time.time())
            await asyncio.sleep(train_s * random.uniform(0.5, 1.5))  # devices differ in speed
            meta = json.dumps({"example_count": 20, "train_loss": 1.0, "eval_accuracy": 0.5, "eval_count": 5})
            try:
                async with session.post(url + a["upload_url"], data=payload, headers={
                        **headers, "Content-Type": "application/octet-stream",
                        "Fedge-Upload-Token": a["upload_token"], "Fedge-Upload": meta}) as r:
                    await r.read()
                    if r.status in (200, 201):
                        stats.uploads += 1
                    elif r.status == 410:
                        stats.late += 1
                    else:
                        stats.upload_errors[str(r.status)] += 1
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                stats.upload_errors[type(exc).__name__] += 1
            just_uploaded = True
            continue
        retry_at = float(body.get("retry_at", time.time() + 1.0))
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, retry_at - time.time()))
        except asyncio.TimeoutError:
            pass


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def run(url: str, pid: int, model: bytes, n: int, args) -> dict:
    manifest = read_manifest(model)
    rng = np.random.default_rng(0)
    payload = codec.encode([rng.normal(size=w.shape).astype(np.float32) * 0.01 for w in manifest.weights],
                           codec.CodecSpec.parse("q8"), rng)
    admin = {"Authorization": f"Bearer {TOKEN}"}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as s:
        pop = f"p{n}"
        await s.post(f"{url}/v1/admin/populations", json={"name": pop}, headers=admin)
        async with s.post(f"{url}/v1/admin/models", data=model,
                          headers={**admin, "Content-Type": "application/octet-stream"}) as r:
            sha = (await r.json())["model_sha256"]
        sem = asyncio.Semaphore(200)

        async def register():
            async with sem:
                async with s.post(f"{url}/v1/devices/register", json={"population": pop}) as r:
                    return {"Authorization": f"Bearer {(await r.json())['token']}"}

        tokens = await asyncio.gather(*(register() for _ in range(n)))
        cfg = {"rounds": args.rounds, "goal_count": args.goal, "over_selection": 1.3,
               "selection_window_s": args.selection_window_s, "report_deadline_s": args.report_deadline_s,
               "codec": "q8", "eligibility": "charging and unmetered and idle"}
        if args.mode == "async":  # buffered asynchronous aggregation: K = goal, concurrency = 1.3 K
            cfg.update(mode="async", buffer_size=args.goal, concurrency=math.ceil(args.goal * 1.3),
                       max_staleness=20)
        task_id = f"t{n}"
        async with s.post(f"{url}/v1/admin/populations/{pop}/tasks", headers=admin,
                          json={"model_sha256": sha, "config": cfg, "task_id": task_id}) as r:
            assert r.status == 201, await r.text()
        stats, stop = Stats(), asyncio.Event()
        started = time.time()
        # Devices come online over n / 1000 seconds, as in `fedge fleet` (a population never
        # checks in at one instant).
        offsets = np.random.default_rng(1).uniform(0.0, n / 1000.0, n)

        async def online(h, delay):
            await asyncio.sleep(delay)
            await device(s, url, h, payload, stats, stop, args.train_s, args.long_poll_s)

        devices = [asyncio.create_task(online(h, float(t))) for h, t in zip(tokens, offsets)]
        receive, send = multiprocessing.Pipe(duplex=False)
        prober = multiprocessing.get_context("spawn").Process(
            target=_probe_process, args=(url, pop, args.probe_s, n / 1000.0 if args.probe_steady else 0.0, send,
                                         args.server_cpus),
            daemon=True)
        prober.start()
        while True:
            await asyncio.sleep(1.0)
            async with s.get(f"{url}/v1/admin/tasks/{task_id}", headers=admin) as r:
                info = await r.json()
            if info["state"] != "active" or time.time() - started > args.max_s:
                break
        elapsed = time.time() - started
        stats.latency = await asyncio.get_running_loop().run_in_executor(None, receive.recv)
        prober.join()
        stop.set()
        await asyncio.gather(*devices, return_exceptions=True)
    rounds = info["rounds"]
    done = [r for r in rounds if r["state"] == "committed"]
    failed = [r for r in rounds if r["state"] == "failed"]
    fill = [max(stats.assigned[r["round"]]) - r["opened_at"] for r in rounds if stats.assigned.get(r["round"])]
    # Arrival rate once the whole population is online, next to pace steering's aim.
    arrivals = np.array(stats.arrivals)
    online = started + n / 1000.0
    steady = arrivals[arrivals >= online]
    steady_s = max(elapsed - n / 1000.0, 1e-9)
    opened = sorted(r["opened_at"] for r in rounds if r["opened_at"] >= online)
    period = float(np.median(np.diff(opened))) if len(opened) > 1 else math.nan
    lat = np.array(stats.latency or [float("nan")])
    k = math.ceil(args.goal * 1.3)
    return {
        "devices": n, "committed": len(done), "failed": len(failed), "elapsed_s": elapsed,
        "rounds_per_min": 60 * len(done) / elapsed, "fill_s_median": float(np.median(fill)) if fill else math.nan,
        "fill_s_max": max(fill) if fill else math.nan, "checkins_per_s": stats.checkins / elapsed,
        "p50_ms": float(np.percentile(lat, 50) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "aimed_per_s": SAFETY * k / period,
        "observed_per_s": len(steady) / steady_s if len(steady) else math.nan,
        "after_upload_per_s": stats.after_upload_in(online) / steady_s,
        "uploads": stats.uploads, "late": stats.late,
        "upload_errors": dict(stats.upload_errors), "coordinator_peak_mib": _peak_rss_mib(pid),
        "reasons": sorted({r["reason"] for r in failed})[:3],
        "timeline": [(r["round"], r["state"][0], round(r["opened_at"] - started, 1)) for r in rounds],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--goal", type=int, default=200)
    ap.add_argument("--mode", choices=["sync", "async"], default="sync",
                    help="rounds, or asynchronous buffers (K = --goal, concurrency 1.3 K); rnd/min then counts "
                         "published versions")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--selection-window-s", type=float, default=2.0)
    ap.add_argument("--report-deadline-s", type=float, default=10.0)
    ap.add_argument("--train-s", type=float, default=1.0, help="the simulated training time of a selected device")
    ap.add_argument("--long-poll-s", type=float, default=10.0)
    ap.add_argument("--max-s", type=float, default=300.0, help="give up on a population size after this long")
    ap.add_argument("--probe-s", type=float, default=10.0, help="how long the latency probes run (from the start)")
    ap.add_argument("--model", default="bench_out/digits_mlp.tflite")
    ap.add_argument("--probe-steady", action="store_true",
                    help="start the probes once the whole population is online (after P / 1000 s), "
                         "not from the start; give it enough --rounds to still be running then")
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite",
                    help="the coordinator's store (postgres: a throwaway cluster from Debian's package)")
    ap.add_argument("--timeline", action="store_true", help="print when each round opened and how it ended")
    ap.add_argument("--pin", action="store_true",
                    help="the coordinator, its PostgreSQL and the latency probes on the first CPU, the simulated "
                         "population on the others (as in production, where devices are not on the coordinator's "
                         "machine); needs at least 2 CPUs")
    args = ap.parse_args()
    args.server_cpus = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            ap.error("--pin needs at least 2 CPUs")
        args.server_cpus, args.client_cpus = {cpus[0]}, set(cpus[1:])
    model_path = Path(args.model)
    if not model_path.exists():
        model_path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "fedge", "export", "--zoo", "digits_mlp", "-o", str(model_path)],
                       check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True)
    model = model_path.read_bytes()
    print(f"{'devices':>8} {'ok':>3} {'fail':>4} {'rnd/min':>7} {'fill s':>11} {'chk/s':>6} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'aim/s':>6} {'seen/s':>6} {'late':>5} {'coord MiB':>9}")
    for n in args.devices:
        with tempfile.TemporaryDirectory() as tmp:
            log = open(os.environ["FEDGE_BENCH_LOG"], "w") if os.environ.get("FEDGE_BENCH_LOG") else subprocess.DEVNULL
            with contextlib.ExitStack() as stack:
                if args.pin:  # what starts now (PostgreSQL, the coordinator) inherits the first CPU
                    os.sched_setaffinity(0, args.server_cpus)
                if args.backend == "postgres":
                    from fedge.local_postgres import LocalPostgres

                    pg = stack.enter_context(LocalPostgres())
                    db, extra = pg.create_database(f"p{n}"), ("--data-dir", os.path.join(tmp, "data"))
                else:
                    db, extra = os.path.join(tmp, "p.db"), ()
                server = stack.enter_context(LocalCoordinator(db, TOKEN, ("--checkin-rate", "1000000", *extra),
                                                              log=log))
                if args.pin:
                    os.sched_setaffinity(0, args.client_cpus)
                r = asyncio.run(run(server.url, server.proc.pid, model, n, args))
        print(f"{r['devices']:>8} {r['committed']:>3} {r['failed']:>4} {r['rounds_per_min']:>7.1f} "
              f"{r['fill_s_median']:>5.2f}/{r['fill_s_max']:<5.2f} {r['checkins_per_s']:>6.0f} {r['p50_ms']:>7.1f} "
              f"{r['p99_ms']:>7.1f} {r['aimed_per_s']:>6.0f} {r['observed_per_s']:>6.0f} {r['late']:>5} "
              f"{r['coordinator_peak_mib']:>9.0f}"
              + f"  (arrivals right after an upload: {r['after_upload_per_s']:.0f}/s)"
              + (f"  failed: {r['reasons']}" if r["failed"] else "")
              + (f"  upload errors: {r['upload_errors']}" if r["upload_errors"] else ""), flush=True)
        if args.timeline:
            print("  rounds (number, c/f, opened at s):", r["timeline"])


if __name__ == "__main__":
    main()
