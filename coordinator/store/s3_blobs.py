"""Blobs and objects in S3-compatible object storage (`fedge serve --blobs s3://BUCKET/PREFIX`):
AWS S3, or a self-hosted S3-compatible service (SeaweedFS in the tests). Replicas then share
nothing but the database and the bucket, and devices download models and checkpoints by
short-lived presigned URLs, so those bytes never pass through the coordinator.

The client is obstore (Rust's object_store): measured against boto3 on the same work
(bench/s3_clients.py, docs/coordinator.md) it spends 6x less CPU per small object, gets a
4 MiB object 1.3x faster, signs a URL in 11 us instead of 160 us, and releases the GIL while
it waits, which is what a coordinator whose loop also answers check-ins needs.

Where things go: blobs at ``PREFIX/blobs/SHA``, a task model's gzip-encoded copy at
``PREFIX/blobs/SHA.gz`` (stored with ``Content-Encoding: gzip``, so a device's HTTP client
inflates it as it does the coordinator's; the digest is the inflated file's), objects at
``PREFIX/KEY``. Endpoint, region and credentials come from the standard AWS environment
variables (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``) unless given.
"""

from __future__ import annotations

import datetime
import gzip
import os
import threading
import time
from collections import OrderedDict
from urllib.parse import urlparse

from coordinator.store.blobs import BlobStore, is_digest

# A URL is signed once per blob and expiry bucket: devices assigned within the same bucket of
# the same round get the same URL (they would get the same capability anyway).
URL_BUCKET_S = 15.0
MIN_URL_LIFE_S = 30.0  # a URL that expires before a device could use it helps no one
MAX_URL_LIFE_S = 7 * 24 * 3600.0  # SigV4's own limit
_SIGNED_REMEMBERED = 4096
# A blob seen present is taken as present for this long without asking again: an assignment
# names two or three blobs, and a HEAD each per check-in would put round trips on the loop.
# Another replica's retention may delete one meanwhile: a device's download of it then fails,
# as it would have a moment later anyway (coordinator.gateway.downloads).
PRESENT_TTL_S = 10.0
READ_CONCURRENCY = 32  # a round rebuilt from the bucket reads its updates this many at once


