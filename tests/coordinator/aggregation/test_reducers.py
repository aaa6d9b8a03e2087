"""Reducers: FedAvg streams a weighted mean; the robust ones resist outliers."""

import numpy as np
import pytest

from coordinator.aggregation.reducers import AGGREGATORS, NothingToAggregate, krum_scores, make_reducer


def _honest(rng, n, d=50):
    return [rng.normal(1.0, 0.1, d).astype(np.float32) for _ in range(n)]


def test_fedavg_is_the_weighted_mean():
    s = make_reducer("fedavg", 3)
    s.fold(np.array([1, 2, 3], np.float32), 1.0)
    s.fold(np.array([3, 2, 1], np.float32), 3.0)
    assert s.count == 2 and np.allclose(s.mean(), [2.5, 2.0, 1.5])


@pytest.mark.parametrize("name", [n for n in AGGREGATORS if n != "fedavg"])
def test_robust_strategies_ignore_a_minority_of_huge_updates(name):
    rng = np.random.default_rng(0)
    s = make_reducer(name, 50, trim_fraction=0.2)
    for u in _honest(rng, 8):
        s.fold(u, 1.0)
    for _ in range(2):  # 20% attackers, with huge weights they do not get
        s.fold(np.full(50, 1e6, np.float32), 1e6)
    mean = s.mean()
    assert s.count == 10 and np.all(np.abs(mean - 1.0) < 0.5), (name, mean[:5])  # Krum: one honest update


def test_fedavg_is_moved_by_the_same_attack():
    rng = np.random.default_rng(0)
    s = make_reducer("fedavg", 50)
    for u in _honest(rng, 8) + [np.full(50, 1e6, np.float32)] * 2:
        s.fold(u, 1.0)
    assert np.all(s.mean() > 1e5)


def test_trimmed_mean_drops_the_ends_per_coordinate():
    s = make_reducer("trimmed_mean", 1, trim_fraction=0.2)
    for v in [1, 2, 3, 4, 100]:
        s.fold(np.array([v], np.float32), 1.0)
    assert s.mean()[0] == 3.0  # drops 1 and 100


def test_krum_picks_the_update_closest_to_its_neighbours():
    ups = np.array([[0.0], [0.1], [0.2], [5.0], [9.0]], np.float32)
    scores = krum_scores(ups, byzantine=1)
    assert int(np.argmin(scores)) == 1
    s = make_reducer("krum", 1, krum_byzantine=1)
    for u in ups:
        s.fold(u, 1.0)
    assert s.mean()[0] == pytest.approx(0.1)
    multi = make_reducer("multi_krum", 1, krum_byzantine=1, krum_select=3)
    for u in ups:
        multi.fold(u, 1.0)
    assert multi.mean()[0] == pytest.approx(0.1)


def test_no_updates_is_an_error_not_a_zero():
    for name in AGGREGATORS:
        with pytest.raises(NothingToAggregate):
            make_reducer(name, 3).mean()
