"""What a check-in offers about releases: for the device's population and channel, the newest
active release whose rollout includes the device (protocol.releases.in_rollout), when it is
newer than what the device says it installed. The population's releases are read from the
store at most once a second (a query per check-in would be a round trip each), so a change
reaches devices within about a second, on every replica."""

from __future__ import annotations

from typing import Callable

from coordinator import errors as E
from coordinator.releases.states import ReleaseState
from coordinator.store.records import ReleaseRecord
from protocol.releases import ReleaseOffer, in_rollout

CACHE_TTL_S = 1.0
URL_LIFE_S = 3600.0  # a release downloads when the device's rule allows, not at once


class ReleaseOffers:
    def __init__(self, store, clock, url: Callable[[str, float, float], str]):
        """``url(sha, until, now)``: where a device downloads a blob (DownloadBlobs.url)."""
        self.store, self.clock, self.url = store, clock, url
        self._active: dict[str, tuple[float, dict[str, list[ReleaseRecord]]]] = {}

    def offer(self, device_id: str, population: str, channel: str, installed: int) -> ReleaseOffer | None:
        now = self.clock()
        for r in self._channel(population, channel, now):  # newest first
            if in_rollout(r.release_id, device_id, r.percent):
                return self._offer(r, now) if r.sequence > installed else None
        return None

    def for_device(self, device_population: str, release_id: str) -> ReleaseOffer:
        """GET /v1/releases/{id}: a release of the device's own population, or a clear refusal."""
        r = self.store.release(release_id)
        if r is None:
            raise E.NotFound(f"no release {release_id}")
        if r.population != device_population:
            raise E.Forbidden("this release belongs to another population", "other_population")
        if r.state == ReleaseState.ROLLED_BACK:
            raise E.Gone(f"release {release_id} was rolled back", "rolled_back")
        return self._offer(r, self.clock())

    def forget(self) -> None:
        self._active.clear()

    def _channel(self, population: str, channel: str, now: float) -> list[ReleaseRecord]:
        cached = self._active.get(population)
        if cached is None or not 0 <= now - cached[0] < CACHE_TTL_S:
            by_channel: dict[str, list[ReleaseRecord]] = {}
            for r in self.store.releases(population):
                if r.state == ReleaseState.ACTIVE:
                    by_channel.setdefault(r.channel, []).append(r)
            cached = self._active[population] = (now, by_channel)
        return cached[1].get(channel, [])

    def _offer(self, r: ReleaseRecord, now: float) -> ReleaseOffer:
        return ReleaseOffer(r.release_id, r.population, r.channel, r.sequence, r.model_sha, r.size,
                            self.url(r.model_sha, now + URL_LIFE_S, now), r.signature)
