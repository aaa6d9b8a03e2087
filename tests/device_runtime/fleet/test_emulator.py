"""A small emulated fleet trains the digits model well above chance."""

import asyncio

import pytest

from coordinator.http.app import COORDINATOR
from device_runtime.fleet.datasets import load_federated
from device_runtime.fleet.emulator import Fleet, FleetConfig, write_history
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


async def test_a_saturated_training_pool_does_not_starve_the_next_round(live_coordinator, digits_tflite, tmp_path):
    """More selected devices than one worker can train before the deadline: the jobs it cannot
    reach in time are dropped when it reaches them, so the next round's jobs do not queue behind
    a closed round's (the review's 10,000-device fleet lost a round with 0 of 260 reports)."""
    url = str(live_coordinator.make_url("")).rstrip("/")
    data = load_federated("digits", 120, "iid", seed=3)
    cfg = FleetConfig(coordinator=url, admin_token=TOKEN, devices=120, partition="iid", dropout=0.0,
                      slow_fraction=0.0, seed=3, workers=1, progress=False, population="saturated", ramp_s=0.5)
    fleet = Fleet(cfg, data)
    # ~90 selected per round x 1,000 steps on one worker: more work than fits in the 1.5 s deadline.
    task = {"rounds": 4, "goal_count": 60, "over_selection": 1.5, "min_reports": 5, "selection_window_s": 1.0,
            "report_deadline_s": 1.5, "eligibility": "charging", "epochs": 1000, "learning_rate": 0.05,
            "codec": "q8"}
    # Before the fix this run did not finish in 10 minutes: every round's jobs queued behind stale ones.
    history = await asyncio.wait_for(fleet.run(digits_tflite, task, task_id="saturated"), 240)
    assert fleet.trainer.skipped_late > 0  # the pool was saturated, and stale work was dropped
    committed = [r for r in history if r.state == "committed"]
    assert len(committed) == 4, [(r.round, r.state, r.reason) for r in history]
    assert all(r.reported >= 5 for r in committed), [(r.round, r.reported) for r in committed]


async def test_stragglers_upload_partial_work_only_when_the_task_takes_it(live_coordinator, digits_tflite):
    url = str(live_coordinator.make_url("")).rstrip("/")
    outcomes = {}
    for partial in (True, False):
        data = load_federated("digits", 10, "iid", seed=2)
        cfg = FleetConfig(coordinator=url, admin_token=TOKEN, devices=10, dropout=0.0, seed=2, workers=2,
                          progress=False, population=f"strag{int(partial)}", stragglers=1.0, slow_fraction=0.0)
        fleet = Fleet(cfg, data)
        task = {"rounds": 2, "goal_count": 4, "over_selection": 1.0, "min_reports": 1, "selection_window_s": 1.0,
                "report_deadline_s": 3.0, "eligibility": "", "epochs": 6, "learning_rate": 0.05, "codec": "q8",
                "partial_work": partial, "proximal_mu": 0.1}
        history = await fleet.run(digits_tflite, task, task_id=f"strag{int(partial)}")
        stats = [d.stats for d in fleet.devices]
        outcomes[partial] = (history, sum(s.partial for s in stats), sum(s.unfinished for s in stats),
                             sum(s.uploads for s in stats))
    # Every device straggles every round: U[1, 6] epochs of 6 is partial 5 times in 6. Which devices are
    # selected depends on timing, so the counts are random: assert only what holds for every draw (the
    # chance that 8 device-rounds all draw 6 epochs is 6^-8).
    history, partial_uploads, unfinished, _ = outcomes[True]
    assert [r.state for r in history] == ["committed", "committed"] and partial_uploads >= 1 and unfinished == 0
    history, partial_uploads, unfinished, uploads = outcomes[False]
    assert partial_uploads == 0 and unfinished >= 1  # FedAvg drops them: only full-epoch devices upload
    committed = [r for r in history if r.state == "committed"]
    assert sum(r.reported for r in committed) <= uploads


async def test_the_fleet_reports_federated_evaluations(live_coordinator, digits_tflite, tmp_path):
    url = str(live_coordinator.make_url("")).rstrip("/")
    data = load_federated("digits", 12, "dirichlet:0.5", seed=4)
    cfg = FleetConfig(coordinator=url, admin_token=TOKEN, devices=12, dropout=0.0, seed=4, workers=2,
                      progress=False, population="evalpop", slow_fraction=0.0)
    fleet = Fleet(cfg, data)
    task = {"rounds": 2, "goal_count": 4, "over_selection": 1.0, "selection_window_s": 1.0,
            "report_deadline_s": 5.0, "eligibility": "", "epochs": 2, "learning_rate": 0.05, "codec": "q8",
            "eval_every": 1, "eval_goal_count": 6}
    printed = []
    history = await fleet.run(digits_tflite, task, task_id="evalfleet", on_round=printed.append)
    assert [r.state for r in history] == ["committed", "committed"]
    assert [e["round"] for e in fleet.evaluations] == [1, 2], fleet.evaluations
    for e in fleet.evaluations:
        m = e["metrics"]
        assert e["state"] == "completed" and m["eval_devices"] == 6
        assert 0 <= m["eval_accuracy_p10"] <= m["eval_accuracy_p50"] <= m["eval_accuracy_p90"] <= 1
    assert any(isinstance(p, dict) for p in printed)  # the fleet printed the evaluations as they came
    paths = write_history(history, tmp_path, evaluations=fleet.evaluations)
    assert paths["evaluations"].exists() and paths["png"].stat().st_size > 5000


