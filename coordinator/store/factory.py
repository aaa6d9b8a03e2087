"""Which state store ``--db`` names: a path is SQLite, a ``postgresql://`` URL is PostgreSQL,
``:memory:`` the in-memory store.
(Its own module, so that the base class imports neither backend.)"""

from __future__ import annotations

from coordinator.store.base import Store
from coordinator.store.memory import MEMORY, MemoryStore
from coordinator.store.postgres import PostgresStore
from coordinator.store.sqlite import SqliteStore


def open_store(db: str, data_dir: str = "", synchronous: str = "NORMAL") -> Store:
    """``db``: a SQLite file path, ``postgresql://user@host:port/dbname``, or ``:memory:``. ``data_dir``:
    where blobs live (default DB.data next to a SQLite file; required with PostgreSQL, and
    the same shared directory for every replica)."""
    if db == MEMORY:  # nothing on disk, nothing kept: tests and simulations
        return MemoryStore()
    if db.startswith(("postgresql://", "postgres://")):
        if not data_dir:
            raise ValueError("--db postgresql://... needs --data-dir: the directory every coordinator replica "
                             "reads and writes blobs in (models, checkpoints, received updates)")
        return PostgresStore(db, data_dir)
    if "://" in db:
        raise ValueError(f"--db {db}: use a SQLite file path or a postgresql:// URL")
    return SqliteStore(db, synchronous=synchronous, data_dir=data_dir)
