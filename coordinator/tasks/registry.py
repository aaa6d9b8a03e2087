"""The tasks a coordinator knows: `Task` (a task's configuration, model and where its
rounds stand, as the parts need it in memory) and `TaskRegistry` (all of them, loaded from
the store). The gateway, the round driver and the admin operations each receive the
registry; it imports none of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

from coordinator import errors as E
from coordinator.store.base import Store
from coordinator.store.records import TaskRecord
from coordinator.tasks.config import TaskConfig
from protocol.eligibility import EligibilityRule
from protocol.manifest import Manifest


@dataclass
class Task:
    task_id: str
    population: str
    config: TaskConfig
    manifest: Manifest
    model_sha: str
    state: str
    checkpoint_sha: str
    rule: EligibilityRule
    dp_clip: float = 0.0  # this round's clip norm (moves each round with adaptive clipping)
    # The round whose checkpoint is checkpoint_sha (0: the initial weights). Set together with
    # checkpoint_sha: an asynchronous assignment pins the version it hands out.
    version: int = 0
    control_sha: str = ""  # SCAFFOLD: the server control variate's blob ("" otherwise)

    @property
    def update_counts(self) -> list[int]:
        """Sizes of an update's tensors: the weights, then (SCAFFOLD) the control variates."""
        sizes = [w.size for w in self.manifest.weights]
        return sizes * 2 if self.config.scaffold else sizes

    @property
    def update_size(self) -> int:
        return sum(self.update_counts)


def zero_control(manifest: Manifest) -> bytes:
    """SCAFFOLD's initial server control variate: zeros over the travelling weights (FEDU f32)."""
    import numpy as np

    from protocol import codec

    return codec.encode([np.zeros(w.shape, np.float32) for w in manifest.weights], codec.CodecSpec("f32"),
                        np.random.default_rng(0))


class TaskRegistry:
    """Task id -> Task, read like a dict. With a shared store (replicas), a task another
    replica created is loaded on first use (`require`) and by the driver's sync each tick."""

    def __init__(self, store: Store):
        self.store = store
        self._tasks: dict[str, Task] = {}

    def load(self) -> None:
        self._tasks = {rec.task_id: self.from_record(rec) for rec in self.store.tasks()}

    def from_record(self, rec: TaskRecord) -> Task:
        config = TaskConfig.from_dict(rec.config)
        last = self.store.last_committed(rec.task_id)
        clip = last.metrics.get("dp_next_clip", config.clip_norm) if last else config.clip_norm
        manifest = Manifest.from_json(rec.manifest)
        control = ""
        if config.scaffold:
            control = last.metrics.get("control_sha", "") if last else ""
            if not control:  # c = 0 before the first commit
                payload = zero_control(manifest)
                control = hashlib.sha256(payload).hexdigest()
                self.store.blobs.put(control, payload)
        return Task(rec.task_id, rec.population, config, manifest, rec.model_sha, rec.state,
                    rec.checkpoint_sha, EligibilityRule.parse(config.eligibility), clip,
                    last.round if last else 0, control)

    def put(self, rec: TaskRecord) -> Task:
        """Load (or reload) a task from its record."""
        task = self._tasks[rec.task_id] = self.from_record(rec)
        return task

    def require(self, task_id: str) -> Task:
        """The task, or 404."""
        if task_id not in self._tasks and self.store.shared:
            rec = self.store.task(task_id)  # created by another replica since this one's last sync
            if rec is not None:
                self.put(rec)
        if task_id not in self._tasks:
            raise E.NotFound(f"no task '{task_id}'")
        return self._tasks[task_id]

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def active_in(self, population: str) -> list[Task]:
        return [t for t in self._tasks.values() if t.population == population and t.state == "active"]

    def __getitem__(self, task_id: str) -> Task:
        return self._tasks[task_id]

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def values(self) -> list[Task]:
        return list(self._tasks.values())
