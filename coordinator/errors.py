"""API errors: each maps to one HTTP status; the middleware in app.py renders them."""

from __future__ import annotations


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        if code:
            self.code = code
        self.headers = headers or {}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class RequestTimeout(ApiError):
    status, code = 408, "request_timeout"


class Conflict(ApiError):
    status, code = 409, "conflict"


class Gone(ApiError):
    status, code = 410, "gone"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class TooManyRequests(ApiError):
    status, code = 429, "rate_limited"


class ServiceUnavailable(ApiError):
    status, code = 503, "busy"


class ClientClosedRequest(ApiError):
    """The client went away mid-request: nobody reads the answer; counted, not logged as a fault.
    499 is nginx's status for this."""

    status, code = 499, "client_closed_request"
