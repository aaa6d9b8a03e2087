"""Key agreement, key derivation and sealing for SecAgg, all from `cryptography`.

Each device holds two X25519 key pairs per round: (c_sk, c_pk) to encrypt the shares it
sends to its peers, (s_sk, s_pk) to agree the pairwise mask seeds. Every derived key
is HKDF-SHA256 of the X25519 shared secret, with ``info`` naming the purpose and the
round context (task and round), so keys of one round are useless in another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol.errors import ProtocolError

KEY_BYTES = 32
NONCE_BYTES = 12
PURPOSE_SHARES = b"shares"
PURPOSE_MASK = b"mask"
_RAW = serialization.Encoding.Raw


@dataclass(frozen=True)
class KeyPair:
    private: bytes
    public: bytes


def generate_keypair() -> KeyPair:
    sk = X25519PrivateKey.generate()
    return KeyPair(sk.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()),
                   sk.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw))


def public_of(private: bytes) -> bytes:
    try:
        return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(
            _RAW, serialization.PublicFormat.Raw)
    except ValueError as exc:
        raise ProtocolError(f"bad X25519 private key: {exc}", "bad_key") from exc


def agree(private: bytes, peer_public: bytes, context: bytes, purpose: bytes) -> bytes:
    """A 32-byte key both ends derive: HKDF(X25519(private, peer_public), info=purpose|context)."""
    try:
        shared = X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:  # wrong length, or a low-order point (all-zero shared secret)
        raise ProtocolError(f"key agreement failed: {exc}", "bad_key") from exc
    return HKDF(hashes.SHA256(), KEY_BYTES, salt=None, info=b"fedge-secagg/1/" + purpose + b"/" + context).derive(shared)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < NONCE_BYTES + 16:
        raise ProtocolError("sealed message is too short", "bad_ciphertext")
    try:
        return ChaCha20Poly1305(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag as exc:
        raise ProtocolError("sealed message failed authentication", "bad_ciphertext") from exc
