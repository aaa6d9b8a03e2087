"""One round's local work: partial work (a time budget, or an emulated straggler's epochs) is
uploaded weighted by the examples processed only when the task takes it; otherwise the
device does not upload (FedAvg's assumption)."""

import itertools

import numpy as np
import pytest

from device_runtime import litert_model
from device_runtime.litert_model import LocalModel
from device_runtime.training import TrainJob, Unfinished, train_round
from protocol.messages import Plan


@pytest.fixture(scope="module")
def model(digits_tflite):
    return LocalModel(digits_tflite)


def _data(n=20):
    rng = np.random.default_rng(0)
    return rng.random((n, 64), np.float32), rng.integers(0, 10, n).astype(np.int32)


def _plan(**kw):
    return Plan(**{"epochs": 4, "batch_size": 32, "learning_rate": 0.05, "codec": "q8", "chunk_size": 256, **kw})


def test_full_work_reports_the_local_dataset_size(model):
    x, y = _data()
    result = train_round(model, model.get_weights(), TrainJob(_plan(), x, y, x[:4], y[:4], np.random.default_rng(1)))
    assert result.example_count == 20 and not result.partial


def test_a_straggler_uploads_partial_work_only_when_the_task_takes_it(model):
    x, y = _data()
    w = model.get_weights()
    partial = train_round(model, w, TrainJob(_plan(partial_work=True), x, y, x[:4], y[:4], np.random.default_rng(1),
                          capacity_epochs=1))
    assert partial.partial and partial.example_count == 5  # 20 examples x 1 epoch / 4 planned epochs
    with pytest.raises(Unfinished, match="1 of 4 epochs"):
        train_round(model, w, TrainJob(_plan(), x, y, x[:4], y[:4], np.random.default_rng(1), capacity_epochs=1))
    # A budget that allows no epoch at all: nothing to upload either way.
    with pytest.raises(Unfinished):
        train_round(model, w, TrainJob(_plan(partial_work=True), x, y, x[:4], y[:4], np.random.default_rng(1),
                    capacity_epochs=0))


def test_the_time_budget_stops_training_at_a_batch_boundary(model, monkeypatch):
    # A clock that moves one second per reading: the budget of 3.5 s allows three batches
    # (digits_mlp's batch is 32: one batch per epoch of these 20 examples).
    ticks = itertools.count(0.0, 1.0)
    monkeypatch.setattr(litert_model.time, "perf_counter", lambda: next(ticks))
    x, y = _data()
    progress = model.train(x, y, epochs=6, learning_rate=0.05, rng=np.random.default_rng(0), stop_after_s=3.5)
    assert progress.stopped and progress.examples == 60
    ticks = itertools.count(0.0, 1.0)
    monkeypatch.setattr(litert_model.time, "perf_counter", lambda: next(ticks))
    result = train_round(model, model.get_weights(), TrainJob(_plan(epochs=6, max_local_seconds=3.5, partial_work=True),
                         x, y, x[:4], y[:4], np.random.default_rng(1)))
    assert result.partial and result.example_count == 10  # 60 processed / 6 planned epochs
    ticks = itertools.count(0.0, 1.0)
    monkeypatch.setattr(litert_model.time, "perf_counter", lambda: next(ticks))
    with pytest.raises(Unfinished, match="budget"):
        train_round(model, model.get_weights(), TrainJob(_plan(epochs=6, max_local_seconds=3.5), x, y, x[:4], y[:4],
                    np.random.default_rng(1)))


def test_top_k_sends_the_largest_coordinates_and_keeps_the_rest_for_the_next_upload(model):
    """Error feedback: what an upload leaves out (its residual) is added to the next update,
    so sent + residual is the training delta plus the previous residual, exactly."""
    from protocol import codec

    x, y = _data()
    plan = _plan(codec="f32+topk:0.05", epochs=1)
    start = model.get_weights()
    alone = train_round(model, start, TrainJob(plan, x, y, x[:4], y[:4], np.random.default_rng(3)))
    sent = codec.decode(alone.payload).values
    n = sent.size
    assert np.count_nonzero(sent) <= codec.CodecSpec.parse(plan.codec).kept(n) < n / 10
    delta = sent + alone.residual  # nothing was carried in: this is the training delta
    kept = np.flatnonzero(sent)
    assert np.abs(delta[kept]).min() >= np.abs(alone.residual).max()  # the largest went, the rest stayed
    carried = np.random.default_rng(4).normal(0, 0.01, n).astype(np.float32)
    again = train_round(model, start, TrainJob(plan, x, y, x[:4], y[:4], np.random.default_rng(3), residual=carried))
    np.testing.assert_allclose(codec.decode(again.payload).values + again.residual, delta + carried, atol=1e-6)
    # A quantized top-k keeps the rounding error too: sent + residual is still the whole.
    q8 = train_round(model, start, TrainJob(_plan(codec="q8+topk:0.05", epochs=1), x, y, x[:4], y[:4],
                     np.random.default_rng(3), residual=carried))
    np.testing.assert_allclose(codec.decode(q8.payload).values + q8.residual, delta + carried, atol=1e-6)


def test_a_quantized_scaffold_upload_moves_c_i_by_what_the_coordinator_folds(model):
    """q8 SCAFFOLD diverged when devices kept the unrounded c_i+ while the server folded the
    rounded control delta: c drifted from the mean of the c_i. c_i now moves by exactly the
    decoded control delta; with f32 that is c_i+ itself."""
    from protocol import codec, scaffold

    x, y = _data()
    n = sum(w.size for w in model.get_weights())
    rng = np.random.default_rng(5)
    c, c_i = (rng.normal(0, 0.01, n).astype(np.float32) for _ in range(2))
    q8 = train_round(model, model.get_weights(), TrainJob(_plan(scaffold=True, epochs=1), x, y, x[:4], y[:4],
                     np.random.default_rng(6), control=(c, c_i)))
    sent = codec.decode(q8.payload).values
    np.testing.assert_array_equal(q8.control, (c_i + sent[-n:]).astype(np.float32))
    f32 = train_round(model, model.get_weights(), TrainJob(_plan(scaffold=True, epochs=1, codec="f32"), x, y, x[:4], y[:4],
                      np.random.default_rng(6), control=(c, c_i)))
    unrounded = f32.control - c_i  # f32 sends the control delta exactly: c_i+ as option II computes it
    np.testing.assert_allclose(f32.control, scaffold.after_sent(c_i, codec.decode(f32.payload).values), atol=0)
    error = np.abs((q8.control - c_i) - unrounded)  # q8's rounding, which the coordinator folds too
    assert 0 < np.mean(error) < np.mean(np.abs(unrounded))
