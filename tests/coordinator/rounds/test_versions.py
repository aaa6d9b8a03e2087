"""The asynchronous engine's transitions and the staleness weights, on injected time."""

import math

import pytest

from coordinator.rounds import engine
from coordinator.rounds.versions import BufferProgress, BufferRules, StalenessWeight, next_step, staleness

K = BufferRules(buffer_size=3)


@pytest.mark.parametrize("progress,action", [
    (BufferProgress("reporting", 0, True), engine.WAIT),
    (BufferProgress("reporting", 2, True), engine.WAIT),
    (BufferProgress("reporting", 3, True), engine.AGGREGATE),
    (BufferProgress("reporting", 7, True), engine.AGGREGATE),  # filled while the one before committed
    (BufferProgress("reporting", 3, False), engine.WAIT),  # its base version is not published yet
    (BufferProgress("aggregating", 3, True), engine.COMMIT),  # e.g. after a restart
    (BufferProgress("aggregating", 3, False), engine.WAIT),
    (BufferProgress("committed", 3, True), engine.WAIT),
    (BufferProgress("failed", 0, True), engine.WAIT),
])
def test_buffer_steps(progress, action):
    assert next_step(progress, K, now=0.0).action == action


def test_time_alone_never_moves_a_buffer():
    # No selection window, no round deadline: only updates close a buffer.
    for now in (0.0, 1e6, 1e12):
        assert next_step(BufferProgress("reporting", 2, True), K, now).action == engine.WAIT


def test_staleness_counts_versions_published_while_training():
    assert staleness(assigned_buffer=4, landing_buffer=4) == 0
    assert staleness(4, 7) == 3
    assert staleness(5, 4) == 0  # never negative


def test_staleness_weights():
    poly = StalenessWeight.parse("polynomial:0.5")
    assert poly(0) == 1.0
    assert poly(3) == pytest.approx(1 / math.sqrt(4))
    assert StalenessWeight.parse("polynomial")(8) == pytest.approx(1 / 3)
    assert StalenessWeight.parse("constant")(50) == 1.0
    hinge = StalenessWeight.parse("hinge:2,3")
    assert [hinge(s) for s in (0, 3)] == [1.0, 1.0]
    assert hinge(5) == pytest.approx(1 / (2 * 2 + 1))
    # Non-increasing in staleness, in (0, 1].
    for w in (poly, hinge, StalenessWeight.parse("polynomial:2")):
        values = [w(s) for s in range(40)]
        assert all(0 < v <= 1 for v in values) and values == sorted(values, reverse=True)
    assert str(StalenessWeight.parse("hinge:2,3")) == "hinge:2,3"


@pytest.mark.parametrize("text", ["", "poly:1", "polynomial:x", "polynomial:-1", "polynomial:1,2", "hinge:1",
                                  "hinge:1,nan", "constant:1", "polynomial:inf"])
def test_bad_staleness_weights_are_refused(text):
    with pytest.raises(ValueError, match="staleness_weight"):
        StalenessWeight.parse(text)
