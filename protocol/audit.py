"""The audit trail's format, pure: per task an append-only chain of entries, each naming the
hash of the one before it and signed with the coordinator's Ed25519 key (`cryptography`).
Anyone holding the public key (`GET /v1/audit/key`) can check an exported trail offline
(`fedge audit verify FILE --key KEY`): an edited, removed, inserted or reordered entry breaks
the chain or a signature, and the first such entry is named. An export carries a signed head
(task, entry count, last hash, time), so entries cut from the end, an empty trail or another
task's entries under this task's name fail too.

An entry is a JSON object {seq, task_id, time, kind, data, prev}; its hash is SHA-256 of its
canonical JSON (sorted keys, no spaces, ASCII); the signature is Ed25519 over that hash. The
first entry of a task has seq 1 and prev GENESIS.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.errors import ProtocolError

GENESIS = "0" * 64
FIELDS = ("seq", "task_id", "time", "kind", "data", "prev")


def canonical(entry: dict) -> bytes:
    return json.dumps({k: entry[k] for k in FIELDS}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False).encode()


def entry_hash(entry: dict) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


def seal(entry: dict, key: Ed25519PrivateKey) -> dict:
    """The entry with its hash and signature."""
    digest = entry_hash(entry)
    return {**{k: entry[k] for k in FIELDS}, "hash": digest,
            "signature": base64.b64encode(key.sign(bytes.fromhex(digest))).decode()}


def new_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ProtocolError("the audit key is not an Ed25519 private key", "bad_key")
    return key


def load_public(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ProtocolError(f"not a PEM public key: {exc}", "bad_key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ProtocolError("the audit key is not an Ed25519 public key", "bad_key")
    return key


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int  # entries checked (all of them when ok)
    failure: str = ""  # what is wrong with the first bad entry
    task_id: str = ""  # whose trail it is (the signed head's task)
    as_of: float | None = None  # when the coordinator signed the head (the export's time)


HEAD_FIELDS = ("task_id", "length", "last_hash", "time")
_HEAD_DOMAIN = b"fedge-audit-head\0"  # a head's signature can never pass for an entry's


def head_digest(head: dict) -> bytes:
    body = json.dumps({k: head[k] for k in HEAD_FIELDS}, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode()
    return hashlib.sha256(_HEAD_DOMAIN + body).digest()


def sign_head(task_id: str, entries: list[dict], time: float, key: Ed25519PrivateKey) -> dict:
    """The trail's head as exported: its task, length and last entry's hash, signed, so an
    export cut short at the end, emptied or relabelled fails verification."""
    head = {"task_id": task_id, "length": len(entries), "last_hash": entries[-1]["hash"] if entries else GENESIS,
            "time": time}
    return {**head, "signature": base64.b64encode(key.sign(head_digest(head))).decode()}


def verify_trail(trail: dict, public: Ed25519PublicKey) -> Verdict:
    """An exported trail ({task_id, entries, head}): the signed head first (whose task, how
    many entries, the last one's hash), then every entry (`verify`)."""
    head, entries = trail.get("head"), trail.get("entries")
    if not isinstance(entries, list):
        return Verdict(False, 0, "not an audit trail (expected {\"entries\": [...], \"head\": {...}})")
    if not isinstance(head, dict) or any(k not in head for k in (*HEAD_FIELDS, "signature")):
        return Verdict(False, 0, "the trail has no signed head: whether entries were cut from its end cannot be "
                                 "checked (export it again with `fedge audit export`)")
    try:
        public.verify(base64.b64decode(head["signature"], validate=True), head_digest(head))
    except (InvalidSignature, ValueError, TypeError):
        return Verdict(False, 0, "the trail's head has a bad signature (not signed by this key, or edited)")
    task_id = head["task_id"]
    if trail.get("task_id", task_id) != task_id:
        return Verdict(False, 0, f"the file says task {trail.get('task_id')!r}, its signed head {task_id!r}",
                       task_id=task_id)
    if head["length"] < 1:
        return Verdict(False, 0, "the signed head lists no entries: a task's trail starts with its creation",
                       task_id=task_id)
    if len(entries) != head["length"]:
        return Verdict(False, min(len(entries), head["length"]),
                       f"{_entries(len(entries))} where the signed head lists {head['length']} "
                       f"({'entries were cut off' if len(entries) < head['length'] else 'entries were added'})",
                       task_id=task_id)
    verdict = verify(entries, public)
    if verdict.ok and entries[0]["task_id"] != task_id:
        verdict = Verdict(False, 0, f"the entries belong to task {entries[0]['task_id']!r}, the head to {task_id!r}")
    elif verdict.ok and entries[-1]["hash"] != head["last_hash"]:
        verdict = Verdict(False, len(entries) - 1, "the last entry is not the one the signed head names")
    return Verdict(verdict.ok, verdict.entries, verdict.failure, task_id, head["time"])


def verify(entries: list[dict], public: Ed25519PublicKey) -> Verdict:
    """Check one task's trail in order: fields, sequence, chain, hash and signature."""
    prev, task = GENESIS, None
    for i, e in enumerate(entries):
        where = f"entry {i + 1}" + (f" (seq {e.get('seq')})" if isinstance(e, dict) and "seq" in e else "")
        if not isinstance(e, dict) or any(k not in e for k in (*FIELDS, "hash", "signature")):
            return Verdict(False, i, f"{where}: not an audit entry (missing fields)")
        if e["seq"] != i + 1:
            return Verdict(False, i, f"{where}: sequence number {e['seq']} where {i + 1} was expected "
                                     "(an entry was removed, inserted or moved)")
        task = e["task_id"] if task is None else task
        if e["task_id"] != task:
            return Verdict(False, i, f"{where}: belongs to task {e['task_id']!r}, the trail to {task!r}")
        if e["prev"] != prev:
            return Verdict(False, i, f"{where}: does not follow the entry before it (chain broken)")
        try:
            digest = entry_hash(e)
        except (TypeError, ValueError) as exc:
            return Verdict(False, i, f"{where}: cannot be encoded: {exc}")
        if digest != e["hash"]:
            return Verdict(False, i, f"{where}: its content does not match its hash (edited)")
        try:
            public.verify(base64.b64decode(e["signature"], validate=True), bytes.fromhex(digest))
        except (InvalidSignature, ValueError):
            return Verdict(False, i, f"{where}: bad signature (not signed by this key)")
        prev = digest
    return Verdict(True, len(entries))


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"
