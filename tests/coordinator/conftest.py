import json

import numpy as np
import pytest

from coordinator.http.app import COORDINATOR, ServeConfig, create_app
from protocol import codec
from protocol.tflite_file import read_manifest

ADMIN = {"Authorization": "Bearer admin-secret"}


class FakeClock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Harness:
    """The real app through aiohttp's test client, with a hand-driven clock and round driver."""

    def __init__(self, client, clock, model: bytes):
        self.client, self.clock, self.model = client, clock, model
        self.manifest = read_manifest(model)

    @property
    def coordinator(self):
        return self.client.server.app[COORDINATOR]

    def tick(self):
        self.coordinator.tick()

    async def setup_task(self, **config) -> str:
        await self.client.post("/v1/admin/populations", json={"name": "pop"}, headers=ADMIN)
        resp = await self.client.post("/v1/admin/models", data=self.model,
                                      headers={**ADMIN, "Content-Type": "application/octet-stream"})
        assert resp.status == 201, await resp.text()
        sha = (await resp.json())["model_sha256"]
        cfg = {"rounds": 3, "goal_count": 2, "over_selection": 1.5, "selection_window_s": 10,
               "report_deadline_s": 30, "codec": "q8", **config}
        resp = await self.client.post("/v1/admin/populations/pop/tasks", headers=ADMIN,
                                      json={"model_sha256": sha, "config": cfg, "task_id": "t1"})
        assert resp.status == 201, await resp.text()
        self.tick()  # opens round 1
        return "t1"

    async def register(self) -> dict:
        resp = await self.client.post("/v1/devices/register", json={"population": "pop"})
        assert resp.status == 201
        return {"Authorization": f"Bearer {(await resp.json())['token']}"}

    async def checkin(self, device, **state):
        full = {"charging": True, "unmetered": True, "idle": True, "battery": 0.9, **state}
        return await self.client.post("/v1/checkin", json={"state": full}, headers=device)

    def payload(self, scale: float = 0.01, kind: str = "q8", seed: int = 0) -> bytes:
        rng = np.random.default_rng(seed)
        arrays = [rng.normal(size=w.shape).astype(np.float32) * scale for w in self.manifest.weights]
        return codec.encode(arrays, codec.CodecSpec.parse(kind), rng)

    async def upload(self, device, assignment, body: bytes, examples: int = 10, token: str | None = None):
        headers = {**device, "Content-Type": "application/octet-stream",
                   "Fedge-Upload-Token": token or assignment["upload_token"],
                   "Fedge-Upload": json.dumps({"example_count": examples, "train_loss": 1.0,
                                               "eval_accuracy": 0.5, "eval_count": 4})}
        return await self.client.post(assignment["upload_url"], data=body, headers=headers)

    async def rounds(self):
        resp = await self.client.get("/v1/admin/tasks/t1", headers=ADMIN)
        return (await resp.json())["rounds"]


async def _harness(aiohttp_client, model: bytes, db: str, data_dir: str = "", blobs: str = "") -> Harness:
    clock = FakeClock()
    config = ServeConfig(db=db, data_dir=data_dir, blobs=blobs, admin_token="admin-secret", checkin_rate=1000.0)
    client = await aiohttp_client(create_app(config, run_ticker=False, clock=clock))
    harness = Harness(client, clock, model)
    harness.config = config  # a restart reopens the same database: create_app(harness.config, ...)
    return harness


@pytest.fixture
async def memory_harness(aiohttp_client, digits_tflite):
    """The same app on the in-memory store: the gateway and driver with no database on disk."""
    return await _harness(aiohttp_client, digits_tflite, ":memory:")


@pytest.fixture
async def s3_harness(aiohttp_client, digits_tflite, tmp_path, s3_blobs_url):
    """The app on SQLite with its bytes in the session's S3-compatible store (a fresh prefix)."""
    return await _harness(aiohttp_client, digits_tflite, str(tmp_path / "c.db"), blobs=s3_blobs_url)


@pytest.fixture
async def harness(aiohttp_client, digits_tflite, store_db):
    """A coordinator app on a fake clock, once on SQLite and once on PostgreSQL."""
    return await _harness(aiohttp_client, digits_tflite, *store_db)
