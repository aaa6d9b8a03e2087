"""Every device route reads its body last: route, rate limit, token, task / assignment / phase
checks first, then a body no larger than its message can be. A refused request is never
parsed, so what it costs the server stays near what it cost to send."""

import json

import pytest

from coordinator.http import handlers
from protocol import strict_json
from tests.coordinator.http.test_bad_input import _expect_error
from tests.coordinator.rounds.test_secagg import _parties

BIG_JSON = json.dumps(list(range(1_000_000))).encode()  # ~6.9 MB of numbers


@pytest.fixture
def parsed(monkeypatch):
    """Counts the JSON bodies the coordinator parses."""
    calls = []
    real = strict_json.loads

    def counting(text, *args, **kwargs):
        calls.append(len(text))
        return real(text, *args, **kwargs)

    monkeypatch.setattr(strict_json, "loads", counting)
    return calls


async def test_a_secagg_message_from_an_unassigned_device_is_refused_unparsed(harness, parsed):
    parties = await _parties(harness, n=3)
    outsider = await harness.register()
    parsed.clear()
    url = f"/v1/tasks/t1/rounds/1/secagg/keys"
    headers = {**outsider, "Content-Type": "application/json", "Fedge-Upload-Token": "nope"}
    await _expect_error(await harness.client.post(url, data=BIG_JSON, headers=headers), 403)
    await _expect_error(await harness.client.post("/v1/tasks/nosuch/rounds/1/secagg/keys", data=BIG_JSON,
                                                  headers=headers), 403)
    # An assigned device: a phase that does not exist, then a key message over its phase's size.
    mine = {**parties[0].headers, "Content-Type": "application/json",
            "Fedge-Upload-Token": parties[0].a["upload_token"]}
    await _expect_error(await harness.client.post(url.replace("keys", "nosuch"), data=BIG_JSON, headers=mine), 404)
    await _expect_error(await harness.client.post(url, data=BIG_JSON, headers=mine), 413)
    assert [n for n in parsed if n > 1000] == []  # none of the large bodies was parsed
    await parties[0].advertise()  # the real message still goes through


async def test_share_limits_follow_the_roster_and_large_bodies_still_parse(harness, parsed):
    parties = await _parties(harness, n=3)
    for p in parties:
        await p.advertise()
    harness.tick()
    # Three devices' shares fit their limit (a few KB); a body of 50 KB does not.
    padded = {"shares": [], "padding": "x" * 50_000}
    resp = await parties[0].post("shares", padded)
    await _expect_error(resp, 413)
    for p in parties:
        await p.share()


async def test_a_rate_limited_address_is_refused_before_its_body_is_read(harness, parsed):
    await harness.setup_task()
    c = harness.coordinator
    c.gateway.registration.limit.rate, c.gateway.registration.limit.burst = 1.0, 1.0
    # A forwarding header from a proxy nobody trusts: the request is not local, its peer's bucket applies.
    headers = {"Content-Type": "application/json", "X-Forwarded-For": "203.0.113.9"}
    c.gateway.registration.limit.take("127.0.0.1", c.clock())  # that bucket is empty now
    big = json.dumps({"population": "pop", "label": "x" * 15_000}).encode()
    parsed.clear()
    await _expect_error(await harness.client.post("/v1/devices/register", data=big, headers=headers), 429)
    assert parsed == [], "a refused registration was parsed"


async def test_a_checkin_over_its_size_is_refused_unparsed(harness, parsed):
    await harness.setup_task()
    device = await harness.register()
    parsed.clear()
    resp = await harness.client.post("/v1/checkin", data=json.dumps({"state": {}, "pad": "x" * 40_000}),
                                     headers={**device, "Content-Type": "application/json"})
    await _expect_error(resp, 413)
    assert parsed == []
    harness.coordinator.gateway.checkin_limit.rate = 1.0
    harness.coordinator.gateway.checkin_limit.burst = 1.0
    assert (await harness.checkin(device)).status == 200
    parsed.clear()
    resp = await harness.checkin(device)
    await _expect_error(resp, 429)
    assert parsed == []  # the bucket is taken before the body is read


async def test_an_upload_from_an_unassigned_device_is_refused_before_its_body(harness, monkeypatch):
    await harness.setup_task()
    device, other = await harness.register(), await harness.register()
    a = (await (await harness.checkin(device)).json())["assignment"]
    read = []
    real = handlers._read_body

    async def spy(request, content_type, limit):
        read.append(limit)
        return await real(request, content_type, limit)

    monkeypatch.setattr(handlers, "_read_body", spy)
    resp = await harness.upload(other, a, harness.payload())  # another device with this token
    await _expect_error(resp, 403)
    resp = await harness.upload(device, a, harness.payload(), token="wrong")
    await _expect_error(resp, 403)
    assert read == []
    assert (await harness.upload(device, a, harness.payload())).status == 201
    assert len(read) == 1
