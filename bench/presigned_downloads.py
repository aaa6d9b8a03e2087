"""What the coordinator sends and spends per round when devices download from it (local blobs)
and when they download from an S3-compatible store by presigned URL (`--blobs s3://...`).

    python bench/presigned_downloads.py [--devices 1000] [--params 1000000] [--rounds 2]

A model of about --params float32 parameters (an MLP on the digits' 64 features, exported
here), one task selecting every device each round (goal = devices), the checkpoint
downloaded as float32 (4 bytes a parameter) by every selected device each round and the
model once per device; uploads of q8+sparse:0.01 (about 10 KB, one payload per round: the
coordinator's work per upload is what is compared, not the client's encoding). Meanwhile 20
bystander devices of another population check in every 50 ms each (about 400 a second);
their latencies are the check-in p50/p99 "during the download burst".

The coordinator runs in its own process (`fedge serve`, SQLite) pinned to core 0; SeaweedFS
and the load client (this process) are pinned to the other cores, so the coordinator's core
does only the coordinator's work in both modes. Figures: its CPU seconds per round (from
/proc), the bytes it sent (response bodies counted by the client per origin: the
coordinator's address or the store's), and the bystanders' latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

import aiohttp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.machine import cpu_name, other_cores, pin  # noqa: E402
from device_runtime.client import CoordinatorClient  # noqa: E402
from fedge.local_coordinator import LocalCoordinator  # noqa: E402
from fedge.local_s3 import LocalS3  # noqa: E402
from protocol import codec  # noqa: E402
from protocol.messages import DeviceState, UploadMeta  # noqa: E402

TOKEN = "bench-admin"
STATE = DeviceState(charging=True, unmetered=True, idle=True, battery=1.0)
UPLOAD_CODEC = "q8+sparse:0.01"
BYSTANDERS, BYSTANDER_PERIOD_S = 20, 0.05


def export_model(params: int) -> bytes:
    import keras

    from model_export.exporter import export_model as export

    hidden = max(16, int((params / 1.0) ** 0.5) - 40)  # 64*h + h*h + h*10 ~ params
    while 64 * hidden + hidden * hidden + hidden * 10 + 2 * hidden + 10 < params:
        hidden += 8
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(hidden, activation="relu"),
                              keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    print(f"model: MLP 64-{hidden}-{hidden}-10, {model.count_params():,} parameters", flush=True)
    return export(model, name="mlp_1m", parity_steps=0).tflite


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Load:
    """The devices, the bystanders and what they counted."""

    def __init__(self, url: str, session: aiohttp.ClientSession, devices: int):
        self.url, self.session, self.n = url, session, devices
        self.from_coordinator = 0  # downloads served by the coordinator (control messages: clients' bytes_down)
        self.from_store = 0
        self.uploads = 0
        self.download_failures = 0
        self.latencies: list[float] = []
        self.payloads: dict[int, bytes] = {}
        # Per round: the coordinator's CPU when its first device was assigned and when the
        # last one had downloaded (devices upload only then: the burst is downloads alone),
        # and the bystanders' latencies in between.
        self.pid = 0
        self.burst: dict[int, dict] = {}

    async def setup(self, model: bytes, rounds: int) -> None:
        from device_runtime.admin import AdminClient

        admin = AdminClient(self.url, TOKEN, self.session)
        for pop in ("phones", "bystanders"):
            await admin.ensure_population(pop)
        sha = await admin.upload_model(model)
        self.clients = [CoordinatorClient(self.url, self.session, attempts=20, max_backoff_s=1.0)
                        for _ in range(self.n)]
        self.bystanders = [CoordinatorClient(self.url, self.session) for _ in range(BYSTANDERS)]
        sem = asyncio.Semaphore(64)

        async def register(c, pop):
            async with sem:
                await c.register(pop)

        await asyncio.gather(*(register(c, "phones") for c in self.clients),
                             *(register(c, "bystanders") for c in self.bystanders))
        await admin.create_task("phones", sha, {
            "rounds": rounds, "goal_count": self.n, "over_selection": 1.0, "selection_window_s": 120.0,
            "report_deadline_s": 600.0, "codec": UPLOAD_CODEC, "eligibility": "charging"}, "big")

    def payload(self, a) -> bytes:
        """One q8+sparse:0.01 update per round (its sparse subset is the round's)."""
        if a.round not in self.payloads:
            counts = [int(np.prod(w)) for w in self.shapes]
            flat = np.random.default_rng(a.round).normal(0, 0.01, sum(counts)).astype(np.float32)
            spec = codec.CodecSpec.parse(a.plan.codec, a.plan.chunk_size)
            self.payloads[a.round] = codec.encode(codec.unflatten(flat, self.shapes), spec,
                                                  np.random.default_rng(0), sparse_seed=a.plan.sparse_seed)
        return self.payloads[a.round]

    async def download(self, client: CoordinatorClient, url: str) -> None:
        if url.startswith("http"):
            async with self.session.get(url) as r:
                body = await r.read()
                self.from_store += len(body)
        else:
            async with self.session.get(self.url + url, headers=client._headers()) as r:
                body = await r.read()
                self.from_coordinator += r.content_length or len(body)
        if r.status != 200:
            self.download_failures += 1

    async def device(self, client: CoordinatorClient, rounds: int, gate: asyncio.Semaphore) -> None:
        joined, has_model = set(), False
        while len(joined) < rounds:
            resp = await client.checkin(STATE, [], 10.0)  # long polls hold no slot of the gate
            if resp.outcome != "assigned" or resp.assignment.round in joined:
                await asyncio.sleep(0.2 if resp.outcome == "assigned" else 0.05)
                continue
            a = resp.assignment
            burst = self.burst.get(a.round)
            if burst is None:
                burst = self.burst[a.round] = {"cpu0": cpu_s(self.pid), "t0": time.perf_counter(), "done": 0,
                                               "all": asyncio.Event()}
            async with gate:
                if not has_model:
                    await self.download(client, a.model_url)
                    has_model = True
                await self.download(client, a.checkpoint_url)
            burst["done"] += 1
            if burst["done"] == self.n:
                burst.update(cpu1=cpu_s(self.pid), t1=time.perf_counter())
                burst["all"].set()
            await burst["all"].wait()
            self.payload(a)  # encoded once, before any device of the round uploads
            async with gate:
                await client.upload(a, self.payload(a), UploadMeta(example_count=10))
            self.uploads += 1
            joined.add(a.round)

    async def bystander(self, client: CoordinatorClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await client.checkin(STATE, [], 0.0)
            self.latencies.append((t, time.perf_counter() - t))
            await asyncio.sleep(BYSTANDER_PERIOD_S)


async def measure(mode: str, model: bytes, shapes, args, s3: LocalS3) -> dict:
    folder = tempfile.mkdtemp(prefix=f"fedge-bench-{mode}-")
    extra = ("--checkin-rate", "1000", "--min-retry-s", "0.05", "--max-retry-s", "1", "--max-held-checkins", "8192")
    env = None
    if mode == "presigned":
        extra += ("--blobs", f"s3://bench/{os.path.basename(folder)}")
        env = s3.env()
    server = LocalCoordinator(os.path.join(folder, "c.db"), TOKEN, extra, env=env).start()
    pin(server.proc.pid, {0})
    try:
        conn = aiohttp.TCPConnector(limit=1024)
        async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=900)) as session:
            load = Load(server.url, session, args.devices)
            load.shapes, load.pid = shapes, server.proc.pid
            await load.setup(model, args.rounds)
            stop = asyncio.Event()
            watchers = [asyncio.create_task(load.bystander(c, stop)) for c in load.bystanders]
            cpu0, t0 = cpu_s(server.proc.pid), time.perf_counter()
            gate = asyncio.Semaphore(args.in_flight)
            await asyncio.gather(*(load.device(c, args.rounds, gate) for c in load.clients))
            wall, cpu = time.perf_counter() - t0, cpu_s(server.proc.pid) - cpu0
            stop.set()
            await asyncio.gather(*watchers)
        bursts = [b for b in load.burst.values() if "t1" in b]
        lat = np.array([d for t, d in load.latencies if any(b["t0"] <= t <= b["t1"] for b in bursts)]) * 1e3
        return {"mode": mode, "rounds": args.rounds, "wall_s": wall, "cpu_per_round": cpu / args.rounds,
                "burst_cpu": float(np.mean([b["cpu1"] - b["cpu0"] for b in bursts])),
                "burst_s": float(np.mean([b["t1"] - b["t0"] for b in bursts])),
                "coordinator_bytes_per_device_round": (load.from_coordinator + sum(c.bytes_down for c in load.clients))
                / (args.devices * args.rounds),
                "store_bytes_per_round": load.from_store / args.rounds, "uploads": load.uploads,
                "failures": load.download_failures,
                "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))}
    finally:
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--params", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--in-flight", type=int, default=200, help="device requests at once (downloads included)")
    args = p.parse_args()
    print(f"CPU: {cpu_name()}; {args.devices} devices, {args.rounds} rounds", flush=True)
    model = export_model(args.params)
    from protocol.tflite_file import read_manifest

    shapes = [tuple(w.shape) for w in read_manifest(model).weights]
    rows = []
    others = other_cores(0)
    with LocalS3() as s3:
        if others:
            pin(s3._proc.pid, others)
            pin(0, others)
        s3.create_bucket("bench")
        for mode in ("local", "presigned"):
            row = asyncio.run(measure(mode, model, shapes, args, s3))
            rows.append(row)
            print(f"{mode:>9}: download burst {row['burst_s']:.1f} s, coordinator CPU in it {row['burst_cpu']:.2f} s; "
                  f"CPU {row['cpu_per_round']:.2f} s/round in all, sends "
                  f"{row['coordinator_bytes_per_device_round'] / 1e3:,.1f} KB per device per round; store "
                  f"{row['store_bytes_per_round'] / 1e6:,.0f} MB/round; check-ins during the burst p50 {row['p50']:.1f} ms "
                  f"p99 {row['p99']:.1f} ms; {row['uploads']} uploads, {row['failures']} failed downloads, "
                  f"{row['wall_s']:.0f} s", flush=True)
    local, presigned = rows
    print(f"presigned vs local: coordinator CPU in the download burst x{presigned['burst_cpu'] / local['burst_cpu']:.2f}, "
          f"per round x{presigned['cpu_per_round'] / local['cpu_per_round']:.2f}, "
          f"bytes it sends per device x{presigned['coordinator_bytes_per_device_round'] / local['coordinator_bytes_per_device_round']:.4f}")


if __name__ == "__main__":
    main()
