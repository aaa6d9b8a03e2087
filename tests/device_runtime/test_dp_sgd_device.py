"""Example-level DP-SGD on a Python device: train_dp with noise from the OS (not from the
fleet's seeded generator), the round's event, the ledger that composes every uploaded
round with dp-accounting and survives a restart, and a live round whose coordinator records
the example-level epsilon."""

import asyncio

import aiohttp
import numpy as np
import pytest

from device_runtime.litert_model import LocalModel
from device_runtime.privacy_ledger import PrivacyLedger
from device_runtime.training import TrainJob, train_round
from protocol.dp_sgd import DpSgdEvent
from protocol.errors import ProtocolError
from protocol.messages import Plan
from tests.device_runtime.conftest import TOKEN, create_task, digits_shard


def _plan(**kw):
    return Plan(**{"epochs": 2, "batch_size": 32, "learning_rate": 0.05, "codec": "q8", "chunk_size": 256,
                   "dp_sgd_noise_multiplier": 1.1, "dp_sgd_clip": 1.0, **kw})


def test_a_round_reports_its_steps_and_draws_its_own_noise(digits_dp_tflite):
    model = LocalModel(digits_dp_tflite)
    x, y = digits_shard(80)
    w = model.get_weights()
    runs = [train_round(model, w, TrainJob(_plan(), x, y, x[:8], y[:8], np.random.default_rng(7))) for _ in range(2)]
    # 80 examples in batches of 32: 3 steps an epoch, 2 epochs; q = 32 / 80.
    assert runs[0].dp_sgd == DpSgdEvent(1.1, 0.4, 6) == runs[1].dp_sgd
    # Same data order (the same seeded generator), different noise: nobody can replay it.
    first, second = (codec_values(r) for r in runs)
    assert np.abs(first - second).max() > 1e-4


def codec_values(result):
    from protocol import codec

    return codec.decode(result.payload).values


def test_a_file_without_train_dp_refuses_the_plan(digits_tflite):
    model = LocalModel(digits_tflite)
    x, y = digits_shard(40)
    with pytest.raises(ProtocolError, match="fedge export --dp-sgd"):
        train_round(model, model.get_weights(), TrainJob(_plan(), x, y, x[:4], y[:4], np.random.default_rng(0)))


def test_the_ledger_composes_rounds_with_dp_accounting():
    from dp_accounting import dp_event, rdp

    ledger = PrivacyLedger()
    assert ledger.epsilon(1e-5) == 0.0
    ledger.add(DpSgdEvent(1.1, 0.4, 6))
    one = ledger.epsilon(1e-5)
    ledger.add(DpSgdEvent(1.1, 0.4, 6))
    ledger.add(DpSgdEvent(2.0, 0.1, 30))
    assert ledger.steps == {(1.1, 0.4): 12, (2.0, 0.1): 30}
    accountant = rdp.RdpAccountant([1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0,
                                    32.0, 48.0, 64.0, 128.0, 256.0])
    accountant.compose(dp_event.PoissonSampledDpEvent(0.4, dp_event.GaussianDpEvent(1.1)), 12)
    accountant.compose(dp_event.PoissonSampledDpEvent(0.1, dp_event.GaussianDpEvent(2.0)), 30)
    assert ledger.epsilon(1e-5) == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-9)
    assert ledger.epsilon(1e-5) > one > 0
    assert PrivacyLedger.from_array(ledger.to_array()).steps == ledger.steps


async def test_a_live_round_records_example_level_epsilon_and_the_ledger_survives(live_coordinator, tmp_path,
                                                                                  digits_dp_tflite):
    from device_runtime.blob_cache import MemoryBlobCache
    from device_runtime.client import CoordinatorClient
    from device_runtime.device import Device
    from device_runtime.example_store import LocalData
    from device_runtime.trainer import Trainer
    from protocol.messages import DeviceState

    base = str(live_coordinator.make_url("")).rstrip("/")
    task = await create_task(base, digits_dp_tflite, rounds=2, dp_sgd_noise_multiplier=1.1, dp_sgd_clip=1.0,
                             dp_sgd_delta=1e-5)
    x, y = digits_shard(96)
    data = LocalData(x[:80], y[:80], x[80:], y[80:])
    state = tmp_path / "state"
    trainer = Trainer(workers=1)

    async def one_device_round():
        async with aiohttp.ClientSession() as session:
            client = CoordinatorClient(base, session, attempts=4, max_backoff_s=0.2)
            await client.register("pop")
            device = Device(client=client, data=data, trainer=trainer, cache=MemoryBlobCache(),
                            state_fn=lambda: DeviceState(charging=True, unmetered=True, idle=True, battery=1.0),
                            rng=np.random.default_rng(3), state_dir=state)
            for _ in range(200):
                outcome = await device.run_once()
                if outcome.outcome != "retry":
                    return outcome, device
                await asyncio.sleep(0.05)
            raise AssertionError("no assignment")

    try:
        outcome, device = await one_device_round()
        assert outcome.outcome == "uploaded", outcome
        first = device.stats.dp_sgd_epsilon
        assert first > 0 and (state / "dp-sgd-ledger.npz").exists()
        outcome, device = await one_device_round()  # a restarted device: a new process, the same state folder
        assert outcome.outcome == "uploaded", outcome
        assert device.stats.dp_sgd_epsilon > first
    finally:
        trainer.close()
    from coordinator.aggregation.privacy import epsilon

    async with aiohttp.ClientSession() as s:
        for _ in range(200):
            async with s.get(f"{base}/v1/admin/tasks/{task}", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                rounds = (await r.json())["rounds"]
            committed = [r for r in rounds if r["state"] == "committed"]
            if len(committed) == 2:
                break
            await asyncio.sleep(0.05)
    assert len(committed) == 2
    for r in committed:
        # The round's epsilon by the coordinator's accountant: 80 examples in batches of 32 -> q 0.4, 3 steps.
        assert r["metrics"]["dp_sgd_round_epsilon"] == pytest.approx(epsilon(1.1, 0.4, 3, 1e-5))
    assert committed[-1]["metrics"]["dp_sgd_device_epsilon"] == pytest.approx(device.stats.dp_sgd_epsilon)
