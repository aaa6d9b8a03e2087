"""The store's rows for asynchronous tasks (FedBuff): assignments counted against the task's
concurrency, and updates into the buffer open when they land, each in one transaction (see
`coordinator.store.base` for the conventions: ``?`` placeholders, commit before returning)."""

from __future__ import annotations

from coordinator.store.records import AssignmentRecord, UpdateRecord
from coordinator.store.sql import dumps


class BufferClosed(Exception):
    """Store.add_buffered_update: the buffer stopped taking updates under the caller (it
    started aggregating); nothing was written, the assignment still stands."""


class AlreadyInBuffer(Exception):
    """Store.add_buffered_update: this device's update is in that buffer already (one update
    per device per version); nothing was written."""


class AssignmentGone(Exception):
    """Store.add_buffered_update: the assignment was consumed (by a concurrent upload) or
    removed; nothing was written."""


class BufferRows:
    """Mixed into `coordinator.store.base.Store` (which provides transaction, one, execute)."""

    def assign_buffered(self, a: AssignmentRecord, concurrency: int, live_since: float) -> int | None:
        """An asynchronous assignment (``a.round``: the buffer open now), in one transaction:
        the number of live assignments (made at or after ``live_since`` and not yet used) after
        it, or None (nothing written) when ``concurrency`` are live already, this device holds a
        live one, or its update is in the buffer open now (a device contributes once per
        version: a fast phone cannot fill a version alone). The buffer open now counts it as
        selected."""
        with self.transaction() as tx:
            buffer = tx.execute("SELECT round FROM rounds WHERE task_id=? AND state='reporting' ORDER BY round DESC "
                                "LIMIT 1", (a.task_id,)).fetchone()
            if buffer is not None and tx.execute("SELECT 1 FROM updates WHERE task_id=? AND round=? AND device_id=?",
                                                 (a.task_id, buffer["round"], a.device_id)).fetchone() is not None:
                return None
            row = tx.execute("SELECT COUNT(*) AS n, SUM(CASE WHEN device_id=? THEN 1 ELSE 0 END) AS mine "
                             "FROM assignments WHERE task_id=? AND assigned_at>=?",
                             (a.device_id, a.task_id, live_since)).fetchone()
            if row["n"] >= concurrency or (row["mine"] or 0) > 0:
                return None
            # An expired, unused assignment of the same buffer would block the insert: it is dead.
            tx.execute("DELETE FROM assignments WHERE task_id=? AND round=? AND device_id=?",
                       (a.task_id, a.round, a.device_id))
            tx.execute("INSERT INTO assignments VALUES (?,?,?,?,?)",
                       (a.task_id, a.round, a.device_id, a.token_hash, a.assigned_at))
            tx.execute("UPDATE rounds SET selected=selected+1 WHERE task_id=? AND round=?", (a.task_id, a.round))
        return int(row["n"]) + 1

    def live_assignments(self, task_id: str, live_since: float) -> int:
        return self.one("SELECT COUNT(*) AS n FROM assignments WHERE task_id=? AND assigned_at>=?",
                        task_id, live_since)["n"]

    def drop_assignment(self, task_id: str, num: int, device_id: str) -> None:
        self.execute("DELETE FROM assignments WHERE task_id=? AND round=? AND device_id=?", task_id, num, device_id)

    def add_buffered_update(self, u: UpdateRecord, assigned_round: int) -> int:
        """An asynchronous update into buffer ``u.round``, in one transaction: the assignment
        (of buffer ``assigned_round``) is used up, the row written and counted while the buffer
        still takes updates. The buffer's reported count after it; raises AssignmentGone or
        BufferClosed with nothing written. Exactly once: an assignment is used by one update."""
        with self.transaction() as tx:
            cur = tx.execute("DELETE FROM assignments WHERE task_id=? AND round=? AND device_id=?",
                             (u.task_id, assigned_round, u.device_id))
            if cur.rowcount == 0:
                raise AssignmentGone
            cur = tx.execute("UPDATE rounds SET reported=reported+1, examples=examples+? WHERE task_id=? AND round=? "
                             "AND state='reporting'", (u.examples, u.task_id, u.round))
            if cur.rowcount == 0:
                raise BufferClosed  # rolls the assignment's removal back
            if tx.execute("SELECT 1 FROM updates WHERE task_id=? AND round=? AND device_id=?",
                          (u.task_id, u.round, u.device_id)).fetchone() is not None:
                raise AlreadyInBuffer
            tx.execute("INSERT INTO updates VALUES (?,?,?,?,?,?,?,?)",
                       (u.task_id, u.round, u.device_id, u.examples, dumps(u.meta), u.blob, u.digest, u.received_at))
            row = tx.execute("SELECT reported FROM rounds WHERE task_id=? AND round=?",
                             (u.task_id, u.round)).fetchone()
        return int(row["reported"])

    def update_with_digest(self, task_id: str, device_id: str, digest: str, from_round: int) -> UpdateRecord | None:
        """A device's stored update with these bytes in a round >= ``from_round`` (an async
        upload retried after it was acknowledged lands in whichever buffer took it)."""
        r = self.one("SELECT * FROM updates WHERE task_id=? AND device_id=? AND digest=? AND round>=? LIMIT 1",
                     task_id, device_id, digest, from_round)
        return self._update(r) if r else None
