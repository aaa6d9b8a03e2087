"""The round engine's transitions, every state and event, with an injected time (no I/O)."""

import pytest

from coordinator.rounds import engine as e
from coordinator.rounds.engine import Progress, Rules, next_step

PLAIN = Rules(goal_count=10, required_reports=5)
SECAGG = Rules(goal_count=10, required_reports=5, secagg=True)


def _p(state, selected=0, reported=0, **kw):
    return Progress(state, selected, reported, selection_deadline=100.0, report_deadline=200.0, **kw)


@pytest.mark.parametrize("rules", [PLAIN, SECAGG])
@pytest.mark.parametrize("state", ["committed", "failed"])
def test_a_closed_round_waits(rules, state):
    assert next_step(_p(state, 20, 20), rules, 1e9).action == e.WAIT


@pytest.mark.parametrize("rules", [PLAIN, SECAGG])
def test_an_aggregating_round_commits_after_a_restart(rules):
    assert next_step(_p("aggregating", 10, 10), rules, 0.0).action == e.COMMIT


# -- plain ------------------------------------------------------------------------------------
@pytest.mark.parametrize("progress, now, action, reason", [
    (_p("selecting", 3), 50.0, e.WAIT, ""),                        # window open
    (_p("selecting", 5), 100.5, e.START_REPORTING, ""),            # closed with enough
    (_p("selecting", 4), 100.5, e.FAIL, "selection window closed with 4 devices, need at least 5"),
    (_p("selecting", 13, 10), 50.0, e.AGGREGATE, ""),              # goal reached inside the window
    (_p("reporting", 13, 9), 150.0, e.WAIT, ""),                   # before the deadline, below goal
    (_p("reporting", 13, 10), 150.0, e.AGGREGATE, ""),             # goal
    (_p("reporting", 13, 5), 200.5, e.AGGREGATE, ""),              # deadline with the minimum
    (_p("reporting", 13, 4), 200.5, e.FAIL, "reporting deadline passed with 4 reports, need at least 5"),
    (_p("reporting", 7, 7), 150.0, e.AGGREGATE, ""),               # all 7 selected reported: none can come
    (_p("reporting", 7, 6), 150.0, e.WAIT, ""),                    # one may still report
    (_p("reporting", 4, 4), 150.0, e.WAIT, ""),                    # below the minimum: the deadline decides
])
def test_plain_round(progress, now, action, reason):
    step = next_step(progress, PLAIN, now)
    assert (step.action, step.reason) == (action, reason)


def test_the_deadline_is_exclusive():
    assert next_step(_p("selecting", 5), PLAIN, 100.0).action == e.WAIT
    assert next_step(_p("reporting", 13, 5), PLAIN, 200.0).action == e.WAIT


# -- SecAgg -----------------------------------------------------------------------------------
@pytest.mark.parametrize("progress, now, action", [
    (_p("selecting", 13), 50.0, e.WAIT),
    (_p("selecting", 5), 100.5, e.START_ADVERTISING),
    (_p("selecting", 4), 100.5, e.FAIL),
    (_p("advertising", 13, advertised=12, advertise_deadline=130.0), 120.0, e.WAIT),
    (_p("advertising", 13, advertised=13, advertise_deadline=130.0), 120.0, e.CLOSE_ADVERTISING),  # everyone
    (_p("advertising", 13, advertised=2, advertise_deadline=130.0), 130.5, e.CLOSE_ADVERTISING),   # deadline
    (_p("sharing", 13, roster=12, shared=11, share_deadline=160.0), 150.0, e.WAIT),
    (_p("sharing", 13, roster=12, shared=12, share_deadline=160.0), 150.0, e.CLOSE_SHARING),
    (_p("sharing", 13, roster=12, shared=3, share_deadline=160.0), 160.5, e.CLOSE_SHARING),
    (_p("reporting", 13, 9, sharers=12), 180.0, e.WAIT),
    (_p("reporting", 13, 10, sharers=12), 180.0, e.CLOSE_REPORTING),  # the goal, though 12 shared
    (_p("reporting", 13, 7, sharers=7), 180.0, e.CLOSE_REPORTING),    # every sharer reported
    (_p("reporting", 13, 3, sharers=12), 200.5, e.CLOSE_REPORTING),   # deadline: the phase decides
    (_p("unmasking", 13, 10, survivors=10, revealed=9, unmask_deadline=230.0), 220.0, e.WAIT),
    (_p("unmasking", 13, 10, survivors=10, revealed=10, unmask_deadline=230.0), 220.0, e.AGGREGATE),
    (_p("unmasking", 13, 10, survivors=10, revealed=6, unmask_deadline=230.0), 230.5, e.AGGREGATE),
])
def test_secagg_round(progress, now, action):
    assert next_step(progress, SECAGG, now).action == action


def test_secagg_needs_at_least_three_devices_whatever_the_minimum():
    rules = Rules(goal_count=2, required_reports=1, secagg=True)
    step = next_step(_p("selecting", 2), rules, 100.5)
    assert step.action == e.FAIL and "need at least 3 for secure aggregation" in step.reason
    assert next_step(_p("selecting", 3), rules, 100.5).action == e.START_ADVERTISING


# -- pace steering ----------------------------------------------------------------------------
def test_the_retry_window_follows_the_round_period():
    from coordinator.gateway.pace import PaceConfig, retry_window, round_period

    cfg = PaceConfig(min_retry_s=1.0, max_retry_s=600.0)
    assert round_period([], 30.0) == 30.0 and round_period([5.0], 30.0) == 30.0
    assert round_period([0.0, 8.0, 17.0, 25.0], 30.0) == 8.0  # median gap, openings in any order
    # Every device is needed every round: back well within one round, not the 30 s window.
    assert retry_window(100, 8.0, 100, cfg) < 8.0
    # 10,000 devices, 260 a round, a round every 1.5 s: each gets a turn every ~38 rounds.
    assert abs(retry_window(10_000, 1.5, 260, cfg) - 10_000 * 1.5 / (1.5 * 260)) < 1e-9
    assert retry_window(10, 0.01, 100, cfg) == 1.0 and retry_window(10**9, 60.0, 1, cfg) == 600.0
