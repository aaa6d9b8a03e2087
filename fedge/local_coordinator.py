"""`fedge serve` as a child process on a free loopback port: used by the demo, the
benchmarks and the tests that need a real process (kill -9, CLIs)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCoordinator:
    def __init__(self, db: str, admin_token: str, extra_args: tuple[str, ...] = (), log=subprocess.DEVNULL,
                 host: str = "127.0.0.1", prefix: tuple[str, ...] = (), env: dict | None = None):
        """``prefix``: a command the server runs under (``ip netns exec NAME``, which execs it:
        the process is the server's); ``env``: variables added to this process's."""
        self.db, self.admin_token, self.extra_args, self.log = db, admin_token, tuple(extra_args), log
        self.host, self.prefix, self.env = host, tuple(prefix), env
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> "LocalCoordinator":
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "fedge", "serve", "--db", self.db, "--host", self.host,
             "--port", str(self.port),
             # "=": a random token may start with "-", which argparse would take for an option.
             f"--admin-token={self.admin_token}", "--log-level", "WARNING", *self.extra_args],
            stdout=self.log, stderr=subprocess.STDOUT if self.log is not subprocess.DEVNULL else subprocess.DEVNULL,
            env={**os.environ, **self.env} if self.env else None,
        )
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the coordinator exited with code {self.proc.returncode}")
            try:
                urllib.request.urlopen(self.url + "/v1/openapi.json", timeout=1).read()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the coordinator did not start within {timeout_s:.0f} s")

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "LocalCoordinator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
