"""HTTP handlers: parse, call the coordinator, render. No logic lives here."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools

from aiohttp import web

from coordinator import errors as E
from coordinator.gateway.steps import PendingAssignment
from coordinator.http.client_address import ClientAddress, client_address
from coordinator.operator import status as operator_status
from coordinator.config import ServeConfig
from coordinator.http.keys import (ADMIN_TOKEN, BODY_READS, CONFIG, COORDINATOR, METRICS, ROUND_CHANGED, ROUND_OPENED,
                              TRUSTED_PROXIES)
from coordinator.http.openapi import OPENAPI
from coordinator.operator.page import OPERATOR_PAGE, STATIC_DIR
from coordinator.tasks.config import MAX_ROUNDS
from coordinator.gateway.tokens import tokens_equal
from protocol import strict_json
from protocol.errors import ProtocolError
from protocol.messages import MAX_ATTESTATION, CheckinRequest, PopulationRequest, RegisterRequest, UploadMeta

# Every handler reads its body last: after the route, the rate limit, the token and the
# task/assignment/phase checks, and up to a limit sized to its message, so what a refused
# request costs the server stays near what it cost to send (bench/refusal_cost.py).
MAX_JSON = 64 * 1024
MAX_REGISTER_JSON = MAX_ATTESTATION + 2 * 1024  # an attestation token is the largest field
MAX_CHECKIN_JSON = 32 * 1024  # a device state and up to 256 cached model digests
MAX_EVALUATION_JSON = 8 * 1024
MAX_MODEL_BODY = 512 * 1024 * 1024
MAX_SECAGG_WAIT_S = 30.0
PARSE_OFF_LOOP_BYTES = 64 * 1024  # larger JSON bodies (SecAgg shares of a big roster) parse in a thread

# Every JSON answer is standard JSON: a non-finite float stored before the door was closed is null.
json_response = functools.partial(web.json_response, dumps=strict_json.dumps)


async def _read_body(request: web.Request, content_type: str, limit: int) -> bytes:
    """The body, refused unread when it has the wrong type or announces more than ``limit`` bytes."""
    if request.content_type != content_type:
        raise E.UnsupportedMediaType(f"expected Content-Type: {content_type}")
    if request.content_length is not None and request.content_length > limit:
        raise E.PayloadTooLarge(f"body of {request.content_length} bytes is over the limit of {limit}")
    if request.content_length is not None and request.content.is_eof():
        # The whole body came with the head (a check-in's 100 bytes nearly always do): nothing
        # to wait for, so no timer and no reader slot (a fifth of a check-in's CPU before).
        body = request.content.read_nowait()
        if len(body) == request.content_length:
            return body
        raise E.BadRequest(f"body of {len(body)} bytes, not the {request.content_length} of its Content-Length")
    # content.read(n) returns what has arrived so far, not n bytes: read to the end, and give
    # up on a client that stops sending (a body shorter than its Content-Length would hold the
    # connection forever).
    config = request.app.get(CONFIG) or ServeConfig()
    idle_s = config.body_timeout_s
    # One timer per request, pushed back after each chunk (asyncio.wait_for per chunk made a
    # task and a timer per read: 14% of the coordinator's time at 10,000 devices), but never
    # past the whole body's deadline: a minimum average rate, so a trickle cannot hold it open.
    loop = asyncio.get_running_loop()
    expected = request.content_length if request.content_length is not None else limit
    total_s = idle_s + expected / config.min_body_rate
    end = loop.time() + total_s
    chunks, size = [], 0
    readers = request.app.get(BODY_READS)
    who = client(request) if readers is not None else None
    with readers.reading(who) if readers is not None else contextlib.nullcontext():
        try:
            async with asyncio.timeout(min(idle_s, total_s)) as deadline:
                while chunk := await request.content.readany():
                    size += len(chunk)
                    if size > limit:
                        raise E.PayloadTooLarge(f"body is over the limit of {limit} bytes")
                    chunks.append(chunk)
                    if size == request.content_length:
                        break  # all of it (most bodies arrive in one chunk): no timer to move, no read for EOF
                    deadline.reschedule(min(loop.time() + idle_s, end))
        except TimeoutError:
            if loop.time() >= end - 1e-3:
                raise E.RequestTimeout(f"the request body did not arrive within {total_s:.0f} s (at least "
                                       f"{config.min_body_rate:g} bytes/s after {idle_s:g} s)") from None
            raise E.RequestTimeout(f"no request body data for {idle_s:g} s") from None
        except ConnectionResetError:
            raise E.ClientClosedRequest("the client closed the connection before its body was complete") from None
    return b"".join(chunks)


async def read_json(request: web.Request, limit: int = MAX_JSON):
    body = await _read_body(request, "application/json", limit)
    if len(body) > PARSE_OFF_LOOP_BYTES:
        return await asyncio.get_running_loop().run_in_executor(None, strict_json.loads, body)
    return strict_json.loads(body)


async def read_binary(request: web.Request, limit: int) -> bytes:
    return await _read_body(request, "application/octet-stream", limit)


def coordinator(request: web.Request):
    return request.app[COORDINATOR]


def is_admin(request: web.Request) -> bool:
    return tokens_equal(request.headers.get("Authorization", ""), f"Bearer {request.app[ADMIN_TOKEN]}")


def require_admin(request: web.Request) -> None:
    if not is_admin(request):
        raise E.Unauthorized("admin token required (Authorization: Bearer <admin token>)")


def _int(text: str, what: str, hi: int = MAX_ROUNDS) -> int:
    """A path segment as an integer in [1, hi]: a larger one would not even fit a SQLite INTEGER."""
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(hi))) or not 1 <= int(text) <= hi:
        raise E.BadRequest(f"{what} must be an integer in [1, {hi}]")
    return int(text)


# -- admin -----------------------------------------------------------------------------
async def create_population(request):
    require_admin(request)
    req = PopulationRequest.from_dict(await read_json(request))
    c = coordinator(request)
    return json_response(c.admin.create_population(req.name, req.enrollment_secret, req.require_attestation), status=201)


async def list_populations(request):
    require_admin(request)
    return json_response({"populations": coordinator(request).admin.list_populations()})


async def upload_model(request):
    require_admin(request)
    data = await read_binary(request, MAX_MODEL_BODY)
    return json_response(coordinator(request).admin.put_model(data), status=201)


async def create_task(request):
    require_admin(request)
    raw = await read_json(request)
    return json_response(coordinator(request).admin.create_task(request.match_info["population"], raw), status=201)


async def task_action(request):
    require_admin(request)
    c = coordinator(request)
    who = client(request)
    by = f"admin token from {who.address or 'unknown'}"
    return json_response(c.admin.set_task_state(request.match_info["task_id"], request.match_info["action"], by))


async def evaluate_task(request):
    """An evaluation task for a checkpoint of this task (fedge task evaluate)."""
    require_admin(request)
    c = coordinator(request)
    raw = await read_json(request) if request.can_read_body else {}
    return json_response(c.admin.create_evaluation(request.match_info["task_id"], raw), status=201)


async def audit_key(request):
    """The public half of the key that signs every audit trail (PEM): for `fedge audit verify`."""
    return web.Response(body=coordinator(request).audit.public_pem, content_type="application/x-pem-file")


async def task_audit(request):
    require_admin(request)
    c = coordinator(request)
    task_id = request.match_info["task_id"]
    c.tasks.require(task_id)
    return json_response(c.audit.export(task_id))


async def list_tasks(request):
    require_admin(request)
    c = coordinator(request)
    return json_response({"tasks": [c.admin.task_summary(t) for t in c.tasks]})


async def get_task(request):
    require_admin(request)
    c = coordinator(request)
    task_id = request.match_info["task_id"]
    return json_response({**c.admin.task_summary(task_id), "rounds": c.admin.rounds(task_id)})


async def get_checkpoint(request):
    require_admin(request)
    c = coordinator(request)
    summary = c.admin.task_summary(request.match_info["task_id"])
    raise web.HTTPFound(f"/v1/blobs/{summary['checkpoint_sha256']}")


async def get_global_model(request):
    require_admin(request)
    task_id = request.match_info["task_id"]
    data = coordinator(request).admin.global_model(task_id)
    return web.Response(body=data, content_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="{task_id}.tflite"'})


# -- devices ---------------------------------------------------------------------------
async def register(request):
    c = coordinator(request)
    address = client(request)
    c.gateway.registration.admit(address)
    req = RegisterRequest.from_dict(await read_json(request, MAX_REGISTER_JSON))
    result = await c.write(lambda store: c.gateway.registration.register(req, address, store=store, admitted=True))
    # The key that signs model releases (protocol.releases): the device pins it now.
    return json_response({**result, "release_key": c.releases.public_key}, status=201)


async def _checkin(c, device, req, rate_limited: bool = True):
    """DeviceGateway.checkin, with the assignment written through Coordinator.write."""
    step = c.gateway.checkin_begin(device, req, rate_limited)
    if not isinstance(step, PendingAssignment):
        return step
    selected = await c.write(step.write)
    return c.gateway.checkin_finish(device, step, selected, rate_limited)


async def checkin(request):
    c = coordinator(request)
    device = c.gateway.authenticate(request.headers.get("Authorization"))
    c.gateway.admit_checkin(device)
    req = CheckinRequest.from_dict(await read_json(request, MAX_CHECKIN_JSON))
    resp = await _checkin(c, device, req)
    hold = min(req.wait_s, resp.retry_at - c.clock()) if resp.outcome == "retry" else 0.0
    waiters = request.app[ROUND_OPENED]
    if resp.reason == "no_slot" and hold > 0 and waiters.can_hold():
        # Long poll: hold the device until a round opens and wakes it (or its retry time), then
        # try once more.
        try:
            await asyncio.wait_for(waiters.wait(device.population), hold)
            resp = await _checkin(c, device, req, rate_limited=False)
        except asyncio.TimeoutError:
            pass
    if req.release_channel:  # a device that takes model releases: a newer one for it to infer with, if any
        offer = c.release_offers.offer(device.device_id, device.population, req.release_channel, req.release_sequence)
        if offer is not None:
            resp = dataclasses.replace(resp, release=offer)
    return json_response(resp.to_dict())


async def upload_update(request):
    c = coordinator(request)
    device = c.gateway.authenticate(request.headers.get("Authorization"))
    task_id = request.match_info["task_id"]
    round_num = _int(request.match_info["round"], "round")
    try:
        meta = UploadMeta.from_dict(strict_json.loads(request.headers.get("Fedge-Upload", "")))
    except ProtocolError as exc:
        raise E.BadRequest(f"header Fedge-Upload: {exc} (expected JSON: {{\"example_count\": N, ...}})",
                           "bad_meta") from exc
    limit = c.gateway.admit_upload(device, task_id, round_num, request.headers.get("Fedge-Upload-Token"))
    body = await read_binary(request, limit)
    step = c.gateway.begin_upload(device, task_id, round_num, request.headers.get("Fedge-Upload-Token"), meta, body)
    if isinstance(step, dict):
        return json_response(step, status=200 if step["duplicate"] else 201)
    try:
        if c.store.blobs.remote:  # the bytes first, on a thread: an object store answers in milliseconds
            await c.blob_io(lambda: c.gateway.store_bytes(step))
        reported = await c.write(lambda store: c.gateway.persist_upload(step, store))
    finally:
        c.gateway.end_upload(step)
    return json_response(c.gateway.finish_upload(step, reported), status=201)


async def evaluation_report(request):
    c = coordinator(request)
    device = c.gateway.authenticate(request.headers.get("Authorization"))
    task_id, round_num = request.match_info["task_id"], _int(request.match_info["round"], "round")
    token = request.headers.get("Fedge-Upload-Token")
    admitted = c.gateway.evaluations.admit(device, task_id, round_num, token)
    raw = await read_json(request, MAX_EVALUATION_JSON)
    result = c.gateway.evaluations.accept(device, admitted, raw)
    return json_response(result, status=200 if result["duplicate"] else 201)


async def secagg_message(request):
    c = coordinator(request)
    device = c.gateway.authenticate(request.headers.get("Authorization"))
    admitted = c.gateway.secagg_messages.admit(device, request.match_info["task_id"],
                                               _int(request.match_info["round"], "round"),
                                               request.headers.get("Fedge-Upload-Token"), request.match_info["phase"])
    raw = await read_json(request, admitted.body_limit)
    result = c.gateway.secagg_messages.post(device, admitted, raw)
    return json_response(result, status=200 if result["duplicate"] else 201)


async def secagg_view(request):
    """The round's SecAgg state for this device; with ?since=STATE&wait_s=N, held until the state moves on."""
    c = coordinator(request)
    device = c.gateway.authenticate(request.headers.get("Authorization"))
    task_id, round_num = request.match_info["task_id"], _int(request.match_info["round"], "round")
    token = request.headers.get("Fedge-Upload-Token")
    try:
        wait_s = float(request.query.get("wait_s", "0"))
    except ValueError:
        raise E.BadRequest("wait_s must be a number") from None
    if not 0.0 <= wait_s <= MAX_SECAGG_WAIT_S:
        raise E.BadRequest(f"wait_s must be in [0, {MAX_SECAGG_WAIT_S:g}]")
    since = request.query.get("since", "")
    view = c.gateway.secagg_messages.view(device, task_id, round_num, token)
    deadline = asyncio.get_running_loop().time() + wait_s
    while view.state == since:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            break
        try:
            await asyncio.wait_for(request.app[ROUND_CHANGED].event.wait(), remaining)
        except asyncio.TimeoutError:
            break
        view = c.gateway.secagg_messages.view(device, task_id, round_num, token)
    return json_response(view.to_dict())


