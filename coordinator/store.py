"""Durable state in SQLite (WAL): populations, devices, tasks, rounds, assignments, updates,
and the SecAgg state of rounds (deadlines, roster, who shared, who survived; the messages).

Every method that changes state commits before it returns, so anything the service
acknowledges to a device or an admin survives a crash of the process. Blobs (models,
checkpoints, received updates) are files; the rows that point at them are written
only after the file is complete (write to a temp name, then rename).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS populations (name TEXT PRIMARY KEY, created_at REAL NOT NULL,
    enrollment_secret_hash TEXT NOT NULL DEFAULT '', require_attestation INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY, population TEXT NOT NULL, token_hash TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, last_seen REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS devices_by_population ON devices(population, last_seen);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, population TEXT NOT NULL, config TEXT NOT NULL, model_sha TEXT NOT NULL,
    manifest TEXT NOT NULL, state TEXT NOT NULL, checkpoint_sha TEXT NOT NULL,
    created_at REAL NOT NULL, reason TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS rounds (
    task_id TEXT NOT NULL, round INTEGER NOT NULL, state TEXT NOT NULL, opened_at REAL NOT NULL,
    selection_deadline REAL NOT NULL, report_deadline REAL NOT NULL, closed_at REAL,
    selected INTEGER NOT NULL DEFAULT 0, reported INTEGER NOT NULL DEFAULT 0,
    examples INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '', metrics TEXT NOT NULL DEFAULT '{}',
    checkpoint_sha TEXT NOT NULL DEFAULT '', PRIMARY KEY (task_id, round));
CREATE TABLE IF NOT EXISTS assignments (
    task_id TEXT NOT NULL, round INTEGER NOT NULL, device_id TEXT NOT NULL, token_hash TEXT NOT NULL,
    assigned_at REAL NOT NULL, PRIMARY KEY (task_id, round, device_id));
CREATE TABLE IF NOT EXISTS updates (
    task_id TEXT NOT NULL, round INTEGER NOT NULL, device_id TEXT NOT NULL, examples INTEGER NOT NULL,
    meta TEXT NOT NULL, blob TEXT NOT NULL, digest TEXT NOT NULL, received_at REAL NOT NULL,
    PRIMARY KEY (task_id, round, device_id));
CREATE TABLE IF NOT EXISTS secagg_rounds (
    task_id TEXT NOT NULL, round INTEGER NOT NULL, advertise_deadline REAL NOT NULL,
    share_deadline REAL NOT NULL, unmask_deadline REAL NOT NULL, roster TEXT NOT NULL DEFAULT '',
    params TEXT NOT NULL DEFAULT '', sharers TEXT NOT NULL DEFAULT '', survivors TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (task_id, round));
CREATE TABLE IF NOT EXISTS secagg_messages (
    task_id TEXT NOT NULL, round INTEGER NOT NULL, phase TEXT NOT NULL, device_id TEXT NOT NULL,
    body TEXT NOT NULL, digest TEXT NOT NULL, received_at REAL NOT NULL,
    PRIMARY KEY (task_id, round, phase, device_id));
CREATE TABLE IF NOT EXISTS secagg_shares (
    task_id TEXT NOT NULL, round INTEGER NOT NULL, receiver INTEGER NOT NULL, sender INTEGER NOT NULL,
    ciphertext BLOB NOT NULL, PRIMARY KEY (task_id, round, receiver, sender));
"""


class Store:
    def __init__(self, db_path: str | os.PathLike, synchronous: str = "NORMAL"):
        if "://" in str(db_path):
            # It would otherwise become a SQLite file under a directory named 'postgresql:'.
            raise ValueError(f"--db {db_path}: only a SQLite file path is supported (a database URL such as "
                             "postgresql://... is not)")
        self.db_path = Path(db_path)
        self.data_dir = self.db_path.with_name(self.db_path.name + ".data")
        self.blob_dir = self.data_dir / "blobs"
        self.update_dir = self.data_dir / "updates"
        for d in (self.blob_dir, self.update_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.db_path), isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL survives a killed process (the WAL is in the OS page cache); FULL also survives power loss.
        self.conn.execute(f"PRAGMA synchronous={synchronous}")
        self.conn.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Columns added after a database was first created (PRAGMA user_version counts them)."""
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        columns = {r[1] for r in self.conn.execute("PRAGMA table_info(populations)")}
        if version < 1:
            with self.transaction() as tx:
                if "enrollment_secret_hash" not in columns:
                    tx.execute("ALTER TABLE populations ADD COLUMN enrollment_secret_hash TEXT NOT NULL DEFAULT ''")
                    tx.execute("ALTER TABLE populations ADD COLUMN require_attestation INTEGER NOT NULL DEFAULT 0")
                tx.execute("PRAGMA user_version=1")

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self):
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def one(self, sql: str, *args):
        return self.conn.execute(sql, args).fetchone()

    def all(self, sql: str, *args):
        return self.conn.execute(sql, args).fetchall()

    def execute(self, sql: str, *args):
        return self.conn.execute(sql, args)

    # -- blobs -------------------------------------------------------------------------
    def write_file(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def put_blob(self, sha: str, data: bytes) -> Path:
        path = self.blob_dir / sha
        if not path.exists():
            self.write_file(path, data)
        return path

    def blob_path(self, sha: str) -> Path | None:
        if len(sha) != 64 or not all(c in "0123456789abcdef" for c in sha):
            return None
        path = self.blob_dir / sha
        return path if path.exists() else None

    def update_path(self, task_id: str, round_num: int, device_id: str) -> Path:
        return self.update_dir / task_id / f"{round_num:06d}" / f"{device_id}.bin"


def dumps(value) -> str:
    return json.dumps(value, sort_keys=True)


def now() -> float:
    return time.time()
