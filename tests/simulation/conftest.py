import pytest


@pytest.fixture
def tiny_scenario(digits_tflite, tmp_path) -> list[str]:
    """`fedge simulate` on 20 always-available devices, 3 rounds of 6 (the CLI tests' scenario)."""
    model = tmp_path / "digits.tflite"
    model.write_bytes(digits_tflite)
    task = tmp_path / "task.toml"
    task.write_text("rounds = 3\ngoal_count = 6\nselection_window_s = 60.0\n")
    pop = tmp_path / "pop.toml"
    pop.write_text('[availability]\nmodel = "always"\n[dropout]\ntraining = 0.0\n')
    return ["simulate", "--model", str(model), "--devices", "20", "--hours", "2", "--task-config", str(task),
            "--population", str(pop), "--no-progress"]