def parse_blobs_url(url: str) -> tuple[str, str]:
    """``s3://BUCKET/PREFIX`` -> (bucket, prefix without slashes at either end)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"--blobs {url!r}: expected s3://BUCKET or s3://BUCKET/PREFIX")
    if parsed.query or parsed.fragment:
        raise ValueError(f"--blobs {url!r}: no query or fragment, only s3://BUCKET/PREFIX")
    return parsed.netloc, parsed.path.strip("/")


def _store(bucket: str, prefix: str, endpoint: str, region: str, credentials: dict):
    from obstore.store import S3Store

    options = {"allow_http": True} if endpoint.startswith("http://") else None
    kwargs = {k: v for k, v in {"endpoint": endpoint, "region": region, **credentials}.items() if v}
    return S3Store(bucket, prefix=prefix or None, client_options=options, **kwargs)


class S3BlobStore(BlobStore):
    """The BlobStore contract on an S3 bucket. Every put returns after the service answered
    200, i.e. once the object is durable (S3's contract); an object is never seen half-written."""

    remote = True

    def __init__(self, url: str, *, endpoint: str = "", region: str = "", public_endpoint: str = "",
                 access_key_id: str = "", secret_access_key: str = "", session_token: str = ""):
        self.url = self.location = url
        self.bucket, self.prefix = parse_blobs_url(url)
        env = os.environ
        self.endpoint = endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL", "")
        region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        credentials = {"access_key_id": access_key_id, "secret_access_key": secret_access_key,
                       "session_token": session_token}
        self.store = _store(self.bucket, self.prefix, self.endpoint, region, credentials)
        # Devices may reach the store by another address than the coordinator (a public name
        # in front of a private endpoint): URLs are signed for that one. Signing is local.
        self.public_endpoint = public_endpoint or self.endpoint
        self.signer = (self.store if self.public_endpoint == self.endpoint
                       else _store(self.bucket, self.prefix, self.public_endpoint, region, credentials))
        self._signed: OrderedDict[tuple[str, float], str] = OrderedDict()
        self._present: dict[str, float] = {}  # blob sha -> when it was last seen present
        self._compressed: set[str] = set()  # keys of gzip-encoded copies known to exist
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3BlobStore({self.url!r}, endpoint={self.endpoint or 'AWS'!r})"

    def check(self) -> None:
        """At start: the bucket answers a write, a read and a delete with these credentials,
        or a clear error says which."""
        import obstore

        probe = ".fedge-probe"
        try:
            obstore.put(self.store, probe, b"ok")
            obstore.get(self.store, probe).bytes()
            obstore.delete(self.store, probe)
        except Exception as exc:
            raise RuntimeError(f"the object store at {self.url} (endpoint {self.endpoint or 'AWS'}) refused a "
                               f"write/read/delete: {exc}".splitlines()[0]) from exc

    # -- blobs ------------------------------------------------------------------------------
    @staticmethod
    def _blob(sha: str) -> str:
        if not is_digest(sha):
            raise ValueError(f"not a SHA-256 digest: {sha!r}")
        return f"blobs/{sha}"

    def put(self, sha: str, data: bytes) -> None:
        if not self.exists(sha):  # content-addressed: present means these bytes
            self._put(self._blob(sha), data)
            self._seen(sha)

    def read(self, sha: str) -> bytes | None:
        return self._get(self._blob(sha)) if is_digest(sha) else None

    def exists(self, sha: str) -> bool:
        if not is_digest(sha):
            return False
        seen = self._present.get(sha)
        if seen is not None and 0 <= time.monotonic() - seen < PRESENT_TTL_S:
            return True
        if self._head(self._blob(sha)):
            self._seen(sha)
            return True
        self._present.pop(sha, None)
        return False

    def _seen(self, sha: str) -> None:
        if len(self._present) >= _SIGNED_REMEMBERED:
            self._present.clear()
        self._present[sha] = time.monotonic()

    def delete(self, sha: str) -> None:
        if is_digest(sha):
            self._present.pop(sha, None)
            self._compressed.discard(self._blob(sha) + ".gz")
            self._delete(self._blob(sha))
            self._delete(self._blob(sha) + ".gz")

    def download_url(self, sha: str, expires_at: float, now: float, compressed: bool = False) -> str | None:
        """A presigned GET of the blob valid until ``expires_at`` at most (at least
        MIN_URL_LIFE_S); ``compressed``: its gzip-encoded copy, made on first use."""
        if not is_digest(sha):
            raise ValueError(f"not a SHA-256 digest: {sha!r}")
        key = self._blob(sha) + (".gz" if compressed else "")
        life = min(max(expires_at - now, MIN_URL_LIFE_S), MAX_URL_LIFE_S)
        until = now + life
        edge = until - until % URL_BUCKET_S  # devices assigned within one bucket share a URL
        if edge - now < MIN_URL_LIFE_S:  # not below the minimum (past the deadline only then)
            edge += URL_BUCKET_S
        slot = (key, edge)
        with self._lock:
            url = self._signed.get(slot)
        if url is not None:
            return url
        if compressed and key not in self._compressed and not self._head(key):
            data = self.read(sha)
            if data is None:
                return None
            self._put(key, gzip.compress(data, 6, mtime=0), attributes={"Content-Encoding": "gzip"})
        if compressed:
            if len(self._compressed) >= _SIGNED_REMEMBERED:
                self._compressed.clear()
            self._compressed.add(key)  # made or seen once: no HEAD at every new URL
        import obstore

        life_s = max(slot[1] - now, 1.0)
        url = obstore.sign(self.signer, "GET", key, datetime.timedelta(seconds=life_s))
        with self._lock:
            self._signed[slot] = url
            while len(self._signed) > _SIGNED_REMEMBERED:
                self._signed.popitem(last=False)
        return url

    # -- objects ----------------------------------------------------------------------------
    @staticmethod
    def _key(key: str) -> str:
        parts = key.split("/")
        if not key or key.startswith("/") or ".." in parts or "" in parts[:-1]:
            raise ValueError(f"bad object key {key!r}")
        return key

    def put_object(self, key: str, data: bytes) -> None:
        self._put(self._key(key), data)

    def read_object(self, key: str) -> bytes | None:
        return self._get(self._key(key))

    def delete_object(self, key: str) -> None:
        self._delete(self._key(key))

    def delete_objects(self, keys: list[str]) -> None:
        import obstore

        if keys:
            try:  # S3's DeleteObjects: up to 1,000 keys a request (a round's updates at once)
                obstore.delete(self.store, [self._key(key) for key in keys])
            except FileNotFoundError:
                pass

    def read_objects(self, keys: list[str]) -> list[bytes | None]:
        from concurrent.futures import ThreadPoolExecutor

        if len(keys) < 2:
            return [self.read_object(key) for key in keys]
        with ThreadPoolExecutor(min(READ_CONCURRENCY, len(keys))) as pool:
            return list(pool.map(self.read_object, keys))

    def create_object(self, key: str, data: bytes) -> bool:
        import obstore

        try:
            obstore.put(self.store, self._key(key), data, mode="create")
            return True
        except obstore.exceptions.AlreadyExistsError:
            return False

    def usage(self) -> dict[str, int]:
        import obstore

        count = size = 0
        for batch in obstore.list(self.store):
            for meta in batch:
                count += 1
                size += meta["size"]
        return {"objects": count, "bytes": size}

    # -- the client's calls -------------------------------------------------------------------
    def _put(self, key: str, data: bytes, attributes: dict | None = None) -> None:
        import obstore

        # One request (no multipart): the object appears whole or not at all, and a 201 to a
        # device follows the store's 200.
        obstore.put(self.store, key, data, use_multipart=False, attributes=attributes)

    def _get(self, key: str) -> bytes | None:
        import obstore

        try:
            return bytes(obstore.get(self.store, key).bytes())
        except FileNotFoundError:
            return None

    def _head(self, key: str) -> bool:
        import obstore

        try:
            obstore.head(self.store, key)
            return True
        except FileNotFoundError:
            return False

    def _delete(self, key: str) -> None:
        import obstore

        try:
            obstore.delete(self.store, key)
        except FileNotFoundError:
            pass
