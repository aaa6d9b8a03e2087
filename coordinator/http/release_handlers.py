"""The release routes (coordinator.releases): the operator's (create, list, show, promote,
roll back) and a device's look at a release of its own population."""

from __future__ import annotations

from aiohttp import web

from coordinator.http.handlers import coordinator, json_response, read_json, require_admin


async def create_release(request):
    """POST /v1/admin/tasks/{task_id}/releases {round, channel?, percent?, note?, require_eval?}."""
    require_admin(request)
    c = coordinator(request)
    answer = c.releases.create(request.match_info["task_id"], await read_json(request))
    c.release_offers.forget()  # this replica offers it at once; the others within CACHE_TTL_S
    return json_response(answer, status=201)


async def list_releases(request):
    require_admin(request)
    q = request.query
    return json_response({"releases": coordinator(request).releases.list(q.get("population"), q.get("channel"))})


async def show_release(request):
    require_admin(request)
    return json_response(coordinator(request).releases.show(request.match_info["release_id"]))


async def promote_release(request):
    require_admin(request)
    c = coordinator(request)
    answer = c.releases.promote(request.match_info["release_id"], await read_json(request))
    c.release_offers.forget()  # this replica's devices see it at their next check-in
    return json_response(answer)


async def rollback_release(request):
    require_admin(request)
    c = coordinator(request)
    answer = c.releases.rollback(request.match_info["release_id"])
    c.release_offers.forget()
    return json_response(answer, status=201)


async def device_release(request):
    """GET /v1/releases/{release_id}: the signed offer, for a device of the release's population."""
    c = coordinator(request)
    device = c.gateway.authenticate(request.headers.get("Authorization"))
    return json_response(c.release_offers.for_device(device.population, request.match_info["release_id"]).to_dict())


def add_routes(app: web.Application) -> None:
    """Before the generic POST /v1/admin/tasks/{task_id}/{action} (pause, resume, cancel)."""
    app.router.add_post("/v1/admin/tasks/{task_id}/releases", create_release)
    app.router.add_get("/v1/admin/releases", list_releases)
    app.router.add_get("/v1/admin/releases/{release_id}", show_release)
    app.router.add_post("/v1/admin/releases/{release_id}/promote", promote_release)
    app.router.add_post("/v1/admin/releases/{release_id}/rollback", rollback_release)
    app.router.add_get("/v1/releases/{release_id}", device_release)
