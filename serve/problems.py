"""RFC 9457 problem details: the one place errors become HTTP responses.

Every error answer of the API, whatever raised it (a ``chronos.errors`` class
from the backend, FastAPI's request validation, Starlette's 404/405, the body
limit or auth middleware, or an unexpected exception), has the same body::

    {
      "type": "https://chronos.dev/problems/job-not-found",
      "title": "Job not found",
      "status": 404,
      "detail": "no job named \\"nightly\\"",
      "code": "JOB_NOT_FOUND",
      "errors": [{"field": "webhook.url", "message": "..."}],
      "instance": "/api/v1/jobs/nightly"
    }

served as ``application/problem+json``.
"""

from __future__ import annotations

import json
import logging
import uuid
from http import HTTPStatus
from typing import Any, Iterable, Mapping, Optional

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from chronos import errors as E
from chronos.http_codes import code_for_status, status_for
from chronos.models import field_errors, joined

logger = logging.getLogger("chronos.serve")

PROBLEM_BASE = "https://chronos.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

#: ``Retry-After`` (seconds) sent with CAPACITY_EXHAUSTED unless the error carries ``retry_after``.
CAPACITY_RETRY_AFTER = 30
#: ``Retry-After`` (seconds) sent with UNAVAILABLE unless the error carries ``retry_after``.
UNAVAILABLE_RETRY_AFTER = 5

WWW_AUTHENTICATE = 'Bearer realm="chronos"'

GENERIC_500 = "An unexpected error occurred on the server. It has been logged"

TITLES = {
    "VALIDATION_ERROR": "Invalid request",
    "INVALID_SCHEDULE": "Invalid schedule",
    "MALFORMED_JSON": "Malformed JSON",
    "NOT_FOUND": "Not found",
    "JOB_NOT_FOUND": "Job not found",
    "EXECUTION_NOT_FOUND": "Execution not found",
    "CONFLICT": "Conflict",
    "DUPLICATE_JOB": "Job already exists",
    "CAPACITY_EXHAUSTED": "Capacity exhausted",
    "UNAUTHORIZED": "Unauthorized",
    "UNAVAILABLE": "Service unavailable",
    "METHOD_NOT_ALLOWED": "Method not allowed",
    "PAYLOAD_TOO_LARGE": "Payload too large",
    "BAD_REQUEST": "Bad request",
    "UNSUPPORTED_MEDIA_TYPE": "Unsupported media type",
    "INTERNAL_ERROR": "Internal server error",
}

_LOCATIONS = {"body", "query", "path", "header", "cookie"}


def problem_type(code: str) -> str:
    return PROBLEM_BASE + code.lower().replace("_", "-")


def title_for(code: str, status: int) -> str:
    if code in TITLES:
        return TITLES[code]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return code.replace("_", " ").capitalize()


def clean_errors(errors: Optional[Iterable[Any]]) -> list[dict[str, str]]:
    """``[{field, message}]`` only: whatever else an error entry carries stays server-side."""
    out = []
    for err in errors or []:
        if isinstance(err, Mapping):
            out.append({"field": str(err.get("field") or "body"), "message": str(err.get("message") or "")})
        else:
            out.append({"field": "body", "message": str(err)})
    return out


def problem_body(
    status: int,
    code: str,
    detail: str,
    instance: str,
    errors: Optional[Iterable[Any]] = None,
    title: Optional[str] = None,
) -> dict[str, Any]:
    return {
        "type": problem_type(code),
        "title": title or title_for(code, status),
        "status": status,
        "detail": detail,
        "code": code,
        "errors": clean_errors(errors),
        "instance": instance,
    }


class ProblemResponse(Response):
    media_type = PROBLEM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def problem_response(
    status: int,
    code: str,
    detail: str,
    instance: str,
    errors: Optional[Iterable[Any]] = None,
    headers: Optional[Mapping[str, str]] = None,
) -> Response:
    return ProblemResponse(
        problem_body(status, code, detail, instance, errors), status_code=status, headers=dict(headers or {})
    )


async def _no_receive() -> dict[str, Any]:  # pragma: no cover - responses do not read
    return {"type": "http.disconnect"}


async def send_problem(
    scope: Scope,
    send: Send,
    status: int,
    code: str,
    detail: str,
    errors: Optional[Iterable[Any]] = None,
    headers: Optional[Mapping[str, str]] = None,
    receive: Optional[Receive] = None,
) -> None:
    """Answer with a problem from a raw ASGI middleware."""
    response = problem_response(status, code, detail, scope.get("path", ""), errors, headers)
    await response(scope, receive or _no_receive, send)


async def send_error(scope: Scope, send: Send, error: E.ChronosError, headers: Optional[Mapping[str, str]] = None) -> None:
    """Answer with the problem of a domain error from a raw ASGI middleware; ``headers`` win."""
    status, code, own = chronos_error_parts(error)
    await send_problem(scope, send, status, code, error.message, error.errors, {**own, **(headers or {})})


