"""Network namespaces for tests of share-nothing replicas: each replica in a namespace of its
own, joined to the host by a veth pair on a /30 of 198.18.0.0/15 (RFC 2544's range for
network tests, never routed), so it reaches the host's PostgreSQL and object store only by
the host side's address, and nothing of another replica. Needs root (CAP_NET_ADMIN) and
iproute2; `available()` says whether this machine allows it."""

from __future__ import annotations

import os
import subprocess
import uuid


def _ip(*args: str, ns: str | None = None) -> None:
    argv = ["ip", *(["netns", "exec", ns, "ip"] if ns else []), *args]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {res.stderr.strip()}")


def available() -> str:
    """"" when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"fedge-probe-{uuid.uuid4().hex[:8]}"
    try:
        _ip("netns", "add", name)
    except (RuntimeError, OSError) as exc:
        return f"cannot create a network namespace: {exc}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
    return ""


class Namespace:
    """One namespace, its veth pair and a /30: ``host_ip`` on the host's side, ``ip`` inside."""

    def __init__(self, index: int):
        tag = f"{os.getpid() % 100000}{index}"
        self.name = f"fedge-{tag}"
        self._host_if, self._ns_if = f"fh{tag}"[:15], f"fn{tag}"[:15]
        # A /30 per (process, index): two test runs on one machine never share one.
        block = ((os.getpid() % 4000) * 8 + index) * 4  # < 2**17: inside 198.18.0.0/15
        self.host_ip = f"198.{18 + block // 65536}.{block // 256 % 256}.{block % 256 + 1}"
        self.ip = f"198.{18 + block // 65536}.{block // 256 % 256}.{block % 256 + 2}"

    @property
    def exec_prefix(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.name)

    def create(self) -> "Namespace":
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self._host_if, "type", "veth", "peer", "name", self._ns_if)
            _ip("link", "set", self._ns_if, "netns", self.name)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self._host_if)
            _ip("link", "set", self._host_if, "up")
            _ip("addr", "add", f"{self.ip}/30", "dev", self._ns_if, ns=self.name)
            _ip("link", "set", self._ns_if, "up", ns=self.name)
            _ip("link", "set", "lo", "up", ns=self.name)
        except Exception:
            self.delete()
            raise
        return self

    def delete(self) -> None:
        # Deleting the namespace deletes its end of the pair, which takes the host's end too.
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", self._host_if], capture_output=True, timeout=30)
