"""The one pattern for the names that become URL path segments and directory names:
task ids and population names. No '.', no '..', no slashes; at most 64 characters."""

from __future__ import annotations

import re

from protocol.errors import ProtocolError

MAX_NAME_LENGTH = 64
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,%d}" % (MAX_NAME_LENGTH - 1)
_NAME = re.compile(NAME_PATTERN)


def valid_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ProtocolError(f"{what} must match {NAME_PATTERN} (letters, digits, '-' and '_'; "
                            "starting with a letter or digit; at most 64 characters)", "bad_name")
    return name
