"""Which state store ``--db`` names: a path is SQLite, a ``postgresql://`` URL is PostgreSQL,
``:memory:`` the in-memory store; and where its bytes live (``--blobs``): the data directory
by default, or an S3-compatible bucket (``s3://BUCKET/PREFIX``).
(Its own module, so that the base class imports neither backend.)"""

from __future__ import annotations

from coordinator.store.base import Store
from coordinator.store.blobs import BlobStore
from coordinator.store.memory import MEMORY, MemoryStore
from coordinator.store.postgres import PostgresStore
from coordinator.store.sqlite import SqliteStore


def open_blobs(blobs: str, public_endpoint: str = "") -> BlobStore | None:
    """``--blobs``: "" for the data directory (None here: the store makes its own), or
    ``s3://BUCKET/PREFIX`` (endpoint, region and credentials from the AWS environment variables),
    checked at once with a write, a read and a delete."""
    if not blobs:
        if public_endpoint:
            raise ValueError("--blobs-public-endpoint is for --blobs s3://...; local blobs are served by the coordinator")
        return None
    if not blobs.startswith("s3://"):
        raise ValueError(f"--blobs {blobs}: use s3://BUCKET/PREFIX (or leave it out for the data directory)")
    from coordinator.store.s3_blobs import S3BlobStore

    store = S3BlobStore(blobs, public_endpoint=public_endpoint)
    store.check()
    return store


def open_store(db: str, data_dir: str = "", synchronous: str = "NORMAL", blobs: BlobStore | None = None) -> Store:
    """``db``: a SQLite file path, ``postgresql://user@host:port/dbname``, or ``:memory:``. ``data_dir``:
    the coordinator's own files and, without ``blobs``, where blobs live (default DB.data next
    to a SQLite file; required with PostgreSQL: the same shared directory for every replica,
    or each replica's own folder when ``blobs`` is an object store they share)."""
    if db == MEMORY:  # nothing on disk, nothing kept: tests and simulations
        if blobs is not None:
            raise ValueError("--db :memory: keeps its bytes in memory too; --blobs is for a durable store")
        return MemoryStore()
    if db.startswith(("postgresql://", "postgres://")):
        if not data_dir:
            raise ValueError("--db postgresql://... needs --data-dir: the directory every coordinator replica "
                             "reads and writes blobs in (models, checkpoints, received updates), or with "
                             "--blobs s3://... this replica's own folder")
        store: Store = PostgresStore(db, data_dir)
    elif "://" in db:
        raise ValueError(f"--db {db}: use a SQLite file path or a postgresql:// URL")
    else:
        store = SqliteStore(db, synchronous=synchronous, data_dir=data_dir)
    if blobs is not None:
        store.blobs = blobs
    return store
