"""Check-in activity per population over the last few minutes, for the operator page:
how many devices check in and how fast, what they were told (assigned, no slot,
ineligible, no task), and which eligibility clauses turn devices away most.

Kept in memory in 10-second buckets (a fixed few per population, whatever the load): it
describes what this process saw recently and is gone after a restart, like a rate.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

BUCKET_S = 10.0
WINDOW_S = 300.0


@dataclass
class _Bucket:
    start: float
    outcomes: Counter = field(default_factory=Counter)
    clauses: Counter = field(default_factory=Counter)


class CheckinActivity:
    def __init__(self, bucket_s: float = BUCKET_S, window_s: float = WINDOW_S):
        self.bucket_s, self.window_s = bucket_s, window_s
        self._buckets: dict[str, deque[_Bucket]] = {}

    def record(self, population: str, outcome: str, now: float, failed_clauses: list[str] = ()) -> None:
        buckets = self._buckets.get(population)
        if not buckets or now - buckets[-1].start >= self.bucket_s:  # every check-in: a lookup and a compare
            bucket = self._advance(population, now)
        else:
            bucket = buckets[-1]
        bucket.outcomes[outcome] += 1
        if failed_clauses:
            bucket.clauses.update(failed_clauses)

    def _advance(self, population: str, now: float) -> _Bucket:
        """The population's bucket for ``now``, opened now; buckets out of the window go."""
        buckets = self._buckets.get(population)
        if buckets is None:
            self._buckets[population] = buckets = deque()
        start = now - now % self.bucket_s
        buckets.append(_Bucket(start))
        while buckets and buckets[0].start <= now - self.window_s - self.bucket_s:
            buckets.popleft()
        return buckets[-1]

    def summary(self, population: str, now: float) -> dict:
        """Counts over the last ``window_s`` (less while the process is younger)."""
        outcomes, clauses, oldest = Counter(), Counter(), now
        for bucket in self._buckets.get(population, ()):
            if bucket.start > now - self.window_s:
                outcomes.update(bucket.outcomes)
                clauses.update(bucket.clauses)
                oldest = min(oldest, bucket.start)
        total = sum(outcomes.values())
        with_task = total - outcomes["no_task"]
        span = max(now - oldest, self.bucket_s) if total else self.window_s
        return {
            "window_s": round(span, 1),
            "checkins": total,
            "checkins_per_s": total / span,
            "outcomes": dict(outcomes),
            # Of the check-ins that found a task: the fraction its eligibility rule admitted.
            "eligible_fraction": (with_task - outcomes["ineligible"]) / with_task if with_task else None,
            "failed_clauses": clauses.most_common(5),
        }
