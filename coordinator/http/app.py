"""The aiohttp application: the factory, the round-driver task and the one error middleware."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from contextlib import suppress

from aiohttp import web

from coordinator import errors as E
from coordinator.http import handlers as handlers
from coordinator.http import release_handlers
from coordinator.gateway.attestation import load_verifier
from coordinator.http.client_address import parse_networks
from coordinator.config import ServeConfig
from coordinator.http.keys import (ADMIN_TOKEN, BODY_READS, CONFIG, COORDINATOR, METRICS, ROUND_CHANGED,
                                   ROUND_OPENED, TICKER, TRUSTED_PROXIES, BodyReads, SlotWaiters, Wakeup)
from coordinator.operator.metrics import Metrics
from coordinator.gateway.pace import PaceConfig
from coordinator.service import Coordinator
from coordinator.store.factory import open_blobs, open_store
from protocol.errors import ProtocolError

log = logging.getLogger("fedge.coordinator")


def _json_error(status: int, code: str, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler):
    """The one place where exceptions become HTTP statuses; a device never sees a 500 for bad input."""
    metrics = request.app[METRICS]
    try:
        return await handler(request)
    except E.ApiError as exc:
        metrics.http_errors.labels(str(exc.status), exc.code).inc()
        return _json_error(exc.status, exc.code, str(exc), exc.headers)
    except ProtocolError as exc:
        metrics.http_errors.labels("400", exc.code).inc()
        return _json_error(400, exc.code, str(exc))
    except web.HTTPRequestEntityTooLarge:
        metrics.http_errors.labels("413", "payload_too_large").inc()
        return _json_error(413, "payload_too_large", "request body too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        metrics.http_errors.labels(str(exc.status), code).inc()
        return _json_error(exc.status, code, exc.text or exc.reason)
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        metrics.http_errors.labels("500", "internal").inc()
        return _json_error(500, "internal", "internal error (logged)")


async def _ticker(app: web.Application) -> None:
    """The round driver: advances every task by the clock each tick_s, and runs each commit
    it is handed (by a round's last upload or a deadline) with its computation in an
    executor, so check-ins are answered while a round commits."""
    coordinator, interval = app[COORDINATOR], app[CONFIG].tick_s
    wake = asyncio.Event()
    coordinator.driver.commit_listeners.append(wake.set)
    coordinator.driver.defer_commits = True
    commits: set[asyncio.Task] = set()
    next_gauge = 0.0
    while True:
        wake.clear()
        try:
            coordinator.tick()
            for task_id, num in coordinator.driver.take_pending_commits():
                job = asyncio.create_task(coordinator.driver.commit_async(task_id, num))
                commits.add(job)
                job.add_done_callback(commits.discard)
            if coordinator.clock() >= next_gauge:  # a COUNT over the devices: once a second is plenty
                app[METRICS].active_devices.set(coordinator.driver.active_devices())
                next_gauge = coordinator.clock() + 1.0
        except Exception:
            log.exception("round driver tick failed")
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wake.wait(), interval)


async def _start_ticker(app: web.Application) -> None:
    app[COORDINATOR].store.checkpoint_in_background()
    app[TICKER] = asyncio.create_task(_ticker(app))


async def _stop(app: web.Application) -> None:
    if TICKER in app:
        app[TICKER].cancel()
        with suppress(asyncio.CancelledError):
            await app[TICKER]
    coordinator = app[COORDINATOR]
    try:
        coordinator.driver.release_leases()  # another replica takes the tasks over at once
    except Exception:  # noqa: BLE001 - the database may be the thing that went away
        log.warning("could not release this replica's leases; they expire by themselves")
    coordinator.close()
    coordinator.store.close()


def create_app(config: ServeConfig, run_ticker: bool = True, clock=None) -> web.Application:
    store = open_store(config.db, config.data_dir, synchronous=config.synchronous,
                       blobs=open_blobs(config.blobs, config.blobs_public_endpoint))
    metrics = Metrics()
    pace = PaceConfig(config.min_retry_s, config.max_retry_s, config.ineligible_retry_s)
    kwargs = {"clock": clock} if clock is not None else {}
    verifier = load_verifier(config.attestation_verifier) if config.attestation_verifier else None
    coordinator = Coordinator(store, pace=pace, metrics=metrics, checkin_rate=config.checkin_rate,
                              register_rate=config.register_rate, attestation=verifier,
                              max_aggregation_mib=config.max_aggregation_mib, **kwargs)
    app = web.Application(middlewares=[error_middleware], client_max_size=handlers.MAX_MODEL_BODY)
    app[COORDINATOR] = coordinator
    app[METRICS] = metrics
    app[CONFIG] = config
    app[TRUSTED_PROXIES] = parse_networks(config.trusted_proxies)
    app[ROUND_OPENED] = SlotWaiters(config.max_held_checkins)
    app[BODY_READS] = BodyReads(config.max_body_reads_per_address, config.max_body_reads)
    app[ROUND_CHANGED] = Wakeup()
    def round_opened(task_id: str) -> None:
        # An asynchronous buffer opening frees no slot (slots free as updates come in: slots_free).
        task = coordinator.tasks[task_id]
        if not task.config.asynchronous:
            app[ROUND_OPENED].wake(task.population, task.config.target_selected)

    coordinator.driver.round_open_listeners.append(round_opened)
    coordinator.driver.round_change_listeners.append(app[ROUND_CHANGED].fire)

    def slots_free(task_id: str, slots: int) -> None:  # asynchronous tasks: call held devices in
        app[ROUND_OPENED].wake(coordinator.tasks[task_id].population, slots)

    coordinator.gateway.slot_listeners.append(slots_free)
    coordinator.driver.slot_listeners.append(slots_free)
    app[ADMIN_TOKEN] = config.admin_token or os.environ.get("FEDGE_ADMIN_TOKEN") or secrets.token_urlsafe(24)
    release_handlers.add_routes(app)  # first: its task route is more specific than handlers' task actions
    handlers.add_routes(app)
    if run_ticker:
        app.on_startup.append(_start_ticker)
    app.on_cleanup.append(_stop)
    return app
