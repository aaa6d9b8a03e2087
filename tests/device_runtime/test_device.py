"""The reference device against a real coordinator over HTTP."""

import asyncio

import aiohttp
import numpy as np
from aiohttp import web

from coordinator.http.app import COORDINATOR
from device_runtime.blob_cache import MemoryBlobCache
from device_runtime.client import CoordinatorClient
from device_runtime.device import Behaviour, Device
from device_runtime.kept_state import KeptState
from device_runtime.example_store import split_holdout
from device_runtime.trainer import Trainer
from protocol.messages import DeviceState
from tests.device_runtime.conftest import create_task, digits_shard


def _device(session, url, trainer, behaviour=None, state=None):
    x, y = digits_shard()
    return Device(
        client=CoordinatorClient(url, session, attempts=4, max_backoff_s=0.2), data=split_holdout(x, y, 0.2, 0),
        trainer=trainer, state_fn=lambda: state or DeviceState(charging=True, unmetered=True, idle=True, battery=1.0),
        cache=MemoryBlobCache(), rng=np.random.default_rng(0), behaviour=behaviour or Behaviour(),
    )


async def _wait_until(pred, timeout=10.0):
    for _ in range(int(timeout / 0.02)):
        if pred():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def run_one_device_to_completion(server, model: bytes, timeout: float = 10.0, until=None, state_dir=None,
                                       **task_config) -> Device:
    """Create task "t" with `model`, run one device until the task completes (or `until(coordinator)`);
    the device (its local state in `state_dir`, when given)."""
    url = str(server.make_url("")).rstrip("/")
    await create_task(url, model, **task_config)
    coordinator = server.app[COORDINATOR]
    trainer = Trainer(1)
    done = until or (lambda c: c.tasks["t"].state == "completed")
    async with aiohttp.ClientSession() as session:
        dev = _device(session, url, trainer)
        dev.kept.state_dir = state_dir
        await dev.client.register("pop")
        stop = asyncio.Event()
        runner = asyncio.create_task(dev.run(stop, after_round_s=0.05))
        await _wait_until(lambda: done(coordinator), timeout=timeout)
        stop.set()
        await runner
    trainer.close()
    return dev


async def test_device_completes_rounds(live_coordinator, digits_tflite):
    dev = await run_one_device_to_completion(live_coordinator, digits_tflite, rounds=2)
    coordinator = live_coordinator.app[COORDINATOR]
    rounds = coordinator.admin.rounds("t")
    assert [r["state"] for r in rounds] == ["committed", "committed"]
    assert dev.stats.uploads == 2 and rounds[0]["examples"] == len(dev.data.x_train)
    # 8-bit upload: about a quarter of the float32 bytes.
    assert dev.stats.bytes_up < 0.3 * dev.stats.float32_bytes
    assert rounds[1]["metrics"]["train_loss"] > 0


async def test_ineligible_device_is_told_to_come_back(live_coordinator, digits_tflite):
    url = str(live_coordinator.make_url("")).rstrip("/")
    await create_task(url, digits_tflite, eligibility="charging")
    async with aiohttp.ClientSession() as session:
        dev = _device(session, url, Trainer(1), state=DeviceState(charging=False))
        await dev.client.register("pop")
        await asyncio.sleep(0.1)
        outcome = await dev.run_once()
    assert outcome.outcome == "retry" and outcome.detail == "ineligible"


async def test_device_abandons_a_round_it_cannot_finish(live_coordinator, digits_tflite):
    url = str(live_coordinator.make_url("")).rstrip("/")
    await create_task(url, digits_tflite, selection_window_s=0.2, report_deadline_s=0.3, epochs=50)
    coordinator = live_coordinator.app[COORDINATOR]
    trainer = Trainer(1)
    trainer._step_s[coordinator.tasks["t"].model_sha] = 0.05  # a slow device: 50 epochs x 2 steps x 50 ms
    async with aiohttp.ClientSession() as session:
        dev = _device(session, url, trainer)
        await dev.client.register("pop")
        await asyncio.sleep(0.1)
        outcome = await dev.run_once()
    trainer.close()
    assert outcome.outcome == "abandoned" and dev.stats.abandoned_deadline == 1
    assert coordinator.store.one("SELECT COUNT(*) AS n FROM updates")["n"] == 0