async def get_blob(request):
    c = coordinator(request)
    sha, blobs = request.match_info["sha"], c.store.blobs
    # An object store's requests wait on the network: on a thread, not on the event loop.
    if not (await c.blob_io(lambda: blobs.exists(sha)) if blobs.remote else blobs.exists(sha)):
        raise E.NotFound(f"no blob {sha}")
    guarded = c.gateway.blobs.authorize(sha, request.headers.get("Authorization"), is_admin(request))
    fetched = await c.blob_io(lambda: blobs.read(sha)) if blobs.remote else None
    read = (lambda: fetched) if blobs.remote else (lambda: blobs.read(sha))
    # A task model travels gzip-compressed to a device that accepts it (its digest is the
    # uncompressed file's, which the device checks after inflating).
    accepts = "gzip" in request.headers.get("Accept-Encoding", "")
    packed = c.gateway.blobs.gzipped(sha, read) if accepts else None
    etag = f'"{sha}-gzip"' if packed is not None else f'"{sha}"'
    headers = {"ETag": etag, "Cache-Control": f"{'private' if guarded else 'public'}, max-age=31536000, immutable",
               "Vary": "Accept-Encoding"}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    data = read() if packed is None else packed
    if data is None:  # deleted by retention since it was looked up
        raise E.NotFound(f"no blob {sha}")
    if packed is not None:
        headers["Content-Encoding"] = "gzip"
    request.app[METRICS].bytes_out(len(data))
    c.gateway.blobs.served(sha, len(data))
    return web.Response(body=data, content_type="application/octet-stream", headers=headers)


