"""The store's rows for SecAgg rounds: what each phase settled, the devices' messages, the
sealed shares (see `coordinator.store.base` for the conventions)."""

from __future__ import annotations

import json

from coordinator.store.records import SecAggRoundRecord
from coordinator.store.sql import dumps


class SecAggRows:
    """Mixed into `coordinator.store.base.Store` (which provides transaction, one, all, execute)."""

    # -- SecAgg rounds: what each phase settled, the devices' messages, the sealed shares --
    _SECAGG_COLUMNS = ("advertise_deadline", "share_deadline", "unmask_deadline", "roster", "params", "sharers",
                       "survivors")

    def add_secagg_round(self, r: SecAggRoundRecord) -> None:
        self.execute("INSERT INTO secagg_rounds (task_id, round, advertise_deadline, share_deadline, "
                     "unmask_deadline) VALUES (?,?,?,?,?)", r.task_id, r.round, r.advertise_deadline,
                     r.share_deadline, r.unmask_deadline)

    def secagg_round(self, task_id: str, num: int) -> SecAggRoundRecord | None:
        r = self.one("SELECT * FROM secagg_rounds WHERE task_id=? AND round=?", task_id, num)
        if r is None:
            return None
        return SecAggRoundRecord(
            r["task_id"], r["round"], r["advertise_deadline"], r["share_deadline"], r["unmask_deadline"],
            {int(i): d for i, d in json.loads(r["roster"]).items()} if r["roster"] else {},
            json.loads(r["params"]) if r["params"] else None,
            json.loads(r["sharers"]) if r["sharers"] else [], json.loads(r["survivors"]) if r["survivors"] else [])

    def update_secagg_round(self, task_id: str, num: int, **fields) -> None:
        """Deadlines as numbers; roster, params, sharers and survivors as their values (stored as JSON)."""
        unknown = set(fields) - set(self._SECAGG_COLUMNS)
        if unknown:
            raise ValueError(f"no SecAgg round field(s) {sorted(unknown)}")
        values = [v if k.endswith("_deadline") else dumps(v) for k, v in fields.items()]
        self.execute(f"UPDATE secagg_rounds SET {', '.join(f'{k}=?' for k in fields)} WHERE task_id=? AND round=?",
                     *values, task_id, num)

    def secagg_message_digest(self, task_id: str, num: int, phase: str, device_id: str) -> str | None:
        r = self.one("SELECT digest FROM secagg_messages WHERE task_id=? AND round=? AND phase=? AND device_id=?",
                     task_id, num, phase, device_id)
        return r["digest"] if r else None

    def add_secagg_message(self, task_id: str, num: int, phase: str, device_id: str, body: str, digest: str,
                           received_at: float, shares: list[tuple[int, int, bytes]] = ()) -> None:
        """A phase message and, for ShareKeys, its sealed shares (receiver, sender, ciphertext), together."""
        with self.transaction() as tx:
            tx.execute("INSERT INTO secagg_messages VALUES (?,?,?,?,?,?,?)",
                       (task_id, num, phase, device_id, body, digest, received_at))
            if shares:
                tx.executemany("INSERT INTO secagg_shares VALUES (?,?,?,?,?)",
                               [(task_id, num, receiver, sender, c) for receiver, sender, c in shares])

    def secagg_messages(self, task_id: str, num: int, phase: str) -> dict[str, str]:
        """device id -> message body (JSON), for one phase."""
        return {r["device_id"]: r["body"] for r in self.all(
            "SELECT device_id, body FROM secagg_messages WHERE task_id=? AND round=? AND phase=?", task_id, num, phase)}

    def secagg_message_count(self, task_id: str, num: int, phase: str) -> int:
        return self.one("SELECT COUNT(*) AS n FROM secagg_messages WHERE task_id=? AND round=? AND phase=?",
                        task_id, num, phase)["n"]

    def secagg_inbox(self, task_id: str, num: int, receiver: int) -> list[tuple[int, bytes]]:
        """(sender, ciphertext) of the sealed shares addressed to ``receiver``, by sender."""
        return [(r["sender"], bytes(r["ciphertext"])) for r in self.all(
            "SELECT sender, ciphertext FROM secagg_shares WHERE task_id=? AND round=? AND receiver=? ORDER BY sender",
            task_id, num, receiver)]

    def delete_secagg_shares(self, task_id: str, num: int, keep_senders: list[int] | None = None) -> None:
        """All the round's sealed shares, or those whose sender is not in ``keep_senders``."""
        if keep_senders is None:
            self.execute("DELETE FROM secagg_shares WHERE task_id=? AND round=?", task_id, num)
        else:
            self.execute(f"DELETE FROM secagg_shares WHERE task_id=? AND round=? AND sender NOT IN "
                         f"({','.join('?' * len(keep_senders))})", task_id, num, *keep_senders)
