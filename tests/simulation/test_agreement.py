"""The simulation agrees with the real thing: one scenario run as an emulated fleet against
a served coordinator (real sockets, real time, `fedge fleet`'s devices) and as a simulation
(the same coordinator classes on virtual time): the same rounds commit with the same
reporters, and the accuracy per round agrees within a stated tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from device_runtime.fleet.datasets import load_federated
from device_runtime.fleet.emulator import Fleet, FleetConfig
from simulation.population import Population, read_population
from simulation.run import SimConfig, Simulation
from tests.device_runtime.conftest import TOKEN, live_coordinator  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slow

DEVICES, ROUNDS, GOAL = 60, 8, 30
TASK = {"rounds": ROUNDS, "goal_count": GOAL, "over_selection": 1.3, "selection_window_s": 1.0,
        "report_deadline_s": 20.0, "eligibility": "charging and unmetered and idle", "epochs": 5,
        "learning_rate": 0.1, "codec": "q8"}
TRAIN_TIME_S, SPEED_SIGMA = 0.3, 1.0
# Who is selected, and so the accuracy after each round, is random in both (real arrival order,
# virtual arrival order), by about 0.025 a round here. The fleet's run is one draw; the
# simulation is run under SIMULATED_SEEDS seeds, and the fleet's accuracy after each round must
# lie within BAND_SIGMAS of the simulations' spread around their mean (a Student-t prediction
# interval for one more draw: a fleet that agrees falls outside it about once in 1,000 runs),
# plus a floor for the 1/360 steps of the test set's accuracy.
SIMULATED_SEEDS, BAND_SIGMAS, BAND_FLOOR = 16, 5.0, 0.01


def _simulated_accuracy(data, model: bytes, seed: int) -> tuple[list[int], np.ndarray]:
    settings = read_population(None)
    settings["availability"]["model"] = "always"
    settings["dropout"]["training"] = 0.0
    settings["speed"]["sigma"] = SPEED_SIGMA
    settings["network"].update(down_mbps=1e4, up_mbps=1e4)  # loopback-fast, as the fleet's transfers
    population = Population.sample(settings, DEVICES, np.random.default_rng([seed, 0]))
    sim = Simulation(SimConfig(devices=DEVICES, hours=1.0, seed=seed, train_time_s=TRAIN_TIME_S,
                               online_spread_s=0.1, progress=False), model, TASK, population, data)
    committed = [r for r in sim.run() if r.state == "committed"]
    return [r.reported for r in committed], np.array([r.global_accuracy for r in committed])


async def test_a_simulation_agrees_with_a_fleet_on_the_served_coordinator(live_coordinator, digits_tflite,
                                                                          tmp_path):
    data = load_federated("digits", DEVICES, "iid", 0)
    url = str(live_coordinator.make_url("")).rstrip("/")
    fleet_cfg = FleetConfig(coordinator=url, admin_token=TOKEN, devices=DEVICES, partition="iid", dropout=0.0,
                            slow_fraction=0.0, speed=f"lognormal:{SPEED_SIGMA}", train_time_s=TRAIN_TIME_S, seed=0,
                            workers=2, progress=False, population="agree", out_dir=str(tmp_path / "fleet"))
    fleet = [r for r in await Fleet(fleet_cfg, data).run(digits_tflite, TASK, task_id="agree")
             if r.state == "committed"]
    assert len(fleet) == ROUNDS and [r.reported for r in fleet] == [GOAL] * ROUNDS
    fleet_acc = np.array([r.global_accuracy for r in fleet])

    runs = [_simulated_accuracy(data, digits_tflite, seed) for seed in range(SIMULATED_SEEDS)]
    assert all(reported == [GOAL] * ROUNDS for reported, _ in runs)
    simulated = np.array([acc for _, acc in runs])
    mean, spread = simulated.mean(axis=0), simulated.std(axis=0, ddof=1)
    band = BAND_SIGMAS * spread * np.sqrt(1 + 1 / SIMULATED_SEEDS) + BAND_FLOOR
    print("fleet", np.round(fleet_acc, 3), "simulated mean", np.round(mean, 3), "band", np.round(band, 3))
    assert np.all(np.abs(fleet_acc - mean) <= band), (fleet_acc, mean, band)
    # The comparison has teeth: the simulations learn as the fleet does, from chance level.
    assert mean[0] < 0.4 and mean[-1] > 0.7 and np.all(np.diff(mean) > 0), mean
