"""The store's rows for model releases (see `coordinator.store.base` for the conventions:
``?`` placeholders, commit before returning). A (population, channel, sequence) is unique,
so two replicas releasing at once cannot give two releases the same sequence: the loser's
insert writes nothing and it takes the next one."""

from __future__ import annotations

from coordinator.store.records import ReleaseRecord

_COLUMNS = ("release_id, population, channel, sequence, task_id, round, model_sha, size, percent, state, note, "
            "signature, rollback_of, created_at, updated_at")


def _record(r) -> ReleaseRecord:
    return ReleaseRecord(r["release_id"], r["population"], r["channel"], int(r["sequence"]), r["task_id"],
                         int(r["round"]), r["model_sha"], int(r["size"]), float(r["percent"]), r["state"], r["note"],
                         r["signature"], r["rollback_of"], float(r["created_at"]), float(r["updated_at"]))


class ReleaseRows:
    """Mixed into `coordinator.store.base.Store` (which provides one, all, execute)."""

    def add_release(self, r: ReleaseRecord) -> bool:
        """Whether it was written: False when its id or its (population, channel, sequence) is taken."""
        cur = self.execute(f"INSERT INTO releases ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                           "ON CONFLICT DO NOTHING", r.release_id, r.population, r.channel, r.sequence, r.task_id,
                           r.round, r.model_sha, r.size, r.percent, r.state, r.note, r.signature, r.rollback_of,
                           r.created_at, r.updated_at)
        return cur.rowcount == 1

    def release(self, release_id: str) -> ReleaseRecord | None:
        r = self.one(f"SELECT {_COLUMNS} FROM releases WHERE release_id=?", release_id)
        return _record(r) if r else None

    def releases(self, population: str | None = None, channel: str | None = None) -> list[ReleaseRecord]:
        """Newest first (by sequence within a channel)."""
        where, args = [], []
        for column, value in (("population", population), ("channel", channel)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return [_record(r) for r in self.all(f"SELECT {_COLUMNS} FROM releases{clause} "
                                             "ORDER BY population, channel, sequence DESC", *args)]

    def last_release_sequence(self, population: str, channel: str) -> int:
        r = self.one("SELECT MAX(sequence) AS s FROM releases WHERE population=? AND channel=?", population, channel)
        return int(r["s"]) if r and r["s"] is not None else 0

    def update_release(self, release_id: str, expected_state: str, now: float, *, percent: float | None = None,
                       state: str | None = None) -> bool:
        """Compare-and-set from ``expected_state``: whether the row changed."""
        cur = self.execute("UPDATE releases SET percent=COALESCE(?, percent), state=COALESCE(?, state), updated_at=? "
                           "WHERE release_id=? AND state=?", percent, state, now, release_id, expected_state)
        return cur.rowcount == 1
