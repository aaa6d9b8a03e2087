"""`fedge fleet --task-config FILE.toml`: any task key, over the task flags."""

import argparse

import pytest

from device_runtime.fleet.cli import configure, task_config_from_args


def _args(*extra):
    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args(["--coordinator", "http://x", "--model", "m.tflite", *extra])


def test_flags_alone_make_the_task():
    config = task_config_from_args(_args("--rounds", "7", "--codec", "q4"))
    assert config["rounds"] == 7 and config["codec"] == "q4" and config["clip_norm"] == 0.0
    assert config["download_codec"] == "f32"
    assert task_config_from_args(_args("--download-codec", "q8"))["download_codec"] == "q8"


def test_the_file_adds_any_key_and_flags_given_win(tmp_path):
    """One rule for every command (as `fedge serve --config`): a flag on the command line wins
    over the file's key; the file's key wins over a flag's default."""
    path = tmp_path / "task.toml"
    path.write_text('rounds = 3\nmax_update_norm = 5.0\nserver_optimizer = { name = "fedadam", learning_rate = 0.01 }\n'
                    'keep_checkpoints = 4\nepochs = 2\ncodec = "q4"\n')
    config = task_config_from_args(_args("--rounds", "7", "--task-config", str(path)))
    assert config["rounds"] == 7  # the flag given wins
    assert config["epochs"] == 2 and config["codec"] == "q4"  # the file's keys over the flags' defaults
    assert task_config_from_args(_args("--codec", "f32", "--task-config", str(path)))["codec"] == "f32"
    assert config["max_update_norm"] == 5.0 and config["keep_checkpoints"] == 4
    assert config["server_optimizer"] == {"name": "fedadam", "learning_rate": 0.01}
    assert config["goal_count"] == 20  # a flag's default where the file says nothing


def test_a_bad_file_is_one_clear_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("rounds = = 3\n")
    with pytest.raises(ValueError, match="bad.toml: not valid TOML"):
        task_config_from_args(_args("--task-config", str(path)))
    with pytest.raises(ValueError, match="cannot read the task config"):
        task_config_from_args(_args("--task-config", str(tmp_path / "missing.toml")))


def test_speed_models():
    import numpy as np

    from device_runtime.fleet.emulator import slowdowns

    rng = np.random.default_rng(0)
    fixed = slowdowns("fixed", 10_000, 0.1, 3.0, rng)
    assert set(np.unique(fixed)) == {1.0, 3.0} and 0.08 < np.mean(fixed == 3.0) < 0.12
    heavy = slowdowns("lognormal:1", 10_000, 0.1, 3.0, rng)
    assert heavy.min() == 1.0 and 0.45 < np.mean(heavy == 1.0) < 0.55  # half at host speed
    assert 0.03 < np.mean(heavy > 5.0) < 0.07  # P(exp(Z) > 5) = P(Z > 1.61) = 5.4%
    assert np.all(slowdowns("lognormal:0", 100, 0.1, 3.0, rng) == 1.0)
    for bad in ("lognormal:x", "lognormal:-1", "pareto:2"):
        with pytest.raises(ValueError, match="speed"):
            slowdowns(bad, 10, 0.1, 3.0, rng)


def test_what_the_coordinator_refused_is_counted_by_reason():
    from device_runtime.client import RequestRefused
    from device_runtime.device import DeviceStats
    from device_runtime.fleet.emulator import _by_code

    a, b = DeviceStats(), DeviceStats()
    for stats, code in ((a, "round_closed"), (b, "round_closed"), (b, "duplicate"), (a, "round_closed")):
        stats.refused_by(RequestRefused(410, code, "late"))
    assert a.rejected + b.rejected == 4
    assert _by_code([a, b]) == " (round_closed 3, duplicate 1)"
    assert _by_code([DeviceStats()]) == ""
