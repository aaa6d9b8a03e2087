"""One field of a decoded JSON object, strictly typed and bounded: the helper every wire
message's ``from_dict`` parses with, and the limits more than one message shares."""

from __future__ import annotations

import math
from typing import Any

from protocol.errors import ProtocolError

# A download URL: the coordinator's /v1/blobs/SHA, or an object store's presigned URL (its
# signature, credential scope and, with temporary credentials, a session token of a kilobyte).
MAX_URL = 4096
MAX_PERSONALIZE_STEPS = 10_000  # fine-tuning steps of a personalized evaluation
MAX_PROXIMAL_MU = 1000.0  # FedProx's mu: the papers use up to 1
MAX_DP_SGD_NOISE = 1000.0  # DP-SGD's noise multiplier (practice: 0.5 to 10)
MAX_DP_SGD_CLIP = 1e6  # DP-SGD's per-example L2 clip


def get_field(raw: Any, name: str, kind, required: bool = True, default=None, *, lo=None, hi=None,
              max_len: int | None = None):
    """One field of a decoded JSON object, strictly typed and, where given, bounded: a number
    is finite and in [lo, hi], a string or list at most ``max_len`` long. Anything else is a
    `ProtocolError` naming the field (HTTP 400); nothing is coerced silently."""
    if not isinstance(raw, dict):
        raise ProtocolError("expected a JSON object", "bad_request")
    if name not in raw or raw[name] is None:
        if required:
            raise ProtocolError(f"missing field '{name}'", "bad_request")
        return default
    value = raw[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            raise ProtocolError(f"field '{name}' is out of range", "bad_request") from None
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ProtocolError(f"field '{name}' must be of type {kind.__name__}", "bad_request")
    if kind is float and not math.isfinite(value):
        raise ProtocolError(f"field '{name}' must be a finite number", "bad_request")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ProtocolError(f"field '{name}' must be in [{lo:g}, {hi:g}]", "bad_request")
    if max_len is not None and len(value) > max_len:
        raise ProtocolError(f"field '{name}' is longer than {max_len}", "bad_request")
    return value
