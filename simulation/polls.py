"""The simulated devices' held long polls: a device that finds no slot is held for up to
`long_poll_s` (as the served handler holds it) and is woken, oldest first, when a round opens
or an asynchronous slot frees; a poll that ends unwoken sends the device back at its retry
time.

That return is scheduled when the poll begins (one event, not a "poll ended" event and then
the return) and a wake-up cancels it by the poll's number. Polls are kept in one bucket per
virtual second they began in: a bucket goes whole once all of its polls have ended, so a
wake-up walks only the last `long_poll_s` seconds of polls and nothing is deleted one by one.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any


class LongPolls:
    def __init__(self, long_poll_s: float) -> None:
        self.long_poll_s = long_poll_s
        # (second it began in, {device: (its request, when the poll ends, the poll's number)})
        self._buckets: deque[tuple[float, dict[int, tuple[Any, float, int]]]] = deque()
        self._cancelled: set[int] = set()  # polls woken before their return came
        self._numbers = itertools.count(1)

    def hold(self, device: int, request: Any, now: float, ends: float) -> int:
        """A poll from ``now`` to ``ends``; its number (the scheduled return carries it)."""
        poll = next(self._numbers)
        second = now // 1.0
        if not self._buckets or self._buckets[-1][0] != second:
            self._expire(now)
            self._buckets.append((second, {}))
        self._buckets[-1][1][device] = (request, ends, poll)
        return poll

    def _expire(self, now: float) -> None:
        # A poll that began in second s ends before s + 1 + long_poll_s.
        while self._buckets and self._buckets[0][0] + 1.0 + self.long_poll_s <= now:
            self._buckets.popleft()

    def wake(self, n: int | None, now: float) -> list[tuple[int, Any]]:
        """Up to ``n`` (None: all) polls still held at ``now``, oldest first: (device, request).
        Their returns are cancelled."""
        self._expire(now)
        woken: list[tuple[int, Any]] = []
        for _, polls in self._buckets:
            taken = []
            for device, (request, ends, poll) in polls.items():
                if n is not None and len(woken) >= n:
                    break
                if ends > now:
                    self._cancelled.add(poll)
                    woken.append((device, request))
                    taken.append(device)
            for device in taken:
                del polls[device]
            if n is not None and len(woken) >= n:
                break
        return woken

    def returns(self, poll: int) -> bool:
        """Whether a poll's scheduled return stands (False once: a wake-up answered it first)."""
        if poll in self._cancelled:
            self._cancelled.discard(poll)
            return False
        return True
