"""What every store module writes the same way."""

from __future__ import annotations

import json


def dumps(value) -> str:
    """JSON as stored (sorted keys: equal values are equal text, and their digests agree)."""
    return json.dumps(value, sort_keys=True)
