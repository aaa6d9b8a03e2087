"""What a committed round records about its reports (coordinator.rounds.round_metrics)."""

import pytest

from coordinator.rounds.round_metrics import evaluation_metrics, training_metrics
from coordinator.store.records import UpdateRecord
from coordinator.tasks.config import TaskConfig


def _update(device: str, examples: int, blob: str = "", **meta) -> UpdateRecord:
    base = {"train_loss": 1.0, "eval_loss": 0.0, "eval_accuracy": 0.0, "eval_count": 0, "below_clip": True}
    return UpdateRecord("t", 1, device, examples, {**base, **meta}, blob, "d", 0.0)


def test_a_device_claiming_many_examples_weighs_no_more_than_the_cap(tmp_path):
    cfg = TaskConfig.from_dict({"goal_count": 2, "max_example_count": 100})
    blob = tmp_path / "u.bin"
    blob.write_bytes(b"x" * 37)
    ups = [_update("a", 100, str(blob), train_loss=1.0, eval_count=10, eval_accuracy=0.5),
           _update("b", 10**9, str(tmp_path / "gone.bin"), train_loss=3.0, eval_count=30, eval_accuracy=0.9)]
    m = training_metrics(cfg, ups, bytes_out=123)
    assert m["examples"] == 200 and m["train_loss"] == pytest.approx(2.0)  # 1e9 counted as 100
    assert m["bytes_in"] == 37 and m["bytes_out"] == 123  # a discarded file counts for nothing
    assert m["eval_accuracy"] == pytest.approx((10 * 0.5 + 30 * 0.9) / 40)
    assert "staleness_mean" not in m


def test_an_asynchronous_version_records_its_staleness_histogram():
    cfg = TaskConfig.from_dict({"mode": "async", "buffer_size": 3, "concurrency": 4})
    m = training_metrics(cfg, [_update("a", 1, staleness=0), _update("b", 1, staleness=2),
                               _update("c", 1, staleness=2)], bytes_out=0)
    assert m["staleness_mean"] == pytest.approx(4 / 3) and m["staleness_max"] == 2
    assert m["staleness_counts"] == {"0": 1, "2": 2}


def test_an_evaluation_round_without_reports_has_no_summary():
    cfg = TaskConfig.from_dict({"goal_count": 2})
    assert evaluation_metrics(cfg, []) is None
    report = UpdateRecord("t", 1, "a", 10, {"correct": 7, "loss_sum": 3.0}, "", "d", 0.0)
    m = evaluation_metrics(cfg, [report])
    assert m["reports"] == 1 and m["eval_accuracy"] == pytest.approx(0.7) and m["eval_loss"] == pytest.approx(0.3)
    assert not any(k.startswith("personalized") for k in m)  # no device fine-tuned
