"""Model releases, pure: what a device is told at check-in about the model it should infer
with, who is in a staged rollout, and what the coordinator signs so that a device installs
only what the coordinator released.

- **The rollout hash.** A device is in a release's rollout when its bucket, the first 8 bytes
  of SHA-256("fedge-rollout" 0 release_id 0 device_id) as a big-endian integer modulo 10,000,
  is below ``percent`` x 100. Stable: raising a release from 10% to 100% only adds devices,
  and a device never flips between two releases at a fixed percentage. Salted by the release,
  so each release's first 10% is a different cohort.
- **The signed statement.** Ed25519 (the coordinator's key, the audit trail's: devices pin it
  at registration) over "fedge-release-v1" 0 population 0 channel 0 release_id 0 sequence 0
  model_sha256, UTF-8, sequence in decimal. The sequence grows by one per release of a
  (population, channel), rollbacks included (a rollback is a new release of the older model),
  so a device refuses any statement whose sequence is not above the one it installed: an old
  release replayed to downgrade a device is refused however validly it was signed.

Golden vectors (protocol/golden/releases.json) hold both, for the Python and Java devices.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.errors import ProtocolError
from protocol.fields import MAX_URL, get_field

BUCKETS = 10_000
MAX_NAME = 64  # population, channel and release id lengths
DEFAULT_CHANNEL = "stable"
MAX_SEQUENCE = 2**53  # exact in any JSON parser
DOMAIN = b"fedge-release-v1"


def rollout_bucket(release_id: str, device_id: str) -> int:
    digest = hashlib.sha256(b"fedge-rollout\0" + release_id.encode() + b"\0" + device_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_rollout(release_id: str, device_id: str, percent: float) -> bool:
    """Whether the device is among the release's ``percent`` (0 to 100, hundredths of a percent)."""
    return rollout_bucket(release_id, device_id) < round(percent * BUCKETS / 100)


def statement(population: str, channel: str, release_id: str, sequence: int, model_sha256: str) -> bytes:
    """The bytes the coordinator signs for a release."""
    if any("\0" in part for part in (population, channel, release_id, model_sha256)):
        raise ValueError("a release's names cannot hold NUL")
    return b"\0".join([DOMAIN, population.encode(), channel.encode(), release_id.encode(), str(int(sequence)).encode(),
                       model_sha256.encode()])


def sign(key: Ed25519PrivateKey, population: str, channel: str, release_id: str, sequence: int,
         model_sha256: str) -> str:
    return key.sign(statement(population, channel, release_id, sequence, model_sha256)).hex()


def public_hex(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


@dataclass(frozen=True)
class ReleaseOffer:
    """The check-in response's ``release``: the release a device in its rollout should infer
    with, where to download it, and the coordinator's signature over what it is."""

    release_id: str
    population: str
    channel: str
    sequence: int
    model_sha256: str
    size: int
    url: str
    signature: str  # hex, 64 bytes

    @classmethod
    def from_dict(cls, raw: dict) -> "ReleaseOffer":
        offer = cls(release_id=get_field(raw, "release_id", str, max_len=MAX_NAME),
                    population=get_field(raw, "population", str, max_len=MAX_NAME),
                    channel=get_field(raw, "channel", str, max_len=MAX_NAME),
                    sequence=get_field(raw, "sequence", int, lo=1, hi=MAX_SEQUENCE),
                    model_sha256=get_field(raw, "model_sha256", str, max_len=64),
                    size=get_field(raw, "size", int, lo=1, hi=2**40),
                    url=get_field(raw, "url", str, max_len=MAX_URL),
                    signature=get_field(raw, "signature", str, max_len=128))
        if len(offer.model_sha256) != 64 or len(offer.signature) != 128:
            raise ProtocolError("a release names a SHA-256 digest and a 64-byte signature", "bad_request")
        return offer

    def to_dict(self) -> dict:
        return {"release_id": self.release_id, "population": self.population, "channel": self.channel,
                "sequence": self.sequence, "model_sha256": self.model_sha256, "size": self.size, "url": self.url,
                "signature": self.signature}

    def verify(self, public_key_hex: str, population: str, installed_sequence: int = 0) -> None:
        """Raises ProtocolError unless this offer is the pinned key's signature over what it
        says, for this device's population, newer than what is installed."""
        if self.population != population:
            raise ProtocolError(f"a release for population {self.population!r}, not this device's {population!r}",
                                "other_population")
        if self.sequence <= installed_sequence:
            raise ProtocolError(f"release {self.release_id} has sequence {self.sequence}, not above the installed "
                                f"{installed_sequence}: a replayed or older release", "old_release")
        try:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
            key.verify(bytes.fromhex(self.signature), statement(self.population, self.channel, self.release_id,
                                                                self.sequence, self.model_sha256))
        except (InvalidSignature, ValueError) as exc:
            raise ProtocolError(f"release {self.release_id}: the signature does not verify with the pinned key",
                                "bad_signature") from exc
