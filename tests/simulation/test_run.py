"""A simulation runs the production coordinator's classes on virtual time: rounds commit,
the same seed gives the same run bit for bit, and real LiteRT training learns."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from coordinator.gateway.gateway import DeviceGateway
from coordinator.rounds.all_kinds import RoundKinds
from coordinator.rounds.driver import RoundDriver
from coordinator.service import Coordinator
from coordinator.store.memory import MemoryStore
from simulation.population import Population, read_population
from simulation.run import TASK_ID, SimConfig, Simulation, sim_token

TASK = {"rounds": 4, "goal_count": 8, "over_selection": 1.25, "epochs": 3, "learning_rate": 0.1,
        "selection_window_s": 60.0, "report_deadline_s": 600.0, "eligibility": "charging and unmetered and idle",
        "codec": "q8"}


def _population(n: int, model: str = "always") -> Population:
    settings = read_population(None)
    settings["availability"]["model"] = model
    settings["dropout"]["training"] = 0.1
    return Population.sample(settings, n, np.random.default_rng(0))


def _system_run(model: bytes, seed: int = 0) -> Simulation:
    sim = Simulation(SimConfig(devices=30, hours=3.0, seed=seed, system_only=True, progress=False), model,
                     TASK, _population(30))
    sim.run()
    return sim


def test_the_simulated_path_is_the_served_path(digits_tflite):
    sim = _system_run(digits_tflite)
    c = sim.coordinator
    # Not a fork: the same classes `fedge serve` builds, on the in-memory store.
    assert type(c) is Coordinator and type(c.gateway) is DeviceGateway and type(c.driver) is RoundDriver
    assert type(c.driver.kinds) is RoundKinds and type(c.store) is MemoryStore
    # The devices were registered in one batch; each one's token passes the gateway's check.
    for i in (0, 17, 29):
        device = c.gateway.authenticate(f"Bearer {sim.records[i].device_id}.{sim_token(0, i)}")
        assert (device.device_id, device.token_hash) == (sim.records[i].device_id, sim.records[i].token_hash)
    states = [r.state for r in sim.history]
    assert states.count("committed") == 4 and c.tasks["sim"].state == "completed"
    # Every acknowledged upload is counted once, in the round that took it.
    assert sim.stats.uploads == sum(r.reported for r in sim.history) and sim.stats.dropped > 0
    assert all(r.reported >= 4 for r in sim.history if r.state == "committed")  # min_reports: goal // 2
    assert 0 < sim.clock.elapsed_s < 3 * 3600  # the task finished before the virtual hours ran out


def test_device_requests_are_what_the_gateway_was_asked(digits_tflite):
    """The summary's device requests: check-ins (first looks), blob downloads (through the
    gateway's blob access, as the download handler's), uploads taken or refused; the queue's
    events also count second looks after a wake-up and ticks."""
    sim = Simulation(SimConfig(devices=30, hours=3.0, seed=1, system_only=True, progress=False), digits_tflite,
                     TASK, _population(30))
    gateway, calls = sim.coordinator.gateway, {"checkin": 0, "assigned": 0, "upload": 0, "download": 0, "bytes": 0}
    checkin, upload, served = gateway.checkin, gateway.upload, gateway.blobs.served

    def counted_checkin(device, req, rate_limited=True):
        resp = checkin(device, req, rate_limited)
        calls["checkin"] += rate_limited  # a second look is the same request, held
        calls["assigned"] += resp.outcome == "assigned"
        return resp

    def counted_upload(*args):
        calls["upload"] += 1
        return upload(*args)

    def counted_download(sha, size):
        calls["download"] += 1
        calls["bytes"] += size
        return served(sha, size)

    gateway.checkin, gateway.upload, gateway.blobs.served = counted_checkin, counted_upload, counted_download
    sim.run()
    assert sim.stats.checkins == calls["checkin"] and sim.stats.assigned == calls["assigned"] > 0
    # Each device fetches the model once and a checkpoint a round it is assigned.
    assert calls["assigned"] < sim.stats.downloads == calls["download"] <= 2 * calls["assigned"]
    assert sim.stats.bytes_down == calls["bytes"]
    assert sim.stats.device_requests == calls["checkin"] + calls["download"] + calls["upload"]
    assert calls["upload"] > sim.stats.uploads > 0  # some were refused (their round had closed)


def test_the_task_model_travels_compressed_as_the_download_handler_sends_it(digits_tflite):
    """Devices ask for gzip (both runtimes): the model's download is the gateway's compressed
    body, and the round metrics count what was sent."""
    sim = Simulation(SimConfig(devices=30, hours=1.0, seed=1, system_only=True, progress=False), digits_tflite,
                     TASK, _population(30))
    sim.run()
    task = sim.coordinator.tasks[TASK_ID]
    fields = sim.coordinator.gateway.downloads.assignment_fields(task, (), sim.clock.now + 60, sim.clock.now)
    model, checkpoint = (sim.store.blobs.read(fields[k]) for k in ("model_sha256", "checkpoint_sha256"))
    packed = sim.coordinator.gateway.blobs.gzipped(fields["model_sha256"], lambda: model)
    assert packed is not None and len(packed) < len(model)
    models = len({d for d in range(30) if sim._held.get(d)})  # each device that took part fetched it once
    assert sim.stats.bytes_down < models * len(model) + sim.stats.assigned * len(checkpoint)
    assert sum(r.bytes_down for r in sim.history) == sim.stats.bytes_down > 0


def test_the_same_seed_gives_the_same_run_bit_for_bit(digits_tflite):
    a, b = _system_run(digits_tflite, seed=5), _system_run(digits_tflite, seed=5)
    assert [vars(r) for r in a.history] == [vars(r) for r in b.history]
    assert a.queue.processed == b.queue.processed and a.stats.checkins == b.stats.checkins
    c = _system_run(digits_tflite, seed=6)
    assert [vars(r) for r in c.history] != [vars(r) for r in a.history]


def test_every_round_is_recorded_when_many_close_between_two_ticks(digits_tflite):
    # Rounds of a fraction of a second and a driver tick every 30 s: up to a dozen rounds open
    # and close between two looks at the store, and each still has its line in the history.
    task = dict(TASK, rounds=12, selection_window_s=0.2, report_deadline_s=5.0)
    sim = Simulation(SimConfig(devices=30, hours=1.0, seed=0, system_only=True, progress=False, tick_s=30.0,
                               train_time_s=0.01, online_spread_s=0.1), digits_tflite, task, _population(30))
    sim.run()
    assert [r.round for r in sim.history] == list(range(1, len(sim.history) + 1))
    assert [r.state for r in sim.history].count("committed") == 12
    assert sum(30.0 < r.virtual_s < 60.0 for r in sim.history) >= 5  # between the ticks at 30 and 60 s


def test_real_training_learns_on_virtual_time(digits_tflite):
    from device_runtime.fleet.datasets import load_federated

    data = load_federated("digits", 30, "iid", 0)
    sim = Simulation(SimConfig(devices=30, hours=3.0, seed=0, target=0.5, progress=False), digits_tflite,
                     {**TASK, "rounds": 5}, _population(30), data)
    history = sim.run()
    accuracy = [r.global_accuracy for r in history if r.state == "committed"]
    # A device trains only when it will upload (it gives up a round it cannot finish first); the
    # run may end with an update on its way.
    assert len(accuracy) == 5 and sim.stats.trainings == (sim.stats.uploads + sum(sim.stats.refused.values())
                                                          + sim.queue.waiting("upload"))
    assert accuracy[-1] > accuracy[0] + 0.2 and accuracy[-1] > 0.5
    assert sim.target_reached_s is not None and sim.target_reached_s <= history[-1].virtual_s


def test_versions_committed_at_one_instant_are_each_evaluated(digits_tflite):
    # Every device trains for exactly the same time, so the first uploads land within 0.1 virtual s:
    # ten versions and more commit between two ticks while the task keeps only 2 checkpoints. Each is
    # still in the history with its accuracy (recorded as it commits, not at the next tick).
    from device_runtime.fleet.datasets import load_federated

    settings = read_population(None)
    settings["availability"]["model"] = "always"
    settings["dropout"]["training"] = 0.0
    settings["speed"]["sigma"] = settings["network"]["sigma"] = 0.0
    task = {"mode": "async", "rounds": 15, "concurrency": 30, "buffer_size": 2, "keep_checkpoints": 2,
            "epochs": 1, "learning_rate": 0.1, "codec": "q8", "eligibility": ""}
    sim = Simulation(SimConfig(devices=30, hours=1.0, seed=0, train_time_s=30.0, online_spread_s=0.01,
                               progress=False), digits_tflite,
                     task, Population.sample(settings, 30, np.random.default_rng(0)),
                     load_federated("digits", 30, "iid", 0))
    history = sim.run()
    assert [r.round for r in history] == list(range(1, 16)) and {r.state for r in history} == {"committed"}
    assert all(np.isfinite(r.global_accuracy) for r in history)
    assert sum(r.virtual_s - history[0].virtual_s < 0.1 for r in history) >= 10  # within one tick


def test_devices_that_are_never_available_never_train(digits_tflite):
    pop = _population(10)
    pop = replace(pop, settings={**pop.settings, "availability": {**pop.settings["availability"], "model": "trace"}})
    phones = Simulation(SimConfig(devices=10, hours=1.0, system_only=True, progress=False), digits_tflite, TASK, pop)
    phones.run()
    assert phones.stats.checkins == 0  # a phone's job scheduler never ran the check-in
    boards = Simulation(SimConfig(devices=10, hours=1.0, system_only=True, progress=False, phone_scheduler=False),
                        digits_tflite, TASK, pop)
    boards.run()  # `fedge device` on a board checks in whatever its state, and is turned away
    assert boards.stats.assigned == 0 and boards.stats.checkins > 10
    assert boards.stats.ineligible_checkins == boards.stats.checkins
    assert all(r.state == "failed" for r in boards.history)


def _night_window_run(model: bytes, devices: int, daytime: float) -> Simulation:
    """Phones in one time zone charging 01:00-03:00 UTC, over 6 virtual hours of a task that never ends."""
    settings = read_population(None)
    settings["availability"].update(timezones=[0], night_start_h=1.0, night_start_sd_h=0.0, night_hours=2.0,
                                    night_hours_sd=0.0, daytime=daytime)
    pop = Population.sample(settings, devices, np.random.default_rng(0))
    sim = Simulation(SimConfig(devices=devices, hours=6.0, system_only=True, progress=False), model,
                     {**TASK, "rounds": 10_000}, pop)
    sim.run()
    return sim


def test_phones_check_in_only_during_their_charging_window(digits_tflite):
    sim = _night_window_run(digits_tflite, 20, daytime=0.0)
    hours = sim.stats.checkins_by_hour
    assert hours.get(1, 0) > 0 and hours.get(2, 0) > 0  # 01:00 to 03:00 UTC
    assert sum(n for h, n in hours.items() if h not in (1, 2)) == 0 and sim.stats.ineligible_checkins == 0


def test_a_daytime_charge_runs_a_phones_check_in(digits_tflite):
    # A phone sent back outside its window is scheduled at its next window or at a daytime
    # charge (each hour with the `daytime` chance), whichever comes first, and checks in then.
    sim = _night_window_run(digits_tflite, 200, daytime=0.05)
    # Hours after the window (01:00-03:00 UTC) and the first return past its end: about 0.05 x
    # 200 phones an hour charge in daylight. A phone that drew its chance again on waking
    # checked in 5% of those times (none in these two hours).
    daytime = sum(n for h, n in sim.stats.checkins_by_hour.items() if h >= 4)
    assert daytime >= 10 and sim.stats.ineligible_checkins == 0


def test_pace_steering_off_brings_devices_back_on_a_fixed_beat(digits_tflite):
    """Off, every device polls every fixed_retry_s, eligible or not; on, the coordinator's
    answer decides: an ineligible device (not charging, say) is sent away for
    ineligible_retry_s (300 s), an eligible one as often as the rounds need it."""
    task = {**TASK, "rounds": 10_000, "goal_count": 4}  # still running when the half hour ends
    on = Simulation(SimConfig(devices=60, hours=0.5, system_only=True, progress=False, phone_scheduler=False),
                    digits_tflite, task, _population(60, model="diurnal"))
    on.run()
    off = Simulation(SimConfig(devices=60, hours=0.5, system_only=True, progress=False, fixed_retry_s=20.0,
                               phone_scheduler=False), digits_tflite, task, _population(60, model="diurnal"))
    off.run()
    per_device_off = off.stats.checkins / 60 / (off.clock.elapsed_s / 20.0)
    assert 0.5 < per_device_off < 1.6  # about one check-in per device every 20 s
    assert on.stats.ineligible_checkins * 5 < off.stats.ineligible_checkins


def test_a_device_holding_a_recent_checkpoint_downloads_the_delta(digits_tflite):
    """With the task's download_delta_codec, a device that holds an earlier full download of
    the task fetches the delta the gateway offers instead of the checkpoint (fewer bytes)."""
    def run(delta_codec: str):
        task = {**TASK, "rounds": 6, "download_codec": "q8", "download_delta_codec": delta_codec}
        sim = Simulation(SimConfig(devices=12, hours=3.0, seed=2, system_only=True, progress=False), digits_tflite,
                         task, _population(12))
        fetched, served = [], sim.coordinator.gateway.blobs.served
        sim.coordinator.gateway.blobs.served = lambda sha, size: (fetched.append(sha), served(sha, size))[1]
        sim.run()
        return sim, fetched

    full, full_fetched = run("")
    delta, delta_fetched = run("q4+rot")
    deltas = {sha for table in delta.coordinator.gateway.downloads._deltas.values() for sha in table.values()}
    assert deltas and deltas & set(delta_fetched) and not deltas & set(full_fetched)
    assert delta.stats.bytes_down / delta.stats.assigned < full.stats.bytes_down / full.stats.assigned


def test_uploads_over_a_breaking_network_are_retried_and_counted_once(digits_tflite):
    """`[network] upload_failure`: broken attempts are sent again with the device client's
    backoff; a retry of an update the coordinator had taken (its answer lost) is the served
    gateway's duplicate, so each update counts once in its round."""
    settings = read_population(None)
    settings["availability"]["model"], settings["dropout"]["training"] = "always", 0.1
    settings["network"]["upload_failure"] = 0.4
    sim = Simulation(SimConfig(devices=30, hours=3.0, seed=3, system_only=True, progress=False), digits_tflite,
                     TASK, Population.sample(settings, 30, np.random.default_rng(0)))
    sim.run()
    s = sim.stats
    assert s.upload_failures > 10 and s.duplicate_uploads > 0
    assert sum(r.state == "committed" for r in sim.history) == TASK["rounds"]
    # Every update the coordinator took is in its round's count, once.
    assert s.uploads == sum(r.reported for r in sim.store.rounds(TASK_ID)) == int(s.uploads_by_device.sum())
    steady = _system_run(digits_tflite, seed=3)
    assert steady.stats.upload_failures == steady.stats.duplicate_uploads == 0
