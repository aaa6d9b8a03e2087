"""The parity judgement: what the tolerance catches, and the one thing it excuses."""

import numpy as np
import pytest

from model_export.parity import ROUNDING_LEVEL, ParityReport, judge_weights, max_normalized_step

ADAM = {"name": "adam", "learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999}


def test_adam_bound_is_one_learning_rate_per_step_at_first():
    assert max_normalized_step(ADAM, 1) == pytest.approx(1e-3)
    assert 3e-3 <= max_normalized_step(ADAM, 3) <= 3.1e-3


def test_optimizers_that_do_not_normalize_excuse_nothing():
    assert max_normalized_step({"name": "sgd", "learning_rate": 0.1}, 3) is None
    assert max_normalized_step({"name": "adagrad", "learning_rate": 0.1}, 3) is None
    assert max_normalized_step({"name": "rmsprop", "learning_rate": 0.1, "rho": 0.9, "centered": True}, 3) is None
    assert max_normalized_step({"name": "rmsprop", "learning_rate": 0.1, "rho": 0.9}, 1) == pytest.approx(
        0.1 / np.sqrt(0.1))


def _case():
    """16 coordinates moved by Adam; coordinate 3's gradient was 1e-7 against a largest of 0.2."""
    keras = np.linspace(-1, 1, 16).astype(np.float32)
    peaks = np.full(16, 0.05)
    peaks[0] = 0.2
    peaks[3] = 1e-7
    return keras, peaks


def test_a_rounding_level_gradient_may_differ_by_an_adam_step():
    """The AMD failure: one coordinate off by 7.97e-4 after 3 Adam steps of 1e-3."""
    keras, peaks = _case()
    lite = keras.copy()
    lite[3] += 7.97e-4
    lite[5] += 3e-5  # ordinary rounding elsewhere
    judged, excused, worst = judge_weights(lite, keras, peaks, 1e-4, max_normalized_step(ADAM, 3))
    assert excused == 1 and worst == pytest.approx(7.97e-4, rel=1e-3)
    assert judged == pytest.approx(3e-5, rel=1e-2)
    report = ParityReport([1.0], [1.0], judged, 1e-4, excused, worst, max_normalized_step(ADAM, 3))
    assert report.passed and "rounding-level" in report.render()


def test_the_same_difference_on_a_real_gradient_fails():
    keras, peaks = _case()
    lite = keras.copy()
    lite[4] += 7.97e-4
    judged, excused, _ = judge_weights(lite, keras, peaks, 1e-4, max_normalized_step(ADAM, 3))
    assert excused == 0 and not ParityReport([1.0], [1.0], judged, 1e-4).passed


def test_excused_coordinates_are_still_bounded_by_the_optimizers_step():
    keras, peaks = _case()
    lite = keras.copy()
    lite[3] += 0.01  # more than 3 Adam steps can move anything
    bound = max_normalized_step(ADAM, 3)
    judged, excused, worst = judge_weights(lite, keras, peaks, 1e-4, bound)
    assert not ParityReport([1.0], [1.0], judged, 1e-4, excused, worst, bound).passed


def test_without_a_normalizing_optimizer_nothing_is_excused():
    keras, peaks = _case()
    lite = keras.copy()
    lite[3] += 7.97e-4
    judged, excused, _ = judge_weights(lite, keras, peaks, 1e-4, None)
    assert excused == 0 and judged == pytest.approx(7.97e-4, rel=1e-3)


def test_rounding_level_is_relative_to_the_tensor():
    keras, peaks = _case()
    peaks[3] = 0.2 * ROUNDING_LEVEL * 1.5  # just above rounding level
    lite = keras.copy()
    lite[3] += 7.97e-4
    _, excused, _ = judge_weights(lite, keras, peaks, 1e-4, max_normalized_step(ADAM, 3))
    assert excused == 0


def test_a_loss_difference_still_fails():
    assert not ParityReport([1.0, 2.0], [1.0, 2.01], 0.0, 1e-4).passed
