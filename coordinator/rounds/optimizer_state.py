"""The server optimizer's state between rounds (FedAdam's moments, FedAvgM's velocity): one
.npz object per committed round in the blob store, read back without pickle."""

from __future__ import annotations

import io

import numpy as np

from coordinator.store.blobs import BlobStore, optimizer_state_key


class OptimizerStateFiles:
    def __init__(self, blobs: BlobStore):
        self.blobs = blobs

    def load(self, task_id: str, num: int) -> dict[str, np.ndarray]:
        data = self.blobs.read_object(optimizer_state_key(task_id, num))
        if data is None:
            return {}
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}

    def save(self, task_id: str, num: int, state: dict[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        np.savez(buf, **state)
        self.blobs.put_object(optimizer_state_key(task_id, num), buf.getvalue())

    def delete(self, task_id: str, num: int) -> None:
        self.blobs.delete_object(optimizer_state_key(task_id, num))
