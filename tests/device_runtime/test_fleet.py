"""A small emulated fleet trains the digits model well above chance."""

import pytest

from device_runtime.datasets import load_federated
from device_runtime.fleet import Fleet, FleetConfig, write_history
from tests.device_runtime.conftest import TOKEN

pytestmark = pytest.mark.slow


async def test_small_fleet_learns(live_coordinator, digits_tflite, tmp_path):
    url = str(live_coordinator.make_url("")).rstrip("/")
    data = load_federated("digits", 20, "dirichlet:0.5", seed=1)
    cfg = FleetConfig(coordinator=url, admin_token=TOKEN, devices=20, partition="dirichlet:0.5", dropout=0.1,
                      seed=1, workers=2, progress=False, population="pop")
    fleet = Fleet(cfg, data)
    task = {"rounds": 5, "goal_count": 8, "over_selection": 1.3, "selection_window_s": 1.0,
            "report_deadline_s": 10.0, "eligibility": "charging and unmetered and idle", "epochs": 5,
            "learning_rate": 0.05, "codec": "q8"}
    history = await fleet.run(digits_tflite, task, task_id="fleet")
    committed = [r for r in history if r.state == "committed"]
    assert len(committed) >= 4
    assert committed[-1].global_accuracy > 0.5  # chance is 0.1
    assert committed[-1].global_accuracy > committed[0].global_accuracy
    # Each round's bytes are exactly its accepted q8 uploads (same size for every device),
    # the last round's included.
    per_upload = {r.bytes_up / r.reported for r in committed}
    assert len(per_upload) == 1 and per_upload.pop() > 0, [(r.bytes_up, r.reported) for r in committed]
    paths = write_history(history, tmp_path)
    assert paths["png"].stat().st_size > 5000
    assert paths["csv"].read_text().count("\n") == len(history) + 1


async def _fleet_accuracy(url, model, tmp_path, secagg: str, population: str) -> list[float]:
    data = load_federated("digits", 100, "dirichlet:0.5", seed=0)
    cfg = FleetConfig(coordinator=url, admin_token=TOKEN, devices=100, partition="dirichlet:0.5", dropout=0.0,
                      slow_fraction=0.0, seed=0, workers=2, progress=False, population=population,
                      out_dir=str(tmp_path))
    task = {"rounds": 15, "goal_count": 30, "over_selection": 1.0, "selection_window_s": 2.0,
            "report_deadline_s": 20.0, "eligibility": "charging", "epochs": 10, "learning_rate": 0.08,
            "codec": "q8", "clip_norm": 3.0, "secagg": secagg, "secagg_phase_s": 5.0}
    history = await Fleet(cfg, data).run(model, task, task_id=f"acc-{population}")
    return [r.global_accuracy for r in history if r.state == "committed"]


async def test_secagg_fleet_reaches_the_same_accuracy_as_plain(live_coordinator, digits_tflite, tmp_path):
    """100 devices, same seeds and clipping: SecAgg on vs off. The difference left is the
    update's quantization (shared 8-bit grid vs per-chunk 8-bit) and uniform vs
    example-weighted averaging, which is noise at this scale."""
    url = str(live_coordinator.make_url("")).rstrip("/")
    plain = await _fleet_accuracy(url, digits_tflite, tmp_path / "plain", "off", "plain")
    masked = await _fleet_accuracy(url, digits_tflite, tmp_path / "masked", "secagg", "masked")
    assert len(plain) == len(masked) == 15
    # Non-IID rounds swing by a few points; compare the last three rounds' mean.
    plain_end, masked_end = sum(plain[-3:]) / 3, sum(masked[-3:]) / 3
    assert plain_end > 0.85 and masked_end > 0.85, (plain, masked)
    assert abs(plain_end - masked_end) < 0.05, (plain, masked)


def test_a_model_data_mismatch_fails_before_round_1(digits_tflite, tmp_path, capsys):
    """A 60-feature dataset against the 64-input digits model: one line, exit 1, and nothing was
    sent (the coordinator URL does not even answer)."""
    from fedge.cli import main
    from fedge.local_coordinator import free_port

    model = tmp_path / "m.tflite"
    model.write_bytes(digits_tflite)
    code = main(["fleet", "--coordinator", f"http://127.0.0.1:{free_port()}", "--admin-token", "t", "--model",
                 str(model), "--devices", "10", "--dataset", "synthetic:0.5,0.5", "--no-progress", "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "does not fit model 'digits_mlp'" in err[0] and "(60,)" in err[0] and "(64,)" in err[0]
