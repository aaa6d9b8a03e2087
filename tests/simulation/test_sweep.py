"""`fedge simulate --seeds`: a scenario under several seeds in a pool of processes, each seed
the same run as `--seed K`, and the spread over them (simulation/sweep.py)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from fedge.cli import main
from simulation.sweep import parse_seeds


def test_seeds_are_a_count_a_range_or_a_list():
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("4-6") == [4, 5, 6] and parse_seeds("0,9,4") == [0, 9, 4]
    for bad in ("", "0", "x", "5-3", "1,1", "-2", "2-", "100000"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)


@pytest.fixture
def scenario(tiny_scenario) -> list[str]:
    return [*tiny_scenario, "--partition", "iid", "--target", "0.3"]


def test_a_sweep_runs_each_seed_as_its_own_simulation_and_reports_the_spread(scenario, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main([*scenario, "--seeds", "3", "--jobs", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    alone = tmp_path / "alone"
    assert main([*scenario, "--seed", "2", "--out", str(alone)]) == 0
    capsys.readouterr()
    # Seed 2 in the pool is `--seed 2` on its own, bit for bit.
    assert (out / "seed-2" / "history.json").read_text() == (alone / "history.json").read_text()
    histories = [json.loads((out / f"seed-{k}" / "history.json").read_text()) for k in range(3)]
    rows = list(csv.DictReader((out / "seeds.csv").open()))
    assert [int(r["seed"]) for r in rows] == [0, 1, 2]
    finals = [h[-1]["global_accuracy"] for h in histories]
    assert [float(r["final_accuracy"]) for r in rows] == finals and len(set(finals)) > 1  # the seeds differ
    sweep = json.loads((out / "sweep.json").read_text())
    for entry in sweep["accuracy_by_round"]:
        values = [h[entry["round"] - 1]["global_accuracy"] for h in histories]
        assert entry["seeds"] == 3 and entry["mean"] == pytest.approx(np.mean(values))
        assert entry["sd"] == pytest.approx(np.std(values, ddof=1))
    assert f"final global accuracy {np.mean(finals):.4f} after 3 committed rounds" in printed
    assert "3 simulations on 2 processes" in printed and "events/s in all" in printed
    assert "reached by" in printed and (out / "sweep.png").stat().st_size > 1000


def test_bad_seeds_are_one_clear_error_before_anything_runs(scenario, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main([*scenario, "--seeds", "3-1", "--out", str(out)]) == 1
    assert "--seeds '3-1'" in capsys.readouterr().err and not out.exists()
    assert main([*scenario, "--seeds", "2", "--jobs", "-1", "--out", str(out)]) == 1
    assert "--jobs" in capsys.readouterr().err and not out.exists()
