"""How a task key is declared: once, as a dataclass field of `TaskConfig` (or of a nested
settings object such as `ServerOptimizerConfig`), with its type, default, bounds, unit, section
and one-line doc. Everything else is derived from the declarations here: the parser's per-key
checks (`parse_keys`), the OpenAPI schema of a task's config (`json_schema`) and the docs'
key table (`docs_table`; `python -m coordinator.tasks.keys_docs` rewrites it in docs/coordinator.md).

What one key cannot say alone (a combination such as "secagg needs clip_norm") is checked
after parsing, in `coordinator.tasks.config_checks`.
"""

from __future__ import annotations

import enum
import math
import re
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from coordinator.errors import BadRequest


class Section(enum.Enum):
    """The groups of the docs' table, in its order."""

    ROUNDS = "Rounds and selection"
    TRAINING = "Local training"
    CODEC = "Update and download codecs"
    SECAGG = "Secure aggregation"
    DP = "User-level differential privacy"
    DP_SGD = "Example-level DP-SGD on the devices"
    ROBUSTNESS = "Bounds and robust aggregation"
    SERVER_OPTIMIZER = "Server optimizer"
    ASYNC = "Asynchronous buffered aggregation (FedBuff)"
    EVALUATION = "Federated evaluation and personalization"
    RETENTION = "Retention"


@dataclass(frozen=True)
class Key:
    """What a field's declaration says beyond its type and default."""

    section: Section
    doc: str
    lo: float | None = None
    hi: float | None = None
    unit: str = ""
    choices: tuple[str, ...] = ()
    max_len: int | None = None


def key(default: Any, section: Section, doc: str, *, lo: float | None = None, hi: float | None = None,
        unit: str = "", choices: tuple[str, ...] = (), max_len: int | None = None):
    """A task key's one declaration (a dataclass field carrying its `Key`)."""
    spec = Key(section, doc, lo, hi, unit, tuple(choices), max_len)
    if is_dataclass(default):
        return field(default_factory=type(default), metadata={"key": spec})
    return field(default=default, metadata={"key": spec})


@dataclass(frozen=True)
class Declared:
    name: str
    type: type
    default: Any
    key: Key


