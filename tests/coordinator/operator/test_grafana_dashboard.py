"""Every metric the Grafana dashboard queries is one the coordinator exports."""

import json
import re
from pathlib import Path

from coordinator.operator.metrics import Metrics, failure_class

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "fedge-dashboard.json"


def _exported_samples() -> set[str]:
    """The sample names /metrics can carry: from each metric family's type."""
    names = set()
    for family in Metrics().registry.collect():
        base = family.name
        if family.type == "counter":
            names |= {base + "_total", base + "_created"}
        elif family.type == "histogram":
            names |= {base + "_bucket", base + "_sum", base + "_count", base + "_created"}
        else:
            names.add(base)
    return names


def test_every_dashboard_query_names_an_exported_metric():
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    used = {m for e in exprs for m in re.findall(r"\bfedge_[a-z_]+", e)}
    exported = _exported_samples()
    assert used and used <= exported, sorted(used - exported)
    # The list: check-ins by outcome, eligible fraction, rounds by outcome, round duration,
    # bytes in, rejected uploads by reason, epsilon.
    for needed in ("fedge_checkins_total", "fedge_rounds_total", "fedge_round_duration_seconds_bucket",
                   "fedge_bytes_in_total", "fedge_rejected_uploads_total", "fedge_task_epsilon"):
        assert needed in used, needed
    assert any("retry_ineligible" in e for e in exprs)  # the eligible fraction


def test_failed_rounds_are_labelled_by_a_few_classes():
    assert failure_class("selection window closed with 0 devices, need at least 5") == "selection"
    assert failure_class("reporting deadline passed with 1 reports, need at least 50") == "reporting"
    assert failure_class("secagg: 2 masked inputs arrived, need at least 3") == "secagg"
    assert failure_class("internal error while driving the round: OverflowError: ...") == "internal"
    assert failure_class("something new") == "other"


async def test_the_coordinator_counts_rounds_and_epsilon(harness):
    from coordinator.http.keys import METRICS
    from tests.coordinator.aggregation.test_dp import _round_of_zero_updates

    await harness.setup_task(codec="f32", goal_count=2, over_selection=1.0, clip_norm=1.0, rounds=2,
                             dp_noise_multiplier=1.0, dp_population=10)
    devices = [await harness.register() for _ in range(2)]
    await _round_of_zero_updates(harness, devices)
    harness.clock.advance(100)
    harness.tick()  # round 2's selection window closes with no one
    text = harness.client.server.app[METRICS].render().decode()
    assert 'fedge_rounds_total{outcome="committed",task="t1"} 1.0' in text
    assert 'fedge_rounds_total{outcome="selection",task="t1"} 1.0' in text
    epsilon = (await harness.rounds())[0]["metrics"]["epsilon"]
    assert f'fedge_task_epsilon{{task="t1"}} {epsilon}' in text
