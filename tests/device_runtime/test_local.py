"""Probes, the example store and local training, without a coordinator."""

import numpy as np
import pytest

from device_runtime import probes
from device_runtime.example_store import load_example_store, write_example_file
from device_runtime.litert_model import LocalModel
from device_runtime.training import TrainJob, train_round
from protocol.dp import clip_l2
from protocol import codec
from protocol.messages import Plan


def _supply(root, name, **files):
    d = root / name
    d.mkdir(parents=True)
    for k, v in files.items():
        (d / k).write_text(v)


def test_power_probe_reads_sysfs(tmp_path):
    _supply(tmp_path, "AC", type="Mains", online="0")
    _supply(tmp_path, "BAT0", type="Battery", capacity="42", status="Discharging")
    assert probes.probe_power(tmp_path) == (False, 0.42)
    (tmp_path / "AC" / "online").write_text("1")
    assert probes.probe_power(tmp_path) == (True, 0.42)
    assert probes.probe_power(tmp_path / "none") == (True, 1.0)  # a Pi on its supply


def test_network_probe_reads_default_route(tmp_path):
    route = tmp_path / "route"
    route.write_text("Iface\tDestination\tGateway\nwlan0\t00000000\t0102A8C0\n")
    (tmp_path / "net" / "wlan0" / "wireless").mkdir(parents=True)
    assert probes.probe_unmetered(route, tmp_path / "net")
    route.write_text("Iface\tDestination\tGateway\nwwan0\t00000000\t0102A8C0\n")
    assert not probes.probe_unmetered(route, tmp_path / "net")


def test_env_overrides(monkeypatch):
    monkeypatch.setenv("FEDGE_CHARGING", "0")
    monkeypatch.setenv("FEDGE_UNMETERED", "true")
    monkeypatch.setenv("FEDGE_BATTERY", "0.25")
    state = probes.probe_state("2.3.0", {"idle": True})
    assert (state.charging, state.unmetered, state.idle, state.battery) == (False, True, True, 0.25)


def test_example_store_round_trip_and_holdout(tmp_path):
    rng = np.random.default_rng(0)
    write_example_file(tmp_path / "a.npz", rng.random((30, 64)), rng.integers(0, 10, 30))
    write_example_file(tmp_path / "b.npz", rng.random((20, 64)), rng.integers(0, 10, 20))
    data = load_example_store(tmp_path, holdout=0.2)
    assert len(data.x_train) == 40 and len(data.x_eval) == 10
    np.save(tmp_path / "c.npy", np.zeros(3))
    with pytest.raises(FileNotFoundError):
        load_example_store(tmp_path / "empty")
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 64)), y=np.zeros(2))
    with pytest.raises(ValueError, match="different lengths"):
        load_example_store(tmp_path)


def test_example_store_refuses_pickled_objects(tmp_path):
    np.savez(tmp_path / "evil.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(ValueError):
        load_example_store(tmp_path)


def test_clip_l2():
    delta, norm = clip_l2(np.array([3.0, 4.0], np.float32), 1.0)
    assert norm == pytest.approx(5.0) and np.linalg.norm(delta) == pytest.approx(1.0)
    same, _ = clip_l2(np.array([0.3, 0.4], np.float32), 1.0)
    assert np.allclose(same, [0.3, 0.4])


def test_train_round_reduces_loss_and_encodes_delta(digits_tflite):
    from device_runtime.fleet.datasets import load_digits_pool

    x, x_te, y, y_te = load_digits_pool(0)
    model = LocalModel(digits_tflite)
    weights = model.get_weights()
    rng = np.random.default_rng(0)
    plan = Plan(epochs=3, batch_size=32, learning_rate=0.05, codec="q8", chunk_size=256, clip_norm=0.0)
    result = train_round(model, weights, TrainJob(plan, x[:300], y[:300], x_te, y_te, rng))
    new = codec.flatten(weights) + codec.decode(result.payload).values
    model.set_weights(codec.unflatten(new, model.manifest.weight_shapes))
    assert model.evaluate(x_te, y_te)[1] > result.eval_accuracy + 0.2
    clipped = train_round(model, weights, TrainJob(Plan(3, 32, 0.05, "f32", 256, clip_norm=0.1), x[:300], y[:300],
                          x_te, y_te, rng))
    assert np.linalg.norm(codec.decode(clipped.payload).values) <= 0.1 + 1e-5


@pytest.mark.parametrize("native_logs", ["", "1"])
def test_litert_announces_its_delegate_only_when_asked(digits_tflite, tmp_path, native_logs):
    import os
    import subprocess
    import sys

    model = tmp_path / "m.tflite"
    model.write_bytes(digits_tflite)
    code = ("import sys; from device_runtime.litert_model import LocalModel; "
            f"m = [LocalModel(open({str(model)!r}, 'rb').read()) for _ in range(2)]; "
            "print('after', file=sys.stderr)")
    env = {**os.environ, "FEDGE_NATIVE_LOGS": native_logs}
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stderr
    assert err.strip().endswith("after")  # stderr works again after the first model
    assert ("XNNPACK" in err) == (native_logs == "1"), err
