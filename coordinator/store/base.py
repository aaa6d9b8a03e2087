"""The coordinator's durable state behind one interface: populations, devices, tasks,
rounds, assignments, updates; asynchronous tasks' buffers (`coordinator.store.buffer_rows`),
the SecAgg state of rounds (`coordinator.store.secagg_rows`) and the audit trail.

The coordinator talks to the store through typed methods that take and return the records
of `coordinator.store.records`; all the SQL lives in the store modules, written once here in the
dialect SQLite and PostgreSQL share (``?`` placeholders; the PostgreSQL store translates).
Two implementations: `coordinator.store.sqlite` (the default: one file, one machine) and
`coordinator.store.postgres` (shared by coordinator replicas).

Every method that changes state commits before it returns, so anything the service
acknowledges to a device or an admin survives a crash of the process. Bytes (models,
checkpoints, received updates) live in the store's `blobs` (`coordinator.store.blobs`); the
rows that name them are written only after the bytes are durable.
`one`/`all`/`execute` stay for tests. `coordinator.store.factory.open_store` picks a backend.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from coordinator.rounds.states import OPEN_STATES
from coordinator.store.blobs import BlobStore, LocalBlobStore
from coordinator.store.buffer_rows import BufferRows
from coordinator.store.release_rows import ReleaseRows
from coordinator.store.secagg_rows import SecAggRows
from coordinator.store.sql import dumps
from coordinator.store.records import (AssignmentRecord, DeviceRecord, PopulationRecord, RoundRecord, TaskRecord, UpdateRecord)

_OPEN_SQL = "(" + ",".join(f"'{s.value}'" for s in OPEN_STATES) + ")"
FINISHED_TASK_STATES = ("completed", "cancelled", "failed")
_FINISHED_SQL = "(" + ",".join(f"'{s}'" for s in FINISHED_TASK_STATES) + ")"


class _RoundClosed(Exception):
    """Inside Store.assign: the round stopped selecting (or filled up) under the caller."""


class Store(BufferRows, SecAggRows, ReleaseRows):
    """The typed interface and its SQL. A backend provides ``transaction()`` (a context
    whose value has ``execute(sql, params)`` and ``executemany(sql, rows)``), ``one``,
    ``all``, ``execute``, ``close`` and ``checkpoint_in_background``; rows read by name.

    The contract every backend keeps (tests/coordinator/store/test_store.py runs it on
    SQLite, PostgreSQL and the in-memory store):

    - Durability: a method that changes state has committed when it returns.
    - Atomicity: a row and the counts it moves change together or not at all (`assign`
      and the round's selected count; `add_update` and its reported and example counts;
      `commit_round` and the task's checkpoint; `delete_round_details` across its tables).
    - The database decides races: `assign` never exceeds the capacity nor assigns a device
      twice in a round, `add_update(only_open=True)` writes nothing into a round that stopped
      taking updates, `set_round_state` and `commit_round` are compare-and-set from the
      state the caller read, `acquire_lease` gives an expired lease to exactly one replica;
      each answers what happened (a count, None or False) instead of raising.
    - Idempotence: `add_population`, `add_device` and `add_task` refuse a second row with the
      same key; an assignment or an update is one row per (task, round, device).
    - Ordering: `append_audit` appends to one chain per task with consecutive sequence
      numbers, never forking, whichever replica appends; `rounds` and `audit_entries`
      return rows in round and sequence order.
    """

    shared = False  # True where several coordinator processes may use the same database

    data_dir: Path

    blobs: BlobStore  # where the bytes the rows name live (coordinator.store.blobs)

    def _init_data_dir(self, data_dir: str | os.PathLike) -> None:
        self.data_dir = Path(data_dir)  # the coordinator's own files: the audit key, SQLite's database
        self.blobs = LocalBlobStore(self.data_dir)

    def checkpoint_in_background(self, interval_s: float = 1.0) -> None:
        """Backends with a write-ahead log to fold in do it here; nothing by default."""

    def second_connection(self) -> "Store | None":
        """Another connection to the same database, for a thread of its own; None where one
        connection serves best (SQLite)."""
        return None

    def ping(self) -> None:
        """Raises if the database does not answer (readiness checks)."""
        self.one("SELECT 1 AS ok")

    # -- populations and devices ---------------------------------------------------------
    def population(self, name: str) -> PopulationRecord | None:
        r = self.one("SELECT * FROM populations WHERE name=?", name)
        return PopulationRecord(r["name"], r["created_at"], r["enrollment_secret_hash"],
                                bool(r["require_attestation"])) if r else None

    def populations(self) -> list[PopulationRecord]:
        return [PopulationRecord(r["name"], r["created_at"], r["enrollment_secret_hash"],
                                 bool(r["require_attestation"]))
                for r in self.all("SELECT * FROM populations ORDER BY name")]

    def guarded_blob_populations(self, sha: str) -> set[str]:
        """The populations whose device tokens may download blob `sha`, or empty when anyone
        holding its digest may. The guard follows the tasks that use it now (as their model
        or a checkpoint; finished tasks do not count): when one of them is in a population
        that requires an enrollment secret or attestation, the devices of every population
        with such a task may download it (a file two populations use is readable by both);
        otherwise, and when no unfinished task uses it, it is public again. One small query
        when no population is guarded."""
        guarded = {p.name for p in self.populations() if p.enrollment_secret_hash or p.require_attestation}
        if not guarded:
            return set()
        rows = self.all("SELECT population FROM tasks WHERE (model_sha=? OR checkpoint_sha=?) "
                        f"AND state NOT IN {_FINISHED_SQL} UNION "
                        "SELECT t.population FROM rounds r JOIN tasks t ON t.task_id = r.task_id "
                        f"WHERE r.checkpoint_sha=? AND t.state NOT IN {_FINISHED_SQL}", sha, sha, sha)
        users = {r["population"] for r in rows}
        return users if users & guarded else set()

    def count_devices(self, population: str) -> int:
        return self.one("SELECT COUNT(*) AS n FROM devices WHERE population=?", population)["n"]

    def add_population(self, p: PopulationRecord) -> None:
        self.execute("INSERT INTO populations (name, created_at, enrollment_secret_hash, require_attestation) "
                     "VALUES (?, ?, ?, ?)", p.name, p.created_at, p.enrollment_secret_hash, int(p.require_attestation))

    def add_device(self, d: DeviceRecord) -> None:
        self.execute("INSERT INTO devices (device_id, population, token_hash, label, created_at, last_seen, due) "
                     "VALUES (?,?,?,?,?,?,?)", d.device_id, d.population, d.token_hash, d.label, d.created_at,
                     d.last_seen, d.due)

    def add_devices(self, devices: list[DeviceRecord]) -> None:
        """Many devices in one transaction (all or none: a duplicate id refuses the batch)."""
        with self.transaction() as tx:
            tx.executemany("INSERT INTO devices (device_id, population, token_hash, label, created_at, last_seen, "
                           "due) VALUES (?,?,?,?,?,?,?)", [(d.device_id, d.population, d.token_hash, d.label,
                                                           d.created_at, d.last_seen, d.due) for d in devices])

    def device(self, device_id: str) -> DeviceRecord | None:
        r = self.one("SELECT * FROM devices WHERE device_id=?", device_id)
        return DeviceRecord(**{k: r[k] for k in r.keys()}) if r else None

    def touch_devices(self, seen: dict[str, tuple[float, float]]) -> None:
        """(last_seen, due) of many devices, in one transaction."""
        with self.transaction() as tx:
            tx.executemany("UPDATE devices SET last_seen=?, due=? WHERE device_id=?",
                           [(t, due, d) for d, (t, due) in seen.items()])

    def count_present(self, now: float, population: str) -> int:
        """Devices of the population not yet overdue: they checked in and said they would be back."""
        return self.one("SELECT COUNT(*) AS n FROM devices WHERE population=? AND due>=?", population, now)["n"]

    def count_seen(self, since: float, population: str | None = None) -> int:
        if population is None:
            return self.one("SELECT COUNT(*) AS n FROM devices WHERE last_seen>=?", since)["n"]
        return self.one("SELECT COUNT(*) AS n FROM devices WHERE population=? AND last_seen>=?", population,
                        since)["n"]

    # -- tasks -------------------------------------------------------------------------
    @staticmethod
    def _task(r) -> TaskRecord:
        return TaskRecord(r["task_id"], r["population"], json.loads(r["config"]), r["model_sha"], r["manifest"],
                          r["state"], r["checkpoint_sha"], r["created_at"], r["reason"])

    def tasks(self) -> list[TaskRecord]:
        return [self._task(r) for r in self.all("SELECT * FROM tasks ORDER BY created_at")]

    def task(self, task_id: str) -> TaskRecord | None:
        r = self.one("SELECT * FROM tasks WHERE task_id=?", task_id)
        return self._task(r) if r else None

    def add_task(self, t: TaskRecord) -> None:
        self.execute("INSERT INTO tasks VALUES (?,?,?,?,?,?,?,?,?)", t.task_id, t.population, dumps(t.config),
                     t.model_sha, t.manifest, t.state, t.checkpoint_sha, t.created_at, t.reason)

    def set_task_state(self, task_id: str, state: str, reason: str | None = None,
                       fail_open_rounds: str = "", now: float = 0.0) -> None:
        """The task's state (and reason); with ``fail_open_rounds``, its open rounds fail with
        that reason in the same transaction."""
        with self.transaction() as tx:
            if reason is None:
                tx.execute("UPDATE tasks SET state=? WHERE task_id=?", (state, task_id))
            else:
                tx.execute("UPDATE tasks SET state=?, reason=? WHERE task_id=?", (state, reason, task_id))
            if fail_open_rounds:
                tx.execute(f"UPDATE rounds SET state='failed', reason=?, closed_at=? WHERE task_id=? "
                           f"AND state IN {_OPEN_SQL}", (fail_open_rounds, now, task_id))

    # -- rounds ------------------------------------------------------------------------
    @staticmethod
    def _round(r) -> RoundRecord:
        return RoundRecord(r["task_id"], r["round"], r["state"], r["opened_at"], r["selection_deadline"],
                           r["report_deadline"], r["closed_at"], r["selected"], r["reported"], r["examples"],
                           r["reason"], json.loads(r["metrics"]), r["checkpoint_sha"])

    def round(self, task_id: str, num: int) -> RoundRecord | None:
        r = self.one("SELECT * FROM rounds WHERE task_id=? AND round=?", task_id, num)
        return self._round(r) if r else None

    def rounds(self, task_id: str, first: int = 1) -> list[RoundRecord]:
        """The task's rounds from round ``first`` on, oldest first."""
        return [self._round(r) for r in self.all("SELECT * FROM rounds WHERE task_id=? AND round>=? ORDER BY round",
                                                 task_id, first)]

    def latest_round(self, task_id: str) -> RoundRecord | None:
        r = self.one("SELECT * FROM rounds WHERE task_id=? ORDER BY round DESC LIMIT 1", task_id)
        return self._round(r) if r else None

    def recent_rounds(self, task_id: str, n: int) -> list[RoundRecord]:
        return [self._round(r) for r in self.all("SELECT * FROM rounds WHERE task_id=? ORDER BY round DESC LIMIT ?",
                                                 task_id, n)]

    def selecting_round(self, task_id: str) -> RoundRecord | None:
        r = self.one("SELECT * FROM rounds WHERE task_id=? AND state='selecting'", task_id)
        return self._round(r) if r else None

    def open_rounds(self) -> list[RoundRecord]:
        return [self._round(r) for r in self.all(f"SELECT * FROM rounds WHERE state IN {_OPEN_SQL}")]

    def committed_count(self, task_id: str) -> int:
        return self.one("SELECT COUNT(*) AS n FROM rounds WHERE task_id=? AND state='committed'", task_id)["n"]

    def last_committed(self, task_id: str) -> RoundRecord | None:
        r = self.one("SELECT * FROM rounds WHERE task_id=? AND state='committed' ORDER BY round DESC LIMIT 1",
                     task_id)
        return self._round(r) if r else None

    def add_round(self, task_id: str, num: int, opened_at: float, selection_deadline: float,
                  report_deadline: float, state: str = "selecting") -> None:
        self.execute("INSERT INTO rounds (task_id, round, state, opened_at, selection_deadline, report_deadline) "
                     "VALUES (?,?,?,?,?,?)", task_id, num, str(state), opened_at, selection_deadline,
                     report_deadline)

    def open_buffer(self, task_id: str) -> RoundRecord | None:
        """An asynchronous task's buffer taking updates (the newest round in `reporting`)."""
        r = self.one("SELECT * FROM rounds WHERE task_id=? AND state='reporting' ORDER BY round DESC LIMIT 1",
                     task_id)
        return self._round(r) if r else None

    def set_round_state(self, task_id: str, num: int, state: str, reason: str, closed_at: float | None,
                        expected: str) -> bool:
        """The round moves to ``state`` if it is still in ``expected`` (a replica that moved it
        first wins); whether it moved. Which moves are legal is coordinator.rounds.states'."""
        with self.transaction() as tx:
            cur = tx.execute("UPDATE rounds SET state=?, reason=?, closed_at=COALESCE(?, closed_at) "
                             "WHERE task_id=? AND round=? AND state=?",
                             (str(state), reason, closed_at, task_id, num, str(expected)))
            return cur.rowcount == 1

    def commit_round(self, task_id: str, num: int, closed_at: float, checkpoint_sha: str, metrics: dict) -> bool:
        """The aggregating round is committed and its checkpoint becomes the task's, in one
        transaction; False (nothing written) when the round is no longer aggregating: another
        coordinator replica committed or failed it first."""
        with self.transaction() as tx:
            cur = tx.execute("UPDATE rounds SET state='committed', closed_at=?, checkpoint_sha=?, metrics=? "
                             "WHERE task_id=? AND round=? AND state='aggregating'",
                             (closed_at, checkpoint_sha, dumps(metrics), task_id, num))
            if cur.rowcount == 0:
                return False
            tx.execute("UPDATE tasks SET checkpoint_sha=? WHERE task_id=?", (checkpoint_sha, task_id))
        return True

    # -- retention ---------------------------------------------------------------------------
    def committed_outside_window(self, task_id: str, keep: int) -> RoundRecord | None:
        """The committed round that is the (keep + 1)-th newest: the one whose checkpoint has
        just left the window of the last `keep` when a round commits."""
        r = self.one("SELECT * FROM rounds WHERE task_id=? AND state='committed' ORDER BY round DESC "
                     "LIMIT 1 OFFSET ?", task_id, keep)
        return self._round(r) if r else None

    def blob_referenced(self, sha: str, except_round: tuple[str, int]) -> bool:
        """Whether anything but round `except_round` still names blob `sha` (a task's model or
        current checkpoint, another round's checkpoint)."""
        task_id, num = except_round
        return self.one("SELECT (SELECT COUNT(*) FROM tasks WHERE model_sha=? OR checkpoint_sha=?) + "
                        "(SELECT COUNT(*) FROM rounds WHERE checkpoint_sha=? AND NOT (task_id=? AND round=?)) AS n",
                        sha, sha, sha, task_id, num)["n"] > 0

    def delete_round_details(self, task_id: str, up_to_round: int) -> None:
        """Assignments, update records and SecAgg messages of rounds <= `up_to_round` (each
        round keeps its row in `rounds`: its state, counts and metrics are the task's history)."""
        with self.transaction() as tx:
            for table in ("assignments", "updates", "secagg_messages", "secagg_shares", "secagg_rounds"):
                tx.execute(f"DELETE FROM {table} WHERE task_id=? AND round<=?", (task_id, up_to_round))

    # -- leases: which coordinator replica drives a task's rounds --------------------------
    def acquire_lease(self, task_id: str, holder: str, now: float, ttl_s: float) -> bool:
        """Take, or renew, the right to drive ``task_id``'s rounds until ``now + ttl_s``;
        False while another holder's lease has not expired. The upsert's WHERE makes the
        take-over atomic: of two replicas racing for an expired lease, one wins."""
        self.execute("INSERT INTO task_leases (task_id, holder, expires_at) VALUES (?,?,?) "
                     "ON CONFLICT (task_id) DO UPDATE SET holder=excluded.holder, expires_at=excluded.expires_at "
                     "WHERE task_leases.holder=excluded.holder OR task_leases.expires_at < ?",
                     task_id, holder, now + ttl_s, now)
        r = self.one("SELECT holder FROM task_leases WHERE task_id=?", task_id)
        return r is not None and r["holder"] == holder

    def release_leases(self, holder: str) -> None:
        """A replica that stops hands its tasks over at once instead of after the lease expires."""
        self.execute("DELETE FROM task_leases WHERE holder=?", holder)

    # -- assignments and updates -------------------------------------------------------
    def assign(self, a: AssignmentRecord, capacity: int | None = None) -> int | None:
        """Record the assignment and count it in the round, in one transaction: the round's
        selected count after it, or None (nothing written) when the device already has one,
        the round is no longer selecting, or `capacity` devices were already selected. The
        database decides, so a caller may look the round up from a cache, and replicas
        cannot over-fill a round between them."""
        try:
            with self.transaction() as tx:
                cur = tx.execute("INSERT INTO assignments VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
                                 (a.task_id, a.round, a.device_id, a.token_hash, a.assigned_at))
                if cur.rowcount == 0:
                    return None
                cur = tx.execute("UPDATE rounds SET selected=selected+1 WHERE task_id=? AND round=? "
                                 "AND state='selecting' AND selected < ?",
                                 (a.task_id, a.round, capacity if capacity is not None else 2**62))
                if cur.rowcount == 0:
                    raise _RoundClosed  # rolls the assignment back
                row = tx.execute("SELECT selected FROM rounds WHERE task_id=? AND round=?",
                                 (a.task_id, a.round)).fetchone()
        except _RoundClosed:
            return None
        return int(row["selected"])

    def assignment(self, task_id: str, num: int, device_id: str) -> AssignmentRecord | None:
        r = self.one("SELECT * FROM assignments WHERE task_id=? AND round=? AND device_id=?", task_id, num, device_id)
        return AssignmentRecord(**{k: r[k] for k in r.keys()}) if r else None

    @staticmethod
    def _update(r) -> UpdateRecord:
        return UpdateRecord(r["task_id"], r["round"], r["device_id"], r["examples"], json.loads(r["meta"]),
                            r["blob"], r["digest"], r["received_at"])

    def updates(self, task_id: str, num: int) -> list[UpdateRecord]:
        return [self._update(r) for r in self.all("SELECT * FROM updates WHERE task_id=? AND round=?", task_id, num)]

    def update(self, task_id: str, num: int, device_id: str) -> UpdateRecord | None:
        r = self.one("SELECT * FROM updates WHERE task_id=? AND round=? AND device_id=?", task_id, num, device_id)
        return self._update(r) if r else None

    def add_update(self, u: UpdateRecord, only_open: bool = False) -> int | None:
        """The update's row and its round's counts, in one transaction (its bytes are already at
        u.blob): the round's reported count after it. With `only_open`, nothing is written and
        None is returned when the round no longer takes updates (it closed under the caller)."""
        try:
            with self.transaction() as tx:
                tx.execute("INSERT INTO updates VALUES (?,?,?,?,?,?,?,?)",
                           (u.task_id, u.round, u.device_id, u.examples, dumps(u.meta), u.blob, u.digest,
                            u.received_at))
                cur = tx.execute("UPDATE rounds SET reported=reported+1, examples=examples+? WHERE task_id=? "
                                 "AND round=?" + (" AND state IN ('selecting','reporting')" if only_open else ""),
                                 (u.examples, u.task_id, u.round))
                if cur.rowcount == 0 and only_open:
                    raise _RoundClosed
                row = tx.execute("SELECT reported FROM rounds WHERE task_id=? AND round=?",
                                 (u.task_id, u.round)).fetchone()
        except _RoundClosed:
            return None
        return int(row["reported"]) if row else 0

    # -- the audit trail: one hash chain per task (protocol.audit) ----------------------------
    def append_audit(self, task_id: str, make_entry) -> dict:
        """Append ``make_entry(seq, prev_hash)`` (a sealed entry) to the task's chain, in one
        transaction; when another replica appended the same seq first, read again and retry,
        so the chain never forks."""
        from protocol.audit import GENESIS

        for _ in range(20):
            with self.transaction() as tx:
                last = tx.execute("SELECT seq, hash FROM audit_log WHERE task_id=? ORDER BY seq DESC LIMIT 1",
                                  (task_id,)).fetchone()
                seq, prev = (int(last["seq"]) + 1, last["hash"]) if last else (1, GENESIS)
                entry = make_entry(seq, prev)
                cur = tx.execute("INSERT INTO audit_log (task_id, seq, entry, hash) VALUES (?,?,?,?) "
                                 "ON CONFLICT DO NOTHING", (task_id, seq, dumps(entry), entry["hash"]))
                if cur.rowcount == 1:
                    return entry
        raise RuntimeError(f"could not append to the audit trail of task {task_id}")

    def audit_entries(self, task_id: str) -> list[dict]:
        return [json.loads(r["entry"]) for r in self.all("SELECT entry FROM audit_log WHERE task_id=? ORDER BY seq",
                                                         task_id)]


def now() -> float:
    return time.time()
