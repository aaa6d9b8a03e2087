"""The store in SQLite (WAL): the default, one file on one machine (`coordinator.store.base`
has the interface and the SQL, `coordinator.store.schema` the tables)."""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

from coordinator.store.base import Store
from coordinator.store.schema import render

BACKSTOP_CHECKPOINT_PAGES = 20_000  # ~80 MB of WAL, should the checkpoint thread fall behind

# Marks a database whose user_version counts coordinator.store.schema's migrations ("fedg");
# one without it, but with tables, comes from before they were numbered (`_upgrade_unnumbered`).
APPLICATION_ID = 0x66656467
UNNUMBERED_IS = 4  # what an unnumbered database holds once upgraded in place: migrations 1 to 4


class SqliteStore(Store):
    def __init__(self, db_path: str | os.PathLike, synchronous: str = "NORMAL", data_dir: str | os.PathLike = ""):
        self.db_path = Path(db_path)
        self._init_data_dir(data_dir or self.db_path.with_name(self.db_path.name + ".data"))
        self.conn = sqlite3.connect(str(self.db_path), isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL survives a killed process (the WAL is in the OS page cache); FULL also survives power loss.
        self.conn.execute(f"PRAGMA synchronous={synchronous}")
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
        """Apply the schema's migrations this database has not had (user_version counts them)."""
        if self.conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            tables = self.conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
            with self.transaction() as tx:
                if tables:
                    self._upgrade_unnumbered(tx)
                tx.execute(f"PRAGMA user_version={UNNUMBERED_IS if tables else 0}")
                tx.execute(f"PRAGMA application_id={APPLICATION_ID}")
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in render("sqlite"):
            if number > version:
                self.conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version={number};\nCOMMIT;")

    @staticmethod
    def _upgrade_unnumbered(tx) -> None:
        """A database from before the migrations were numbered: it was created table by table
        (CREATE ... IF NOT EXISTS on every open) with columns added in place; bring it to what
        migrations 1 to UNNUMBERED_IS make."""
        statements = [st.strip() for number, script in render("sqlite") if number <= UNNUMBERED_IS
                      for st in script.split(";") if st.strip()]
        for st in statements:
            if st.startswith("CREATE TABLE "):
                tx.execute(st.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1))
        added = {"populations": [("enrollment_secret_hash", "TEXT NOT NULL DEFAULT ''"),
                                 ("require_attestation", "INTEGER NOT NULL DEFAULT 0")],
                 "devices": [("due", "REAL NOT NULL DEFAULT 0")]}
        for table, columns in added.items():
            have = {r[1] for r in tx.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns:
                if name not in have:
                    tx.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        for st in statements:  # the indexes, once their columns are there
            if st.startswith("CREATE INDEX "):
                tx.execute(st.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1))

    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

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
