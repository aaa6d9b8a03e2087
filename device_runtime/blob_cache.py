"""Content-addressed caches for models and checkpoints (keyed by sha256)."""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path


class BlobMismatch(ValueError):
    """Downloaded bytes that do not hash to the digest the assignment named: a tampered, wrong
    or damaged object. Refused (never cached, never trained on) and counted."""


def _verify(sha: str, data: bytes) -> None:
    if hashlib.sha256(data).hexdigest() != sha:
        raise BlobMismatch(f"downloaded blob does not match its sha256 {sha[:12]}... (refused, not used)")


class MemoryBlobCache:
    """LRU in memory; the fleet shares one across its devices."""

    def __init__(self, max_items: int = 64):
        self.items: OrderedDict[str, bytes] = OrderedDict()
        self.max_items = max_items
        self.pending: dict = {}  # sha -> the download in flight (see CoordinatorClient.fetch_blob)
        self.wire: dict[str, int] = {}  # sha -> bytes its download took on the wire, when compressed (models)

    def wire_size(self, sha: str, size: int) -> int:
        """What downloading the blob cost: its compressed size when it came compressed, else ``size``."""
        return self.wire.get(sha, size)

    def get(self, sha: str) -> bytes | None:
        if sha in self.items:
            self.items.move_to_end(sha)
            return self.items[sha]
        return None

    def put(self, sha: str, data: bytes) -> None:
        _verify(sha, data)
        self.items[sha] = data
        while len(self.items) > self.max_items:
            self.wire.pop(self.items.popitem(last=False)[0], None)

    def keys(self) -> list[str]:
        return list(self.items)


class DiskBlobCache(MemoryBlobCache):
    """On a real device: blobs persist across restarts in a folder."""

    def __init__(self, folder: str | os.PathLike, max_items: int = 8):
        super().__init__(max_items)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def get(self, sha: str) -> bytes | None:
        path = self.folder / sha
        if len(sha) == 64 and path.exists():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() == sha:
                return data
            path.unlink(missing_ok=True)  # damaged on disk: download again
        return None

    def put(self, sha: str, data: bytes) -> None:
        _verify(sha, data)
        tmp = self.folder / (sha + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.folder / sha)
        files = sorted(self.folder.iterdir(), key=lambda p: p.stat().st_mtime)
        for old in files[: max(0, len(files) - self.max_items)]:
            old.unlink(missing_ok=True)

    def keys(self) -> list[str]:
        return [p.name for p in self.folder.iterdir() if len(p.name) == 64]
