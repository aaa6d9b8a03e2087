"""Typed keys of the aiohttp application, shared by the factory and the handlers."""

from __future__ import annotations

import asyncio

from aiohttp import web

from coordinator.config import ServeConfig
from coordinator.metrics import Metrics
from coordinator.service import Coordinator

COORDINATOR = web.AppKey("coordinator", Coordinator)
METRICS = web.AppKey("metrics", Metrics)
CONFIG = web.AppKey("config", ServeConfig)
ADMIN_TOKEN = web.AppKey("admin_token", str)
TICKER = web.AppKey("ticker", asyncio.Task)


class Wakeup:
    """Wakes long-polling requests when something happens (a fresh Event per firing)."""

    def __init__(self):
        self.event = asyncio.Event()

    def fire(self, task_id: str = "") -> None:
        self.event.set()
        self.event = asyncio.Event()


ROUND_OPENED = web.AppKey("round_opened", Wakeup)  # check-ins waiting for a slot
ROUND_CHANGED = web.AppKey("round_changed", Wakeup)  # SecAgg views waiting for the next phase
