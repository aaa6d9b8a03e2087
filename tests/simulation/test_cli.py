"""`fedge simulate`: the command line, its files and its closing lines."""

from __future__ import annotations

import csv

from fedge.cli import main


def test_fedge_simulate_writes_its_history_and_ends_with_the_fleets_line(tiny_scenario, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*tiny_scenario, "--out", str(out), "--target", "0.3"]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [r["state"] for r in rows] == ["committed"] * 3
    assert (out / "history.png").stat().st_size > 1000 and (out / "history.json").exists()
    final = float(rows[-1]["global_accuracy"])
    assert f"final global accuracy {final:.4f} after 3 committed rounds" in printed
    assert "virtual seconds to 0.3: " in printed and "events/s" in printed and "device requests: " in printed


def test_a_bad_population_file_is_one_clear_error(digits_tflite, tmp_path, capsys):
    model = tmp_path / "digits.tflite"
    model.write_bytes(digits_tflite)
    pop = tmp_path / "pop.toml"
    pop.write_text("[speed]\nsigma = 9\n")
    assert main(["simulate", "--model", str(model), "--population", str(pop), "--system-only", "--no-progress",
                 "--out", str(tmp_path / "out")]) == 1
    assert "speed.sigma must be a number in [0, 5]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything ran