async def test_retried_upload_is_counted_once(aiohttp_server, tmp_path, digits_tflite):
    """The first upload is processed but its answer is lost (503): the retry is recognised."""
    from coordinator.http.app import ServeConfig, create_app
    from tests.device_runtime.conftest import TOKEN

    lost = {"n": 0}

    @web.middleware
    async def lose_first_answer(request, handler):
        response = await handler(request)
        if request.path.endswith("/update") and lost["n"] == 0:
            lost["n"] += 1
            return web.json_response({"error": {"code": "unavailable", "message": "lost"}}, status=503)
        return response

    config = ServeConfig(db=str(tmp_path / "c.db"), admin_token=TOKEN, tick_s=0.02, min_retry_s=0.05,
                         max_retry_s=0.5, checkin_rate=1000.0)
    app = create_app(config)
    app.middlewares.insert(0, lose_first_answer)
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")
    await create_task(url, digits_tflite, rounds=1, goal_count=2, over_selection=1.0, min_reports=1,
                      selection_window_s=0.5, report_deadline_s=20)
    coordinator = app[COORDINATOR]
    async with aiohttp.ClientSession() as session:
        dev = _device(session, url, Trainer(1))
        await dev.client.register("pop")
        await asyncio.sleep(0.1)
        outcome = await dev.run_once()
    assert outcome.outcome == "uploaded" and lost["n"] == 1
    rows = coordinator.store.all("SELECT * FROM updates")
    assert len(rows) == 1
    assert coordinator.admin.rounds("t")[0]["reported"] == 1
    assert coordinator.sums[("t", 1)].count == 1


async def test_refused_checkin_waits_instead_of_spinning(live_coordinator, digits_tflite):
    url = str(live_coordinator.make_url("")).rstrip("/")
    await create_task(url, digits_tflite, rounds=2)
    trainer = Trainer(1)
    async with aiohttp.ClientSession() as session:
        dev = _device(session, url, trainer)
        await dev.client.register("pop")
        dev.client.token = "forged.token"  # every check-in now gets a 401
        calls = []
        checkin = dev.client.checkin

        async def counted(*args, **kwargs):
            calls.append(1)
            return await checkin(*args, **kwargs)

        dev.client.checkin = counted
        stop = asyncio.Event()
        runner = asyncio.create_task(dev.run(stop))
        await asyncio.sleep(1.0)
        stop.set()
        await runner
    trainer.close()
    assert dev.stats.last_outcome == "rejected"
    assert len(calls) == 1, "a refused check-in was retried at once (a tight loop of 401s)"


async def test_device_survives_a_message_it_refuses(live_coordinator, digits_tflite, monkeypatch):
    import device_runtime.device as device_module
    from protocol.errors import ProtocolError

    monkeypatch.setattr(device_module, "REFUSED_WAIT_S", 0.1)
    url = str(live_coordinator.make_url("")).rstrip("/")
    await create_task(url, digits_tflite, rounds=2)
    trainer = Trainer(1)
    async with aiohttp.ClientSession() as session:
        dev = _device(session, url, trainer)
        await dev.client.register("pop")
        checkin = dev.client.checkin
        answers = iter([ProtocolError("assignment carries a malformed plan", "bad_response")])

        async def first_malformed(*args, **kwargs):
            for exc in answers:
                raise exc
            return await checkin(*args, **kwargs)

        dev.client.checkin = first_malformed
        stop = asyncio.Event()
        runner = asyncio.create_task(dev.run(stop, after_round_s=0.05))
        await _wait_until(lambda: dev.stats.uploads >= 1)
        stop.set()
        await runner
    trainer.close()
    assert dev.stats.refused == 1 and dev.stats.uploads >= 1


async def test_an_unreachable_coordinator_does_not_end_the_device():
    """Nothing listens: every request retries for its bounded time, then the device waits and tries
    again instead of leaving its loop (a `fedge fleet` used to exit at the first restart)."""
    from fedge.local_coordinator import free_port

    trainer = Trainer(1)
    async with aiohttp.ClientSession() as session:
        device = _device(session, f"http://127.0.0.1:{free_port()}", trainer)
        device.client.retry_for_s, device.client.attempts = 0.3, None
        stop = asyncio.Event()
        runner = asyncio.create_task(device.run(stop))
        await _wait_until(lambda: device.stats.last_outcome == "unreachable", timeout=5.0)
        assert not runner.done()  # still looping
        stop.set()
        await asyncio.wait_for(runner, 10.0)
    trainer.close()


def _evaluated(coordinator) -> bool:
    return "t-eval-1" in coordinator.tasks and coordinator.tasks["t-eval-1"].state == "completed"


async def test_device_takes_part_in_federated_evaluation(live_coordinator, digits_tflite):
    """Trains round 1, then evaluates its checkpoint in the evaluation task eval_every created:
    the reported counts are this device's holdout evaluated with the committed weights."""
    dev = await run_one_device_to_completion(live_coordinator, digits_tflite, 15, _evaluated, rounds=1, eval_every=1)
    coordinator = live_coordinator.app[COORDINATOR]
    assert dev.stats.uploads == 1 and dev.stats.evaluations == 1
    metrics = coordinator.admin.task_summary("t-eval-1")["evaluation"]
    from device_runtime.litert_model import LocalModel
    from protocol import codec

    model = LocalModel(digits_tflite)
    ck = coordinator.store.blobs.read(coordinator.tasks["t"].checkpoint_sha)
    model.set_weights(codec.unflatten(codec.decode(ck).values, model.manifest.weight_shapes))
    loss, accuracy = model.evaluate(dev.data.x_eval, dev.data.y_eval)
    assert metrics["eval_devices"] == 1 and metrics["eval_examples"] == len(dev.data.x_eval)
    assert metrics["eval_accuracy"] == np.float64(accuracy) or abs(metrics["eval_accuracy"] - accuracy) < 1e-9
    assert abs(metrics["eval_loss"] - loss) < 1e-6


