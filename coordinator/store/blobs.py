"""Where the coordinator's bytes live, apart from its state: the `BlobStore` interface and its
local-directory implementation (the default), an in-memory one, and S3-compatible object
storage (`coordinator.store.s3_blobs`), each behind the same methods.

Two kinds of objects:

- **Blobs**, named by the SHA-256 of their bytes: models, checkpoints, quantized checkpoints,
  deltas, SCAFFOLD's control variates. Devices download them by digest.
- **Objects**, named by a key the coordinator chooses: received updates
  (``updates/TASK/ROUND/DEVICE.bin``) and the server optimizer's state
  (``server_opt/TASK/ROUND.npz``). The state store keeps the key of each update's bytes.

The contract every implementation keeps:

- ``put`` and ``put_object`` return only once the bytes are durable and whole: a reader
  never sees a partial object, and a crash after the return loses nothing. A state row that
  names an object is written after its ``put_object`` returned.
- ``put`` is idempotent (the same digest is the same bytes); ``put_object`` replaces;
  ``create_object`` writes only when nothing is there yet (two replicas creating the same
  key at once end up with one object, the first).
- Reading an absent blob or object returns None; deleting one is not an error.
- Keys are the implementation's to map: callers never build paths out of them.
- ``download_url`` names where a device downloads a blob from when it is not the
  coordinator (a presigned URL of an object store, valid until the given time at most);
  None means the coordinator serves it (``GET /v1/blobs/SHA``).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

_HEX = frozenset("0123456789abcdef")


def is_digest(sha: str) -> bool:
    return isinstance(sha, str) and len(sha) == 64 and set(sha) <= _HEX


def update_key(task_id: str, round_num: int, device_id: str, assigned_round: int | None = None) -> str:
    """The key of an update's bytes; an asynchronous one is also named by its assignment, so no
    upload can overwrite another's acknowledged bytes."""
    name = device_id if assigned_round is None else f"{device_id}.{assigned_round}"
    return f"updates/{task_id}/{round_num:06d}/{name}.bin"


def round_updates_prefix(task_id: str, round_num: int) -> str:
    return f"updates/{task_id}/{round_num:06d}/"


def optimizer_state_key(task_id: str, round_num: int) -> str:
    return f"server_opt/{task_id}/{round_num:06d}.npz"


