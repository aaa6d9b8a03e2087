"""The coordinator: one object the HTTP handlers call, made of three parts that share its
state (the store, the tasks, the rounds' running aggregates):

- `coordinator.admin.operations.AdminOps`: populations, models, tasks (the admin API);
- `coordinator.gateway.gateway.DeviceGateway`: registration, auth, check-in, upload intake;
- `coordinator.rounds.driver.RoundDriver`: the round engine's steps applied, commits, recovery.

Round lifecycle: ``selecting -> reporting -> aggregating -> committed`` or ``failed
(reason)``; with secure aggregation the key phases of `coordinator.rounds.secagg` come
between selecting and reporting, and unmasking after it (`coordinator.rounds.engine`).
Each transition is written to the store before it is acted on; after a restart
`recover()` rebuilds the running aggregates of open rounds from the stored updates and
`tick()` carries on.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import numpy as np

from coordinator import errors as E
from coordinator.gateway.activity import CheckinActivity
from coordinator.admin.operations import AdminOps
from coordinator.gateway.attestation import AttestationVerifier
from coordinator.gateway.gateway import DeviceGateway
from coordinator.gateway.pace import PaceConfig
from coordinator.http.rate_limit import TokenBuckets
from coordinator.rounds.secagg import SecAggRounds
from coordinator.store.records import DeviceRecord, TaskRecord
from coordinator.rounds.driver import RoundDriver
from coordinator.store.base import Store
from coordinator.aggregation.strategies import Strategy, make_strategy
from coordinator.tasks.config import TaskConfig
from protocol import dp
from protocol.eligibility import EligibilityRule
from protocol.manifest import Manifest

log = logging.getLogger("fedge.coordinator")


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


class Coordinator(AdminOps, DeviceGateway, RoundDriver):
    def __init__(self, store: Store, pace: PaceConfig | None = None, metrics=None,
                 clock=time.time, seed: int | None = None, checkin_rate: float = 5.0,
                 register_rate: float = 10.0, attestation: AttestationVerifier | None = None,
                 max_aggregation_mib: float = 2048.0):
        self.store = store
        self.pace = pace or PaceConfig()
        self.metrics = metrics
        self.clock = clock
        self.rng = random.Random(seed)
        self.sums: dict[tuple[str, int], Strategy] = {}
        self.tasks: dict[str, Task] = {}
        self.checkin_limit = TokenBuckets(checkin_rate, checkin_rate * 2, "check-ins")
        # Per client address; bursts of 10 s worth, so an app's first start is never refused.
        self.register_limit = TokenBuckets(register_rate, register_rate * 10, "registrations from this address")
        self.attestation = attestation
        self.max_aggregation_bytes = int(max_aggregation_mib * 2**20)
        self._pace_cache: dict[str, tuple[float, tuple[int, float]]] = {}
        self._selecting_hint: dict[str, tuple[float, object]] = {}  # see DeviceGateway._selecting_round
        self.activity = CheckinActivity()  # recent check-ins per population, for the operator page
        self._device_cache: dict[str, DeviceRecord] = {}  # see DeviceGateway._device
        # last_seen of devices that checked in since the last flush: one transaction per tick
        # instead of a write per check-in (it only sizes pace steering; nothing acknowledged).
        self._seen: dict[str, float] = {}
        # Called with the task id whenever a round opens (the app wakes long-polling check-ins).
        self.round_open_listeners: list = []
        # Called with the task id on every round transition (wakes long-polling SecAgg views).
        self.round_change_listeners: list = []
        # With a running driver (the app), commits are computed off the event loop: requested
        # here, taken by the driver (take_pending_commits), run by commit_async.
        self.defer_commits = False
        self.pending_commits: list[tuple[str, int]] = []
        self.committing: set[tuple[str, int]] = set()
        self.commit_listeners: list = []
        self.secagg = SecAggRounds(store, self.clock)
        self.recover()


    # -- shared by the parts ------------------------------------------------------------
    def _task_from_record(self, rec: TaskRecord) -> Task:
        config = TaskConfig.from_dict(rec.config)
        last = self.store.last_committed(rec.task_id)
        clip = last.metrics.get("dp_next_clip", config.clip_norm) if last else config.clip_norm
        return Task(rec.task_id, rec.population, config, Manifest.from_json(rec.manifest), rec.model_sha, rec.state,
                    rec.checkpoint_sha, EligibilityRule.parse(config.eligibility), clip)

    def _sum_for(self, task: Task, round_num: int) -> Strategy:
        key = (task.task_id, round_num)
        if key not in self.sums:
            self.sums[key] = make_strategy(task.config, task.manifest.num_parameters)
        return self.sums[key]

    def _server_bound(self, task: Task) -> float:
        """The L2 norm every decoded update is clipped to, whatever the device says: the round's
        DP clip (so the sensitivity behind epsilon holds), else the task's max_update_norm."""
        return task.dp_clip if task.config.dp_on else task.config.max_update_norm

    def _fold(self, task: Task, acc: Strategy, values: np.ndarray, examples: int,
              norm: float | None = None) -> None:
        """Bound one decoded update (of L2 norm ``norm``, when known) and fold it."""
        bounded, _ = dp.clip_l2(values, self._server_bound(task), norm)
        # Under DP every device weighs the same: one device's influence is bounded by the clip alone.
        weight = 1.0 if task.config.dp_on else float(min(examples, task.config.max_example_count))
        acc.fold(bounded, weight)

    def _task(self, task_id: str) -> Task:
        if task_id not in self.tasks and self.store.shared:
            rec = self.store.task(task_id)  # created by another replica since this one's last tick
            if rec is not None:
                self.tasks[task_id] = self._task_from_record(rec)
        if task_id not in self.tasks:
            raise E.NotFound(f"no task '{task_id}'")
        return self.tasks[task_id]

    def _count(self, metric: str, label: str) -> None:
        if self.metrics is not None:
            self.metrics.count(metric, label)
