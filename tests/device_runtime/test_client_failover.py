"""A device client given several coordinator URLs moves to the next when one does not
answer, and stays on the one that does."""

import aiohttp

from coordinator.http.app import ServeConfig, create_app
from device_runtime.client import CoordinatorClient, coordinator_urls
from fedge.local_coordinator import free_port


def test_urls_are_parsed_from_a_comma_separated_list():
    assert coordinator_urls("http://a:1/, http://b:2") == ["http://a:1", "http://b:2"]


async def test_a_dead_replica_is_skipped(aiohttp_server, tmp_path):
    app = create_app(ServeConfig(db=str(tmp_path / "c.db"), admin_token="t"), run_ticker=False)
    live = await aiohttp_server(app)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    live_url = str(live.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        admin = CoordinatorClient([dead, live_url], session, token="t", retry_for_s=10)
        await admin._request("POST", "/v1/admin/populations", json={"name": "pop"}, headers=admin._headers())
        assert admin.base == live_url  # moved on after the refused connection
        device = CoordinatorClient(f"{dead},{live_url}", session, retry_for_s=10)
        token = await device.register("pop")
        assert token and device.base == live_url
        await device._request("GET", "/healthz")
        assert device.base == live_url  # stays on the replica that answers
