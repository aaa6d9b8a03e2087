"""Who may join: enrollment secrets, attestation, per-address registration limits, and who may
read the status page and /metrics."""

import pytest

from coordinator.http.app import ServeConfig, create_app
from coordinator.http.client_address import ClientAddress
from coordinator.errors import TooManyRequests
from protocol.messages import RegisterRequest
from tests.coordinator.conftest import ADMIN


async def _register(client, **body):
    return await client.post("/v1/devices/register", json={"population": "p", **body})


async def test_a_population_with_an_enrollment_secret_refuses_devices_without_it(harness):
    c = harness.client
    resp = await c.post("/v1/admin/populations", headers=ADMIN, json={"name": "p", "enrollment_secret": "s3cret"})
    assert resp.status == 201 and (await resp.json())["enrollment_secret"] is True
    devices = harness.coordinator.store.one("SELECT COUNT(*) AS n FROM devices")["n"]
    for body in ({}, {"enrollment_secret": "wrong"}, {"enrollment_secret": "s3cret" * 100}):
        resp = await _register(c, **body)
        assert resp.status in (400, 403), await resp.text()
    assert harness.coordinator.store.one("SELECT COUNT(*) AS n FROM devices")["n"] == devices
    assert (await _register(c, enrollment_secret="s3cret")).status == 201


@pytest.fixture
async def attested(aiohttp_client, tmp_path):
    config = ServeConfig(db=str(tmp_path / "c.db"), admin_token="admin-secret",
                         attestation_verifier="tests.coordinator.attest_plugin:verify")
    return await aiohttp_client(create_app(config, run_ticker=False))


async def test_attestation_is_checked_by_the_configured_verifier(attested):
    resp = await attested.post("/v1/admin/populations", headers=ADMIN, json={"name": "p", "require_attestation": True})
    assert resp.status == 201
    for token in ("", "forged", "genuine-other", "explode"):
        resp = await _register(attested, attestation=token)
        assert resp.status == 403 and (await resp.json())["error"]["code"] == "attestation_failed"
    assert (await _register(attested, attestation="genuine-p")).status == 201
    metrics = await (await attested.get("/metrics")).text()
    assert 'fedge_registrations_total{outcome="attestation_failed"} 4.0' in metrics


async def test_attestation_cannot_be_required_without_a_verifier(harness):
    resp = await harness.client.post("/v1/admin/populations", headers=ADMIN,
                                     json={"name": "p", "require_attestation": True})
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "no_verifier"


async def test_registration_is_rate_limited_per_remote_address(harness):
    await harness.setup_task()
    c = harness.coordinator
    c.gateway.registration.limit.rate, c.gateway.registration.limit.burst = 1.0, 3.0
    req = RegisterRequest("pop")
    for _ in range(3):
        c.gateway.registration.register(req, ClientAddress("203.0.113.7"))
    with pytest.raises(TooManyRequests):
        c.gateway.registration.register(req, ClientAddress("203.0.113.7"))
    c.gateway.registration.register(req, ClientAddress("203.0.113.8"))  # another address has its own bucket
    for _ in range(10):
        c.gateway.registration.register(req, ClientAddress("127.0.0.1"))  # emulated fleets register from loopback
    harness.clock.advance(1.0)
    c.gateway.registration.register(req, ClientAddress("203.0.113.7"))


@pytest.mark.parametrize("trusted, forwarded, public", [
    ((), {}, True),  # a request from this host
    ((), {"X-Forwarded-For": "127.0.0.1"}, False),  # forwarded by a proxy nobody declared trusted
    ((), {"Forwarded": "for=127.0.0.1"}, False),
    (("127.0.0.1",), {"X-Forwarded-For": "203.0.113.9"}, False),  # a trusted proxy names a remote client
    (("127.0.0.1",), {"X-Forwarded-For": "127.0.0.1, 203.0.113.9"}, False),  # the left entry is the client's claim
    (("127.0.0.0/8",), {"X-Forwarded-For": "203.0.113.9, 127.0.0.1"}, False),
    (("127.0.0.1",), {"X-Forwarded-For": "127.0.0.1"}, True),  # a client on the proxy's host
])
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
async def test_status_page_and_metrics_are_for_local_requesters(aiohttp_client, tmp_path, host, trusted, forwarded,
                                                                public):
    """Decided by who asks (as a trusted proxy names them), not by the listen address."""
    config = ServeConfig(db=str(tmp_path / "c.db"), admin_token="admin-secret", host=host, trusted_proxies=trusted)
    client = await aiohttp_client(create_app(config, run_ticker=False))
    for path in ("/", "/metrics", "/v1/status"):
        assert (await client.get(path, headers=forwarded)).status == (200 if public else 401)
        assert (await client.get(path, headers={**forwarded, **ADMIN})).status == 200


