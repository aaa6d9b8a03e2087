"""Registration: a new device joins a population (its enrollment secret or attestation when
the population asks for one; a rate limit per client address) and gets its token, of which
the store keeps only the hash."""

from __future__ import annotations

import hmac
import secrets
from typing import Callable

from coordinator import errors as E
from coordinator.gateway.attestation import AttestationVerifier
from coordinator.gateway.tokens import hash_token
from coordinator.http.client_address import ClientAddress
from coordinator.http.rate_limit import TokenBuckets
from coordinator.store.base import Store
from coordinator.store.records import DeviceRecord
from protocol.messages import RegisterRequest


class Registration:
    def __init__(self, store: Store, clock, attestation: AttestationVerifier | None, rate: float,
                 count: Callable[[str, str], None], remember: Callable[[DeviceRecord], None]):
        self.store, self.clock, self.attestation = store, clock, attestation
        self.count, self.remember = count, remember
        # Per client address; bursts of 10 s worth, so an app's first start is never refused.
        self.limit = TokenBuckets(rate, rate * 10, "registrations from this address")

    def admit(self, client: ClientAddress | None) -> None:
        """The per-address rate limit, taken before the request's body is read. Emulated fleets
        register thousands of devices from this host: local requests are not limited; every
        other client address (as a trusted proxy names it) has its own bucket."""
        if client is not None and not client.is_local:
            self.limit.take(client.address or "unknown", self.clock())

    def register(self, req: RegisterRequest, client: ClientAddress | None = None, store: Store | None = None,
                 admitted: bool = False) -> dict:
        """A new device. Touches no round state: with `store` (the intake thread's connection)
        it runs off the event loop, all registrations on that one thread. ``admitted``: the
        caller took the rate limit already (`admit`, before reading the body)."""
        store = store or self.store
        if not admitted:
            self.admit(client)
        pop = store.population(req.population)
        if pop is None:
            raise E.NotFound(f"no population '{req.population}'")
        if pop.enrollment_secret_hash and not hmac.compare_digest(
                pop.enrollment_secret_hash, hash_token(req.enrollment_secret)):
            self.count("registrations", "bad_enrollment_secret")
            raise E.Forbidden("this population needs its enrollment secret", "enrollment_required")
        if pop.require_attestation:
            verdict = self.attestation.verify(req.population, req.attestation) if self.attestation else None
            if not verdict:
                self.count("registrations", "attestation_failed")
                raise E.Forbidden("device attestation failed", "attestation_failed")
        self.count("registrations", "ok")
        device_id = "d-" + secrets.token_hex(8)
        token = secrets.token_urlsafe(32)
        record = DeviceRecord(device_id, req.population, hash_token(token), req.label, self.clock())
        store.add_device(record)
        # Its first check-in follows at once: from memory, not one more query on the event loop.
        self.remember(record)
        return {"device_id": device_id, "token": f"{device_id}.{token}"}
