"""Typed keys of the aiohttp application, shared by the factory and the handlers."""

from __future__ import annotations

import asyncio
import contextlib
import functools

from aiohttp import web

from coordinator import errors as E
from coordinator.config import ServeConfig
from coordinator.operator.metrics import Metrics
from coordinator.service import Coordinator

COORDINATOR = web.AppKey("coordinator", Coordinator)
METRICS = web.AppKey("metrics", Metrics)
CONFIG = web.AppKey("config", ServeConfig)
ADMIN_TOKEN = web.AppKey("admin_token", str)
TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple)  # parsed ServeConfig.trusted_proxies
TICKER = web.AppKey("ticker", asyncio.Task)


class Wakeup:
    """Wakes long-polling requests when something happens (a fresh Event per firing)."""

    def __init__(self):
        self.event = asyncio.Event()

    def fire(self, task_id: str = "") -> None:
        self.event.set()
        self.event = asyncio.Event()


class SlotWaiters:
    """Check-ins held in a long poll, per population, woken oldest first when a round opens:
    only as many as the round can take. Waking every held device at once made a herd of
    thousands of check-ins at each round's start (p99 check-in latency ~0.5 s at 10,000
    devices); the others keep waiting until their own hold ends."""

    MARGIN = 1.1  # woken per slot: a few of them lose the race to devices arriving meanwhile

    def __init__(self, max_held: int = 4096):
        # Per population, the held futures oldest first (a dict: a hold that times out leaves
        # in O(1), so nothing of it stays behind while no round opens).
        self._waiting: dict[str, dict[asyncio.Future, None]] = {}
        # Each held check-in is an open connection (a file descriptor on both ends): past
        # ``max_held`` a device gets its retry time at once instead of a hold, so a population
        # of any size cannot exhaust the coordinator's open files.
        self.max_held = max_held
        self.held = 0

    def can_hold(self) -> bool:
        return self.held < self.max_held

    def wait(self, population: str) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(population, {})[fut] = None
        self.held += 1
        fut.add_done_callback(functools.partial(self._released, population))
        return fut

    def _released(self, population: str, fut: asyncio.Future) -> None:
        self.held -= 1
        queue = self._waiting.get(population)
        if queue is not None:
            queue.pop(fut, None)  # a hold that timed out (cancelled) or was woken
            if not queue:
                del self._waiting[population]

    def waiting(self) -> int:
        """Futures remembered (held and not yet released): what the table costs in memory."""
        return sum(len(q) for q in self._waiting.values())

    def wake(self, population: str, slots: int) -> int:
        queue = self._waiting.get(population)
        woken = 0
        while queue and woken < slots * self.MARGIN:
            fut = next(iter(queue))
            del queue[fut]
            if not fut.done():
                fut.set_result(None)
                woken += 1
        if queue is not None and not queue:
            self._waiting.pop(population, None)
        return woken


class BodyReads:
    """Request bodies being read at once, per client address and in all: a cap on the
    descriptors and buffers slow senders can hold (loopback exempt: emulated fleets)."""

    def __init__(self, per_address: int, total: int):
        self.per_address, self.total = per_address, total
        self.active = 0
        self._by_address: dict[str, int] = {}

    @contextlib.contextmanager
    def reading(self, client):
        key = None if client is None or client.is_local else (client.address or "unknown")
        if self.active >= self.total or (key is not None and self._by_address.get(key, 0) >= self.per_address):
            raise E.ServiceUnavailable("too many request bodies in flight; retry shortly",
                                       headers={"Retry-After": "1"})
        self.active += 1
        if key is not None:
            self._by_address[key] = self._by_address.get(key, 0) + 1
        try:
            yield
        finally:
            self.active -= 1
            if key is not None:
                left = self._by_address[key] - 1
                if left:
                    self._by_address[key] = left
                else:
                    del self._by_address[key]


BODY_READS = web.AppKey("body_reads", BodyReads)
ROUND_OPENED = web.AppKey("round_opened", SlotWaiters)  # check-ins waiting for a slot
ROUND_CHANGED = web.AppKey("round_changed", Wakeup)  # SecAgg views waiting for the next phase
