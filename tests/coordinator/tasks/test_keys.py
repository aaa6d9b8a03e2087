"""Each task key is declared once (coordinator/tasks/config.py); the parser, the served OpenAPI
schema and the docs' table are derived from the declarations. These tests hold them in step:
for every key, the schema the service serves accepts exactly what the parser accepts, on the
bounds, just past them, at the wrong type and off the list of choices."""

from __future__ import annotations

import dataclasses
import math

import jsonschema
import pytest

from coordinator.errors import BadRequest
from coordinator.config import ServeConfig
from coordinator.http.app import create_app
from coordinator.tasks import keys
from coordinator.tasks.config import TaskConfig
from protocol.messages import PLAN_BOUNDS, Plan


def _leaves(cls, prefix=""):
    for d in keys.declared(cls):
        if dataclasses.is_dataclass(d.type):
            yield from _leaves(d.type, f"{prefix}{d.name}.")
        else:
            yield prefix + d.name, d


def _probes(d: keys.Declared) -> list:
    k = d.key
    if d.type is bool:
        return [True, False, 0, 1, "true", None]
    if d.type is str:
        probes = [d.default, 3, None, True]
        probes += list(k.choices) + ["not-a-choice"] if k.choices else []
        if k.max_len is not None:
            probes += ["x" * k.max_len, "x" * (k.max_len + 1)]
        return probes
    probes = [d.default, k.lo, k.hi, "1", None, True, math.inf]
    step = 1 if d.type is int else 1e-6 * max(1.0, abs(k.hi))
    probes += [k.lo - step, k.hi + step]
    if d.type is int:
        probes += [float(k.lo) + 0.5, k.lo + 0.0]  # a float where an integer is declared
    return probes


def _nest(path: str, value) -> dict:
    head, _, rest = path.partition(".")
    return {head: _nest(rest, value) if rest else value}


async def _served_schema(aiohttp_client, tmp_path) -> dict:
    config = ServeConfig(db=str(tmp_path / "c.db"), data_dir=str(tmp_path), admin_token="t")
    client = await aiohttp_client(create_app(config, run_ticker=False))
    doc = await (await client.get("/v1/openapi.json")).json()
    return doc["components"]["schemas"]["TaskRequest"]["properties"]["config"]


async def test_the_served_schema_and_the_parser_agree_on_every_key(aiohttp_client, tmp_path):
    schema = await _served_schema(aiohttp_client, tmp_path)
    validator = jsonschema.Draft4Validator(schema)  # OpenAPI 3.0's schema dialect
    leaves = list(_leaves(TaskConfig))
    assert len(leaves) >= 60
    assert set(schema["properties"]) == {f.name for f in dataclasses.fields(TaskConfig)}
    disagreements = []
    for path, d in leaves:
        for value in _probes(d):
            if isinstance(value, float) and not math.isfinite(value):
                schema_ok = False  # JSON has no infinity: the schema cannot be asked
            else:
                schema_ok = validator.is_valid(_nest(path, value))
            try:
                keys.parse_keys(TaskConfig, _nest(path, value))
                parser_ok = True
            except BadRequest as exc:
                parser_ok = False
                assert path in str(exc), (path, value, str(exc))  # the error names the key
            if schema_ok != parser_ok:
                disagreements.append((path, value, schema_ok, parser_ok))
    assert not disagreements, disagreements
    assert not validator.is_valid({"no_such_key": 1})
    with pytest.raises(BadRequest, match="no_such_key"):
        TaskConfig.from_dict({"no_such_key": 1})


def test_every_default_is_a_valid_config_and_round_trips():
    cfg = TaskConfig.from_dict({})
    assert cfg == TaskConfig()
    assert TaskConfig.from_dict(cfg.to_dict()) == cfg


def test_keys_that_become_plan_fields_take_the_plans_bounds():
    """A task key that reaches devices in the plan is bounded as the devices bound the plan,
    so a task a coordinator accepts never sends a plan its devices refuse."""
    declared = {path: d for path, d in _leaves(TaskConfig)}
    shared = set(PLAN_BOUNDS) & set(declared)
    assert {"epochs", "batch_size", "learning_rate", "chunk_size", "proximal_mu", "dp_sgd_clip"} <= shared
    for name in shared:
        assert (declared[name].key.lo, declared[name].key.hi) == PLAN_BOUNDS[name], name
        extreme = TaskConfig.from_dict({name: declared[name].key.hi,
                                        **({"dp_sgd_clip": 1.0} if name == "dp_sgd_noise_multiplier" else {}),
                                        **({"dp_sgd_noise_multiplier": 1.0} if name == "dp_sgd_clip" else {})})
        Plan.from_dict(dataclasses.asdict(extreme.plan()))  # the devices' parser accepts it


@pytest.mark.parametrize("name", sorted(PLAN_BOUNDS))
def test_the_plan_refuses_just_past_each_bound(name):
    lo, hi = PLAN_BOUNDS[name]
    base = dataclasses.asdict(TaskConfig.from_dict({}).plan())
    past = hi + (2 if isinstance(hi, int) else max(1e-9, abs(hi) * 1e-3))
    with pytest.raises(Exception, match=name):
        Plan.from_dict({**base, name: past})


def test_the_docs_table_is_current():
    text = keys.DOCS.read_text()
    assert keys.docs_with_table(text, keys.docs_table(TaskConfig)) == text, \
        "docs/coordinator.md's task key table is stale: run python -m coordinator.tasks.keys_docs"
    for path, _ in _leaves(TaskConfig):
        assert f"| `{path}` |" in text
