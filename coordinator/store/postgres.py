"""The store in PostgreSQL, shared by any number of `fedge serve` replicas
(`coordinator.store.base` has the interface and the SQL, in the dialect both backends share).

psycopg 3, synchronously: the store interface is synchronous (the SQLite store answers in
microseconds on the event loop), and a local PostgreSQL answers a primary-key query in
~0.1-0.3 ms, so the round driver and the handlers keep one code path for both backends;
asyncpg is async-only and would have made every store call, and so every caller, a
coroutine. One connection per process, in autocommit mode; `transaction()` groups the
statements that must land together.

The schema is `coordinator.store.schema`'s numbered migrations, applied in order under an
advisory lock so that replicas starting together do not race, and recorded in
`schema_migrations`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import psycopg

from coordinator.store.base import Store
from coordinator.store.schema import render

# Advisory lock key held while migrating (any constant shared by every replica).
MIGRATION_LOCK = 0x66656467  # "fedg"

class Row(tuple):
    """A row read by position (like a tuple) or by column name (like sqlite3.Row)."""

    def __new__(cls, names: tuple[str, ...], values):
        row = super().__new__(cls, values)
        row._index = {name: i for i, name in enumerate(names)}
        return row

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _rows(cursor):
    names = tuple(d.name for d in cursor.description or ())
    return lambda values: Row(names, values)


def _sql(statement: str) -> str:
    """The shared dialect's ``?`` placeholders as psycopg's ``%s`` (no statement has a literal
    '?' or '%')."""
    return statement.replace("?", "%s")


class _Transaction:
    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def execute(self, statement: str, params=()):
        return self.conn.execute(_sql(statement), params)

    def executemany(self, statement: str, rows) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(_sql(statement), list(rows))


class PostgresStore(Store):
    shared = True  # replicas: rounds are driven under per-task leases (Store.acquire_lease)

    def __init__(self, url: str, data_dir: str | os.PathLike):
        self.url = url
        self._init_data_dir(data_dir)
        self.conn = psycopg.connect(url, autocommit=True, row_factory=_rows)
        self.migrate()

    def migrate(self) -> None:
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            self.conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                              "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            done = {r[0] for r in self.conn.execute("SELECT version FROM schema_migrations")}
            for version, script in render("postgresql"):
                if version not in done:
                    self.conn.execute(script)
                    self.conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))

    def second_connection(self) -> "PostgresStore":
        other = PostgresStore(self.url, self.data_dir)
        other.blobs = self.blobs  # the same bytes, wherever they live (a folder or a bucket)
        return other

    def schema_version(self) -> int:
        return self.conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self):
        with self.conn.transaction():
            yield _Transaction(self.conn)

    def one(self, sql: str, *args):
        return self.conn.execute(_sql(sql), args).fetchone()

    def all(self, sql: str, *args):
        return self.conn.execute(_sql(sql), args).fetchall()

    def execute(self, sql: str, *args):
        return self.conn.execute(_sql(sql), args)
