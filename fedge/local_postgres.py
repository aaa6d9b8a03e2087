"""A throwaway PostgreSQL server for tests and benchmarks: Debian's `postgresql` package
(`initdb`, `pg_ctl`), a cluster in a temporary directory on a free loopback port, trust
authentication, stopped and deleted afterwards. As root it runs as the `postgres` user
(PostgreSQL refuses to run as root).

    with LocalPostgres() as pg:
        url = pg.create_database("t1")   # postgresql://postgres@127.0.0.1:PORT/t1
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile

from fedge.local_coordinator import free_port


def find_bin_dir() -> str | None:
    """The newest installed PostgreSQL's bin directory (Debian keeps them versioned)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


class LocalPostgres:
    def __init__(self, listen: tuple[str, ...] = ("127.0.0.1",), trust_from: tuple[str, ...] = ()):
        """``listen``: the addresses it listens on; ``trust_from``: networks (CIDR) besides
        loopback whose clients it lets in (coordinator replicas in network namespaces)."""
        self.listen, self.trust_from = tuple(listen), tuple(trust_from)
        self.bin_dir = find_bin_dir()
        if self.bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="fedge-pg-")
        self.data = os.path.join(self.dir, "data")
        self._as_postgres = os.geteuid() == 0

    def _run(self, *cmd: str, timeout: float = 120) -> None:
        argv = [os.path.join(self.bin_dir, cmd[0]), *cmd[1:]]
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({res.returncode}): {res.stdout[-2000:]}{res.stderr[-2000:]}")

    def start(self) -> "LocalPostgres":
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        if self.trust_from:
            with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
                f.writelines(f"host all all {cidr} trust\n" for cidr in self.trust_from)
        # fsync off: a test cluster need not survive power loss (the coordinator's own
        # crash tests kill the coordinator, not the database).
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses={','.join(self.listen)} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"), "-o", options, "-w", "start")
        return self

    def url(self, database: str = "postgres", host: str = "127.0.0.1") -> str:
        return f"postgresql://postgres@{host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        except (RuntimeError, FileNotFoundError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "LocalPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
