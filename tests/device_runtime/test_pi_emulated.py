"""`fedge device` on an emulated Raspberry Pi (aarch64 Debian bookworm under qemu-user).

The root is built (once, then cached) by scripts/pi-emulated.sh, which fetches its own
QEMU. Without what the script needs on the host (debootstrap, dpkg-deb, apt-get) the test
is skipped, unless FEDGE_REQUIRE_PI=1 (set by .ci/run, which installs debootstrap) turns
the missing tools into a failure.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.missing_tool import skip_or_fail

from tests.device_runtime.conftest import digits_data_dir
from tests.serve_process import ADMIN, Server

pytestmark = [pytest.mark.slow, pytest.mark.pi]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pi-emulated.sh"


@pytest.fixture(scope="module")
def pi_root() -> Path:
    # The host tools scripts/pi-emulated.sh setup needs (it fetches QEMU itself).
    missing = [tool for tool in ("debootstrap", "dpkg-deb", "apt-get") if shutil.which(tool) is None]
    if missing:
        skip_or_fail(f"{missing} not installed (apt-get install debootstrap)", "FEDGE_REQUIRE_PI")
    env = {**os.environ, "FEDGE_PI_PYTHON": sys.executable}
    res = subprocess.run(["bash", str(SCRIPT), "setup"], capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    root = subprocess.run(["bash", str(SCRIPT), "path"], capture_output=True, text=True, check=True).stdout.strip()
    return Path(root)


def test_emulated_python_is_aarch64_bookworm(pi_root):
    res = subprocess.run(
        ["bash", str(SCRIPT), "python", "-c",
         "import platform, sys, numpy, ai_edge_litert; print(platform.machine(), sys.version_info[:2], numpy.__version__)"],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    machine, *rest = res.stdout.split()
    assert machine == "aarch64"
    assert "(3, 11)" in " ".join(rest)


def test_emulated_pi_device_completes_rounds_with_8bit_uploads(pi_root, digits_tflite, tmp_path):
    data = digits_data_dir(tmp_path / "data", 100)
    server = Server(str(tmp_path / "c.db"))
    server.start()
    try:
        # Generous deadlines: every LiteRT op is emulated instruction by instruction.
        server.setup_task("pi", digits_tflite, {"rounds": 2, "goal_count": 1, "over_selection": 1.0,
                                                "selection_window_s": 120, "report_deadline_s": 300, "codec": "q8",
                                                "eligibility": "charging and unmetered and idle"})
        res = subprocess.run(
            ["bash", str(SCRIPT), "device", "--coordinator", server.url, "--population", "pi",
             "--data", str(data), "--state-dir", str(tmp_path / "state"), "--rounds", "2",
             "--charging", "true", "--unmetered", "true", "--idle", "true", "--log-level", "WARNING"],
            capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout + res.stderr
        # The runtime names the machine it ran on: proof the device was the aarch64 one.
        assert "fedge device on aarch64" in res.stdout, res.stdout
        assert "uploads 2, abandoned 0" in res.stdout, res.stdout
        rounds = server.call("GET", "/v1/admin/tasks/t", headers=ADMIN)[1]["rounds"]
        assert [r["reported"] for r in rounds[:2]] == [1, 1], rounds
        assert [r["state"] for r in rounds[:2]] == ["committed", "committed"], rounds
        # 8-bit: about a quarter of float32 (plus per-chunk scale/offset and the header).
        bytes_up, share = res.stdout.split("bytes up ")[1].split(" (")
        assert 0.24 < float(share.split("%")[0]) / 100 < 0.30, res.stdout
        assert int(bytes_up) > 0
    finally:
        server.kill9()
