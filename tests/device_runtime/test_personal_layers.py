"""Personal layers (FedPer): trained on the device, kept in its state across rounds and
restarts, never uploaded; set_weights leaves them alone; the coordinator never sees them."""

import asyncio

import aiohttp
import numpy as np
import pytest

from coordinator.http.app import COORDINATOR
from device_runtime.device import Device
from device_runtime.litert_model import LocalModel
from device_runtime.kept_state import KeptState
from device_runtime.training import TrainJob, train_round
from protocol import codec
from protocol.messages import Plan
from tests.device_runtime.conftest import create_task
from tests.device_runtime.test_device import run_one_device_to_completion


@pytest.fixture(scope="module")
def personal_tflite():
    from model_export.exporter import export_model
    from model_export.zoo import digits_mlp

    model = digits_mlp()
    result = export_model(model, name="digits_personal", personal=(model.layers[-1].name,))
    assert result.parity.passed and result.parity.proximal.passed
    return result.tflite


def _data(n=64):
    rng = np.random.default_rng(0)
    return rng.random((n, 64), np.float32), rng.integers(0, 10, n).astype(np.int32)


def test_personal_layers_train_but_never_travel(personal_tflite):
    model = LocalModel(personal_tflite)
    m = model.manifest
    assert [w.shape for w in m.personal] == [(32, 10), (10,)] and len(m.weights) == 4
    assert m.num_parameters == 64 * 64 + 64 + 64 * 32 + 32  # the head is not in an update
    mine = [np.full((32, 10), 0.25, np.float32), np.full(10, -0.5, np.float32)]
    model.set_personal(mine)
    model.set_weights(model.get_weights())  # a round's global weights: the personal layers stay
    for a, b in zip(model.get_personal(), mine):
        np.testing.assert_array_equal(a, b)
    x, y = _data()
    plan = Plan(epochs=2, batch_size=32, learning_rate=0.05, codec="f32", chunk_size=256)
    result = train_round(model, model.get_weights(), TrainJob(plan, x, y, x[:8], y[:8], np.random.default_rng(1),
                         personal=mine))
    assert result.personal is not None and np.abs(result.personal[0] - mine[0]).max() > 1e-4  # it trained
    decoded = codec.decode(result.payload, [w.size for w in m.weights]).values
    assert decoded.size == m.num_parameters  # the update carries the shared layers only


async def test_a_device_keeps_its_personal_layers_across_rounds_and_restarts(live_coordinator, personal_tflite,
                                                                              tmp_path):
    dev = await run_one_device_to_completion(live_coordinator, personal_tflite, 15, state_dir=tmp_path / "local",
                                             rounds=2)
    coordinator = live_coordinator.app[COORDINATOR]
    initial = LocalModel(personal_tflite).initial_personal
    sha = next(iter(dev.kept.personal))
    kept = dev.kept.personal[sha]
    assert np.abs(kept[0] - initial[0]).max() > 1e-4
    # A restarted device (a new process: nothing in memory) finds them in its state folder.
    again = KeptState(tmp_path / "local")
    for a, b in zip(again.personal_for(sha), kept):
        np.testing.assert_array_equal(a, b)
    # The coordinator's checkpoint has the shared layers only.
    ck = coordinator.store.blobs.read(coordinator.tasks["t"].checkpoint_sha)
    assert codec.decode(ck).values.size == LocalModel(personal_tflite).manifest.num_parameters


async def test_an_upload_carrying_the_personal_layers_is_refused(live_coordinator, personal_tflite):
    url = str(live_coordinator.make_url("")).rstrip("/")
    await create_task(url, personal_tflite, rounds=1)
    model = LocalModel(personal_tflite)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/v1/devices/register", json={"population": "pop"}) as r:
            token = (await r.json())["token"]
        auth = {"Authorization": f"Bearer {token}"}
        state = {"state": {"charging": True, "unmetered": True, "idle": True, "battery": 1.0}}
        for _ in range(50):
            async with session.post(f"{url}/v1/checkin", json=state, headers=auth) as r:
                body = await r.json()
            if body["outcome"] == "assigned":
                break
            await asyncio.sleep(0.05)
        a = body["assignment"]
        arrays = [np.zeros(w.shape, np.float32) for w in (*model.manifest.weights, *model.manifest.personal)]
        payload = codec.encode(arrays, codec.CodecSpec("q8"), np.random.default_rng(0))
        headers = {**auth, "Content-Type": "application/octet-stream", "Fedge-Upload-Token": a["upload_token"],
                   "Fedge-Upload": '{"example_count": 10}'}
        async with session.post(url + a["upload_url"], data=payload, headers=headers) as r:
            assert r.status in (400, 413), await r.text()