class BlobStore(ABC):
    """Content-addressed blobs and keyed objects (see the module's contract)."""

    location = ""  # where the bytes are, as the status page names it
    remote = False  # True where a request waits on the network (the caller then uses a thread)

    @abstractmethod
    def put(self, sha: str, data: bytes) -> None:
        """Store ``data`` under its digest ``sha`` (idempotent; durable when it returns)."""

    @abstractmethod
    def read(self, sha: str) -> bytes | None:
        """The blob's bytes, or None when there is none (or ``sha`` is not a digest)."""

    @abstractmethod
    def exists(self, sha: str) -> bool: ...

    @abstractmethod
    def delete(self, sha: str) -> None: ...

    def local_path(self, sha: str) -> Path | None:
        """A file holding the blob, for serving it without copying it through Python; None
        where blobs are not local files (the caller reads it instead)."""
        return None

    def download_url(self, sha: str, expires_at: float, now: float, compressed: bool = False) -> str | None:
        """Where devices download the blob from, valid until ``expires_at`` at most; None:
        from the coordinator. ``compressed``: a gzip-encoded copy (task models)."""
        return None

    def check(self) -> None:
        """At start: raises with a clear message when the store cannot be written and read."""

    @abstractmethod
    def create_object(self, key: str, data: bytes) -> bool:
        """Write ``data`` under ``key`` only if nothing is there; whether this call wrote it."""

    @abstractmethod
    def usage(self) -> dict[str, int]:
        """{"objects": count, "bytes": total size} of everything stored (the status page)."""

    @abstractmethod
    def put_object(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def read_object(self, key: str) -> bytes | None: ...

    @abstractmethod
    def delete_object(self, key: str) -> None: ...

    def delete_objects(self, keys: list[str]) -> None:
        """Several objects (a round's updates, when it ended); an object store deletes them
        in bulk requests."""
        for key in keys:
            self.delete_object(key)

    def read_objects(self, keys: list[str]) -> list[bytes | None]:
        """Several objects (a round's updates, when a round is rebuilt from the store): in
        order; a store across the network asks for them concurrently."""
        return [self.read_object(key) for key in keys]

    def remove_empty_folder(self, prefix: str) -> None:
        """What a prefix whose objects are all deleted leaves behind (a local folder); never
        anything with an object in it. Object stores have no folders: nothing to do."""


class LocalBlobStore(BlobStore):
    """Blobs as files under ``DATA_DIR/blobs``, objects under ``DATA_DIR/KEY``; each written to a
    temporary name and renamed into place, so a reader sees all of a file or none of it."""

    def __init__(self, data_dir: str | os.PathLike):
        self.root = Path(data_dir)
        self.location = str(self.root)
        self.blob_dir = self.root / "blobs"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "updates").mkdir(parents=True, exist_ok=True)

    def _file(self, sha: str) -> Path | None:
        return self.blob_dir / sha if is_digest(sha) else None

    def put(self, sha: str, data: bytes) -> None:
        path = self._file(sha)
        if path is None:
            raise ValueError(f"not a SHA-256 digest: {sha!r}")
        if not path.exists():
            _write_atomically(path, data)

    def read(self, sha: str) -> bytes | None:
        path = self._file(sha)
        try:
            return path.read_bytes() if path is not None else None
        except FileNotFoundError:
            return None

    def exists(self, sha: str) -> bool:
        path = self._file(sha)
        return path is not None and path.exists()

    def delete(self, sha: str) -> None:
        path = self._file(sha)
        if path is not None:
            path.unlink(missing_ok=True)

    def local_path(self, sha: str) -> Path | None:
        path = self._file(sha)
        return path if path is not None and path.exists() else None

    def _object(self, key: str) -> Path:
        # An absolute path is what rows written before objects had keys hold: still readable.
        path = Path(key) if os.path.isabs(key) else self.root / key
        if ".." in Path(key).parts:
            raise ValueError(f"bad object key {key!r}")
        return path

    def put_object(self, key: str, data: bytes) -> None:
        _write_atomically(self._object(key), data)

    def read_object(self, key: str) -> bytes | None:
        try:
            return self._object(key).read_bytes()
        except FileNotFoundError:
            return None

    def delete_object(self, key: str) -> None:
        self._object(key).unlink(missing_ok=True)

    def create_object(self, key: str, data: bytes) -> bool:
        path = self._object(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".new{os.getpid()}")
        # Private: what is created once is a key (the audit trail's signing key).
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)
        try:
            os.link(tmp, path)  # atomic, and refuses an existing name: whole and first
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def usage(self) -> dict[str, int]:
        count = size = 0
        for folder in (self.blob_dir, self.root / "updates", self.root / "server_opt"):
            for path in folder.rglob("*") if folder.exists() else ():
                try:
                    if path.is_file():
                        count, size = count + 1, size + path.stat().st_size
                except OSError:
                    pass  # deleted while counted
        return {"objects": count, "bytes": size}

    def remove_empty_folder(self, prefix: str) -> None:
        try:
            self._object(prefix.rstrip("/")).rmdir()
        except OSError:
            pass  # not empty (a late upload on its way) or already gone


class MemoryBlobStore(BlobStore):
    """Everything in a dict: for the in-memory state store (tests, `fedge simulate`), where
    nothing outlives the process. Writes are whole by construction."""

    location = "memory"

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._objects: dict[str, bytes] = {}

    def put(self, sha: str, data: bytes) -> None:
        if not is_digest(sha):
            raise ValueError(f"not a SHA-256 digest: {sha!r}")
        self._blobs.setdefault(sha, bytes(data))

    def read(self, sha: str) -> bytes | None:
        return self._blobs.get(sha) if is_digest(sha) else None

    def exists(self, sha: str) -> bool:
        return is_digest(sha) and sha in self._blobs

    def delete(self, sha: str) -> None:
        self._blobs.pop(sha, None)

    @staticmethod
    def _key(key: str) -> str:
        if ".." in Path(key).parts:
            raise ValueError(f"bad object key {key!r}")
        return key

    def put_object(self, key: str, data: bytes) -> None:
        self._objects[self._key(key)] = bytes(data)

    def read_object(self, key: str) -> bytes | None:
        return self._objects.get(self._key(key))

    def delete_object(self, key: str) -> None:
        self._objects.pop(self._key(key), None)

    def create_object(self, key: str, data: bytes) -> bool:
        if self._key(key) in self._objects:
            return False
        self._objects[key] = bytes(data)
        return True

    def usage(self) -> dict[str, int]:
        sizes = [len(v) for v in (*self._blobs.values(), *self._objects.values())]
        return {"objects": len(sizes), "bytes": sum(sizes)}


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    for attempt in range(3):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
            return
        except FileNotFoundError:
            # Another thread removed the (empty) folder in between: a round's update folder
            # goes when the round ends, while a late upload may still be on its way.
            if attempt == 2:
                raise
