"""SCAFFOLD in the exported train step: set_control's correction is added to every step's
gradient exactly, set_weights zeroes it (a FedAvg round after a SCAFFOLD one trains as
FedAvg), the parity report covers it, and the device computes c_i+ as the paper's option II."""

import numpy as np
import pytest

from protocol import codec
from protocol.errors import ProtocolError
from tests.model_export.test_fedprox import _batch, _runners, _softmax_model


@pytest.fixture(scope="module")
def softmax_export():
    from model_export.exporter import export_model

    return export_model(_softmax_model(), name="scaffold_softmax", batch_size=8)


def test_the_correction_is_added_to_the_gradient_and_reset_by_set_weights(softmax_export):
    m = softmax_export.manifest
    assert m.supports_scaffold and m.signatures["set_control"]["inputs"] == ["c000", "c001"]
    report = softmax_export.parity
    assert report.proximal.scaffold and report.proximal.passed and "SCAFFOLD" in report.render()
    a, b = _runners(softmax_export.tflite), _runners(softmax_export.tflite)
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=softmax_export.tflite)
    b = {name: interp.get_signature_runner(name) for name in ("train", "get_weights", "set_weights", "set_control")}
    start = a["get_weights"]()
    rng = np.random.default_rng(5)
    correction = {"c000": rng.normal(size=(6, 4)).astype(np.float32), "c001": rng.normal(size=4).astype(np.float32)}
    x, y = _batch(3)
    args = dict(x=x, y=y, sample_weight=np.ones(8, np.float32), learning_rate=np.full(1, 0.1, np.float32),
                proximal_mu=np.zeros(1, np.float32))
    a["set_weights"](**start)
    b["set_weights"](**start)
    b["set_control"](**correction)
    a["train"](**args)
    b["train"](**args)
    wa, wb = a["get_weights"](), b["get_weights"]()
    for key, c in zip(("w000", "w001"), ("c000", "c001")):  # plain SGD: exactly -lr * correction apart
        np.testing.assert_allclose(wb[key] - wa[key], -0.1 * correction[c], atol=1e-6)
    # set_weights zeroes the correction: the next step is FedAvg's again.
    a["set_weights"](**start)
    b["set_weights"](**start)
    a["train"](**args)
    b["train"](**args)
    for key in ("w000", "w001"):
        np.testing.assert_array_equal(a["get_weights"]()[key], b["get_weights"]()[key])


def test_the_device_computes_the_next_control_variate(softmax_export):
    from device_runtime.litert_model import LocalModel
    from device_runtime.training import TrainJob, train_round
    from protocol.messages import Plan

    model = LocalModel(softmax_export.tflite)
    w = model.get_weights()
    n = sum(v.size for v in w)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 6)).astype(np.float32), rng.integers(0, 4, 24).astype(np.int32)
    c, c_i = rng.normal(size=n).astype(np.float32) * 0.01, rng.normal(size=n).astype(np.float32) * 0.01
    plan = Plan(epochs=2, batch_size=8, learning_rate=0.1, codec="f32", chunk_size=256, scaffold=True)
    result = train_round(model, w, TrainJob(plan, x, y, x[:4], y[:4], np.random.default_rng(1), control=(c, c_i)))
    decoded = codec.decode(result.payload, [v.size for v in w] * 2).values
    delta, dc = decoded[:n], decoded[n:]
    steps = 2 * 3  # 24 examples, batch 8, 2 epochs
    np.testing.assert_allclose(result.control, c_i - c - delta / (steps * 0.1), atol=1e-5)
    np.testing.assert_allclose(dc, result.control - c_i, atol=1e-6)


def test_a_file_without_set_control_refuses_scaffold(softmax_export):
    from dataclasses import replace

    old = replace(softmax_export.manifest, signatures={k: v for k, v in softmax_export.manifest.signatures.items()
                                                       if k != "set_control"})
    assert not old.supports_scaffold
    old.check_plan(0.0, scaffold=False)
    with pytest.raises(ProtocolError, match="exported before"):
        old.check_plan(0.0, scaffold=True)
