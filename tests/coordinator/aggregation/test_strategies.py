"""Aggregation strategies: one interface (fold, finalize) over a reducer and a server
optimizer, with DP as a wrapper."""

import numpy as np
import pytest

from coordinator.aggregation.reducers import NothingToAggregate
from coordinator.aggregation.strategies import DifferentiallyPrivate, Federated, RoundContext, make_strategy
from coordinator.tasks.config import TaskConfig

WEIGHTS = np.array([1.0, -1.0, 0.5], np.float32)


def _config(**overrides) -> TaskConfig:
    return TaskConfig.from_dict({"goal_count": 4, **overrides})


def test_fedavg_moves_the_weights_by_the_weighted_mean_times_the_server_rate():
    s = make_strategy(_config(server_optimizer={"name": "fedavg", "learning_rate": 0.5}), 3)
    s.fold(np.array([1, 2, 3], np.float32), 1.0)
    s.fold(np.array([3, 2, 1], np.float32), 3.0)
    out = s.finalize(WEIGHTS, {}, RoundContext())
    assert s.count == 2 and np.allclose(out.weights, WEIGHTS + 0.5 * np.array([2.5, 2.0, 1.5]))
    assert out.optimizer_state == {} and out.metrics == {}


def test_fedadam_carries_its_moments_from_round_to_round():
    cfg = _config(server_optimizer={"name": "fedadam", "learning_rate": 0.1, "beta_1": 0.9, "beta_2": 0.99,
                                    "tau": 1e-3})
    weights, state = WEIGHTS, {}
    steps = []
    for _ in range(3):  # the same pseudo-gradient every round: Adam's step grows toward lr
        s = make_strategy(cfg, 3)
        s.fold(np.array([1.0, -1.0, 0.0], np.float32), 1.0)
        out = s.finalize(weights, state, RoundContext())
        steps.append(out.weights - weights)
        weights, state = out.weights, out.optimizer_state
    assert set(state) == {"m", "v"} and state["m"].dtype == np.float32
    assert steps[0][0] > 0 and steps[0][1] < 0 and steps[0][2] == 0  # direction of the mean delta
    assert abs(steps[2][0]) > abs(steps[1][0]) > abs(steps[0][0])  # momentum builds up
    assert abs(steps[0][0]) == pytest.approx(0.1 * 0.1 / (np.sqrt(0.01) + 1e-3), rel=1e-4)


def test_fedavgm_accumulates_velocity_across_rounds():
    cfg = _config(server_optimizer={"name": "fedavgm", "learning_rate": 0.5, "momentum": 0.5})
    weights, state, steps = WEIGHTS, {}, []
    for delta in ([1.0, 0.0, -2.0], [1.0, 0.0, -2.0], [0.0, 0.0, 0.0]):
        s = make_strategy(cfg, 3)
        s.fold(np.array(delta, np.float32), 1.0)
        out = s.finalize(weights, state, RoundContext())
        steps.append(out.weights - weights)
        weights, state = out.weights, out.optimizer_state
    # velocity 1, 1.5, 0.75 times the delta; the step is lr x velocity, and it coasts on a zero delta
    assert np.allclose([s_[0] for s_ in steps], [0.5, 0.75, 0.375]) and np.allclose(steps[2][2], -0.75)
    assert set(state) == {"velocity"} and state["velocity"].dtype == np.float32


@pytest.mark.parametrize("bad", [{"name": "fedavgm", "momentum": 1.0}, {"name": "fedavgm", "momentum": -0.1},
                                 {"name": "sgdm"}])
def test_server_optimizer_settings_out_of_range_are_refused(bad):
    with pytest.raises(Exception, match="momentum|server_optimizer"):
        _config(server_optimizer=bad)


def test_dp_wraps_the_sum_with_noise_a_fixed_denominator_and_epsilon():
    cfg = _config(clip_norm=1.0, dp_noise_multiplier=1.0, dp_population=100)
    s = make_strategy(cfg, 20_000)
    assert isinstance(s, DifferentiallyPrivate)
    for _ in range(2):  # two of the four expected reports
        s.fold(np.zeros(20_000, np.float32), 1.0)
    out = s.finalize(np.zeros(20_000, np.float32), {}, RoundContext(committed_rounds=0, sampling_rate=0.04,
                                                                      clip=1.0))
    moved = out.weights  # noise only: stddev z * clip / goal_count = 0.25 per coordinate
    assert np.std(moved) == pytest.approx(0.25, rel=0.05)
    assert out.metrics["dp_noise_stddev"] == 1.0 and 0 < out.metrics["epsilon"] < 10
    assert out.metrics["dp_sampling_rate"] == 0.04


def test_dp_with_adaptive_clip_proposes_the_next_clip():
    cfg = _config(goal_count=400, clip_norm=1.0, dp_noise_multiplier=1.0, dp_population=1000,
                  dp_target_quantile=0.5, dp_clipped_count_stddev=0.6)
    s = make_strategy(cfg, 3)
    for _ in range(400):
        s.fold(np.full(3, 0.1, np.float32), 1.0)
    out = s.finalize(WEIGHTS, {}, RoundContext(clip=1.0, clip_bits=400.0))  # all below: the clip shrinks
    assert out.metrics["dp_below_clip"] == pytest.approx(1.0, abs=0.02)  # bits' noise 0.6 / 400
    assert out.metrics["dp_next_clip"] < 1.0


def test_a_secure_sum_is_folded_whole():
    s = make_strategy(_config(), 3)
    s.fold_sum(np.array([4.0, 8.0, 0.0]), 4.0, 4)
    out = s.finalize(WEIGHTS, {}, RoundContext())
    assert s.count == 4 and np.allclose(out.weights, WEIGHTS + [1.0, 2.0, 0.0])
    robust = make_strategy(_config(aggregator="median"), 3)
    with pytest.raises(TypeError):
        robust.fold_sum(np.zeros(3), 1.0, 1)


def test_nothing_folded_is_an_error_for_every_strategy():
    for cfg in (_config(), _config(aggregator="krum"),
                _config(clip_norm=1.0, dp_noise_multiplier=1.0, dp_population=100)):
        with pytest.raises(NothingToAggregate):
            make_strategy(cfg, 3).finalize(WEIGHTS, {}, RoundContext(clip=1.0))


def test_dp_refuses_a_robust_reducer():
    from coordinator.aggregation.reducers import Median
    from coordinator.aggregation.server_optimizers import ServerSGD

    with pytest.raises(TypeError):
        DifferentiallyPrivate(Federated(Median(3), ServerSGD(1.0)), _config())