# -- public ----------------------------------------------------------------------------
def client(request: web.Request) -> ClientAddress:
    return client_address(request.remote, request.headers, request.app[TRUSTED_PROXIES])


def require_status_access(request: web.Request) -> None:
    """The status page and /metrics tell how many devices there are and how rounds go: open to
    requests from this host by default (status_public unset), to everyone or no one when set;
    otherwise behind the admin token (Prometheus sends it as a bearer token)."""
    public = request.app[CONFIG].status_public
    if not (public or (public is None and client(request).is_local)):
        require_admin(request)


async def metrics(request):
    require_status_access(request)
    m = request.app[METRICS]
    return web.Response(body=m.render(), headers={"Content-Type": m.content_type})


async def healthz(request):
    """Liveness: the process answers (a load balancer's cheap check), and which replica it is
    (the holder named in the task_leases table)."""
    return json_response({"status": "ok", "replica": coordinator(request).driver.replica_id})


async def readyz(request):
    """Readiness: the database answers too; 503 while it does not (take this replica out)."""
    try:
        coordinator(request).store.ping()
    except Exception as exc:  # noqa: BLE001 - any database failure means not ready
        return json_response({"status": "unavailable", "error": f"{type(exc).__name__}: {str(exc)[:200]}"},
                             status=503)
    return json_response({"status": "ready"})


