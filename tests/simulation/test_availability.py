"""Availability models (simulation/availability.py): when a simulated phone's check-in may run."""

import math
import random

import numpy as np
import pytest

from simulation.availability import AlwaysAvailable, NightlyAvailability, TraceAvailability, geometric

H = 3600.0


def test_a_nightly_window_opens_at_its_local_hour_and_the_next_one_is_found():
    # Device 0: UTC+0, 23:00-05:00; device 1: UTC-5, 23:00-01:00 local, i.e. 04:00-06:00 UTC.
    nights = NightlyAvailability(np.array([0.0, -5.0]), np.array([23.0, 23.0]), np.array([6.0, 2.0]), 0.0)
    rng = random.Random(0)
    assert [nights.available(0, h * H, rng) for h in (0, 4.9, 5.1, 12, 23.5)] == [True, True, False, False, True]
    assert [nights.available(1, h * H, rng) for h in (3.9, 4.5, 5.9, 6.1)] == [False, True, True, False]
    assert nights.next_available(0, 12 * H, rng) == pytest.approx(23 * H)
    assert nights.next_available(1, 7 * H, rng) == pytest.approx((24 + 4) * H)  # tomorrow's window


def test_a_daytime_charge_comes_within_the_hours_its_chance_gives():
    rng = random.Random(1)
    always_charging = NightlyAvailability(np.array([0.0]), np.array([23.0]), np.array([1.0]), 1.0)
    assert all(12 * H < always_charging.next_available(0, 12 * H, rng) <= 13 * H for _ in range(100))
    rare = NightlyAvailability(np.array([0.0]), np.array([23.0]), np.array([1.0]), 0.03)
    waits = [rare.next_available(0, 0.0, rng) for _ in range(2000)]
    assert max(waits) <= 23 * H  # never later than the night's window
    assert 0.2 < np.mean([w < 8 * H for w in waits]) < 0.3  # 1 - 0.97^8 = 0.22, plus the part-hour


def test_a_trace_gives_its_intervals_and_always_is_now():
    trace = TraceAvailability({0: [(100.0, 200.0), (500.0, 600.0)]})
    rng = random.Random(2)
    assert trace.available(0, 150.0, rng) and not trace.available(0, 300.0, rng) and not trace.available(9, 150.0, rng)
    assert trace.next_available(0, 300.0, rng) == 500.0 and trace.next_available(0, 550.0, rng) == 550.0
    assert math.isinf(trace.next_available(0, 700.0, rng)) and math.isinf(trace.next_available(9, 0.0, rng))
    assert AlwaysAvailable().available(5, 1e9, rng) and AlwaysAvailable().next_available(5, 42.0, rng) == 42.0


def test_the_geometric_draw_has_its_distributions_mean():
    rng = random.Random(4)
    draws = [geometric(0.03, rng) for _ in range(20_000)]
    assert min(draws) >= 1 and abs(np.mean(draws) - 1 / 0.03) < 0.05 / 0.03  # mean 1/p, within 5%
    assert {geometric(1.0, rng) for _ in range(100)} == {1}
    assert np.mean([geometric(0.5, rng) == 1 for _ in range(20_000)]) == pytest.approx(0.5, abs=0.02)
