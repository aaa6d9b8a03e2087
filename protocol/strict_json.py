"""JSON from the network, parsed with limits: bounded nesting, bounded integers, finite numbers.

Python's `json` accepts ``NaN``/``Infinity``, integers of any length (up to the interpreter's
4,300-digit guard, which raises a bare ValueError) and nesting until the recursion limit
(RecursionError). Each of those turned a hostile body into a 500 or a non-finite value in
the store. Everything a device or an admin sends goes through `loads`; every refusal is a
`ProtocolError` (HTTP 400) that says what was wrong.
"""

from __future__ import annotations

import json
import math
from typing import Any

from protocol.errors import ProtocolError

MAX_DEPTH = 32  # our messages nest 4 levels; 32 leaves room for task configs
MAX_INT_DIGITS = 20  # int64 has 19 digits: nothing we accept needs more


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ProtocolError(f"integer with {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})", "malformed_json")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError(f"number {text[:32]} is out of range", "malformed_json")
    return value


def _no_constant(name: str):
    raise ProtocolError(f"{name} is not JSON (numbers must be finite)", "malformed_json")


def _check_text(text: str) -> None:
    # JSON may spell a lone surrogate ("\udd76"); Python decodes it into a str that cannot be
    # encoded to UTF-8, and the first hash or write of it raised a 500.
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError("string with a lone surrogate (not Unicode text)", "malformed_json") from None


def _depth(value: Any) -> int:
    """Nesting depth, without recursion (so a deep value cannot raise RecursionError here);
    every string and key is checked to be text on the way."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
            continue
        if isinstance(item, dict):
            for key in item:
                _check_text(key)
            items = item.values()
        elif isinstance(item, list):
            items = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in items if isinstance(child, (dict, list, str)))
    return deepest


# Made once: json.loads(..., parse_int=...) builds a decoder per call (a tenth of parsing a
# check-in); dumps with allow_nan likewise builds an encoder.
_DECODER = json.JSONDecoder(parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant)
_ENCODER = json.JSONEncoder(allow_nan=False)


def _plainly_shallow(text: str, max_depth: int) -> bool:
    """True when no walk is needed: no more opening brackets than the depth limit (each level
    needs one; brackets inside strings only over-count), no escape that could spell a lone
    surrogate, and none in the text itself (a str argument, such as a header aiohttp decoded
    with surrogateescape, can hold one). A few passes of C for a check-in's body, where the
    walk was a third of parsing it."""
    if text.count("{") + text.count("[") > max_depth or "\\u" in text:
        return False
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return False  # the walk names the lone surrogate
    return True


def _text(data: str | bytes | bytearray) -> str:
    if isinstance(data, str):
        return data
    raw = bytes(data)
    encoding = json.detect_encoding(raw)
    # UTF-8 strictly: json.loads decodes with surrogatepass, which let raw lone surrogates in.
    return raw.decode(encoding) if encoding == "utf-8" else raw.decode(encoding, "surrogatepass")


def loads(data: str | bytes | bytearray, max_depth: int = MAX_DEPTH) -> Any:
    try:
        text = _text(data)
        value = _DECODER.decode(text)
    except ProtocolError:
        raise
    except RecursionError:
        raise ProtocolError(f"JSON nested too deeply (at most {max_depth} levels)", "malformed_json") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ProtocolError(f"malformed JSON: {exc}", "malformed_json") from None
    if not _plainly_shallow(text, max_depth) and _depth(value) > max_depth:
        raise ProtocolError(f"JSON nested too deeply (at most {max_depth} levels)", "malformed_json")
    return value


def finite_or_none(value: Any) -> Any:
    """A copy of a decoded JSON value with every non-finite float replaced by None: what the
    API sends for a value stored before the door was closed, instead of invalid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Standard JSON only: a non-finite float becomes null rather than the non-JSON NaN."""
    try:
        return _ENCODER.encode(value)
    except ValueError:
        return _ENCODER.encode(finite_or_none(value))