async def openapi(request):
    return json_response(OPENAPI)


async def status_page(request):
    require_status_access(request)
    return web.Response(text=OPERATOR_PAGE, content_type="text/html")


async def status_json(request):
    require_status_access(request)
    return json_response(operator_status.status(coordinator(request)))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", status_page)
    app.router.add_get("/v1/status", status_json)
    app.router.add_static("/static/", STATIC_DIR)  # the page's script and plotting library; no data
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/openapi.json", openapi)
    app.router.add_post("/v1/admin/populations", create_population)
    app.router.add_get("/v1/admin/populations", list_populations)
    app.router.add_post("/v1/admin/models", upload_model)
    app.router.add_post("/v1/admin/populations/{population}/tasks", create_task)
    app.router.add_get("/v1/admin/tasks", list_tasks)
    app.router.add_get("/v1/admin/tasks/{task_id}", get_task)
    app.router.add_get("/v1/admin/tasks/{task_id}/checkpoint", get_checkpoint)
    app.router.add_get("/v1/admin/tasks/{task_id}/model", get_global_model)
    app.router.add_post("/v1/admin/tasks/{task_id}/evaluate", evaluate_task)
    app.router.add_get("/v1/admin/tasks/{task_id}/audit", task_audit)
    app.router.add_get("/v1/audit/key", audit_key)
    app.router.add_post("/v1/admin/tasks/{task_id}/{action}", task_action)
    app.router.add_post("/v1/devices/register", register)
    app.router.add_post("/v1/checkin", checkin)
    app.router.add_get("/v1/blobs/{sha}", get_blob)
    app.router.add_post("/v1/tasks/{task_id}/rounds/{round}/update", upload_update)
    app.router.add_post("/v1/tasks/{task_id}/rounds/{round}/evaluation", evaluation_report)
    app.router.add_get("/v1/tasks/{task_id}/rounds/{round}/secagg", secagg_view)
    app.router.add_post("/v1/tasks/{task_id}/rounds/{round}/secagg/{phase}", secagg_message)

