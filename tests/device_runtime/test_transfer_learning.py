"""A frozen base under a trainable head: devices and coordinator run it unchanged, and an
update carries the head only."""

import numpy as np
import pytest

from coordinator.http.app import COORDINATOR
from device_runtime.litert_model import LocalModel
from tests.device_runtime.conftest import digits_shard
from tests.device_runtime.test_device import run_one_device_to_completion

pytestmark = pytest.mark.slow

HEAD_PARAMS = 32 * 10 + 10


@pytest.fixture(scope="module")
def frozen_base_tflite() -> bytes:
    import keras

    from model_export.exporter import export_model

    keras.utils.set_random_seed(0)
    base = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation="relu"),
                             keras.layers.BatchNormalization(), keras.layers.Dense(32, activation="relu")],
                            name="pretrained_base")
    base.trainable = False
    x = keras.Input((64,))
    out = keras.layers.Dense(10, activation="softmax", name="head")(base(x, training=False))
    model = keras.Model(x, out, name="transfer")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    result = export_model(model, parity_steps=2)
    assert result.parity.passed, result.parity.render()
    return result.tflite


def test_the_local_model_trains_the_head_and_nothing_else(frozen_base_tflite):
    model = LocalModel(frozen_base_tflite)
    assert [w.path for w in model.manifest.weights] == ["head/kernel", "head/bias"]
    x, y = digits_shard(256)
    before_loss, before_accuracy = model.evaluate(x, y)
    model.train(x, y, epochs=20, learning_rate=0.5, rng=np.random.default_rng(0))
    after_loss, accuracy = model.evaluate(x, y)
    # Random frozen features still separate digits, slowly, once the head trains on them.
    assert after_loss < 0.9 * before_loss and accuracy > before_accuracy + 0.15, (before_loss, after_loss, accuracy)


async def test_a_round_with_a_frozen_base_uploads_the_head_only(live_coordinator, frozen_base_tflite):
    dev = await run_one_device_to_completion(live_coordinator, frozen_base_tflite, timeout=30, rounds=2, codec="f32")
    coordinator = live_coordinator.app[COORDINATOR]
    assert [r["state"] for r in coordinator.admin.rounds("t")] == ["committed", "committed"]
    assert dev.stats.uploads == 2
    assert dev.stats.float32_bytes == 2 * 4 * HEAD_PARAMS
