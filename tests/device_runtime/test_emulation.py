"""The emulation backend a fleet plugs into a device (device_runtime/emulation.py): neutral
with the default behaviour (a real device), and each knob doing what it says."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from device_runtime.emulation import Behaviour, Emulation
from protocol.messages import Plan

PLAN = Plan(4, 32, 0.1, "q8", 256)


def test_the_default_behaviour_emulates_nothing():
    e = Emulation(Behaviour(), np.random.default_rng(0))
    assert e.capacity_epochs(PLAN) is None and not e.drops() and e.secagg_drop_phase() == ""
    assert e.expected_train_s(PLAN, 1.5) == 1.5 and e.attack == ""
    started = time.perf_counter()
    asyncio.run(e.phone_time(PLAN, None, 0.2))
    assert time.perf_counter() - started < 0.05  # no waiting beyond the host's own compute


def test_stragglers_get_fewer_epochs_and_a_budget_caps_phone_time():
    rng = np.random.default_rng(1)
    always = Emulation(Behaviour(straggler=1.0), rng)
    epochs = {always.capacity_epochs(PLAN) for _ in range(200)}
    assert epochs == {1, 2, 3, 4}
    # 8 s of phone time for 4 epochs with a 5 s budget: 2 whole epochs fit.
    budget = Plan(4, 32, 0.1, "q8", 256, max_local_seconds=5.0)
    timed = Emulation(Behaviour(train_time_s=4.0, slowdown=2.0), rng)
    assert timed.capacity_epochs(budget) == 2 and timed.expected_train_s(budget, 0.01) == 5.0
    assert timed.expected_train_s(PLAN, 0.01) == 8.0


def test_dropouts_vanish_at_the_phase_they_are_told():
    e = Emulation(Behaviour(dropout=1.0, secagg_drop_phase="share"), np.random.default_rng(2))
    assert e.drops() and e.secagg_drop_phase() == "share"
    anywhere = Emulation(Behaviour(dropout=1.0), np.random.default_rng(3))
    assert {anywhere.secagg_drop_phase() for _ in range(100)} == {"advertise", "share", "masked_input", "unmask"}