async def test_the_fleet_counts_both_directions_per_round(live_coordinator, digits_tflite):
    url = str(live_coordinator.make_url("")).rstrip("/")
    data = load_federated("digits", 6, "iid", seed=7)
    cfg = FleetConfig(coordinator=url, admin_token=TOKEN, devices=6, dropout=0.0, seed=7, workers=2,
                      progress=False, population="bytespop", slow_fraction=0.0)
    fleet = Fleet(cfg, data)
    task = {"rounds": 2, "goal_count": 3, "over_selection": 1.0, "selection_window_s": 1.0,
            "report_deadline_s": 5.0, "eligibility": "", "epochs": 1, "learning_rate": 0.05, "codec": "q8"}
    history = await fleet.run(digits_tflite, task, task_id="bytes")
    from protocol.tflite_file import read_manifest

    checkpoint = 4 * read_manifest(digits_tflite).num_parameters  # f32 weights, plus a small header
    for rec in history:
        assert rec.state == "committed" and rec.bytes_down >= rec.reported * checkpoint
    # Round 1's devices also fetched the model, once each: served with its weights zeroed (the
    # checkpoint brings them) and gzip-compressed, it cost each less than half the weights.
    import gzip

    from protocol.tflite_file import without_weights

    model = len(gzip.compress(without_weights(digits_tflite), 9, mtime=0))
    assert model < checkpoint / 2
    fetched = [d.stats for d in fleet.devices if d.stats.model_downloads]
    assert len(fetched) >= history[0].reported
    assert all(x.model_bytes_down == x.model_downloads * model for x in fetched)
    assert history[0].bytes_down >= history[0].reported * (checkpoint + model)
    assert "KiB down" in fleet.download_summary() and "the model:" in fleet.download_summary()
    coordinator = live_coordinator.app[COORDINATOR]
    served = [r["metrics"]["bytes_out"] for r in coordinator.admin.rounds("bytes")]
    assert served[0] > 0  # what the coordinator itself served (the fleet's shared cache fetches each blob once)


@pytest.mark.slow
async def test_scaffold_with_the_zoos_momentum_sgd_converges_at_q8(live_coordinator, digits_tflite):
    """SCAFFOLD over the digits MLP, whose export keeps Keras's SGD with momentum 0.9, on
    label-skewed devices with q8 uploads and the paper's server step (scaffold_population = the
    population). It diverged at q8 and f32 alike (loss 1.95 -> 10^7 in 30 rounds): option II
    divided each round's displacement by K lr while momentum moves about 5x further. Counting
    K as the steps momentum makes them (protocol.scaffold.effective_steps), it converges."""
    url = str(live_coordinator.make_url("")).rstrip("/")
    data = load_federated("digits", 50, "dirichlet:0.3", seed=0)
    cfg = FleetConfig(coordinator=url, admin_token=TOKEN, devices=50, partition="dirichlet:0.3", dropout=0.0,
                      slow_fraction=0.0, seed=0, workers=2, progress=False, population="scaffolded")
    task = {"rounds": 20, "goal_count": 10, "over_selection": 1.0, "selection_window_s": 2.0,
            "report_deadline_s": 30.0, "eligibility": "charging", "epochs": 5, "learning_rate": 0.05,
            "codec": "q8", "scaffold": True, "scaffold_population": 50}
    history = await Fleet(cfg, data).run(digits_tflite, task)
    committed = [r for r in history if r.state == "committed"]
    assert len(committed) >= 18
    assert max(r.train_loss for r in committed) < 3.0  # no blow-up on the way
    assert committed[-1].global_accuracy > 0.75  # chance is 0.1


async def test_a_fleet_with_releases_installs_a_round_released_while_it_trains(live_coordinator, digits_tflite,
                                                                               tmp_path):
    """`fedge fleet --releases`: round 1 is released while the fleet trains round 2 on; the
    devices that check in afterwards install it (each its own folder, verified)."""
    from device_runtime.admin import AdminClient

    url = str(live_coordinator.make_url("")).rstrip("/")
    data = load_federated("digits", 12, "dirichlet:0.5", seed=4)
    cfg = FleetConfig(coordinator=url, admin_token=TOKEN, devices=12, dropout=0.0, slow_fraction=0.0, seed=4,
                      workers=2, progress=False, population="pop", out_dir=str(tmp_path), releases=True)
    fleet = Fleet(cfg, data)
    task = {"rounds": 4, "goal_count": 6, "over_selection": 1.0, "selection_window_s": 1.0,
            "report_deadline_s": 10.0, "eligibility": "charging", "epochs": 1, "codec": "q8"}
    run = asyncio.create_task(fleet.run(digits_tflite, task, task_id="rel"))
    coordinator = live_coordinator.app[COORDINATOR]
    while coordinator.store.committed_count("rel") < 1:
        await asyncio.sleep(0.05)
    import aiohttp

    async with aiohttp.ClientSession() as session:
        release = await AdminClient(url, TOKEN, session)._call("POST", "/v1/admin/tasks/rel/releases", json={"round": 1})
    await run
    installed = [d.releases.current for d in fleet.devices if d.releases.current is not None]
    assert installed and all(r.release_id == release["release_id"] for r in installed)
    assert all(d.releases.refused == 0 for d in fleet.devices)
    assert all(d.releases.current_model_path().parent == tmp_path / "releases" / f"device{i}"
               and d.releases.current_model_path().exists() for i, d in enumerate(fleet.devices) if d.releases.current)
