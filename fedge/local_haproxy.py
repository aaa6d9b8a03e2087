"""Debian's HAProxy in front of N coordinator replicas, for benchmarks: the shipped
deploy/haproxy/haproxy.cfg with one `server` line per replica, on a free loopback port."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from fedge.local_coordinator import free_port

CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "haproxy" / "haproxy.cfg"


class LocalHaproxy:
    def __init__(self, replicas: list[str]):
        self.binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.path.exists(self.binary):
            raise RuntimeError("HAProxy is not installed (apt-get install haproxy)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        servers = "".join(f"    server replica{i + 1} {addr} check\n" for i, addr in enumerate(replicas))
        text = re.sub(r"(    server replica\d+ .*\n)+", servers, CONFIG.read_text())
        fd, self.config = tempfile.mkstemp(suffix=".cfg", prefix="fedge-haproxy-")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 20.0) -> "LocalHaproxy":
        env = {**os.environ, "FEDGE_LB_PORT": str(self.port)}
        self.proc = subprocess.Popen([self.binary, "-db", "-f", self.config], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/readyz", timeout=1).read()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"HAProxy did not route to a ready replica within {timeout_s:.0f} s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
        os.unlink(self.config)

    def __enter__(self) -> "LocalHaproxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
