"""The in-memory store: the state store's contract with nothing on disk, for fast tests of the
gateway and the round driver and for `fedge simulate`. It is the SQLite store on a private
in-memory database (so it runs the same SQL as the default backend, and passes the same
contract suite, without a third copy of the queries) with its bytes in a `MemoryBlobStore`.
Nothing survives the process; `shared` is False (one process, one store). One exception to
"the same SQL": the devices' last_seen and due, which every check-in rewrites, live in
arrays (`DeviceLiveness`), not in the devices table."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from coordinator.store.blobs import MemoryBlobStore
from coordinator.store.liveness import DeviceLiveness
from coordinator.store.records import DeviceRecord
from coordinator.store.sqlite import SqliteStore

MEMORY = ":memory:"


class MemoryStore(SqliteStore):
    def __init__(self) -> None:
        super().__init__(MEMORY, data_dir=MEMORY)
        # Every check-in rewrites its device's last_seen and due (`touch_devices`), kept here in
        # arrays; the two indexes over those columns serve the operator page's "seen in the last
        # hour" and pace steering's count of the devices present, which a scan of the arrays
        # answers in milliseconds. Keeping the first up cost a third of each touch (at 100,000
        # simulated devices, 7% of `fedge simulate`'s time), the second a quarter of registering
        # a million devices.
        self.conn.execute("DROP INDEX devices_by_population")
        self.conn.execute("DROP INDEX devices_due")
        self.liveness = DeviceLiveness()

    def add_device(self, d: DeviceRecord) -> None:
        super().add_device(d)
        self.liveness.add([(d.device_id, d.population, d.last_seen, d.due)])

    def add_devices(self, devices: list[DeviceRecord]) -> None:
        super().add_devices(devices)  # all or none: a refused batch raises before they are counted
        self.liveness.add([(d.device_id, d.population, d.last_seen, d.due) for d in devices])

    def device(self, device_id: str) -> DeviceRecord | None:
        d = super().device(device_id)
        times = self.liveness.of(device_id) if d is not None else None
        return replace(d, last_seen=times[0], due=times[1]) if times is not None else d

    def touch_devices(self, seen: dict[str, tuple[float, float]]) -> None:
        self.liveness.touch(seen)

    def count_present(self, now: float, population: str) -> int:
        return self.liveness.count_present(now, population)

    def count_seen(self, since: float, population: str | None = None) -> int:
        return self.liveness.count_seen(since, population)

    def _init_data_dir(self, data_dir) -> None:
        # The coordinator's own small files (the audit trail's signing key) go to a private
        # temporary folder that goes with the store; the bytes stay in memory.
        self._own_files = tempfile.TemporaryDirectory(prefix="fedge-memory-")
        self.data_dir = Path(self._own_files.name)
        self.blobs = MemoryBlobStore()

    def checkpoint_in_background(self, interval_s: float = 1.0) -> None:
        """An in-memory database has no write-ahead log to fold in."""

    def close(self) -> None:
        super().close()
        self._own_files.cleanup()