@pytest.mark.parametrize("flag, status", [(True, 200), (False, 401)])
async def test_status_public_flag_overrides_the_requester(aiohttp_client, tmp_path, flag, status):
    forced = ServeConfig(db=str(tmp_path / "d.db"), admin_token="admin-secret", host="0.0.0.0", status_public=flag)
    client = await aiohttp_client(create_app(forced, run_ticker=False))
    assert (await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})).status == status


async def test_registration_limits_key_on_the_client_a_trusted_proxy_names(aiohttp_client, tmp_path):
    config = ServeConfig(db=str(tmp_path / "c.db"), admin_token="admin-secret", register_rate=1.0,
                         trusted_proxies=("127.0.0.1",))
    client = await aiohttp_client(create_app(config, run_ticker=False))
    await client.post("/v1/admin/populations", headers=ADMIN, json={"name": "p"})

    async def register(xff: str) -> int:
        return (await client.post("/v1/devices/register", json={"population": "p"},
                                  headers={"X-Forwarded-For": xff})).status

    first = [await register("203.0.113.7") for _ in range(12)]
    assert first[:10] == [201] * 10 and first[-1] == 429  # a burst of 10 s at 1/s, then refused
    assert await register("203.0.113.8") == 201  # another client: its own bucket
    assert await register("198.51.100.1, 203.0.113.7") == 429  # a spoofed left entry changes nothing
    assert [await register("127.0.0.1") for _ in range(15)] == [201] * 15  # on the proxy's host: not limited


async def test_an_untrusted_forwarder_makes_no_request_local(aiohttp_client, tmp_path):
    """The review's attack: a proxy on the coordinator's host that nobody declared; every client
    came through it from loopback. Registrations are limited (one bucket: the proxy)."""
    config = ServeConfig(db=str(tmp_path / "c.db"), admin_token="admin-secret", register_rate=1.0)
    client = await aiohttp_client(create_app(config, run_ticker=False))
    await client.post("/v1/admin/populations", headers=ADMIN, json={"name": "p"})
    statuses = [(await client.post("/v1/devices/register", json={"population": "p"},
                                   headers={"X-Forwarded-For": f"203.0.113.{i}"})).status for i in range(30)]
    assert statuses.count(201) <= 11 and statuses[-1] == 429


def test_a_bad_trusted_proxy_is_a_clear_error():
    with pytest.raises(ValueError, match="not an IP address or CIDR"):
        ServeConfig(trusted_proxies=("proxy.local",))



async def test_a_guarded_population_needs_a_device_token_for_its_blobs(harness):
    """Blobs are capability URLs, except those of a population with an enrollment secret or
    attestation: then only its devices (or the admin) download them."""
    c = harness.client
    await harness.setup_task()  # population "pop": anyone may register, its blobs are public
    open_sha = harness.coordinator.tasks["t1"].model_sha
    assert (await c.get(f"/v1/blobs/{open_sha}")).status == 200
    await c.post("/v1/admin/populations", headers=ADMIN, json={"name": "p", "enrollment_secret": "s3cret"})
    # The same file, used by a task of the guarded population, is now guarded too.
    resp = await c.post("/v1/admin/populations/p/tasks", headers=ADMIN,
                        json={"model_sha256": open_sha, "task_id": "t2", "config": {"rounds": 2, "goal_count": 2}})
    assert resp.status == 201, await resp.text()
    anonymous = await c.get(f"/v1/blobs/{open_sha}")
    assert anonymous.status == 401
    # A device of the open population, whose task uses the same file, still downloads it.
    outsider = await harness.register()
    assert (await c.get(f"/v1/blobs/{open_sha}", headers=outsider)).status == 200
    # A third population with no task on it does not.
    await c.post("/v1/admin/populations", headers=ADMIN, json={"name": "third"})
    third = await c.post("/v1/devices/register", json={"population": "third"})
    resp = await c.get(f"/v1/blobs/{open_sha}", headers={"Authorization": f"Bearer {(await third.json())['token']}"})
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "other_population"
    member = await _register(c, enrollment_secret="s3cret")
    headers = {"Authorization": f"Bearer {(await member.json())['token']}"}
    resp = await c.get(f"/v1/blobs/{open_sha}", headers=headers)
    assert resp.status == 200 and await resp.read() == harness.model
    assert resp.headers["Cache-Control"].startswith("private")
    assert (await c.get(f"/v1/blobs/{open_sha}", headers=ADMIN)).status == 200


