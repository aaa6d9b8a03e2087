"""Token buckets keyed by a device id or a client address (check-ins, registrations)."""

from __future__ import annotations

from coordinator import errors as E


class TokenBuckets:
    """``rate`` requests per second per key, bursts of ``burst``; 0 disables the limit.

    Memory is bounded: past ``max_keys`` keys, the buckets that have refilled (which hold no
    information) are dropped, so a flood of new addresses cannot grow the table without end."""

    def __init__(self, rate: float, burst: float, what: str, max_keys: int = 200_000):
        self.rate, self.burst, self.what, self.max_keys = rate, burst, what, max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float) -> None:
        """One request for ``key`` at ``now``, or a 429 with Retry-After."""
        if self.rate <= 0:
            return
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            wait = max(1, round((1.0 - tokens) / self.rate))
            raise E.TooManyRequests(f"too many {self.what}; slow down", headers={"Retry-After": str(wait)})
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._prune(now)
        self._buckets[key] = (tokens - 1.0, now)

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
