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


async def test_a_trickled_body_meets_its_overall_deadline(aiohttp_client):
    """One byte every 0.3 s resets the idle timer each time; the body's overall deadline
    (body_timeout_s + size / min_body_rate) ends it anyway."""
    import asyncio
    import time

    from coordinator.config import ServeConfig
    from coordinator.http.keys import CONFIG

    app = await _echo_app(1 << 20)
    app[CONFIG] = ServeConfig(body_timeout_s=1.0, min_body_rate=100.0)
    client = await aiohttp_client(app)

    async def trickle():
        for _ in range(200):
            yield b"x"
            await asyncio.sleep(0.3)

    t0 = time.monotonic()
    resp = await client.post("/echo", data=trickle(), headers={"Content-Type": "application/octet-stream",
                                                               "Content-Length": "200"})
    assert resp.status == 408 and "did not arrive within 3 s" in (await resp.json())["error"]
    assert time.monotonic() - t0 < 6.0  # 1 + 200 / 100 s, not 200 x 0.3 s


def test_body_reads_are_capped_per_address_and_in_all():
    from coordinator import errors as E
    from coordinator.http.client_address import ClientAddress
    from coordinator.http.keys import BodyReads

    reads = BodyReads(per_address=2, total=3)
    a, b, local = ClientAddress("203.0.113.1"), ClientAddress("203.0.113.2"), ClientAddress("127.0.0.1")
    with reads.reading(a), reads.reading(a):
        try:
            with reads.reading(a):
                raise AssertionError("a third body from one address was read")
        except E.ServiceUnavailable:
            pass
        with reads.reading(b):
            try:
                with reads.reading(local):  # loopback has no per-address cap, but counts in all
                    raise AssertionError("a fourth body in all was read")
            except E.ServiceUnavailable as exc:
                assert exc.headers == {"Retry-After": "1"}
    assert reads.active == 0 and reads._by_address == {}
    with reads.reading(local), reads.reading(local), reads.reading(local):
        assert reads.active == 3