async def test_the_model_devices_download_is_guarded_like_the_model(harness):
    """The copy with zeroed weights that assignments name is the model's graph: once a guarded
    population's task uses the model, only its devices (or the admin) download the copy, even
    when the copy was made for another task."""
    c = harness.client
    await harness.setup_task()
    device = await harness.register()
    a = (await (await harness.checkin(device)).json())["assignment"]
    assert a["model_sha256"] != harness.coordinator.tasks["t1"].model_sha  # the copy, made for t1
    assert (await c.get(a["model_url"])).status == 200  # public while only the open population uses it
    await c.post("/v1/admin/populations", headers=ADMIN, json={"name": "p", "enrollment_secret": "s3cret"})
    resp = await c.post("/v1/admin/populations/p/tasks", headers=ADMIN, json={
        "model_sha256": harness.coordinator.tasks["t1"].model_sha, "task_id": "t2",
        "config": {"rounds": 2, "goal_count": 2}})
    assert resp.status == 201, await resp.text()
    harness.clock.advance(5.0)  # past the guard cache's second
    assert (await c.get(a["model_url"])).status == 401
    assert (await c.get(a["model_url"], headers=device)).status == 200  # its own task uses the model too
    member = await _register(c, enrollment_secret="s3cret")
    resp = await c.get(a["model_url"], headers={"Authorization": f"Bearer {(await member.json())['token']}"})
    assert resp.status == 200 and resp.headers["Cache-Control"].startswith("private")


async def test_a_shared_model_file_follows_the_tasks_that_use_it_now(harness):
    """A guarded population's task on a file does not lock an open population's devices out
    of it, and once the guarded task is cancelled the file is public again."""
    c = harness.client
    await c.post("/v1/admin/populations", headers=ADMIN, json={"name": "secure", "enrollment_secret": "S"})
    await harness.setup_task(goal_count=1, over_selection=1.0)  # the open population "pop", task t1
    sha = harness.coordinator.tasks["t1"].model_sha
    resp = await c.post("/v1/admin/populations/secure/tasks", headers=ADMIN,
                        json={"model_sha256": sha, "task_id": "s1", "config": {"rounds": 2, "goal_count": 2}})
    assert resp.status == 201, await resp.text()
    harness.clock.advance(5.0)
    device = await harness.register()
    body = await (await harness.checkin(device)).json()
    assert body["outcome"] == "assigned" and body["assignment"]["task_id"] == "t1", body
    a = body["assignment"]
    for url in (a["model_url"], a["checkpoint_url"], f"/v1/blobs/{sha}"):
        assert (await c.get(url, headers=device)).status == 200, url
    assert (await harness.upload(device, a, harness.payload())).status == 201
    assert (await c.get(f"/v1/blobs/{sha}")).status == 401  # guarded while the secure task runs
    assert (await c.post("/v1/admin/tasks/s1/cancel", headers=ADMIN)).status == 200
    assert (await c.post("/v1/admin/tasks/t1/cancel", headers=ADMIN)).status == 200
    harness.clock.advance(5.0)
    assert (await c.get(f"/v1/blobs/{sha}")).status == 200  # no task guards it: public again
