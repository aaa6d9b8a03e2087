"""The model this device infers with: model releases the coordinator offers at check-in
(protocol.releases), verified and installed atomically, the previous one kept.

A release is installed only when all of these hold: the offer names this device's population;
its sequence is above the installed one (an old statement replayed to downgrade the device is
refused, however validly signed); the coordinator's Ed25519 signature over it verifies with the
key pinned at registration; and the downloaded bytes hash to the digest signed (a tampered,
truncated or wrong file is never kept). Then the model file is written under its digest and
``current.json`` is replaced in one rename, so a crash leaves the old release or the new one,
never half of either. The release before stays on disk (``previous`` in current.json).

    releases = InstalledReleases(state_dir / "releases", pinned_key, "phones")
    releases.current_model_path()   # the file `fedge predict` opens
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Awaitable, Callable

from protocol.releases import DEFAULT_CHANNEL, ReleaseOffer

log = logging.getLogger("fedge.device")
CURRENT = "current.json"


class InstalledReleases:
    def __init__(self, folder: str | os.PathLike, public_key: str, population: str, channel: str = DEFAULT_CHANNEL):
        self.folder = Path(folder)
        self.public_key, self.population, self.channel = public_key, population, channel
        self.installed = 0  # releases installed by this process
        self.refused = 0  # offers refused (signature, population, sequence, bytes)
        self.last_refusal = ""
        self._saved: dict | None = None  # current.json as last read or written

    def _state(self) -> dict:
        """current.json, read once: this object is its only writer (every check-in asks)."""
        if self._saved is None:
            try:
                self._saved = json.loads((self.folder / CURRENT).read_text())
            except (FileNotFoundError, ValueError):
                self._saved = {}
        return self._saved

    @property
    def current(self) -> ReleaseOffer | None:
        raw = self._state().get("current")
        return ReleaseOffer.from_dict(raw) if raw else None

    @property
    def sequence(self) -> int:
        """The installed release's sequence (0: none), which the check-in reports."""
        current = self.current
        return current.sequence if current else 0

    def current_model_path(self) -> Path | None:
        current = self.current
        return self.folder / f"{current.model_sha256}.tflite" if current else None

    async def install(self, offer: ReleaseOffer, fetch: Callable[[str, str], Awaitable[bytes]]) -> bool:
        """Verify, download (``fetch(url, sha)`` checks the digest) and install ``offer``;
        False (and nothing changed) when it is refused or cannot be had now."""
        from device_runtime.blob_cache import BlobMismatch
        from device_runtime.client import RequestRefused
        from protocol.errors import ProtocolError

        try:
            if not self.public_key:
                raise ProtocolError("no release key was pinned at registration; register again to take releases",
                                    "no_pinned_key")
            offer.verify(self.public_key, self.population, self.sequence)
            data = self._kept(offer.model_sha256)  # a rollback returns to the model kept on disk
            if data is None:
                data = await fetch(offer.url, offer.model_sha256)
            if hashlib.sha256(data).hexdigest() != offer.model_sha256:  # whatever the fetch checked
                raise BlobMismatch(f"release {offer.release_id} does not match its signed sha256 (refused, not used)")
            if len(data) != offer.size:
                raise ProtocolError(f"release {offer.release_id} is {len(data)} bytes, not the {offer.size} signed",
                                    "bad_release")
        except (ProtocolError, BlobMismatch, RequestRefused) as exc:
            self.refused += 1
            self.last_refusal = str(exc)
            log.warning("model release %s refused: %s", offer.release_id, exc)
            return False
        self._write(offer, data)
        self.installed += 1
        log.info("model release %s installed (sequence %d, %d bytes)", offer.release_id, offer.sequence, len(data))
        return True

    def _kept(self, sha: str) -> bytes | None:
        path = self.folder / f"{sha}.tflite"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return data if hashlib.sha256(data).hexdigest() == sha else None  # damaged on disk: download again

    def _write(self, offer: ReleaseOffer, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        model = self.folder / f"{offer.model_sha256}.tflite"
        if not model.exists():
            tmp = model.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, model)
        previous = self._state().get("current")
        state = {"current": offer.to_dict(), "previous": previous}
        tmp = self.folder / (CURRENT + ".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.folder / CURRENT)  # the swap: one rename
        self._saved = state
        keep = {f"{offer.model_sha256}.tflite"} | ({f"{previous['model_sha256']}.tflite"} if previous else set())
        for path in self.folder.glob("*.tflite"):
            if path.name not in keep:
                path.unlink(missing_ok=True)
