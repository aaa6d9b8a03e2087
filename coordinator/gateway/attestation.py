"""Device attestation at registration: the plug-in point.

A population created with ``"require_attestation": true`` registers only devices whose
``attestation`` field (a platform token the app obtained) the configured verifier accepts::

    fedge serve --attestation-verifier mypackage.attest:verify

``verify(population: str, attestation: str) -> bool`` is any importable callable. fedge
ships no platform verifier: a deployment plugs in Play Integrity (Android: decrypt and
verify the integrity token through Google's API, then check the package name, the
certificate digest, the request nonce and the device-integrity verdict) or Apple App Attest
(verify the attestation object's certificate chain, the app id and the counter). It runs
on the event loop, so it should answer quickly (cache what it fetches); an exception it
raises counts as a refusal and is logged.
"""

from __future__ import annotations

import importlib
import logging
from typing import Callable, Protocol

log = logging.getLogger("fedge.coordinator")


class AttestationVerifier(Protocol):
    def verify(self, population: str, attestation: str) -> bool: ...


class CallableVerifier:
    def __init__(self, fn: Callable[[str, str], bool], name: str):
        self.fn, self.name = fn, name

    def verify(self, population: str, attestation: str) -> bool:
        if not attestation:
            return False
        try:
            return bool(self.fn(population, attestation))
        except Exception:  # noqa: BLE001 - a verifier's failure refuses the device, never the service
            log.exception("attestation verifier %s raised; the registration is refused", self.name)
            return False


def load_verifier(spec: str) -> AttestationVerifier:
    """``module:function`` -> a verifier; a clear ValueError when it cannot be loaded."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--attestation-verifier must be MODULE:FUNCTION, got {spec!r}")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load the attestation verifier {spec!r}: {exc}") from exc
    if not callable(fn):
        raise ValueError(f"attestation verifier {spec!r} is not callable")
    return CallableVerifier(fn, spec)