class Problem(StarletteHTTPException):
    """An HTTP problem raised inside the app (not a domain error): malformed JSON,
    oversize body... A Starlette ``HTTPException`` so FastAPI passes it through
    its body-reading code untouched."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        errors: Optional[list[dict[str, Any]]] = None,
        headers: Optional[dict[str, str]] = None,
    ):
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.code = code
        self.errors = errors or []


class PayloadTooLarge(Problem):
    def __init__(self, limit: int):
        super().__init__(
            413,
            "PAYLOAD_TOO_LARGE",
            f"the request body is larger than the limit of {limit} bytes",
        )


def incident_id() -> str:
    return uuid.uuid4().hex[:12]


def internal_error(scope_or_path: Any, exc: BaseException) -> tuple[int, str, str]:
    """Log ``exc`` with its traceback; return the generic 500 (no traceback, no secret)."""
    incident = incident_id()
    path = scope_or_path if isinstance(scope_or_path, str) else scope_or_path.get("path", "")
    logger.error("unexpected error (incident %s) on %s", incident, path, exc_info=exc)
    return 500, "INTERNAL_ERROR", f"{GENERIC_500} (incident {incident})."


def chronos_error_parts(exc: E.ChronosError) -> tuple[int, str, dict[str, str]]:
    """Status, code and headers for a domain error (500 for an unmapped one)."""
    status = status_for(exc)
    if status == 500:
        return 500, "INTERNAL_ERROR", {}
    headers: dict[str, str] = {}
    if isinstance(exc, E.Unauthorized):
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    elif isinstance(exc, E.CapacityExhausted):
        headers["Retry-After"] = str(int(getattr(exc, "retry_after", None) or CAPACITY_RETRY_AFTER))
    elif isinstance(exc, E.Unavailable):
        headers["Retry-After"] = str(int(getattr(exc, "retry_after", None) or UNAVAILABLE_RETRY_AFTER))
    return status, exc.code, headers


# ------------------------------------------------------------ request validation


def request_validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's errors as field errors: dotted fields without the ``body.``/``query.`` prefix."""
    return field_errors(exc.errors(), drop=_LOCATIONS)


# ------------------------------------------------------------ handlers


async def _chronos_error_handler(request: Request, exc: E.ChronosError) -> Response:
    status, code, headers = chronos_error_parts(exc)
    if status == 500:
        status, code, detail = internal_error(request.url.path, exc)
        return problem_response(status, code, detail, request.url.path)
    return problem_response(status, code, exc.message or title_for(code, status), request.url.path, exc.errors, headers)


async def _http_exception_handler(request: Request, exc: StarletteHTTPException) -> Response:
    headers = dict(exc.headers or {})
    if isinstance(exc, Problem):
        return problem_response(exc.status_code, exc.code, str(exc.detail), request.url.path, exc.errors, headers)
    status = exc.status_code
    code = code_for_status(status)
    if status == 404:
        detail = f"no route {request.url.path}: see /docs for the API"
    elif status == 405:
        allowed = _allowed_methods(request) or headers.pop("allow", "") or headers.get("Allow")
        if allowed:
            headers["Allow"] = allowed
        detail = f"method {request.method} is not allowed on {request.url.path}"
        if allowed:
            detail += f" (allowed: {allowed})"
    elif status == 401:
        headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
        detail = str(exc.detail)
    elif status >= 500:
        status, code, detail = internal_error(request.url.path, exc)
    else:
        detail = str(exc.detail) if exc.detail else title_for(code, status)
    return problem_response(status, code, detail, request.url.path, None, headers)


def _allowed_methods(request: Request) -> str:
    """Every method the path accepts (Starlette names only the first route's)."""
    probe = {k: request.scope[k] for k in ("type", "path", "root_path", "method") if k in request.scope}
    methods: set[str] = set()
    for route in getattr(request.app, "routes", ()):
        route_methods = getattr(route, "methods", None)
        if not route_methods:
            continue
        try:
            match, _ = route.matches(probe)
        except Exception:  # pragma: no cover
            continue
        if match is not Match.NONE:
            methods |= set(route_methods)
    return ", ".join(sorted(methods))


async def _request_validation_handler(request: Request, exc: RequestValidationError) -> Response:
    raw = exc.errors()
    if raw and all(e.get("type") == "json_invalid" for e in raw):
        ctx = raw[0].get("ctx") or {}
        detail = f"the request body is not valid JSON: {ctx.get('error', 'decode error')}"
        return problem_response(400, "MALFORMED_JSON", detail, request.url.path)
    errors = request_validation_errors(exc)
    return problem_response(422, "VALIDATION_ERROR", joined(errors), request.url.path, errors)


def install_problem_handlers(app: FastAPI) -> None:
    """The one handler set: every route of ``app`` answers errors as problems."""
    app.add_exception_handler(E.ChronosError, _chronos_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _request_validation_handler)  # type: ignore[arg-type]
