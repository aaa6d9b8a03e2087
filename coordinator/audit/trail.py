"""The coordinator's audit trail: what shaped each task's model and its guarantee, appended to
a per-task hash chain signed with the coordinator's Ed25519 key (format and verification:
`protocol.audit`). The key is an object of the blob store (`audit_key.pem`: a 0600 file in the
data directory, or an object in the bucket with `--blobs s3://...`), so every replica and every
restart signs with the same one; its public half is `GET /v1/audit/key`.

Recorded: task creation (config, model and initial checkpoint digests), admin actions (pause,
resume, cancel, evaluate; who asked), each committed round (checkpoint digest, reports,
examples, clip, noise, epsilon, staleness), each failed round (reason), the task's end.
"""

from __future__ import annotations

import logging
import math

from protocol import audit

log = logging.getLogger("fedge.coordinator")
KEY_FILE = "audit_key.pem"


def load_or_create_key(blobs):
    """The coordinator's signing key: created once (create-if-absent, so two replicas starting
    at the same moment end up with one key), then read by every process sharing the blob store."""
    if blobs.read_object(KEY_FILE) is None:
        blobs.create_object(KEY_FILE, audit.private_pem(audit.new_key()))
    return audit.load_private(blobs.read_object(KEY_FILE))


class AuditTrail:
    def __init__(self, store, clock, key):
        self.store, self.clock, self.key = store, clock, key

    @property
    def public_pem(self) -> bytes:
        return audit.public_pem(self.key)

    def record(self, task_id: str, kind: str, data: dict) -> None:
        """Append one entry. Recording never stops what it records: a failure is logged."""
        data = _finite(data)

        def make(seq: int, prev: str) -> dict:
            entry = {"seq": seq, "task_id": task_id, "time": round(float(self.clock()), 6), "kind": kind,
                     "data": data, "prev": prev}
            return audit.seal(entry, self.key)

        try:
            self.store.append_audit(task_id, make)
        except Exception:  # noqa: BLE001 - an audit write must not fail a round or an admin action
            log.exception("audit trail of task %s: could not record %s", task_id, kind)

    def entries(self, task_id: str) -> list[dict]:
        return self.store.audit_entries(task_id)

    def export(self, task_id: str) -> dict:
        """The trail with its signed head (task, length, last hash, now): what `fedge audit verify` checks."""
        entries = self.entries(task_id)
        return {"task_id": task_id, "entries": entries,
                "head": audit.sign_head(task_id, entries, round(float(self.clock()), 6), self.key)}


def _finite(value):
    """JSON an auditor can parse anywhere: a non-finite number is recorded as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
