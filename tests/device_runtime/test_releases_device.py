"""The Python device and model releases against a real coordinator: it installs what the
coordinator released (signature checked with the key pinned at registration, bytes checked
against the signed digest), predicts with it (`fedge predict`), follows a rollback, and
refuses a wrong key, a truncated download and a replayed older release, changing nothing."""

import asyncio
import hashlib

import aiohttp
import numpy as np

from coordinator.http.app import COORDINATOR
from device_runtime.admin import AdminClient
from device_runtime.releases import InstalledReleases
from device_runtime.trainer import Trainer
from fedge.cli import main
from tests.device_runtime.conftest import TOKEN, create_task, digits_shard
from tests.device_runtime.test_device import _device, _wait_until


async def _trained(server, model, session, rounds: int = 2):
    """Task t trained for ``rounds`` rounds by one device; the device."""
    url = str(server.make_url("")).rstrip("/")
    await create_task(url, model, rounds=rounds)
    trainer = Trainer(1)
    dev = _device(session, url, trainer)
    await dev.client.register("pop")
    stop = asyncio.Event()
    runner = asyncio.create_task(dev.run(stop, after_round_s=0.05))
    await _wait_until(lambda: server.app[COORDINATOR].tasks["t"].state == "completed", timeout=30)
    stop.set()
    await runner
    trainer.close()
    return url, dev


async def _release(url, session, **body) -> dict:
    return await AdminClient(url, TOKEN, session)._call("POST", "/v1/admin/tasks/t/releases", json=body)


async def test_a_device_installs_predicts_with_and_rolls_back_a_release(live_coordinator, digits_tflite, tmp_path,
                                                                       capsys):
    async with aiohttp.ClientSession() as session:
        url, dev = await _trained(live_coordinator, digits_tflite, session)
        dev.releases = InstalledReleases(tmp_path / "releases", dev.client.release_key, "pop")
        first = await _release(url, session, round=1)
        await dev.run_once()
        assert dev.releases.sequence == 1 and dev.releases.current.release_id == first["release_id"]
        path = dev.releases.current_model_path()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == first["model_sha256"]
        await dev.run_once()
        assert dev.releases.installed == 1  # nothing newer: nothing downloaded again

        x, _ = digits_shard(20, seed=5)
        np.savez(tmp_path / "x.npz", x=x)
        code = main(["predict", "--state-dir", str(tmp_path), "--input", str(tmp_path / "x.npz")])
        out = capsys.readouterr()
        assert code == 0 and f"release {first['release_id']} (sequence 1" in out.err
        lines = out.out.strip().splitlines()
        assert len(lines) == 20 and all(0 <= int(line.split(",")[1]) <= 9 for line in lines)

        second = await _release(url, session, round=2)
        await dev.run_once()
        assert dev.releases.current.release_id == second["release_id"]
        back = await AdminClient(url, TOKEN, session)._call("POST", f"/v1/admin/releases/{second['release_id']}/rollback")
        fetched = []
        real_fetch = dev.client.fetch_blob
        dev.client.fetch_blob = lambda link, sha, cache: fetched.append(sha) or real_fetch(link, sha, cache)
        await dev.run_once()
        current = dev.releases.current
        assert current.release_id == back["release_id"] and current.sequence == 3
        assert current.model_sha256 == first["model_sha256"]  # the first release's model again,
        assert dev.releases.installed == 3 and first["model_sha256"] not in fetched  # from the copy kept on disk
        assert sorted(p.name for p in (tmp_path / "releases").glob("*.tflite")) == sorted(
            {f"{first['model_sha256']}.tflite", f"{second['model_sha256']}.tflite"})  # the one before is kept


async def test_a_wrong_key_a_truncated_download_and_a_replayed_release_are_refused(live_coordinator, digits_tflite,
                                                                                  tmp_path):
    async with aiohttp.ClientSession() as session:
        url, dev = await _trained(live_coordinator, digits_tflite, session)
        await _release(url, session, round=1)
        # A device that pinned another key installs nothing.
        dev.releases = InstalledReleases(tmp_path / "wrong", "11" * 32, "pop")
        await dev.run_once()
        assert dev.releases.sequence == 0 and dev.releases.refused == 1 and "signature" in dev.releases.last_refusal
        assert not (tmp_path / "wrong").exists()
        # A download cut short is refused by its digest, and nothing is installed.
        dev.releases = InstalledReleases(tmp_path / "ok", dev.client.release_key, "pop")
        resp = await dev.client.checkin(dev.state_fn(), [], 0.0, ("stable", 0))

        async def truncated(link, sha):
            data = await dev.client.fetch_blob(link, sha, dev.cache)
            from device_runtime.blob_cache import _verify

            _verify(sha, data[: len(data) // 2])
            return data[: len(data) // 2]

        assert not await dev.releases.install(resp.release, truncated)
        assert dev.releases.sequence == 0 and "does not match" in dev.releases.last_refusal
        assert await dev.releases.install(resp.release, lambda link, sha: dev.client.fetch_blob(link, sha, dev.cache))
        # The statement it installed, replayed, is refused: the sequence must grow.
        assert not await dev.releases.install(resp.release, lambda link, sha: dev.client.fetch_blob(link, sha,
                                                                                                      dev.cache))
        assert "old_release" in repr(dev.releases.last_refusal) or "not above" in dev.releases.last_refusal
        assert dev.releases.sequence == 1 and dev.releases.installed == 1


async def test_a_rollback_during_a_download_ends_with_the_device_on_the_rolled_back_to_model(live_coordinator,
                                                                                             digits_tflite, tmp_path):
    """The device is downloading release B when B is rolled back: it finishes B's install (a
    whole, verified file: never half of one), and its next check-in moves it to the rollback
    release, A's model again, from the copy it kept."""
    async with aiohttp.ClientSession() as session:
        url, dev = await _trained(live_coordinator, digits_tflite, session)
        dev.releases = InstalledReleases(tmp_path / "releases", dev.client.release_key, "pop")
        first = await _release(url, session, round=1)
        await dev.run_once()
        second = await _release(url, session, round=2)
        resp = await dev.client.checkin(dev.state_fn(), [], 0.0, ("stable", dev.releases.sequence))
        assert resp.release.release_id == second["release_id"]
        midway, resume = asyncio.Event(), asyncio.Event()

        async def slow(link, sha):
            data = await dev.client.fetch_blob(link, sha, dev.cache)
            midway.set()
            await resume.wait()  # the rollback happens here
            return data

        installing = asyncio.create_task(dev.releases.install(resp.release, slow))
        await midway.wait()
        back = await AdminClient(url, TOKEN, session)._call("POST",
                                                            f"/v1/admin/releases/{second['release_id']}/rollback")
        assert dev.releases.current.release_id == first["release_id"]  # nothing half-installed meanwhile
        resume.set()
        assert await installing
        assert dev.releases.current.release_id == second["release_id"]
        await dev.run_once()
        current = dev.releases.current
        assert current.release_id == back["release_id"] and current.model_sha256 == first["model_sha256"]
        path = dev.releases.current_model_path()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == first["model_sha256"]
