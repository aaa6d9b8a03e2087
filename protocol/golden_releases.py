"""Golden vectors of model releases (protocol/golden/releases.json, written by
`python -m protocol.golden`): the rollout buckets and signed statements, valid and not, that
the Python and Java devices check."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import releases


def release_vectors() -> dict:
    """The rollout hash and the release signature (protocol.releases): buckets for pairs of
    release and device ids, and statements signed with a key made from a fixed seed (Ed25519
    is deterministic), each with whether it verifies for the population given."""
    rollout = []
    for r in ("r-1", "r-2", "digits-stable-0007"):
        for d in ("d-0", "d-1", "d-7f3a9c", "d-" + "e" * 16, "emulated-42"):
            bucket = releases.rollout_bucket(r, d)
            rollout.append({"release_id": r, "device_id": d, "bucket": bucket,
                            "in_10_percent": releases.in_rollout(r, d, 10.0),
                            "in_50_percent": releases.in_rollout(r, d, 50.0)})
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    signed = []
    for population, channel, rid, seq, sha in (("phones", "stable", "r-1", 1, "ab" * 32),
                                               ("phones", "beta", "digits-r12", 7, "0f" * 32),
                                               ("pop", "stable", "r-3", 2**40, "c3" * 32)):
        sig = releases.sign(key, population, channel, rid, seq, sha)
        offer = {"release_id": rid, "population": population, "channel": channel, "sequence": seq,
                 "model_sha256": sha, "size": 1234, "url": f"/v1/releases/{rid}/model", "signature": sig}
        signed.append({"offer": offer, "statement": releases.statement(population, channel, rid, seq, sha).hex(),
                       "device_population": population, "installed_sequence": seq - 1, "valid": True})
        # The same signature over anything else does not verify.
        signed.append({"offer": {**offer, "sequence": seq + 1}, "device_population": population,
                       "installed_sequence": 0, "valid": False, "why": "bad_signature"})
        signed.append({"offer": {**offer, "model_sha256": "ee" * 32}, "device_population": population,
                       "installed_sequence": 0, "valid": False, "why": "bad_signature"})
        signed.append({"offer": offer, "device_population": "other", "installed_sequence": 0, "valid": False,
                       "why": "other_population"})
        signed.append({"offer": offer, "device_population": population, "installed_sequence": seq, "valid": False,
                       "why": "old_release"})
    return {"public_key": releases.public_hex(key), "rollout": rollout, "signed": signed}
