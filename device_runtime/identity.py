"""A device's identity on disk: the token it registered with, and for which coordinator and
population. One state folder holds one identity; a device started with another population or
coordinator refuses instead of silently taking part where it registered before."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

IDENTITY_FILE = "identity.json"


class IdentityMismatch(Exception):
    pass


def default_state_dir(coordinator: str, population: str, root: Path | None = None) -> Path:
    """~/.fedge-device/HOST_PORT/POPULATION: one identity per coordinator and population."""
    url = urlsplit(coordinator if "://" in coordinator else f"http://{coordinator}")
    host = (url.hostname or "coordinator").replace(":", "_")  # an IPv6 address
    where = f"{host}_{url.port}" if url.port else host
    return (root or Path.home() / ".fedge-device") / where / population


def _same_coordinator(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class DeviceIdentity:
    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / IDENTITY_FILE
        self._saved = json.loads(self.path.read_text()) if self.path.exists() else None

    @property
    def token(self) -> str:
        return self._saved["token"] if self._saved else ""

    def check(self, coordinator: str, population: str) -> None:
        saved = self._saved
        if saved is None:
            return
        if saved.get("population") != population or not _same_coordinator(saved.get("coordinator", ""), coordinator):
            raise IdentityMismatch(
                f"{self.path.parent} holds the identity of a device of population {saved.get('population')!r} at "
                f"{saved.get('coordinator')}, not of population {population!r} at {coordinator}; give another "
                "--state-dir (or leave it out: the default folder is per coordinator and population)")

    @property
    def release_key(self) -> str:
        """The coordinator's release-signing key, pinned at registration ("" for an identity
        saved before releases existed: such a device takes no release until it registers again)."""
        return self._saved.get("release_key", "") if self._saved else ""

    def save(self, coordinator: str, population: str, token: str, release_key: str = "") -> None:
        self._saved = {"coordinator": coordinator.rstrip("/"), "population": population, "token": token,
                       "release_key": release_key}
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self._saved, f)
        os.replace(tmp, self.path)
