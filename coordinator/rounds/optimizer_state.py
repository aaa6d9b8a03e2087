"""The server optimizer's state between rounds (FedAdam's moments, FedAvgM's velocity): one
.npz per committed round in the data directory, read back without pickle."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


class OptimizerStateFiles:
    def __init__(self, store):
        self.store = store

    def path(self, task_id: str, num: int) -> Path:
        return self.store.data_dir / "server_opt" / task_id / f"{num:06d}.npz"

    def load(self, task_id: str, num: int) -> dict[str, np.ndarray]:
        path = self.path(task_id, num)
        if not path.exists():
            return {}
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def save(self, task_id: str, num: int, state: dict[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        np.savez(buf, **state)
        self.store.write_file(self.path(task_id, num), buf.getvalue())
