from pathlib import Path

import aiohttp
import numpy as np
import pytest

from coordinator.http.app import ServeConfig, create_app
from device_runtime.admin import AdminClient
from device_runtime.example_store import write_example_file

TOKEN = "dev-admin"


@pytest.fixture
async def live_coordinator(aiohttp_server, tmp_path):
    """A real coordinator on a loopback socket, with its round driver running."""
    config = ServeConfig(db=str(tmp_path / "c.db"), admin_token=TOKEN, tick_s=0.02, min_retry_s=0.05,
                         max_retry_s=0.5, ineligible_retry_s=0.2, checkin_rate=1000.0)
    app = create_app(config)
    server = await aiohttp_server(app)
    return server


async def create_task(base_url: str, model: bytes, **config) -> str:
    cfg = {"rounds": 2, "goal_count": 1, "over_selection": 1.0, "selection_window_s": 5,
           "report_deadline_s": 20, "codec": "q8", "epochs": 1, "learning_rate": 0.05, **config}
    async with aiohttp.ClientSession() as s:
        admin = AdminClient(base_url, TOKEN, s)
        await admin.ensure_population("pop")
        sha = await admin.upload_model(model)
        return (await admin.create_task("pop", sha, cfg, "t"))["task_id"]


def digits_shard(n: int = 64, seed: int = 0):
    from device_runtime.fleet.datasets import load_digits_pool

    x, _, y, _ = load_digits_pool(0)
    idx = np.random.default_rng(seed).choice(len(x), n, replace=False)
    return x[idx], y[idx]


def digits_data_dir(folder: Path, n: int) -> Path:
    """A `fedge device --data` folder holding one .npz shard of n digits."""
    folder.mkdir()
    x, y = digits_shard(n)
    write_example_file(folder / "part0.npz", x, y)
    return folder
