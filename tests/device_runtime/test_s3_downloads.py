"""Blobs in a real S3-compatible store (SeaweedFS): devices download the model, the checkpoint
and SCAFFOLD's control variate by the presigned URLs their assignment names, and the
coordinator serves none of those bytes; a tampered, missing or expired object is refused and
counted, never trained on."""

import asyncio
import hashlib
import time

import aiohttp
import obstore
import pytest

from coordinator.http.app import COORDINATOR, METRICS, ServeConfig, create_app
from device_runtime.client import RequestRefused
from device_runtime.trainer import Trainer
from tests.device_runtime.conftest import TOKEN, create_task
from tests.device_runtime.test_device import _device, _wait_until


@pytest.fixture
async def s3_coordinator(aiohttp_server, tmp_path, s3_blobs_url):
    config = ServeConfig(db=str(tmp_path / "c.db"), blobs=s3_blobs_url, admin_token=TOKEN, tick_s=0.02,
                         min_retry_s=0.05, max_retry_s=0.5, ineligible_retry_s=0.2, checkin_rate=1000.0)
    return await aiohttp_server(create_app(config))


def _prefix(url: str) -> str:
    return url.split("/", 3)[3] + "/"


async def _one_round(server, model, devices=2, **config):
    url = str(server.make_url("")).rstrip("/")
    await create_task(url, model, rounds=1, goal_count=devices, **config)
    coordinator = server.app[COORDINATOR]
    trainer = Trainer(1)
    async with aiohttp.ClientSession() as session:
        devs = [_device(session, url, trainer) for _ in range(devices)]
        for d in devs:
            await d.client.register("pop")
        stop = asyncio.Event()
        runners = [asyncio.create_task(d.run(stop, after_round_s=0.05)) for d in devs]
        await _wait_until(lambda: coordinator.tasks["t"].state == "completed", timeout=30)
        stop.set()
        await asyncio.gather(*runners)
    trainer.close()
    return devs


async def test_devices_download_from_the_object_store_and_the_coordinator_serves_no_blob_bytes(
        s3_coordinator, s3_server, s3_blobs_url, digits_tflite, tmp_path):
    served = []
    s3_coordinator.app[METRICS].bytes_out = lambda n: served.append(n)  # every body the coordinator sends
    devs = await _one_round(s3_coordinator, digits_tflite, scaffold=True)
    coordinator = s3_coordinator.app[COORDINATOR]
    assert coordinator.store.rounds("t")[0].state == "committed"
    assert all(d.stats.checkpoints >= 1 and d.stats.model_downloads >= 1 for d in devs)
    assert sum(served) == 0  # no model, checkpoint or control variate went through the coordinator
    objects = s3_server.objects("fedge-tests", _prefix(s3_blobs_url))
    names = {key.rsplit("/", 1)[-1] for key in objects}
    task = coordinator.tasks["t"]
    for sha in (task.model_sha, task.checkpoint_sha, task.control_sha):
        assert sha in names
    assert any(k.endswith(".gz") for k in objects)  # the model travels gzip-encoded from the store too
    assert any("/audit_key.pem" in k for k in objects)  # the signing key is shared through the store
    assert not any((tmp_path / "c.db.data" / "blobs").iterdir())  # nothing on local disk


async def test_an_assignment_names_presigned_urls_that_expire_by_the_deadline(s3_coordinator, s3_server,
                                                                             digits_tflite):
    url = str(s3_coordinator.make_url("")).rstrip("/")
    await create_task(url, digits_tflite, rounds=1, goal_count=1, report_deadline_s=120)
    async with aiohttp.ClientSession() as session:
        dev = _device(session, url, None)
        await dev.client.register("pop")
        resp = await dev.client.checkin(dev.state_fn(), [], 0.0)
    a = resp.assignment
    assert a is not None
    for link in (a.model_url, a.checkpoint_url):
        assert link.startswith(s3_server.endpoint + "/fedge-tests/") and "X-Amz-Signature=" in link
        life = int(link.split("X-Amz-Expires=")[1].split("&")[0])
        assert 0 < life <= a.report_deadline - time.time() + 1


