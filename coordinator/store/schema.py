"""The state store's schema, written once, as numbered migrations in the dialect SQLite and
PostgreSQL share; each backend applies those it has not applied yet, in order, and records
the number (SQLite: ``PRAGMA user_version``; PostgreSQL: ``schema_migrations``, under an
advisory lock so that replicas starting together do not race). A change to the schema is a
new migration at the end of the list, never an edit of one that shipped.

Where the two dialects name a type differently the script says ``{REAL}``, ``{BIGINT}`` or
``{BYTES}``, and `render` fills in the backend's name.
"""

from __future__ import annotations

TYPES = {
    "sqlite": {"REAL": "REAL", "BIGINT": "INTEGER", "BYTES": "BLOB"},
    "postgresql": {"REAL": "DOUBLE PRECISION", "BIGINT": "BIGINT", "BYTES": "BYTEA"},
}

MIGRATIONS: list[tuple[int, str]] = [
    (1, """
CREATE TABLE populations (name TEXT PRIMARY KEY, created_at {REAL} NOT NULL,
    enrollment_secret_hash TEXT NOT NULL DEFAULT '', require_attestation INTEGER NOT NULL DEFAULT 0);
CREATE TABLE devices (
    device_id TEXT PRIMARY KEY, population TEXT NOT NULL, token_hash TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '', created_at {REAL} NOT NULL,
    last_seen {REAL} NOT NULL DEFAULT 0);
CREATE INDEX devices_by_population ON devices(population, last_seen);
CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY, population TEXT NOT NULL, config TEXT NOT NULL, model_sha TEXT NOT NULL,
    manifest TEXT NOT NULL, state TEXT NOT NULL, checkpoint_sha TEXT NOT NULL,
    created_at {REAL} NOT NULL, reason TEXT NOT NULL DEFAULT '');
CREATE TABLE rounds (
    task_id TEXT NOT NULL, round INTEGER NOT NULL, state TEXT NOT NULL, opened_at {REAL} NOT NULL,
    selection_deadline {REAL} NOT NULL, report_deadline {REAL} NOT NULL,
    closed_at {REAL}, selected INTEGER NOT NULL DEFAULT 0, reported INTEGER NOT NULL DEFAULT 0,
    examples {BIGINT} NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '', metrics TEXT NOT NULL DEFAULT '{}',
    checkpoint_sha TEXT NOT NULL DEFAULT '', PRIMARY KEY (task_id, round));
CREATE TABLE assignments (
    task_id TEXT NOT NULL, round INTEGER NOT NULL, device_id TEXT NOT NULL, token_hash TEXT NOT NULL,
    assigned_at {REAL} NOT NULL, PRIMARY KEY (task_id, round, device_id));
CREATE TABLE updates (
    task_id TEXT NOT NULL, round INTEGER NOT NULL, device_id TEXT NOT NULL, examples {BIGINT} NOT NULL,
    meta TEXT NOT NULL, blob TEXT NOT NULL, digest TEXT NOT NULL, received_at {REAL} NOT NULL,
    PRIMARY KEY (task_id, round, device_id));
CREATE TABLE secagg_rounds (
    task_id TEXT NOT NULL, round INTEGER NOT NULL, advertise_deadline {REAL} NOT NULL,
    share_deadline {REAL} NOT NULL, unmask_deadline {REAL} NOT NULL,
    roster TEXT NOT NULL DEFAULT '', params TEXT NOT NULL DEFAULT '', sharers TEXT NOT NULL DEFAULT '',
    survivors TEXT NOT NULL DEFAULT '', PRIMARY KEY (task_id, round));
CREATE TABLE secagg_messages (
    task_id TEXT NOT NULL, round INTEGER NOT NULL, phase TEXT NOT NULL, device_id TEXT NOT NULL,
    body TEXT NOT NULL, digest TEXT NOT NULL, received_at {REAL} NOT NULL,
    PRIMARY KEY (task_id, round, phase, device_id));
CREATE TABLE secagg_shares (
    task_id TEXT NOT NULL, round INTEGER NOT NULL, receiver INTEGER NOT NULL, sender INTEGER NOT NULL,
    ciphertext {BYTES} NOT NULL, PRIMARY KEY (task_id, round, receiver, sender));
"""),
    (2, """
CREATE TABLE task_leases (task_id TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at {REAL} NOT NULL);
"""),
    (3, """
CREATE TABLE audit_log (task_id TEXT NOT NULL, seq INTEGER NOT NULL, entry TEXT NOT NULL, hash TEXT NOT NULL,
    PRIMARY KEY (task_id, seq));
"""),
    (4, """
ALTER TABLE devices ADD COLUMN due {REAL} NOT NULL DEFAULT 0;
CREATE INDEX devices_due ON devices(population, due);
"""),
    (5, """
CREATE TABLE releases (
    release_id TEXT PRIMARY KEY, population TEXT NOT NULL, channel TEXT NOT NULL, sequence {BIGINT} NOT NULL,
    task_id TEXT NOT NULL, round INTEGER NOT NULL, model_sha TEXT NOT NULL, size {BIGINT} NOT NULL,
    percent {REAL} NOT NULL, state TEXT NOT NULL, note TEXT NOT NULL DEFAULT '', signature TEXT NOT NULL,
    rollback_of TEXT NOT NULL DEFAULT '', created_at {REAL} NOT NULL, updated_at {REAL} NOT NULL,
    UNIQUE (population, channel, sequence));
"""),
]


def render(dialect: str) -> list[tuple[int, str]]:
    """The migrations with ``dialect``'s type names."""
    out = []
    for version, script in MIGRATIONS:
        for placeholder, name in TYPES[dialect].items():
            script = script.replace("{" + placeholder + "}", name)
        out.append((version, script))
    return out


LATEST = MIGRATIONS[-1][0]
