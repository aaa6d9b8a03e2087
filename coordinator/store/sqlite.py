"""The store in SQLite (WAL): the default, one file on one machine (`coordinator.store.base`
has the interface and the SQL)."""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

from coordinator.store.base import Store

BACKSTOP_CHECKPOINT_PAGES = 20_000  # ~80 MB of WAL, should the checkpoint thread fall behind

SCHEMA = """
CREATE TABLE IF NOT EXISTS populations (name TEXT PRIMARY KEY, created_at REAL NOT NULL,
    enrollment_secret_hash TEXT NOT NULL DEFAULT '', require_attestation INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY, population TEXT NOT NULL, token_hash TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, last_seen REAL NOT NULL DEFAULT 0,
    due REAL NOT NULL DEFAULT 0);
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
CREATE TABLE IF NOT EXISTS task_leases (task_id TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit_log (task_id TEXT NOT NULL, seq INTEGER NOT NULL, entry TEXT NOT NULL,
    hash TEXT NOT NULL, PRIMARY KEY (task_id, seq));
CREATE TABLE IF NOT EXISTS secagg_shares (
    task_id TEXT NOT NULL, round INTEGER NOT NULL, receiver INTEGER NOT NULL, sender INTEGER NOT NULL,
    ciphertext BLOB NOT NULL, PRIMARY KEY (task_id, round, receiver, sender));
"""


class SqliteStore(Store):
    def __init__(self, db_path: str | os.PathLike, synchronous: str = "NORMAL", data_dir: str | os.PathLike = ""):
        self.db_path = Path(db_path)
        self._init_data_dir(data_dir or self.db_path.with_name(self.db_path.name + ".data"))
        self.conn = sqlite3.connect(str(self.db_path), isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL survives a killed process (the WAL is in the OS page cache); FULL also survives power loss.
        self.conn.execute(f"PRAGMA synchronous={synchronous}")
        self.conn.executescript(SCHEMA)
        self._migrate()
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()

    def checkpoint_in_background(self, interval_s: float = 1.0) -> None:
        """Copy the WAL into the database from a thread of its own, every ``interval_s``.

        SQLite otherwise checkpoints inside whichever commit crosses 1,000 WAL pages, syncing
        the database file while the event loop waits (tens of ms at a time at 10,000 devices).
        The loop's connection keeps a far larger threshold as a backstop."""
        self.conn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_CHECKPOINT_PAGES}")

        def run() -> None:
            conn = sqlite3.connect(str(self.db_path), isolation_level=None)
            try:
                while not self._stop_checkpoints.wait(interval_s):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                conn.close()

        self._checkpointer = threading.Thread(target=run, name="fedge-wal-checkpoint", daemon=True)
        self._checkpointer.start()

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
        if version < 2:
            with self.transaction() as tx:
                if "due" not in {r[1] for r in self.conn.execute("PRAGMA table_info(devices)")}:
                    tx.execute("ALTER TABLE devices ADD COLUMN due REAL NOT NULL DEFAULT 0")
                tx.execute("CREATE INDEX IF NOT EXISTS devices_due ON devices(population, due)")
                tx.execute("PRAGMA user_version=2")

    def close(self) -> None:
        if self._checkpointer is not None:
            self._stop_checkpoints.set()
            self._checkpointer.join()
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
