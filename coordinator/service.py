"""The coordinator: one object the HTTP handlers call, composed of parts that each receive
only what they use (no shared state beyond what is passed in):

- `tasks` (`coordinator.tasks.registry.TaskRegistry`): the tasks, loaded from the store;
- `running` (`coordinator.rounds.running.RunningRounds`): the open rounds' running aggregates;
- `secagg` (`coordinator.rounds.secagg.SecAggRounds`): what each SecAgg phase settled;
- `driver` (`coordinator.rounds.driver.RoundDriver`): the round engine's steps applied,
  commits, recovery, leases;
- `gateway` (`coordinator.gateway.gateway.DeviceGateway`): registration, auth, check-in,
  upload intake; it asks the driver to move rounds on through `RoundSignals`;
- `admin` (`coordinator.admin.operations.AdminOps`): populations, models, tasks.

Round lifecycle: ``selecting -> reporting -> aggregating -> committed`` or ``failed
(reason)``; with secure aggregation the key phases of `coordinator.rounds.secagg` come
between selecting and reporting, and unmasking after it (`coordinator.rounds.engine`).
Each transition is written to the store before it is acted on; after a restart
`recover()` rebuilds the running aggregates of open rounds from the stored updates and
`tick()` carries on.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from coordinator.admin.operations import AdminOps
from coordinator.audit.trail import AuditTrail, load_or_create_key
from coordinator.releases.desk import ReleaseDesk
from coordinator.releases.offers import ReleaseOffers
from coordinator.errors import ApiError
from coordinator.gateway.attestation import AttestationVerifier
from coordinator.gateway.gateway import DeviceGateway
from coordinator.gateway.pace import PaceConfig
from coordinator.rounds.driver import RoundDriver
from coordinator.rounds.running import RunningRounds
from coordinator.rounds.secagg import SecAggRounds
from coordinator.store.base import Store
from coordinator.tasks.registry import TaskRegistry
from protocol.errors import ProtocolError

log = logging.getLogger("fedge.coordinator")
BLOB_IO_THREADS = 16  # uploads stored in an object store at once (each waits on the network, not a core)


@dataclass
class Intake:
    """Where accepted updates are stored off the event loop: one thread with a store
    connection of its own. Only for a network database (PostgreSQL), where an upload's
    round trips and file write held the loop for milliseconds; SQLite answers in microseconds
    and keeps one connection."""

    executor: ThreadPoolExecutor
    store: Store

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.store.close()


class Coordinator:
    def __init__(self, store: Store, pace: PaceConfig | None = None, metrics=None,
                 clock=time.time, seed: int | None = None, checkin_rate: float = 5.0,
                 register_rate: float = 10.0, attestation: AttestationVerifier | None = None,
                 max_aggregation_mib: float = 2048.0):
        self.store, self.clock, self.metrics = store, clock, metrics
        self.pace = pace or PaceConfig()
        self.tasks = TaskRegistry(store)
        self.running = RunningRounds()
        self.secagg = SecAggRounds(store, clock)
        self.audit = AuditTrail(store, clock, load_or_create_key(store.blobs))
        # The bytes served per task go into each committed round's metrics (the gateway counts them).
        self.driver = RoundDriver(store, clock, self.tasks, self.running, self.secagg, metrics, self.audit,
                                  served_bytes=lambda task_id: self.gateway.blobs.take_served(task_id))
        self.gateway = DeviceGateway(store, clock, self.tasks, self.running, self.secagg, self.driver, self.pace,
                                     metrics=metrics, rng=random.Random(seed), checkin_rate=checkin_rate,
                                     register_rate=register_rate, attestation=attestation)
        self.admin = AdminOps(store, clock, self.tasks, attestation, int(max_aggregation_mib * 2**20), self.audit)
        self.releases = ReleaseDesk(store, clock, self.tasks, self.audit, self.admin.evaluations)
        self.release_offers = ReleaseOffers(store, clock, self.gateway.downloads.url)
        # First among the listeners: a long poll woken by a round's opening must not assign from
        # the gateway's hint of the round before.
        self.driver.round_open_listeners.append(self.gateway.forget_selecting_round)
        self.driver.round_change_listeners.append(self.gateway.forget_selecting_round)
        self.admin.task_created_listeners.append(self.gateway.blobs.forget_guards)
        self.driver.evaluation_listeners.append(self._schedule_evaluation)
        self.driver.recover()
        second = store.second_connection()
        self.intake = Intake(ThreadPoolExecutor(1, thread_name_prefix="fedge-intake"), second) if second else None
        self._blob_io: ThreadPoolExecutor | None = None

    def _schedule_evaluation(self, task) -> None:
        """eval_every: an evaluation task for the round just committed (once: a second request,
        e.g. after a restart, finds it exists)."""
        try:
            self.admin.create_evaluation(task.task_id, {"round": task.version})
        except (ApiError, ProtocolError) as exc:
            log.info("evaluation of task %s round %d not created: %s", task.task_id, task.version, exc)

    def close(self) -> None:
        if self.intake is not None:
            self.intake.close()
        if self._blob_io is not None:
            self._blob_io.shutdown(wait=True)

    async def blob_io(self, fn):
        """`fn()`: blob store I/O that touches nothing in memory, on a thread of its own pool
        (an object store's requests wait on the network; obstore releases the GIL meanwhile)."""
        if self._blob_io is None:
            self._blob_io = ThreadPoolExecutor(BLOB_IO_THREADS, thread_name_prefix="fedge-blob-io")
        return await asyncio.get_running_loop().run_in_executor(self._blob_io, fn)

    async def write(self, fn):
        """`fn(store)`: a write that touches no state in memory (an assignment, an accepted
        update, a registration), on the intake thread with its connection where there is one,
        else here with the store."""
        if self.intake is None:
            return fn(self.store)
        return await asyncio.get_running_loop().run_in_executor(self.intake.executor, fn, self.intake.store)

    @property
    def sums(self):
        return self.running.sums

    def tick(self) -> None:
        """Write the check-ins' last_seen in one batch, then advance every task by the clock."""
        seen = self.gateway.take_seen()
        if seen and self.intake is not None:  # not awaited: it only sizes pace steering
            self.intake.executor.submit(self.intake.store.touch_devices, seen)
        elif seen:
            self.store.touch_devices(seen)
        self.driver.tick()
