"""`fedge population` and `fedge task` against a real `fedge serve`."""

import json

import pytest

from fedge.cli import main
from tests.serve_process import ADMIN, TOKEN, Server

TASK_TOML = """# a task for real devices
rounds = 3
goal_count = 2
over_selection = 1.0
eligibility = "charging and unmetered"
codec = "q8"
aggregator = "multi_krum"

[server_optimizer]
name = "fedavg"
learning_rate = 1.0
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Server(str(tmp_path_factory.mktemp("ops") / "c.db")) as s:
        yield s


def _run(capsys, server, *argv):
    code = main([*argv, "--coordinator", server.url, "--admin-token", TOKEN])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_population_and_task_lifecycle(server, digits_tflite, tmp_path, capsys):
    code, out, _ = _run(capsys, server, "population", "create", "phones", "--enrollment-secret", "s3")
    assert code == 0 and "population phones created (enrollment secret required)" in out
    code, out, _ = _run(capsys, server, "population", "list", "--json")
    assert code == 0 and [p["name"] for p in json.loads(out)] == ["phones"]

    model, config = tmp_path / "m.tflite", tmp_path / "task.toml"
    model.write_bytes(digits_tflite)
    config.write_text(TASK_TOML)
    code, out, err = _run(capsys, server, "task", "create", "--population", "phones", "--model", str(model),
                          "--config", str(config), "--task-id", "t1")
    assert code == 0, err
    assert "task t1 created on population phones: model digits_mlp" in out and "multi_krum" in out
    status, task = server.call("GET", "/v1/admin/tasks/t1", headers=ADMIN)
    assert task["config"]["eligibility"] == "charging and unmetered" and task["config"]["rounds"] == 3

    code, out, _ = _run(capsys, server, "task", "list")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["TASK", "POPULATION", "STATE"]
    assert "t1" in out and "0/3" in out
    code, out, _ = _run(capsys, server, "task", "show", "t1")
    assert code == 0 and out.startswith("task t1 on population phones: active")
    code, out, _ = _run(capsys, server, "task", "pause", "t1")
    assert code == 0 and "t1: paused" in out
    code, out, _ = _run(capsys, server, "task", "resume", "t1", "--json")
    assert code == 0 and json.loads(out)["state"] == "active"

    path = tmp_path / "global.tflite"
    code, out, _ = _run(capsys, server, "task", "model", "t1", "-o", str(path))
    import urllib.request

    req = urllib.request.Request(server.url + "/v1/admin/tasks/t1/model", headers=ADMIN)
    with urllib.request.urlopen(req) as resp:
        assert code == 0 and path.read_bytes() == resp.read()

    code, out, _ = _run(capsys, server, "task", "cancel", "t1")
    assert code == 0 and "t1: cancelled" in out
    code, out, _ = _run(capsys, server, "task", "watch", "t1")  # a finished task: its state, at once
    assert code == 0 and out.strip().endswith("task t1: cancelled")


@pytest.mark.parametrize("toml, line, fragment", [
    ("rounds = 3\ngoal_cont = 2\n", 2, "goal_cont"),
    ("rounds = 3\n\neligibility = \"charging and\"\n", 3, "syntax error"),
    ("rounds = 0\n", 1, "rounds"),
    ("rounds = [\n", None, "not valid TOML"),
])
def test_a_bad_task_config_fails_locally_naming_the_line(server, tmp_path, capsys, toml, line, fragment):
    config = tmp_path / "task.toml"
    config.write_text(toml)
    code, out, err = _run(capsys, server, "task", "create", "--population", "nope", "--model",
                          str(tmp_path / "missing.tflite"), "--config", str(config))
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert fragment in err and (f"task.toml:{line}:" in err if line else True), err


def test_a_wrong_token_is_one_line(server, capsys):
    code = main(["task", "list", "--coordinator", server.url, "--admin-token", "wrong"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "401" in err[0] and "admin token required" in err[0]


def test_an_unreachable_coordinator_is_one_line(capsys):
    from fedge.local_coordinator import free_port

    code = main(["population", "list", "--coordinator", f"http://127.0.0.1:{free_port()}", "--admin-token", "t"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "cannot reach the coordinator" in err[0]


def test_an_async_task_shows_versions_and_staleness(server, digits_tflite, tmp_path, capsys):
    server.call("POST", "/v1/admin/populations", {"name": "async-pop"}, ADMIN)
    model, config = tmp_path / "m.tflite", tmp_path / "task.toml"
    model.write_bytes(digits_tflite)
    config.write_text('mode = "async"\nrounds = 4\nbuffer_size = 5\nconcurrency = 8\nmax_staleness = 3\n'
                      'staleness_weight = "hinge:1,2"\n')
    code, out, err = _run(capsys, server, "task", "create", "--population", "async-pop", "--model", str(model),
                          "--config", str(config), "--task-id", "ta")
    assert code == 0, err
    import time

    for _ in range(100):  # the driver opens buffer 1 within a tick
        if server.call("GET", "/v1/admin/tasks/ta", headers=ADMIN)[1]["rounds"]:
            break
        time.sleep(0.05)
    code, out, _ = _run(capsys, server, "task", "show", "ta")
    assert code == 0, out
    assert "asynchronous: 0/4 versions published, K 5 updates per version, concurrency 8" in out
    assert "max staleness 3, weight hinge:1,2" in out
    assert "STALENESS" in out and "SELECTED" not in out


def test_task_evaluate_creates_an_evaluation_and_show_lists_it(server, digits_tflite, tmp_path, capsys):
    server.call("POST", "/v1/admin/populations", {"name": "eval-pop"}, ADMIN)
    model, config = tmp_path / "m.tflite", tmp_path / "task.toml"
    model.write_bytes(digits_tflite)
    config.write_text("rounds = 2\ngoal_count = 3\neval_goal_count = 4\n")
    assert _run(capsys, server, "task", "create", "--population", "eval-pop", "--model", str(model),
                "--config", str(config), "--task-id", "te")[0] == 0
    code, out, err = _run(capsys, server, "task", "evaluate", "te", "--round", "0")
    assert code == 0, err
    assert "evaluation task te-eval-0: round 0 of te on 4 devices of population eval-pop" in out
    code, out, _ = _run(capsys, server, "task", "show", "te-eval-0")
    assert code == 0 and out.startswith("evaluation task te-eval-0 of te round 0") and "no result yet" in out
    code, out, _ = _run(capsys, server, "task", "show", "te")
    assert code == 0 and "federated evaluation:" in out and "te-eval-0" in out
    code, out, err = _run(capsys, server, "task", "evaluate", "te", "--round", "7")
    assert code == 1 and "no committed round 7" in err


def test_audit_key_export_and_offline_verification(server, digits_tflite, tmp_path, capsys):
    server.call("POST", "/v1/admin/populations", {"name": "audit-pop"}, ADMIN)
    model, config = tmp_path / "m.tflite", tmp_path / "task.toml"
    model.write_bytes(digits_tflite)
    config.write_text("rounds = 2\ngoal_count = 3\n")
    assert _run(capsys, server, "task", "create", "--population", "audit-pop", "--model", str(model),
                "--config", str(config), "--task-id", "ta2")[0] == 0
    assert _run(capsys, server, "task", "pause", "ta2")[0] == 0
    key, trail = tmp_path / "key.pem", tmp_path / "trail.json"
    assert _run(capsys, server, "audit", "key", "-o", str(key))[0] == 0
    code, out, _ = _run(capsys, server, "task", "audit", "ta2", "-o", str(trail))
    assert code == 0 and "wrote 2 audit entries of task ta2" in out
    code = main(["audit", "verify", str(trail), "--key", str(key)])  # offline: no coordinator needed
    out = capsys.readouterr().out
    assert code == 0 and "task ta2, all 2 entries as of" in out and "signed head verified" in out
    data = json.loads(trail.read_text())
    data["entries"][1]["data"]["by"] = "someone else"
    trail.write_text(json.dumps(data))
    code = main(["audit", "verify", str(trail), "--key", str(key)])
    out = capsys.readouterr().out
    assert code == 1 and "task ta2: FAILED: entry 2" in out and "edited" in out
    data = json.loads(trail.read_text())
    del data["entries"][1:]  # the end cut off
    trail.write_text(json.dumps(data))
    code = main(["audit", "verify", str(trail), "--key", str(key)])
    out = capsys.readouterr().out
    assert code == 1 and "1 entry where the signed head lists 2" in out


def test_show_names_every_privacy_mode_with_its_epsilon():
    """A DP-SGD task was shown as "DP off" with epsilon "-": every mode is named, with what it spent."""
    from fedge.task_cli import _show

    base = {"rounds": 5, "goal_count": 3, "aggregator": "fedavg", "secagg": "off", "dp_noise_multiplier": 0.0,
            "dp_delta": 1e-5, "dp_sgd_noise_multiplier": 1.1, "dp_sgd_clip": 0.5, "dp_sgd_delta": 1e-6}
    task = {"task_id": "t", "population": "p", "state": "active", "reason": "", "model_name": "m",
            "num_parameters": 10, "rounds_committed": 1, "config": base,
            "rounds": [{"round": 1, "state": "committed", "selected": 3, "reported": 3, "opened_at": 0.0,
                        "closed_at": 1.0, "reason": "", "metrics": {"train_loss": 1.0, "dp_sgd_round_epsilon": 2.1,
                                                                    "dp_sgd_device_epsilon": 15.4}}]}
    text = _show(task)
    assert "example-level DP-SGD on the devices (noise multiplier 1.1, clip 0.5" in text
    assert "up to epsilon 15.4" in text and "user-level DP off" in text
    assert "15.4" in text.split("EPSILON")[1]  # the round's column too
    central = {**base, "dp_sgd_noise_multiplier": 0.0, "dp_noise_multiplier": 1.2, "dp_mode": "distributed",
               "secagg": "secagg+", "clip_norm": 1.0, "dp_honest_fraction": 0.5}
    text = _show({**task, "config": central, "rounds": [{**task["rounds"][0], "metrics": {"epsilon": 3.25}}]})
    assert "secagg secagg+" in text and "user-level DP distributed (noise multiplier 1.2" in text
    assert "honest fraction 0.5" in text and "epsilon 3.25 spent" in text and "DP-SGD" not in text


def test_help_keeps_examples_on_their_own_lines_and_every_flag_explained(capsys):
    import pytest

    from fedge.cli import main

    for command in (["task", "--help"], ["audit", "--help"]):
        with pytest.raises(SystemExit):
            main(command)
        out = capsys.readouterr().out
        examples = [line.strip() for line in out.splitlines() if line.strip().startswith("fedge ")]
        assert len(examples) >= 3, out  # one example a line, not run together into a paragraph
    # Every option of the commands a newcomer starts with says what it does.
    import argparse

    from fedge.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    task_actions = next(a for a in commands["task"]._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in (("fleet", commands["fleet"]), ("device", commands["device"]), ("task model", task_actions["model"])):
        silent = [a.option_strings for a in sub._actions if a.option_strings and not a.help]
        assert not silent, f"fedge {name}: options without help: {silent}"


def test_release_commands_say_what_is_wrong_in_one_line(server, digits_tflite, tmp_path, capsys):
    server.call("POST", "/v1/admin/populations", {"name": "rel-pop"}, ADMIN)
    model, config = tmp_path / "m.tflite", tmp_path / "task.toml"
    model.write_bytes(digits_tflite)
    config.write_text("rounds = 2\ngoal_count = 3\n")
    assert _run(capsys, server, "task", "create", "--population", "rel-pop", "--model", str(model),
                "--config", str(config), "--task-id", "tr")[0] == 0
    code, out, err = _run(capsys, server, "task", "release", "tr", "--round", "1", "--percent", "10")
    assert code == 1 and err.count("\n") == 1 and "round 1 of task tr is not a committed round" in err
    code, out, err = _run(capsys, server, "task", "release", "tr", "--round", "1", "--percent", "150")
    assert code == 1 and "percent must be a number in (0, 100]" in err
    code, out, _ = _run(capsys, server, "release", "list", "--population", "rel-pop")
    assert code == 0 and out.strip() == "no releases"
    code, _, err = _run(capsys, server, "release", "rollback", "rel-none")
    assert code == 1 and "no release rel-none" in err
