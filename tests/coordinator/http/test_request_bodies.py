"""Request bodies are read whole, however the network splits them, and limits hold."""

import hashlib

import numpy as np
from aiohttp import web

from coordinator import errors as E
from coordinator.http.handlers import read_binary


async def _echo_app(limit: int) -> web.Application:
    async def echo(request):
        try:
            body = await read_binary(request, limit)
        except E.ApiError as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        return web.json_response({"n": len(body), "sha": hashlib.sha256(body).hexdigest()})

    app = web.Application()
    app.router.add_post("/echo", echo)
    return app


async def test_a_multi_megabyte_body_arrives_whole(aiohttp_client):
    client = await aiohttp_client(await _echo_app(16 << 20))
    body = np.random.default_rng(0).bytes(3 << 20)
    resp = await client.post("/echo", data=body, headers={"Content-Type": "application/octet-stream"})
    got = await resp.json()
    assert resp.status == 200
    assert got == {"n": len(body), "sha": hashlib.sha256(body).hexdigest()}


async def test_a_streamed_body_over_the_limit_is_refused(aiohttp_client):
    client = await aiohttp_client(await _echo_app(1 << 20))

    async def stream():  # no Content-Length: the limit must hold while reading
        for _ in range(4):
            yield bytes(512 * 1024)

    resp = await client.post("/echo", data=stream(), headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 413
