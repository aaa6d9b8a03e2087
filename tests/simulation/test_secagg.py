"""Secure aggregation on virtual time: simulated devices go through the SecAgg phases with the
protocol's own client against the production round kind; rounds commit through dropouts
(the survivors' reveals remove the vanished devices' masks) and real training still learns
from the unmasked sums."""

from __future__ import annotations

import numpy as np

from simulation.population import Population, read_population
from simulation.run import SimConfig, Simulation

TASK = {"rounds": 4, "goal_count": 10, "over_selection": 1.3, "epochs": 3, "learning_rate": 0.1,
        "selection_window_s": 60.0, "report_deadline_s": 900.0, "eligibility": "", "codec": "q8",
        "secagg": "secagg+", "clip_norm": 1.0}


def _population(n: int, dropout: float) -> Population:
    settings = read_population(None)
    settings["availability"]["model"] = "always"
    settings["dropout"]["training"] = dropout
    return Population.sample(settings, n, np.random.default_rng(0))


def _run(model: bytes, seed: int = 0, dropout: float = 0.2, data=None, task=TASK) -> Simulation:
    sim = Simulation(SimConfig(devices=40, hours=3.0, seed=seed, system_only=data is None, progress=False), model,
                     task, _population(40, dropout), data)
    sim.run()
    return sim


def test_secagg_rounds_commit_through_dropouts(digits_tflite):
    sim = _run(digits_tflite)
    committed = [r for r in sim.history if r.state == "committed"]
    assert len(committed) == 4 and sim.coordinator.tasks["sim"].state == "completed"
    out = sim.secagg.outcomes
    # Devices vanished after sharing their keys, and every round still unmasked its sum.
    assert out.get("dropped", 0) > 0 and sim.stats.dropped == out["dropped"]
    # (at the deadline a round commits with the reports it has, if they are enough)
    required = sim.coordinator.tasks["sim"].config.required_reports
    assert all(r.reported >= required for r in committed) and any(r.reported < r.selected for r in committed)
    # Every masked input the coordinator took is counted once, in the round that took it.
    assert sim.stats.uploads == sum(r.reported for r in sim.history) == out.get("uploaded", 0)
    assert not sim.secagg.sessions  # nobody is left waiting on a closed round


def test_the_same_seed_gives_the_same_secagg_run(digits_tflite):
    # Keys, masks, and the coordinator's rotation and neighbour-graph seeds come from the OS
    # (unpredictable by design, so the accuracy of real training may differ in its last
    # digits); every count and timing does not.
    a, b = _run(digits_tflite, seed=3), _run(digits_tflite, seed=3)
    assert [vars(r) for r in a.history] == [vars(r) for r in b.history]
    assert a.secagg.outcomes == b.secagg.outcomes and a.queue.processed == b.queue.processed


def test_real_training_learns_through_secure_aggregation_as_without_it(digits_tflite):
    from device_runtime.fleet.datasets import load_federated

    data = load_federated("digits", 40, "iid", 0)
    task = {**TASK, "rounds": 5}
    sim = _run(digits_tflite, data=data, dropout=0.1, task=task)
    accuracy = [r.global_accuracy for r in sim.history if r.state == "committed"]
    assert len(accuracy) == 5 and accuracy[-1] > accuracy[0] + 0.2
    # The same devices and data in plain rounds: the unmasked sums train the model as well.
    plain = _run(digits_tflite, data=data, dropout=0.1, task={**task, "secagg": "off"})
    assert max(abs(s - p) for s, p in zip(accuracy, [r.global_accuracy for r in plain.history])) < 0.06