async def test_a_tampered_object_is_refused_and_never_trained_on(s3_coordinator, s3_server, s3_blobs_url,
                                                                 digits_tflite):
    url = str(s3_coordinator.make_url("")).rstrip("/")
    await create_task(url, digits_tflite, rounds=1, goal_count=1)
    coordinator = s3_coordinator.app[COORDINATOR]
    bucket = s3_server.bucket("fedge-tests")
    key = f"{_prefix(s3_blobs_url)}blobs/{coordinator.tasks['t'].checkpoint_sha}"
    genuine = bytes(obstore.get(bucket, key).bytes())
    middle = len(genuine) // 2
    tampered = genuine[:middle] + bytes(b ^ 0xFF for b in genuine[middle:middle + 8]) + genuine[middle + 8:]
    obstore.put(bucket, key, tampered)  # same size, other weights
    trainer = Trainer(1)
    async with aiohttp.ClientSession() as session:
        dev = _device(session, url, trainer)
        await dev.client.register("pop")
        outcome = await dev.run_once()
    trainer.close()
    assert outcome.outcome == "download_failed" and "does not match" in outcome.detail
    assert dev.stats.refused_blobs == 1 and dev.stats.uploads == 0
    assert dev.cache.get(coordinator.tasks["t"].checkpoint_sha) is None  # not kept either
    assert coordinator.store.rounds("t")[0].reported == 0


async def test_a_missing_object_is_a_refused_download(s3_coordinator, s3_server, s3_blobs_url, digits_tflite):
    url = str(s3_coordinator.make_url("")).rstrip("/")
    await create_task(url, digits_tflite, rounds=1, goal_count=1)
    coordinator = s3_coordinator.app[COORDINATOR]
    obstore.delete(s3_server.bucket("fedge-tests"),
                   f"{_prefix(s3_blobs_url)}blobs/{coordinator.tasks['t'].checkpoint_sha}")
    async with aiohttp.ClientSession() as session:
        dev = _device(session, url, None)
        await dev.client.register("pop")
        outcome = await dev.run_once()
    assert outcome.outcome == "download_failed" and "404" in outcome.detail
    assert dev.stats.refused_blobs == 0 and dev.stats.download_failures == 1


async def test_an_expired_or_forged_url_is_refused_by_the_store(s3_blobs_url, monkeypatch):
    from coordinator.store import s3_blobs
    from device_runtime.blob_cache import MemoryBlobCache
    from device_runtime.client import CoordinatorClient

    store = s3_blobs.S3BlobStore(s3_blobs_url)
    data = b"checkpoint" * 100
    sha = hashlib.sha256(data).hexdigest()
    store.put(sha, data)
    monkeypatch.setattr(s3_blobs, "MIN_URL_LIFE_S", 1.0)
    monkeypatch.setattr(s3_blobs, "URL_BUCKET_S", 1.0)
    now = time.time()
    link = store.download_url(sha, now + 1.0, now)
    async with aiohttp.ClientSession() as session:
        client = CoordinatorClient("http://127.0.0.1:9", session, attempts=2, max_backoff_s=0.1)
        assert await client.fetch_blob(link, sha, MemoryBlobCache()) == data  # no coordinator involved
        forged = link.replace("X-Amz-Signature=", "X-Amz-Signature=0")
        with pytest.raises(RequestRefused, match="403"):
            await client.fetch_blob(forged, sha, MemoryBlobCache())
        await asyncio.sleep(2.5)
        with pytest.raises(RequestRefused, match="expired"):
            await client.fetch_blob(link, sha, MemoryBlobCache())


async def test_a_device_of_another_population_cannot_read_a_guarded_blob_through_the_coordinator(
        s3_coordinator, digits_tflite):
    from device_runtime.admin import AdminClient

    url = str(s3_coordinator.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        admin = AdminClient(url, TOKEN, session)
        await admin._call("POST", "/v1/admin/populations", json={"name": "guarded", "enrollment_secret": "s3cret"})
        await admin.ensure_population("pop")
        sha = await admin.upload_model(digits_tflite)
        await admin.create_task("guarded", sha, {"rounds": 1, "goal_count": 1}, "g")
        outsider = _device(session, url, None)
        await outsider.client.register("pop")
        with pytest.raises(RequestRefused, match="other_population"):
            await outsider.client._exchange("GET", f"/v1/blobs/{sha}", headers=outsider.client._headers())
        member = _device(session, url, None)
        await member.client.register("guarded", enrollment_secret="s3cret")
        _, _, body, _ = await member.client._exchange("GET", f"/v1/blobs/{sha}", headers=member.client._headers())
        assert body == digits_tflite  # read from the bucket by the coordinator for its own route
