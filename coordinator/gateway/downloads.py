"""What a device downloads as the round's checkpoint: the float32 checkpoint itself, or (the
task's `download_codec`) the same weights in a quantized codec, about 4x (q8) or 7.5x (q4)
fewer bytes. Devices decode any codec, Python and Java alike, so nothing changes on them.

The quantized blob is a pure function of the checkpoint: the stochastic rounding and the
rotation are seeded from the checkpoint's digest, so every replica that serves the same
checkpoint serves the same bytes under the same digest. Each replica remembers the blobs it
made and deletes a task's older ones once KEEP_PER_TASK newer exist (devices download the
checkpoint when they are assigned; an asynchronous assignment pins at most max_staleness
versions back, and a late download of a deleted one fails that device's round, nothing else).
"""

from __future__ import annotations

import hashlib

import numpy as np

from coordinator.store.base import Store
from coordinator.tasks.registry import Task
from protocol import codec

MEMORY = 1024  # (checkpoint, codec) pairs remembered; a task needs one at a time
KEEP_PER_TASK = 8


class DownloadBlobs:
    def __init__(self, store: Store):
        self.store = store
        self._made: dict[tuple[str, str], str] = {}  # (checkpoint sha, codec) -> blob sha
        self.served_for: dict[str, str] = {}  # download blob sha -> task id (bytes served, blob guards)
        self._recent: dict[str, list[str]] = {}  # task id -> its download blobs, oldest first

    def sha_for(self, task: Task) -> str:
        """The digest of what the task's devices download now as its checkpoint."""
        name = task.config.download_codec
        if name == "f32":
            return task.checkpoint_sha
        key = (task.checkpoint_sha, name)
        sha = self._made.get(key)
        if sha is None:
            sha = self._make(task.checkpoint_sha, codec.CodecSpec.parse(name, task.config.chunk_size))
            if len(self._made) >= MEMORY:
                self._made.clear()
                self.served_for.clear()
            self._made[key] = sha
            self._keep(task.task_id, sha)
        self.served_for[sha] = task.task_id
        return sha

    def _keep(self, task_id: str, sha: str) -> None:
        recent = self._recent.setdefault(task_id, [])
        if sha not in recent:
            recent.append(sha)
        while len(recent) > KEEP_PER_TASK:
            old = recent.pop(0)
            self.served_for.pop(old, None)
            path = self.store.blob_path(old)
            if path is not None:
                path.unlink(missing_ok=True)

    def _make(self, checkpoint_sha: str, spec: codec.CodecSpec) -> str:
        decoded = codec.decode(self.store.blob_path(checkpoint_sha).read_bytes())
        seed = int.from_bytes(hashlib.sha256(f"{checkpoint_sha}|{spec.name}".encode()).digest()[:8], "little")
        rng = np.random.default_rng(seed)  # deterministic: every replica makes the same bytes
        arrays = codec.unflatten(decoded.values, [(n,) for n in decoded.counts])
        payload = codec.encode(arrays, spec, rng, seed=(seed >> 1) | 1 if spec.rotate else None)
        sha = hashlib.sha256(payload).hexdigest()
        self.store.put_blob(sha, payload)
        return sha
