"""A staged model release over 1,000 devices: release to 10%, then 100%, a second release to
10% and 100%, then roll it back; the share of devices on each release over time (a plot),
the bytes the coordinator served, and a check that no device ever holds a model that is not
the verified one it names.

    python bench/release_rollout.py [--devices 1000] [--phase-s 8] [--out bench_out/release_rollout.png]

A 20-device fleet first trains the digits MLP for 2 rounds (so there are two checkpoints to
release); then the 1,000 devices (the Python device's client and InstalledReleases, each its
own folder, no shared cache) check in every second with their channel and installed sequence
and install what they are offered. The coordinator runs in its own process (SQLite).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.machine import cpu_name  # noqa: E402
from device_runtime.admin import AdminClient  # noqa: E402
from device_runtime.client import CoordinatorClient  # noqa: E402
from device_runtime.releases import InstalledReleases  # noqa: E402
from fedge.local_coordinator import LocalCoordinator  # noqa: E402
from protocol.messages import DeviceState  # noqa: E402

TOKEN = "bench-admin"
STATE = DeviceState(charging=False, unmetered=True, idle=True, battery=0.8)


async def train(url: str, model: bytes, folder: str) -> None:
    from device_runtime.fleet.datasets import load_federated
    from device_runtime.fleet.emulator import Fleet, FleetConfig

    cfg = FleetConfig(coordinator=url, admin_token=TOKEN, devices=20, dropout=0.0, slow_fraction=0.0, seed=1,
                      progress=False, population="phones", out_dir=folder)
    await Fleet(cfg, load_federated("digits", 20, "dirichlet:0.3", seed=1)).run(
        model, {"rounds": 2, "goal_count": 10, "over_selection": 1.0, "eligibility": "charging", "codec": "q8"},
        task_id="digits")


class Phone:
    def __init__(self, url: str, session, folder: Path):
        self.client = CoordinatorClient(url, session, attempts=10, max_backoff_s=1.0)
        self.folder = folder
        self.releases: InstalledReleases | None = None
        self.bytes = 0

    async def fetch(self, link: str, sha: str) -> bytes:
        """Its own download (no cache shared with other devices), checked against the digest."""
        from device_runtime.blob_cache import BlobMismatch

        if link.startswith("http"):
            body, _ = await self.client._download_presigned(link)
        else:
            _, _, body, _ = await self.client._exchange("GET", link, headers=self.client._headers())
        self.bytes += len(body)
        if hashlib.sha256(body).hexdigest() != sha:
            raise BlobMismatch(f"release model does not match {sha[:12]}")
        return body

    async def run(self, stop: asyncio.Event) -> None:
        await self.client.register("phones")
        self.releases = InstalledReleases(self.folder, self.client.release_key, "phones")
        await asyncio.sleep(random.random())
        while not stop.is_set():
            resp = await self.client.checkin(STATE, [], 0.0, (self.releases.channel, self.releases.sequence))
            if resp.release is not None:
                await self.releases.install(resp.release, self.fetch)
            await asyncio.sleep(0.8 + 0.4 * random.random())

    def holds_what_it_names(self) -> bool:
        current = self.releases.current if self.releases else None
        if current is None:
            return True
        path = self.releases.current_model_path()
        return path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == current.model_sha256


def plot(samples: list[tuple[float, dict]], events: list[tuple[float, str]], names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s[0] for s in samples]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.stackplot(t, *[[s[1].get(n, 0) for s in samples] for n in names], labels=names, alpha=0.85)
    for at, label in events:
        ax.axvline(at, color="k", lw=0.8, ls="--")
        ax.text(at, ax.get_ylim()[1] * 0.98, " " + label, rotation=90, va="top", fontsize=8)
    ax.set_xlabel("seconds")
    ax.set_ylabel("devices on the release")
    ax.set_title("A staged release and its rollback, 1,000 devices")
    ax.legend(loc="center left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


async def rollout(args, model: bytes) -> None:
    folder = Path(tempfile.mkdtemp(prefix="fedge-release-bench-"))
    server = LocalCoordinator(str(folder / "c.db"), TOKEN, ("--checkin-rate", "1000", "--min-retry-s", "0.05"))
    server.start()
    try:
        await train(server.url, model, str(folder / "fleet"))
        conn = aiohttp.TCPConnector(limit=512)
        async with aiohttp.ClientSession(connector=conn) as session:
            admin = AdminClient(server.url, TOKEN, session)
            phones = [Phone(server.url, session, folder / f"phone{i}") for i in range(args.devices)]
            stop = asyncio.Event()
            runners = [asyncio.create_task(p.run(stop)) for p in phones]
            start = time.monotonic()
            samples, events, names = [], [], {}

            async def sample_until(t_end: float) -> None:
                while time.monotonic() - start < t_end:
                    counts: dict[str, int] = {}
                    for p in phones:
                        current = p.releases.current if p.releases else None
                        name = names.get(current.release_id, current.release_id) if current else "none"
                        counts[name] = counts.get(name, 0) + 1
                    samples.append((time.monotonic() - start, counts))
                    await asyncio.sleep(0.5)

            async def act(label: str, method: str, path: str, body: dict | None = None) -> dict:
                r = await admin._call(method, path, json=body)
                events.append((time.monotonic() - start, label))
                return r

            phase = args.phase_s
            await sample_until(2)
            a = await act("A to 10%", "POST", "/v1/admin/tasks/digits/releases", {"round": 1, "percent": 10})
            names[a["release_id"]] = "A (round 1)"
            await sample_until(2 + phase)
            await act("A to 100%", "POST", f"/v1/admin/releases/{a['release_id']}/promote", {"percent": 100})
            await sample_until(2 + 2 * phase)
            b = await act("B to 10%", "POST", "/v1/admin/tasks/digits/releases", {"round": 2, "percent": 10})
            names[b["release_id"]] = "B (round 2)"
            await sample_until(2 + 3 * phase)
            await act("B to 100%", "POST", f"/v1/admin/releases/{b['release_id']}/promote", {"percent": 100})
            await sample_until(2 + 4 * phase)
            c = await act("roll B back", "POST", f"/v1/admin/releases/{b['release_id']}/rollback")
            names[c["release_id"]] = "A again (rollback)"
            await sample_until(2 + 5 * phase)
            stop.set()
            await asyncio.gather(*runners)
        final = samples[-1][1]
        at_10 = max((s[1].get("B (round 2)", 0) for s in samples if s[0] < events[3][0]), default=0)
        served = sum(p.bytes for p in phones)
        sizes = {a["model_sha256"]: a["size"], b["model_sha256"]: b["size"]}
        refused = sum(p.releases.refused for p in phones)
        honest = all(p.holds_what_it_names() for p in phones)
        print(f"CPU: {cpu_name()}; {args.devices} devices checking in about once a second")
        print(f"B at 10%: {at_10} devices took it ({at_10 / args.devices:.1%}); at the end: {final}")
        print(f"bytes served for releases: {served:,} ({served / args.devices:,.0f} per device; model sizes "
              f"{sorted(sizes.values())}); offers refused by devices: {refused}; every device holds exactly the "
              f"verified model it names: {honest}")
        plot(samples, events, list(names.values()) + ["none"], Path(args.out))
        print(f"plot: {args.out}")
    finally:
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--phase-s", type=float, default=8.0, help="seconds between release actions")
    p.add_argument("--out", default="bench_out/release_rollout.png")
    args = p.parse_args()
    from model_export.exporter import export_model
    from model_export.zoo import digits_mlp

    model = export_model(digits_mlp(), name="digits_mlp", parity_steps=0).tflite
    asyncio.run(rollout(args, model))


if __name__ == "__main__":
    main()
