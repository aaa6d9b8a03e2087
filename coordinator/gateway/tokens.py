"""Secrets as the coordinator stores and compares them: hashed, compared in constant time.

Header values reach us as whatever bytes a client sent; aiohttp decodes non-UTF-8 bytes
into lone surrogates, which a plain ``.encode()`` refuses with UnicodeEncodeError (a 500
reachable without authentication). Such a token hashes like any other and simply does
not match.
"""

from __future__ import annotations

import hashlib
import hmac


def hash_token(token: str) -> str:
    try:
        raw = token.encode("utf-8")
    except UnicodeEncodeError:
        raw = token.encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()


def tokens_equal(given: str, expected: str) -> bool:
    """Constant-time equality of two header values, whatever bytes `given` holds."""
    return hmac.compare_digest(hash_token(given), hash_token(expected))
