"""README.md's tour, as written: every `fedge` line parses with the real command line, the
`task.toml` it shows is a task the coordinator accepts, and the tour runs in order against a
live coordinator (scaled down: a free port for 8080, a dozen devices for 1,000, 2 rounds of 3
for 50 of 100), so the docs cannot drift from the code again."""

import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fedge.cli import build_parser
from fedge.local_coordinator import free_port

README = Path(__file__).resolve().parents[2] / "README.md"


def _tour() -> tuple[list[str], str]:
    text = README.read_text()
    section = text[text.index("## A tour"):]
    commands = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    toml = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    lines = [line.split("  #")[0].strip().rstrip("&").strip() for line in commands.splitlines()]
    return [line for line in lines if line.startswith("fedge ")], toml


def test_every_tour_line_parses_and_its_task_toml_is_a_valid_task():
    from coordinator.tasks.config import TaskConfig

    lines, toml = _tour()
    assert len(lines) >= 7
    parser = build_parser()
    for line in lines:
        argv = shlex.split(line)[1:]
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            raise AssertionError(f"README tour line does not parse: {line}") from exc
    config = tomllib.loads(toml)
    assert TaskConfig.from_dict(config).rounds == config["rounds"]


@pytest.mark.slow
def test_the_tour_runs_in_order_against_a_live_coordinator(tmp_path):
    lines, toml = _tour()
    port = free_port()
    scaled = {"rounds = 50": "rounds = 2", "goal_count = 100": "goal_count = 3"}
    for before, after in scaled.items():
        assert before in toml, before
        toml = toml.replace(before, after)
    (tmp_path / "task.toml").write_text(toml)
    env = {**os.environ, "FEDGE_COORDINATOR": f"http://127.0.0.1:{port}"}
    env.pop("FEDGE_ADMIN_TOKEN", None)  # the token file `fedge serve` writes is what the tour relies on

    def as_run(line: str) -> list[str]:
        line = line.replace("8080", str(port)).replace("--devices 1000", "--devices 12")
        line = line.replace("fedge export my_model.keras", "fedge export --zoo digits_mlp")
        return [sys.executable, "-m", "fedge", *shlex.split(line)[1:]]

    def run(line: str, timeout: float = 300) -> str:
        res = subprocess.run(as_run(line), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
        assert res.returncode == 0, f"{line}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
        return res.stdout

    by_command = {shlex.split(line)[1] + (" " + shlex.split(line)[2] if shlex.split(line)[1] in
                                          ("population", "task") else ""): line for line in lines}
    run(by_command["export"])
    serve = subprocess.Popen(as_run(by_command["serve"]), cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert "admin token written to" in serve.stdout.readline()
        assert "fedge coordinator on" in serve.stdout.readline()
        assert "population phones created" in run(by_command["population create"])
        created = run(by_command["task create"])
        task_id = re.search(r"task (\S+) created on population phones", created).group(1)
        assert "secagg secagg+" in created
        shown = run(f"fedge task show {task_id}")
        assert f"task {task_id} on population phones: active" in shown
        out = run(by_command["fleet"], timeout=600)
        assert re.search(r"final global accuracy [0-9.]+ after 2 committed rounds", out), out[-2000:]
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=30)
