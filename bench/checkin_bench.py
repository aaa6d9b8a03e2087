"""Check-in throughput and latency: the coordinator in its own process, N concurrent
simulated devices in this one (each registers, then checks in repeatedly).

    python bench/checkin_bench.py [--devices 100 1000 10000] [--checkins 5000] [--in-flight 256]

Latency includes queueing: with N check-ins in flight at R per second, each waits about
N / R (Little's law), so p99 depends on --in-flight as much as on the coordinator.

The population has no task, so each check-in is: token check, state parsing, the
durable last_seen write, and the pace-steered 'come back' answer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

import aiohttp
import numpy as np

from fedge.local_coordinator import LocalCoordinator

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--checkins", type=int, default=5000, help="total check-ins per run (at least one each)")
    parser.add_argument("--in-flight", type=int, default=256, help="concurrent check-ins")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, \
            LocalCoordinator(os.path.join(tmp, "b.db"), TOKEN, ("--checkin-rate", "1000000")) as server:
        print(f"{'devices':>8} {'check-ins':>10} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8}")
        for n in args.devices:
            elapsed, lat = asyncio.run(_run(server.url, n, args.checkins, args.in_flight))
            print(f"{n:>8} {len(lat):>10} {len(lat) / elapsed:>8.0f} {np.percentile(lat, 50) * 1e3:>8.2f} "
                  f"{np.percentile(lat, 99) * 1e3:>8.2f}")


if __name__ == "__main__":
    main()
