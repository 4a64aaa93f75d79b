"""Requests and responses as the API sees them, and the JSON envelope of every answer."""

import dataclasses
import json
import logging
from collections.abc import Mapping

from saltext.eos.utils import errors

log = logging.getLogger(__name__)

# The status of every error response and its ``error.code``.
ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
    504: "timeout",
}


class ApiError(errors.EosError):
    """An error response: its status, a message for the client, the field at fault."""

    def __init__(self, status, message, field=None, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}


@dataclasses.dataclass(frozen=True)
class Request:
    """One HTTP request as the server received it; header names in lower case."""

    method: str
    path: str
    query: Mapping = dataclasses.field(default_factory=dict)  # name: [values]
    headers: Mapping = dataclasses.field(default_factory=dict)
    body: bytes = b""
    client: str | None = None  # the peer's address; failed logins are counted by it


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    body: object
    headers: Mapping = dataclasses.field(default_factory=dict)
    raw: bytes | None = None  # the body encoded already

    def encode(self):
        if self.raw is not None:
            return self.raw
        return json.dumps(self.body, default=str, separators=(",", ":")).encode()

    def encoded(self):
        """This response with its body encoded: a worker thread does it, not the event loop."""
        return self if self.raw is not None else dataclasses.replace(self, raw=self.encode())


def success(data, status=200, headers=None):
    return Response(status, {"status": "success", "data": data}, headers or {})


def failure(status, message, field=None, headers=None):
    error = {"code": ERROR_CODES[status], "message": message}
    if field is not None:
        error["field"] = field
    return Response(status, {"status": "error", "error": error}, headers or {})
