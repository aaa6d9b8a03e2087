"""Property-based fuzz of every route, generated from the service's own OpenAPI document.

For each operation, hypothesis builds requests from the operation's schemas (bodies via
hypothesis-jsonschema, path/query/header parameters), mixed with valid values (a real task,
round, token and update payload, so deep code paths are reached) and with hostile ones
(deep nesting, huge integers, NaN, arbitrary bytes, wrong tokens). The schema subset the
document uses (objects, strings with a pattern or length, bounded numbers, enums, arrays) is
turned into strategies by `from_schema` below (hypothesis-jsonschema 0.23 does not run on
current hypothesis). Every answer must be
below 500, every error must be the JSON error shape, and a refused request must leave the
database and the data directory exactly as they were (SQLite's total_changes counter and
the files on disk). In-process through aiohttp's test client: schemathesis drives a live
URL through `requests`, which would add a socket and a thread per request for nothing
that this checks, and could not see the database between requests.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from urllib.parse import quote

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from coordinator.http.app import COORDINATOR, ServeConfig, create_app
from coordinator.http.openapi import OPENAPI
from protocol import codec
from protocol.tflite_file import read_manifest

ADMIN_TOKEN = "fuzz-admin"
# CI runs >= 10,000 requests (FEDGE_FUZZ_EXAMPLES); the inner loop runs a smaller sample.
TOTAL = int(os.environ.get("FEDGE_FUZZ_EXAMPLES", "1500"))
# A fixed seed keeps CI reproducible; set FEDGE_FUZZ_SEED to explore other inputs.
SEED = int(os.environ.get("FEDGE_FUZZ_SEED", "0"))


def _resolve(schema):
    """Inline '#/components/schemas/X' references (hypothesis-jsonschema wants plain JSON Schema)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _resolve(OPENAPI["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
        return {k: _resolve(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_resolve(v) for v in schema]
    return schema


def from_schema(schema: dict) -> st.SearchStrategy:
    """A hypothesis strategy for the JSON Schema subset of coordinator.http.openapi."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        props = {k: from_schema(v) for k, v in schema.get("properties", {}).items()}
        required = set(schema.get("required", []))
        return st.fixed_dictionaries({k: v for k, v in props.items() if k in required},
                                     optional={k: v for k, v in props.items() if k not in required})
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {})), max_size=schema.get("maxItems", 4))
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return st.text(max_size=schema.get("maxLength", 64))
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    return _any_json


def _operations():
    for path, methods in OPENAPI["paths"].items():
        for method, op in methods.items():
            yield method.upper(), path, op


# -- hostile building blocks --------------------------------------------------------------------
_printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         _printable)
_any_json = st.recursive(_json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                               st.dictionaries(_printable, inner, max_size=4)),
                         max_leaves=12)
_hostile_text = st.one_of(
    st.integers(1, 6000).map(lambda n: "[" * n),
    st.integers(1, 4000).map(lambda n: "[" * n + "]" * n),
    st.integers(21, 6000).map(lambda n: "1" * n),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", '{"a": NaN}', "", "{", "null", '"x"']),
)


def _hostile_body(valid_json):
    """JSON text for a JSON body: from the schema, any JSON, a schema value with a field made hostile, or junk."""
    def poison(value_and_field):
        value, number = value_and_field
        return re.sub(r"(\d+(\.\d+)?)", number, json.dumps(value), count=1)

    return st.one_of(
        valid_json.map(json.dumps),
        _any_json.map(json.dumps),
        st.tuples(valid_json, st.sampled_from(["9" * 400, "1e400", "NaN", "-Infinity", "[" * 50])).map(poison),
        _hostile_text,
        st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
    )


class World:
    """A coordinator with a population, a task, an open round and an assigned device."""

    def __init__(self, loop, model: bytes, tmp_path):
        self.loop = loop
        config = ServeConfig(db=str(tmp_path / "c.db"), admin_token=ADMIN_TOKEN, checkin_rate=1e6, register_rate=1e6,
                             min_retry_s=0.001, max_retry_s=0.01, body_timeout_s=2.0)
        self.app = create_app(config, run_ticker=False)
        self.client = TestClient(TestServer(self.app), loop=loop)
        loop.run_until_complete(self.client.start_server())
        self.model = model
        self.manifest = read_manifest(model)
        self.run(self._setup())

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    @property
    def coordinator(self):
        return self.app[COORDINATOR]

    async def _setup(self):
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        await self.client.post("/v1/admin/populations", json={"name": "pop"}, headers=admin)
        resp = await self.client.post("/v1/admin/models", data=self.model,
                                      headers={**admin, "Content-Type": "application/octet-stream"})
        self.model_sha = (await resp.json())["model_sha256"]
        resp = await self.client.post("/v1/admin/populations/pop/tasks", headers=admin, json={
            "model_sha256": self.model_sha, "task_id": "t1",
            "config": {"rounds": 1000, "goal_count": 1000, "over_selection": 1.0, "selection_window_s": 8e4,
                       "report_deadline_s": 8e4, "codec": "q8"}})
        assert resp.status == 201, await resp.text()
        self.coordinator.tick()
        tokens = []
        for _ in range(2):
            resp = await self.client.post("/v1/devices/register", json={"population": "pop"})
            tokens.append((await resp.json())["token"])
        self.device, self.other_device = tokens
        resp = await self.client.post("/v1/checkin", json={"state": {}},
                                      headers={"Authorization": f"Bearer {self.device}"})
        self.assignment = (await resp.json())["assignment"]
        rng = np.random.default_rng(0)
        arrays = [rng.normal(size=w.shape).astype(np.float32) * 0.01 for w in self.manifest.weights]
        self.payload = codec.encode(arrays, codec.CodecSpec.parse("q8"), rng)

    def fingerprint(self):
        store = self.coordinator.store
        files = sorted(str(p.relative_to(store.data_dir)) for p in store.data_dir.rglob("*") if p.is_file())
        sums = {k: v.count for k, v in self.coordinator.sums.items()}
        return store.conn.total_changes, files, sums

    def close(self):
        self.run(self.client.close())


def _request_strategy(world: World, method: str, path: str, op: dict):
    params = {p["name"]: p for p in op.get("parameters", [])}
    valid_path = {"task_id": "t1", "round": "1", "population": "pop", "sha": world.model_sha,
                  "action": "pause", "phase": "keys"}
    auths = {"device": world.device, "admin": ADMIN_TOKEN}
    needed = (op.get("security") or [{}])[0]
    auth = st.sampled_from([None, f"Bearer {auths[next(iter(needed))]}" if needed else None,
                            f"Bearer {world.device}", f"Bearer {world.other_device}", f"Bearer {ADMIN_TOKEN}",
                            "Bearer d-0.x", "Basic Zm9v"])

    def path_value(name):
        schema = _resolve(params[name]["schema"]) if name in params else {"type": "string"}
        return st.one_of(st.just(valid_path.get(name, "x")), from_schema(schema).map(str), _printable,
                         st.sampled_from(["..", ".", "%2e%2e", "-1", "0", "99999999999999999999999"]))

    names = re.findall(r"{(\w+)}", path)
    path_st = st.tuples(*[path_value(n) for n in names]) if names else st.just(())
    body_st = st.just(None)
    content = (op.get("requestBody") or {}).get("content", {})
    if "application/json" in content:
        body_st = _hostile_body(from_schema(_resolve(content["application/json"]["schema"]))).map(
            lambda t: ("application/json", t.encode("utf-8", "surrogatepass")))
    elif "application/octet-stream" in content:
        flips = st.tuples(st.integers(0, len(world.payload) - 1), st.integers(1, 255)).map(
            lambda t: world.payload[:t[0]] + bytes([world.payload[t[0]] ^ t[1]]) + world.payload[t[0] + 1:])
        body_st = st.one_of(st.just(world.payload), flips, st.binary(max_size=256),
                            st.integers(0, len(world.payload)).map(lambda n: world.payload[:n])).map(
            lambda b: ("application/octet-stream", b))
        body_st = st.one_of(body_st, st.tuples(st.sampled_from(["application/json", "text/plain"]),
                                               st.binary(max_size=32)))
    headers_st = st.fixed_dictionaries({}, optional={
        "Fedge-Upload-Token": st.one_of(st.just(world.assignment["upload_token"]), _printable),
        "Fedge-Upload": st.one_of(
            from_schema(_resolve(OPENAPI["components"]["schemas"]["UploadMeta"])).map(json.dumps),
            _hostile_text.filter(lambda t: len(t) < 4000), _printable),
    })
    query_st = st.fixed_dictionaries({}, optional={"since": _printable, "wait_s": st.one_of(
        st.sampled_from(["0", "0.01", "-1", "nan", "inf", "1e400", "31"]), _printable)})
    return st.tuples(st.just(method), st.just(path), path_st, auth, body_st, headers_st, query_st)


async def _send(world: World, request):
    method, template, values, auth, body, headers, query = request
    path = template
    for name, value in zip(re.findall(r"{(\w+)}", template), values):
        path = path.replace("{" + name + "}", quote(str(value), safe=""), 1)
    hdrs = dict(headers)
    if auth:
        hdrs["Authorization"] = auth
    data = None
    if body is not None:
        hdrs["Content-Type"], data = body
    if query.get("wait_s") not in (None, "0", "0.01"):
        query = {**query, "wait_s": query["wait_s"]}  # refused (out of range or not a number) before any wait
    return await world.client.request(method, path, data=data, headers=hdrs, params=query,
                                      allow_redirects=False)


def _check(world: World, request):
    before = world.fingerprint()
    resp = world.run(_send(world, request))
    text = world.run(resp.read()).decode("utf-8", "replace")  # a blob is binary
    assert resp.status < 500, (request[:2], resp.status, text[:300])
    if resp.status >= 400:
        body = json.loads(text)
        assert set(body) == {"error"} and isinstance(body["error"].get("code"), str), text[:200]
        assert world.fingerprint() == before, (request[:2], resp.status, text[:200])
    return resp.status


@pytest.fixture
def world(digits_tflite, tmp_path):
    loop = asyncio.new_event_loop()
    w = World(loop, digits_tflite, tmp_path)
    yield w
    w.close()
    loop.close()


def test_every_route_is_in_the_openapi_document(world):
    documented = {(m, p) for m, p, _ in _operations()}
    # The operator page's script and plotting library (/static/) are files, not API.
    served = {(r.method, r.resource.canonical) for r in world.app.router.routes()
              if r.method != "HEAD" and r.resource.canonical != "/static"}
    assert served == documented


def test_fuzz_every_route_from_the_openapi_document(world):
    ops = list(_operations())
    statuses: dict[tuple[str, str], list[int]] = {}

    @seed(SEED)
    @settings(max_examples=TOTAL, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(*[_request_strategy(world, m, p, op) for m, p, op in ops]))
    def fuzz(request):
        statuses.setdefault(request[:2], []).append(_check(world, request))

    fuzz()
    sent = sum(len(v) for v in statuses.values())
    assert sent >= TOTAL * 0.9, sent
    # Every operation was exercised, and the generated traffic also got through to success paths.
    assert {(m, p) for m, p, _ in ops} <= set(statuses), set((m, p) for m, p, _ in ops) - set(statuses)
    assert any(s < 300 for v in statuses.values() for s in v)
    print(f"\n{sent} requests over {len(statuses)} operations; "
          f"{sum(s >= 400 for v in statuses.values() for s in v)} refused, none >= 500")