async def test_personalized_evaluation_fine_tunes_locally_and_reports_both(live_coordinator, digits_tflite):
    await run_one_device_to_completion(live_coordinator, digits_tflite, 15, _evaluated, rounds=1, eval_every=1,
                                       personalize_steps=20, learning_rate=0.2)
    coordinator = live_coordinator.app[COORDINATOR]
    m = coordinator.admin.task_summary("t-eval-1")["evaluation"]
    assert m["personalized_devices"] == 1 and 0 <= m["personalized_accuracy"] <= 1
    # 20 steps on its own data: this device's model fits its holdout better than the global one.
    assert m["personalized_accuracy"] >= m["eval_accuracy"]
    assert m["personalization_lift_p50"] == m["personalized_accuracy"] - m["eval_accuracy"] or \
        abs(m["personalization_lift_p50"] - (m["personalized_accuracy"] - m["eval_accuracy"])) < 1e-9


async def test_a_scaffold_device_keeps_its_control_variate(live_coordinator, digits_tflite, tmp_path):
    dev = await run_one_device_to_completion(live_coordinator, digits_tflite, 15, state_dir=tmp_path / "local",
                                             rounds=2, scaffold=True, codec="f32")
    coordinator = live_coordinator.app[COORDINATOR]
    c_i = dev.kept.controls["t"]
    assert c_i.size == coordinator.tasks["t"].manifest.num_parameters and np.abs(c_i).max() > 0
    restarted = KeptState(tmp_path / "local")
    np.testing.assert_array_equal(restarted.control_for("t"), c_i)  # survives a restart (nothing in memory)
    rounds = coordinator.admin.rounds("t")
    assert [r["state"] for r in rounds] == ["committed", "committed"] and dev.stats.uploads == 2
    # One device per round (goal 1): the server's variate after round 2 is that device's c_i+ - c_i
    # added to round 1's, i.e. (FedAvg weight 1, population factor 1) c = c_i after its two rounds.
    from protocol import codec

    c = codec.decode(coordinator.store.blobs.read(coordinator.tasks["t"].control_sha)).values
    np.testing.assert_allclose(c, c_i, atol=1e-4)


async def test_a_top_k_device_keeps_what_it_did_not_send(live_coordinator, digits_tflite, tmp_path):
    dev = await run_one_device_to_completion(live_coordinator, digits_tflite, 15, state_dir=tmp_path / "local",
                                             rounds=2, codec="q8+topk:0.02")
    coordinator = live_coordinator.app[COORDINATOR]
    assert [r["state"] for r in coordinator.admin.rounds("t")] == ["committed", "committed"]
    residual = dev.kept.residuals["t"]
    assert residual.size == coordinator.tasks["t"].manifest.num_parameters and np.abs(residual).max() > 0
    restarted = KeptState(tmp_path / "local")
    np.testing.assert_array_equal(restarted.residual_for("t"), residual)  # survives a restart


async def test_data_that_does_not_fit_the_model_refuses_the_round_and_the_device_goes_on(live_coordinator,
                                                                                           digits_tflite, caplog):
    """(50, 10) examples against the 64-feature digits model: not a LiteRT crash but a refused
    round naming both shapes; the device keeps running (and its next check-in is made)."""
    import logging

    url = str(live_coordinator.make_url("")).rstrip("/")
    await create_task(url, digits_tflite)
    rng = np.random.default_rng(0)
    async with aiohttp.ClientSession() as session:
        dev = _device(session, url, Trainer(1))
        dev.data = split_holdout(rng.random((50, 10), dtype=np.float32), rng.integers(0, 10, 50), 0.2, 0)
        await dev.client.register("pop")
        stop = asyncio.Event()
        with caplog.at_level(logging.WARNING, logger="fedge.device"):
            runner = asyncio.create_task(dev.run(stop))
            await _wait_until(lambda: dev.stats.refused >= 1)
            stop.set()
            await runner
    assert dev.stats.uploads == 0 and dev.stats.last_outcome == "refused"
    line = next(r.getMessage() for r in caplog.records if "does not fit" in r.getMessage())
    assert "examples of shape (10,), the model takes (64,)" in line
