"""Who may download a blob, and how many bytes the devices fetched per task.

Blobs are capability URLs (a SHA-256 nobody can guess), except those of a population that
requires an enrollment secret or attestation: those need a device token of that population
(or the admin token), so a model is not handed to devices the population refused.
"""

from __future__ import annotations

import gzip
from typing import Callable

from coordinator import errors as E
from coordinator.store.base import Store
from coordinator.store.records import DeviceRecord
from coordinator.tasks.registry import TaskRegistry

BLOB_GUARD_TTL_S = 1.0  # a task that starts to use a public blob guards it at most this much later
GUARD_CACHE_SIZE = 4096
GZIP_CACHE_SIZE = 64  # compressed task models kept (a few per task; each compressed once)
GZIP_MIN_GAIN = 0.9  # served compressed only when that saves at least a tenth


class BlobAccess:
    def __init__(self, store: Store, clock, tasks: TaskRegistry,
                 authenticate: Callable[[str | None], DeviceRecord], downloads: dict[str, str] | None = None,
                 models: set[str] | None = None):
        self.store, self.clock, self.tasks, self.authenticate = store, clock, tasks, authenticate
        # Blobs made for devices (quantized checkpoints, deltas, models with zeroed weights) -> task id.
        self.downloads = downloads if downloads is not None else {}
        self.models = models if models is not None else set()  # the models among them
        # Blob -> the populations guarding it, for BLOB_GUARD_TTL_S: every selected device downloads
        # the checkpoint, and a query per download was a burst of round trips at each round's opening.
        self._guard: dict[str, tuple[float, set[str]]] = {}
        self._served: dict[str, int] = {}  # per task: model, checkpoint and control bytes served (this replica)
        self._gzipped: dict[str, bytes | None] = {}  # model sha -> its gzip body (None: not worth it)

    def authorize(self, sha: str, authorization: str | None, is_admin: bool) -> bool:
        """403 for a device of another population; True when the blob is guarded at all (the
        answer must then not be cached by shared caches)."""
        now = self.clock()
        cached = self._guard.get(sha)
        if cached is None or not 0 <= now - cached[0] < BLOB_GUARD_TTL_S:
            if len(self._guard) >= GUARD_CACHE_SIZE:
                self._guard.clear()
            guarded = self.store.guarded_blob_populations(sha)
            task = self.tasks.get(self.downloads.get(sha, ""))
            if task is not None and not guarded:  # a blob made for devices guards like what it was made from
                guarded = self.store.guarded_blob_populations(task.model_sha if sha in self.models
                                                              else task.checkpoint_sha)
            cached = self._guard[sha] = (now, guarded)
        guarded = cached[1]
        if guarded and not is_admin and self.authenticate(authorization).population not in guarded:
            raise E.Forbidden("this blob belongs to another population", "other_population")
        return bool(guarded)

    def served(self, sha: str, size: int) -> None:
        """A blob download, counted for the task it belongs to (its model, checkpoint or control
        variate): the bytes devices fetch per round (round metrics' bytes_out)."""
        owner = self.downloads.get(sha)
        if owner is not None:
            self._served[owner] = self._served.get(owner, 0) + size
            return
        for task in self.tasks.values():
            if sha in (task.checkpoint_sha, task.model_sha, task.control_sha):
                self._served[task.task_id] = self._served.get(task.task_id, 0) + size
                return

    def gzipped(self, sha: str, read: Callable[[], bytes]) -> bytes | None:
        """A task model's body gzip-compressed (a device that accepts gzip downloads that), or
        None. Only models: their graph (operators, tensor tables) compresses 2-4x, while a
        checkpoint or control variate is float32 or quantized codes that gzip barely shrinks,
        and those are fetched every round, where compressing per request would cost the
        coordinator's CPU. Each model is compressed once."""
        if sha not in self._gzipped:
            if sha not in self.models and not any(sha == task.model_sha for task in self.tasks.values()):
                return None
            if len(self._gzipped) >= GZIP_CACHE_SIZE:
                self._gzipped.clear()
            data = read()
            packed = gzip.compress(data, 9, mtime=0)
            self._gzipped[sha] = packed if len(packed) <= GZIP_MIN_GAIN * len(data) else None
        return self._gzipped[sha]

    def take_served(self, task_id: str) -> int:
        return self._served.pop(task_id, 0)

    def forget_guards(self, _task_id: str = "") -> None:
        self._guard.clear()
