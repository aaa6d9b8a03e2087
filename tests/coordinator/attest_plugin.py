"""A stand-in attestation verifier for the tests (a deployment plugs in Play Integrity / App Attest)."""


def verify(population: str, attestation: str) -> bool:
    if attestation == "explode":
        raise RuntimeError("verifier bug")
    return attestation == f"genuine-{population}"
