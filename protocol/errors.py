"""Errors raised by protocol code: each carries a stable machine-readable code.

The coordinator maps them to HTTP 4xx in one place; devices show the message.
"""


class ProtocolError(ValueError):
    """Input that does not follow the contract (malformed payload, bad rule, bad manifest)."""

    code = "invalid"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)
