"""The HTTP face of Chronos's errors: which status each error answers with, and which code
names a status when an answer carries none. The API answers by these tables and the CLI reads
answers back by them, so the two never disagree."""

from __future__ import annotations

from chronos import errors as E

__all__ = ["CODE_FOR_STATUS", "code_for_status", "status_for"]

#: The code of an error answer that is not a domain error (Starlette's 404/405, a proxy's 502...).
CODE_FOR_STATUS = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_ERROR",
    503: "UNAVAILABLE",
}

# Most specific first: the first class the error is an instance of decides the status.
_STATUS_FOR_ERROR: tuple[tuple[type[E.ChronosError], int], ...] = (
    (E.ValidationError, 422),
    (E.NotFound, 404),
    (E.Conflict, 409),
    (E.CapacityExhausted, 503),
    (E.Unauthorized, 401),
    (E.Unavailable, 503),
)


def code_for_status(status: int) -> str:
    return CODE_FOR_STATUS.get(status, f"HTTP_{status}")


def status_for(error: E.ChronosError) -> int:
    """The status a domain error answers with; 500 for one no rule names (a bug)."""
    return next((status for cls, status in _STATUS_FOR_ERROR if isinstance(error, cls)), 500)
