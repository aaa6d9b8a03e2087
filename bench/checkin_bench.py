"""Check-in throughput and latency: the coordinator in its own process, N concurrent
simulated devices in this one (each registers, then checks in repeatedly).

    python bench/checkin_bench.py [--devices 100 1000 10000] [--checkins 5000] [--in-flight 256]
    python bench/checkin_bench.py --replicas 1 2 4 [--devices 10000]

With --replicas, the coordinators are N `fedge serve` replicas on one PostgreSQL behind
HAProxy (deploy/haproxy/haproxy.cfg), all started here from Debian's packages; each
replica's CPU seconds during the run are printed too.

Latency includes queueing: with N check-ins in flight at R per second, each waits about
N / R (Little's law), so p99 depends on --in-flight as much as on the coordinator.

The population has no task, so each check-in is: token check, state parsing, the
durable last_seen write, and the pace-steered 'come back' answer.

    python bench/checkin_bench.py --cpu-per-check-in --client wrk --pin [--devices 10000]

With --client wrk the load is wrk (Debian's package; bench/checkin_wrk.lua: each request the
next device's check-in), a C client that keeps --in-flight connections each with one request
outstanding: on one core it sends several times what a Python client can, so the latency it
reports is the coordinator's and not the load generator's queue. The coordinator's CPU is
read from /proc over wrk's window only (registrations excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time

import aiohttp
import numpy as np

from fedge.local_coordinator import LocalCoordinator
from machine import other_cores, pin

TOKEN = "bench"


async def _run(url: str, devices: int, checkins: int, in_flight: int) -> tuple[float, np.ndarray]:
    conn = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=conn) as s:
        admin = {"Authorization": f"Bearer {TOKEN}"}
        pop = f"p{devices}"
        await s.post(f"{url}/v1/admin/populations", json={"name": pop}, headers=admin)
        sem = asyncio.Semaphore(in_flight)

        async def register():
            async with sem:
                async with s.post(f"{url}/v1/devices/register", json={"population": pop}) as r:
                    return {"Authorization": f"Bearer {(await r.json())['token']}"}

        tokens = await asyncio.gather(*(register() for _ in range(devices)))
        latencies: list[float] = []
        state = {"state": {"charging": True, "unmetered": True, "idle": True, "battery": 0.9}}
        per_device = max(1, checkins // devices)

        async def device(headers):
            for _ in range(per_device):
                async with sem:
                    t = time.perf_counter()
                    async with s.post(f"{url}/v1/checkin", json=state, headers=headers) as r:
                        await r.read()
                        assert r.status == 200, r.status
                    latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(device(h) for h in tokens))
        return time.perf_counter() - start, np.array(latencies)


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _replicated(args) -> None:
    from fedge.local_haproxy import LocalHaproxy
    from fedge.local_postgres import LocalPostgres

    print(f"{'replicas':>8} {'devices':>8} {'check-ins':>10} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8}  "
          "replica CPU s (each)")
    for n in args.replicas:
        with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
            pg = stack.enter_context(LocalPostgres())
            db = pg.create_database("bench")
            replicas = [stack.enter_context(LocalCoordinator(db, TOKEN, (
                "--checkin-rate", "1000000", "--data-dir", os.path.join(tmp, "data")))) for _ in range(n)]
            lb = stack.enter_context(LocalHaproxy([f"127.0.0.1:{r.port}" for r in replicas]))
            for devices in args.devices:
                before = [_cpu_s(r.proc.pid) for r in replicas]
                elapsed, lat = asyncio.run(_run(lb.url, devices, args.checkins, args.in_flight))
                cpu = [_cpu_s(r.proc.pid) - b for r, b in zip(replicas, before)]
                print(f"{n:>8} {devices:>8} {len(lat):>10} {len(lat) / elapsed:>8.0f} "
                      f"{np.percentile(lat, 50) * 1e3:>8.2f} {np.percentile(lat, 99) * 1e3:>8.2f}  "
                      + " ".join(f"{c:.1f}" for c in cpu), flush=True)


def _cpu_name() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def _cpu_per_checkin(args) -> None:
    """The coordinator's CPU seconds per check-in, from /proc: two runs on fresh coordinators,
    one with a check-in per device and one with more; their difference holds only check-ins
    (registrations and start-up cancel out)."""
    devices = args.devices[-1]

    def run(checkins: int) -> tuple[float, np.ndarray]:
        with tempfile.TemporaryDirectory() as tmp, \
                LocalCoordinator(os.path.join(tmp, "c.db"), TOKEN, ("--checkin-rate", "1000000")) as server:
            if args.pin:  # the coordinator on core 0, this load client on the others: independent
                pin(server.proc.pid, {0})
                pin(0, other_cores(0))
            before = _cpu_s(server.proc.pid)
            _, lat = asyncio.run(_run(server.url, devices, checkins, args.in_flight))
            return _cpu_s(server.proc.pid) - before, lat

    base, _ = run(devices)
    extra = max(args.checkins, 2 * devices)
    loaded, lat = run(devices + extra)
    where = ("the coordinator pinned to core 0, the load client to the others" if args.pin
             else "the load client on the same cores")
    print(f"CPU: {_cpu_name()} ({os.cpu_count()} cores, {where})")
    print(f"{devices} devices, {args.in_flight} in flight: coordinator CPU per check-in "
          f"{(loaded - base) / extra * 1e3:.3f} ms; p50 {np.percentile(lat, 50) * 1e3:.1f} ms, "
          f"p99 {np.percentile(lat, 99) * 1e3:.1f} ms")


async def _register(url: str, devices: int, in_flight: int) -> list[str]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as s:
        pop = f"p{devices}"
        await s.post(f"{url}/v1/admin/populations", json={"name": pop},
                     headers={"Authorization": f"Bearer {TOKEN}"})
        sem = asyncio.Semaphore(in_flight)

        async def register():
            async with sem:
                async with s.post(f"{url}/v1/devices/register", json={"population": pop}) as r:
                    return (await r.json())["token"]

        return await asyncio.gather(*(register() for _ in range(devices)))


def _wrk(url: str, tokens_file: str, in_flight: int, seconds: float, cores: set[int]) -> dict[str, int]:
    """One wrk run (one thread, on ``cores``); its summary line as numbers."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkin_wrk.lua")
    cmd = ["wrk", "-t1", f"-c{in_flight}", f"-d{seconds:g}s", "--timeout", "10s", "-s", script, url]
    if cores and len(os.sched_getaffinity(0)) > 1:
        cmd = ["taskset", "-c", ",".join(map(str, sorted(cores)))] + cmd
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env={**os.environ, "FEDGE_TOKENS": tokens_file}).stdout
    line = next(l for l in out.splitlines() if l.startswith("FEDGE "))
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def _cpu_per_checkin_wrk(args) -> None:
    """The coordinator's CPU per check-in and the latency under wrk: a warm-up run, then the
    measured one; the coordinator's CPU over the measured window divided by its check-ins."""
    if shutil.which("wrk") is None:
        raise SystemExit("--client wrk needs wrk (apt-get install wrk)")
    devices = args.devices[-1]
    with tempfile.TemporaryDirectory() as tmp, \
            LocalCoordinator(os.path.join(tmp, "c.db"), TOKEN, ("--checkin-rate", "1000000")) as server:
        cores = other_cores(0)
        if args.pin:
            pin(server.proc.pid, {0})
        tokens = asyncio.run(_register(server.url, devices, args.in_flight))
        tokens_file = os.path.join(tmp, "tokens")
        with open(tokens_file, "w") as f:
            f.write("\n".join(tokens) + "\n")
        _wrk(server.url, tokens_file, args.in_flight, 3, cores if args.pin else set())
        before = _cpu_s(server.proc.pid)
        r = _wrk(server.url, tokens_file, args.in_flight, args.seconds, cores if args.pin else set())
        cpu = _cpu_s(server.proc.pid) - before
    where = ("the coordinator pinned to core 0, wrk to the others" if args.pin else "wrk on the same cores")
    print(f"CPU: {_cpu_name()} ({os.cpu_count()} cores, {where})")
    print(f"{devices} devices, {args.in_flight} in flight, wrk for {args.seconds:g} s: {r['requests']} check-ins, "
          f"{r['requests'] / (r['duration_us'] / 1e6):.0f}/s; coordinator CPU per check-in "
          f"{cpu / r['requests'] * 1e3:.3f} ms; p50 {r['p50_us'] / 1e3:.1f} ms, p99 {r['p99_us'] / 1e3:.1f} ms, "
          f"max {r['max_us'] / 1e3:.1f} ms; non-2xx {r['non2xx']}, socket errors {r['errors']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--checkins", type=int, default=5000, help="total check-ins per run (at least one each)")
    parser.add_argument("--in-flight", type=int, default=256, help="concurrent check-ins")
    parser.add_argument("--replicas", type=int, nargs="+",
                        help="N replicas on PostgreSQL behind HAProxy (one run per N) instead of one on SQLite")
    parser.add_argument("--pin", action="store_true",
                        help="with --cpu-per-check-in: the coordinator on core 0 and the load client on the others "
                             "(an independent client on a 2-core machine)")
    parser.add_argument("--client", choices=("python", "wrk"), default="python",
                        help="with --cpu-per-check-in: the load client (wrk: a C client, see above)")
    parser.add_argument("--seconds", type=float, default=15, help="with --client wrk: the measured run's length")
    parser.add_argument("--cpu-per-check-in", action="store_true",
                        help="the coordinator's CPU per check-in at the last --devices (two runs, differenced)")
    args = parser.parse_args()
    if args.cpu_per_check_in:
        (_cpu_per_checkin_wrk if args.client == "wrk" else _cpu_per_checkin)(args)
        return
    if args.replicas:
        _replicated(args)
        return
    with tempfile.TemporaryDirectory() as tmp, \
            LocalCoordinator(os.path.join(tmp, "b.db"), TOKEN, ("--checkin-rate", "1000000")) as server:
        print(f"{'devices':>8} {'check-ins':>10} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8}")
        for n in args.devices:
            elapsed, lat = asyncio.run(_run(server.url, n, args.checkins, args.in_flight))
            print(f"{n:>8} {len(lat):>10} {len(lat) / elapsed:>8.0f} {np.percentile(lat, 50) * 1e3:>8.2f} "
                  f"{np.percentile(lat, 99) * 1e3:>8.2f}")


if __name__ == "__main__":
    main()
