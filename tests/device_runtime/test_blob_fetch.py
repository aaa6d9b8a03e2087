"""Content-addressed blobs: fetched once, never revalidated, verified, shared by a fleet."""

import asyncio
import hashlib

import pytest
from aiohttp import web

from device_runtime.blob_cache import DiskBlobCache, MemoryBlobCache
from device_runtime.client import CoordinatorClient

BLOB = b"model bytes " * 1000
SHA = hashlib.sha256(BLOB).hexdigest()


@pytest.fixture
async def blob_server(aiohttp_client):
    hits = []

    async def blob(request):
        hits.append(request.match_info["sha"])
        await asyncio.sleep(0.05)  # long enough for concurrent devices to overlap
        body = BLOB if request.match_info["sha"] == SHA else b"something else"
        return web.Response(body=body, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/v1/blobs/{sha}", blob)
    client = await aiohttp_client(app)
    return client, hits


async def test_concurrent_devices_download_a_shared_blob_once_and_then_never(blob_server):
    client, hits = blob_server
    cache = MemoryBlobCache()
    devices = [CoordinatorClient(str(client.make_url("")), client.session, attempts=1) for _ in range(20)]
    got = await asyncio.gather(*(d.fetch_blob(f"/v1/blobs/{SHA}", SHA, cache) for d in devices))
    assert all(g == BLOB for g in got)
    assert hits == [SHA]
    assert await devices[0].fetch_blob(f"/v1/blobs/{SHA}", SHA, cache) == BLOB
    assert hits == [SHA]  # no revalidation of an immutable blob
    assert cache.pending == {}


async def test_a_blob_with_the_wrong_hash_is_refused_and_not_cached(blob_server, tmp_path):
    client, hits = blob_server
    cache = DiskBlobCache(tmp_path)
    device = CoordinatorClient(str(client.make_url("")), client.session, attempts=1)
    wrong = "0" * 64
    with pytest.raises(ValueError, match="does not match"):
        await device.fetch_blob(f"/v1/blobs/{wrong}", wrong, cache)
    assert cache.keys() == [] and cache.pending == {}


async def test_a_damaged_disk_copy_is_downloaded_again(blob_server, tmp_path):
    client, hits = blob_server
    cache = DiskBlobCache(tmp_path)
    device = CoordinatorClient(str(client.make_url("")), client.session, attempts=1)
    await device.fetch_blob(f"/v1/blobs/{SHA}", SHA, cache)
    (tmp_path / SHA).write_bytes(b"bit rot")
    assert await device.fetch_blob(f"/v1/blobs/{SHA}", SHA, cache) == BLOB
    assert hits == [SHA, SHA]


async def test_a_gzip_encoded_blob_is_inflated_verified_and_counted_at_its_wire_size(aiohttp_client):
    import gzip

    packed = gzip.compress(BLOB)

    async def blob(request):
        assert "gzip" in request.headers.get("Accept-Encoding", "")
        return web.Response(body=packed, content_type="application/octet-stream",
                            headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/v1/blobs/{sha}", blob)
    client = await aiohttp_client(app)
    cache = MemoryBlobCache()
    device = CoordinatorClient(str(client.make_url("")), client.session, attempts=1)
    assert await device.fetch_blob(f"/v1/blobs/{SHA}", SHA, cache) == BLOB
    assert len(packed) < len(BLOB) / 10
    assert device.bytes_down == len(packed) and cache.wire_size(SHA, len(BLOB)) == len(packed)
    assert MemoryBlobCache().wire_size(SHA, len(BLOB)) == len(BLOB)  # not downloaded compressed: its size
