"""What a refused request costs the coordinator, next to what it cost the client to send.

    python bench/refusal_cost.py [--requests 200]

The coordinator runs as its own `fedge serve` process; its CPU seconds (utime + stime from
/proc) are read before and after each batch of refused requests, and divided by the batch's
size. The client's CPU per request (building nothing: the bodies are made once) is what it
cost to send. Each row is one attack from the review: a large JSON body to a SecAgg message
endpoint from a device with no assignment, a large registration body from a rate-limited
address, a check-in over its size, a full-size update from a device with no assignment,
and a sparse update whose header claims a chunk of 2^20 (refused on the header; after three
refusals the assignment ends). The server's idle CPU over the same wall time is subtracted.
Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time

import aiohttp
import numpy as np

from fedge.local_coordinator import LocalCoordinator

TOKEN = "bench"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
SPARSE = "q8+rot+sparse:0.1"


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def server_cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def export_model(tmp: str) -> bytes:
    import subprocess
    import sys

    path = os.path.join(tmp, "m.tflite")
    subprocess.run([sys.executable, "-m", "fedge", "export", "--zoo", "digits_mlp", "-o", path, "--parity-steps", "0"],
                   check=True, capture_output=True)
    return open(path, "rb").read()


async def setup(s: aiohttp.ClientSession, url: str, model: bytes) -> dict:
    async with s.post(f"{url}/v1/admin/models", data=model,
                      headers={**ADMIN, "Content-Type": "application/octet-stream"}) as r:
        sha = (await r.json())["model_sha256"]
    tasks = {"sa": {"secagg": "secagg+", "clip_norm": 1.0, "codec": "q8", "goal_count": 50},
             "sp": {"codec": SPARSE, "goal_count": 50}}
    for pop, cfg in tasks.items():
        await s.post(f"{url}/v1/admin/populations", json={"name": pop}, headers=ADMIN)
        config = {"rounds": 1000, "over_selection": 1.0, "selection_window_s": 600, "report_deadline_s": 600, **cfg}
        async with s.post(f"{url}/v1/admin/populations/{pop}/tasks", headers=ADMIN,
                          json={"model_sha256": sha, "config": config, "task_id": f"t-{pop}"}) as r:
            assert r.status == 201, await r.text()
    return tasks


async def register(s, url, pop) -> dict:
    async with s.post(f"{url}/v1/devices/register", json={"population": pop}) as r:
        return {"Authorization": f"Bearer {(await r.json())['token']}"}


async def assignment(s, url, device) -> dict:
    state = {"state": {"charging": True, "unmetered": True, "idle": True, "battery": 0.9}}
    for _ in range(50):
        async with s.post(f"{url}/v1/checkin", json=state, headers=device) as r:
            body = await r.json()
        if body.get("outcome") == "assigned":
            return body["assignment"]
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no assignment: {body}")


async def measure(server, label, n, request) -> tuple[str, float, float, set]:
    statuses = set()
    idle0, t_idle = server_cpu_s(server.proc.pid), time.perf_counter()
    await asyncio.sleep(0.5)
    idle_rate = (server_cpu_s(server.proc.pid) - idle0) / (time.perf_counter() - t_idle)
    s0, c0, t0 = server_cpu_s(server.proc.pid), time.process_time(), time.perf_counter()
    for _ in range(n):
        statuses.add(await request())
    wall = time.perf_counter() - t0
    server_s = max(0.0, server_cpu_s(server.proc.pid) - s0 - idle_rate * wall)
    return label, server_s / n, (time.process_time() - c0) / n, statuses


async def run(server, model: bytes, n: int) -> list:
    url = server.url
    async with aiohttp.ClientSession() as s:
        await setup(s, url, model)
        rows = []
        outsider = await register(s, url, "sa")
        big_json = json.dumps(list(range(1_000_000))).encode()  # 6.9 MB of numbers

        async def secagg_keys():
            async with s.post(f"{url}/v1/tasks/t-sa/rounds/1/secagg/keys", data=big_json,
                              headers={**outsider, "Content-Type": "application/json",
                                       "Fedge-Upload-Token": "x"}) as r:
                return r.status
        rows.append(await measure(server, f"SecAgg keys, {len(big_json) / 1e6:.1f} MB JSON, no assignment",
                                  max(5, n // 20), secagg_keys))

        reg_body = json.dumps({"population": "sa", "label": "x" * 65_000}).encode()

        async def big_registration():  # forwarded by a proxy nobody trusts: limited like any address
            async with s.post(f"{url}/v1/devices/register", data=reg_body,
                              headers={"Content-Type": "application/json", "X-Forwarded-For": "203.0.113.9"}) as r:
                return r.status
        rows.append(await measure(server, "registration, 64 KiB JSON", n, big_registration))

        checkin_body = json.dumps({"state": {}, "pad": "x" * 60_000}).encode()

        async def big_checkin():
            async with s.post(f"{url}/v1/checkin", data=checkin_body,
                              headers={**outsider, "Content-Type": "application/json"}) as r:
                return r.status
        rows.append(await measure(server, "check-in, 60 KB JSON", n, big_checkin))

        sp_devices = [await register(s, url, "sp") for _ in range(3)]
        grants = [await assignment(s, url, d) for d in sp_devices]
        from protocol import codec, sparse
        from protocol.tflite_file import read_manifest

        manifest = read_manifest(model)
        rng = np.random.default_rng(0)
        arrays = [rng.normal(size=w.shape).astype(np.float32) * 0.01 for w in manifest.weights]
        good = codec.encode(arrays, codec.CodecSpec.parse(SPARSE), rng,
                            sparse_seed=sparse.round_seed("t-sp", grants[0]["round"]))
        hostile = bytearray(good)
        hostile[12:16] = (1 << 20).to_bytes(4, "little")  # the task's kept count, a chunk of 2^20
        full = bytes(codec.CodecSpec.parse(SPARSE).max_payload_bytes(len(manifest.weights),
                                                                     sum(w.size for w in manifest.weights)))
        meta = json.dumps({"example_count": 10})
        turn = iter(range(10**9))

        async def hostile_sparse():
            i = next(turn) % len(grants)
            a = grants[i]
            async with s.post(a["upload_url"] if a["upload_url"].startswith("http") else url + a["upload_url"],
                              data=bytes(hostile), headers={**sp_devices[i], "Fedge-Upload": meta,
                                                            "Fedge-Upload-Token": a["upload_token"],
                                                            "Content-Type": "application/octet-stream"}) as r:
                return r.status
        rows.append(await measure(server, f"sparse update claiming chunk 2^20 ({len(hostile)} B)", n, hostile_sparse))

        async def unassigned_upload():
            a = grants[0]
            async with s.post(a["upload_url"] if a["upload_url"].startswith("http") else url + a["upload_url"],
                              data=full, headers={**outsider, "Fedge-Upload": meta, "Fedge-Upload-Token": "x",
                                                  "Content-Type": "application/octet-stream"}) as r:
                return r.status
        rows.append(await measure(server, f"full-size update ({len(full)} B), no assignment", n, unassigned_upload))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="refused requests per row (default 200)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = export_model(tmp)
        with LocalCoordinator(os.path.join(tmp, "c.db"), TOKEN, ("--register-rate", "1")) as server:
            rows = asyncio.run(run(server, model, args.requests))
    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores)")
    print(f"{'refused request':<58} {'server ms':>10} {'client ms':>10} {'ratio':>6}  statuses")
    for label, server_s, client_s, statuses in rows:
        ratio = server_s / client_s if client_s > 0 else float("inf")
        print(f"{label:<58} {server_s * 1e3:>10.3f} {client_s * 1e3:>10.3f} {ratio:>6.2f}  {sorted(statuses)}")


if __name__ == "__main__":
    main()