def declared(cls) -> list[Declared]:
    """The keys of a settings dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        if "key" not in f.metadata:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()
        out.append(Declared(f.name, hints[f.name], default, f.metadata["key"]))
    return out


def _describe(lo, hi) -> str:
    return f"[{lo}, {hi}]"


def _parse_one(d: Declared, value: Any, path: str) -> Any:
    k = d.key
    if is_dataclass(d.type):
        if not isinstance(value, dict):
            raise BadRequest(f"task config '{path}' must be an object with "
                             f"{', '.join(x.name for x in declared(d.type))}")
        return d.type(**parse_keys(d.type, value, prefix=f"{path}."))
    if d.type is bool:
        if not isinstance(value, bool):
            raise BadRequest(f"task config '{path}' must be true or false")
        return value
    if d.type is str:
        if not isinstance(value, str):
            raise BadRequest(f"task config '{path}' must be a string")
        if k.choices and value not in k.choices:
            raise BadRequest(f"task config '{path}' must be one of {', '.join(repr(c) for c in k.choices)}")
        if k.max_len is not None and len(value) > k.max_len:
            raise BadRequest(f"task config '{path}' must be a string of at most {k.max_len} characters")
        return value
    integer = d.type is int
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise BadRequest(f"task config '{path}' must be a{'n integer' if integer else ' number'}")
    if not math.isfinite(value) or (k.lo is not None and value < k.lo) or (k.hi is not None and value > k.hi):
        raise BadRequest(f"task config '{path}' must be in {_describe(k.lo, k.hi)}")
    return d.type(value)


def parse_keys(cls, raw: Any, prefix: str = "") -> dict:
    """Every declared key of ``cls`` from ``raw`` (its default where absent), each checked
    against its own declaration; an unknown key is refused by name."""
    if not isinstance(raw, dict):
        raise BadRequest("task config must be a JSON object" if not prefix
                         else f"task config '{prefix[:-1]}' must be an object")
    keys = declared(cls)
    unknown = set(raw) - {d.name for d in keys}
    if unknown:
        raise BadRequest(f"unknown task config field(s): {', '.join(prefix + u for u in sorted(map(str, unknown)))}")
    return {d.name: _parse_one(d, raw[d.name], prefix + d.name) if d.name in raw else d.default for d in keys}


def _schema_of(d: Declared) -> dict:
    k = d.key
    if is_dataclass(d.type):
        return {**json_schema(d.type), "description": k.doc}
    if d.type is bool:
        schema: dict = {"type": "boolean"}
    elif d.type is str:
        schema = {"type": "string"}
        if k.choices:
            schema["enum"] = list(k.choices)
        if k.max_len is not None:
            schema["maxLength"] = k.max_len
    else:
        schema = {"type": "integer" if d.type is int else "number"}
        if k.lo is not None:
            schema["minimum"] = k.lo
        if k.hi is not None:
            schema["maximum"] = k.hi
    schema["default"] = d.default
    schema["description"] = k.doc + (f" ({k.unit})" if k.unit else "")
    return schema


def json_schema(cls) -> dict:
    """The JSON Schema of a settings object: what the OpenAPI document serves."""
    return {"type": "object", "additionalProperties": False,
            "properties": {d.name: _schema_of(d) for d in declared(cls)}}


def _cell(d: Declared) -> tuple[str, str]:
    k = d.key
    if k.choices:
        allowed = ", ".join(f"`{c}`" for c in k.choices)
    elif d.type in (int, float):
        allowed = f"{_number(k.lo)} to {_number(k.hi)}" + (f" {k.unit}" if k.unit else "")
    elif d.type is bool:
        allowed = "true, false"
    else:
        allowed = f"text, at most {k.max_len} characters" if k.max_len else "text"
    if d.type is bool:
        default = "true" if d.default else "false"
    else:
        default = f'"{d.default}"' if d.type is str else repr(d.default)
    return f"`{default}`", allowed


def _number(x) -> str:
    if x is None:
        return "any"
    if isinstance(x, float) and (abs(x) >= 1e6 or 0 < abs(x) < 1e-3):
        return f"{x:g}"
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def docs_table(cls) -> str:
    """The docs' table of task keys, grouped by section (nested objects as `outer.inner`)."""
    rows: dict[Section, list[str]] = {s: [] for s in Section}

    def walk(c, prefix: str) -> None:
        for d in declared(c):
            if is_dataclass(d.type):
                walk(d.type, f"{prefix}{d.name}.")
                continue
            default, allowed = _cell(d)
            rows[d.key.section].append(f"| `{prefix}{d.name}` | {default} | {allowed} | {d.key.doc} |")

    walk(cls, "")
    out = []
    for section, lines in rows.items():
        if lines:
            out += [f"**{section.value}**", "", "| key | default | allowed | what it does |", "|---|---|---|---|",
                    *lines, ""]
    return "\n".join(out).rstrip() + "\n"


DOCS = Path(__file__).resolve().parents[2] / "docs" / "coordinator.md"
_BEGIN, _END = "<!-- task-keys:begin (python -m coordinator.tasks.keys_docs) -->", "<!-- task-keys:end -->"


def docs_with_table(text: str, table: str) -> str:
    """``text`` with the generated table between its markers."""
    pattern = re.compile(re.escape(_BEGIN) + r".*?" + re.escape(_END), re.S)
    if not pattern.search(text):
        raise ValueError(f"docs/coordinator.md has no {_BEGIN} ... {_END} markers")
    return pattern.sub(lambda _: f"{_BEGIN}\n{table}{_END}", text)
