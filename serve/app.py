"""The REST API of Chronos, built by a function: ``create_app(backend, settings)``.

No globals: everything the app needs is passed in, so it is tested in-process
without Ray, and the Ray Serve deployment wraps the returned app with
``@serve.ingress``. Every domain operation goes through
:class:`chronos.backend.Backend`.

Layers, outermost first (raw ASGI middlewares, then FastAPI)::

    LastResortMiddleware   any unhandled exception -> logged, 500 INTERNAL_ERROR problem
    MetricsMiddleware      chronos_api_requests_total / _duration_seconds, label route = template
    BearerAuthMiddleware   settings.api_tokens -> 401 UNAUTHORIZED before routing/body
    BodyLimitMiddleware    settings.max_body_bytes -> 413 (Content-Length and streamed)
    FastAPI                routes; problem handlers for chronos errors, 404/405, validation
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timezone as dt_timezone
from typing import Annotated, Any, Optional
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import ValidationError as PydanticValidationError
from pydantic.json_schema import models_json_schema

from chronos import __version__
from chronos import errors as E
from chronos.backend import Backend
from chronos.egress import EgressPolicy
from chronos.models import (
    Execution,
    ExecutionStatus,
    Job,
    JobCreate,
    JobUpdate,
    parse_job,
    validation_error,
)
from chronos.times import utcnow
from chronos.serve.auth import BEARER_SCHEME_NAME, BearerAuthMiddleware, open_paths
from chronos.serve.console import PREFIX as CONSOLE_PREFIX
from chronos.serve.console import install_console
from chronos.serve.metrics import METRICS_CONTENT_TYPE, ApiMetrics, MetricsMiddleware
from chronos.serve.middleware import BodyLimitMiddleware, LastResortMiddleware
from chronos.serve.problems import (
    PROBLEM_MEDIA_TYPE,
    UNAVAILABLE_RETRY_AFTER,
    Problem,
    install_problem_handlers,
    problem_response,
)
from chronos.serve.schemas import (
    JOB_EXAMPLES,
    PATCH_EXAMPLES,
    VALIDATE_EXAMPLES,
    ExecutionList,
    Health,
    JobList,
    JobView,
    ProblemDetails,
    Ready,
    SigningSecret,
    ValidateRequest,
    ValidateResponse,
)
from chronos.settings import Settings
from chronos.signing import generate_secret
from chronos.cursors import EXECUTION_CURSOR_LENGTH, EXECUTION_CURSOR_PATTERN, JOB_CURSOR_MAX_LENGTH, JOB_CURSOR_PATTERN

logger = logging.getLogger("chronos.serve")

API_PREFIX = "/api/v1"
JobRef = Annotated[str, Path(description="The job's name or id.")]
ExecutionRef = Annotated[str, Path(description="The execution id.")]
#: Seconds ``GET /ready`` waits for ``backend.ready()`` before answering 503.
READY_TIMEOUT = 5.0

DESCRIPTION = """\
Chronos calls HTTP webhooks on cron or interval schedules, with retries, timeouts,
concurrency policies and a durable execution history.

* Jobs are addressed by **name or id** (`/api/v1/jobs/{ref}`).
* Secrets (webhook auth `token`/`password`/`api_key`, and `Authorization`, `*-Key`, `*-Token`
  header values) are never returned: they read back as `"***"`, and sending `"***"` back in a
  PUT or PATCH keeps the stored value.
* Lists are paged: `{"items": [...], "next_cursor": "..."}`; pass `next_cursor` as `cursor`.
* Errors are RFC 9457 `application/problem+json` with a stable `code` and field-level `errors`.
* When the server has API tokens configured, send `Authorization: Bearer <token>`.
"""

TAGS = [
    {"name": "jobs", "description": "Create, read, update and delete jobs; enable, disable and trigger them."},
    {"name": "executions", "description": "The execution history of a job."},
    {"name": "schedules", "description": "Check a schedule expression before using it."},
    {"name": "operations", "description": "Health, readiness and Prometheus metrics."},
]


# ------------------------------------------------------------ helpers


def _rfc3339_utc(dt: datetime) -> str:
    return dt.astimezone(dt_timezone.utc).isoformat().replace("+00:00", "Z")


def _job_json(job: Any) -> dict[str, Any]:
    """The only way a job leaves the API: its public view (secrets as ``***``)."""
    if not isinstance(job, Job):
        job = Job.model_validate(job)
    return job.public()


def _execution_json(execution: Any) -> dict[str, Any]:
    if not isinstance(execution, Execution):
        execution = Execution.model_validate(execution)
    return execution.model_dump(mode="json")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or (media.startswith("application/") and media.endswith("+json"))


async def read_json(request: Request) -> Any:
    """The request body as JSON. A Content-Type other than JSON (``application/json``,
    ``application/*+json``) -> 415 UNSUPPORTED_MEDIA_TYPE (none at all is read as JSON);
    malformed JSON or bad UTF-8 -> 400 MALFORMED_JSON."""
    raw = await request.body()  # read whole first: an unread body would be left on a kept-alive connection
    content_type = request.headers.get("content-type", "")
    if not _is_json(content_type):
        raise Problem(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"the request body must be JSON, not {content_type.split(';', 1)[0].strip()}: "
            "send the header Content-Type: application/json (curl: -H 'Content-Type: application/json')",
            [{"field": "Content-Type", "message": "use application/json"}],
        )
    if not raw.strip():
        raise E.ValidationError(
            "the request body is empty: send a JSON object",
            [{"field": "body", "message": "is required: send a JSON object"}],
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise Problem(400, "MALFORMED_JSON", f"the request body is not valid UTF-8 (bad byte at offset {e.start})") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise Problem(
            400, "MALFORMED_JSON", f"the request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    except (ValueError, RecursionError) as e:
        message = str(e) if isinstance(e, ValueError) else "it is nested too deeply"
        raise Problem(400, "MALFORMED_JSON", f"the request body is not valid JSON: {message}") from None
    if _too_deep(data, MAX_JSON_DEPTH):
        # Pydantic (and recursive merges) give up far below json's own limit: refuse early.
        raise Problem(
            400, "MALFORMED_JSON", f"the request body is nested too deeply: at most {MAX_JSON_DEPTH} levels are accepted"
        )
    return data


#: Deepest JSON nesting a request body may have; a job spec needs 4 (webhook.auth.*, tags.*).
MAX_JSON_DEPTH = 32
#: More tag filters than a job can have tags can never match (models._check_tags).
MAX_TAG_FILTERS = 64


def _too_deep(data: Any, limit: int) -> bool:
    """Iterative (a recursive walk would hit the recursion limit on exactly these inputs)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return False


def _tag_filters(request: Request) -> dict[str, str]:
    tags: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if not key.startswith("tag."):
            continue
        name = key[len("tag."):]
        if not name:
            raise E.ValidationError(
                'tag filter needs a key: use "tag.<key>=<value>", e.g. "tag.team=backend"',
                [{"field": key, "message": 'needs a key: use "tag.<key>=<value>"'}],
            )
        if name in tags and tags[name] != value:
            raise E.ValidationError(
                f'{key} is given twice with different values: a job has one value per tag',
                [{"field": key, "message": "is given twice with different values"}],
            )
        tags[name] = value
    if len(tags) > MAX_TAG_FILTERS:
        message = f"at most {MAX_TAG_FILTERS} tag filters are allowed (a job has at most 64 tags)"
        raise E.ValidationError(message, [{"field": "tag", "message": message}])
    return tags


_EXAMPLES = {"job": JOB_EXAMPLES, "patch": PATCH_EXAMPLES, "validate": VALIDATE_EXAMPLES}


def _doc(
    body: Optional[str] = None,
    examples: Optional[str] = None,
    ok: Optional[tuple[str, str]] = None,
) -> dict[str, Any]:
    """Documentation hints read (and removed) by :func:`_decorate_openapi`."""
    hint: dict[str, Any] = {}
    if body:
        hint["body"] = body
    if examples:
        hint["examples"] = examples
    if ok:
        hint["ok"] = list(ok)
    return {"x-chronos-doc": hint}


_JOB_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such job (`JOB_NOT_FOUND`) or route (`NOT_FOUND`)"},
    422: {"description": "Invalid request (`VALIDATION_ERROR`, `INVALID_SCHEDULE`)"},
}
_COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed JSON (`MALFORMED_JSON`)"},
    413: {"description": "Body larger than the server's limit (`PAYLOAD_TOO_LARGE`)"},
    422: {"description": "Invalid request (`VALIDATION_ERROR`)"},
    500: {"description": "Unexpected error (`INTERNAL_ERROR`); the detail carries an incident id"},
    503: {"description": "Supervisor not reachable (`UNAVAILABLE`) or no capacity (`CAPACITY_EXHAUSTED`)"},
}


# ------------------------------------------------------------ routes


class _Routes:
    """Registers routes straight on the app, with a path prefix and shared
    responses. (Not ``APIRouter`` + ``include_router``: FastAPI 0.165's included
    routers hold a lock, which makes the app unpicklable, and Ray Serve pickles
    the app given to ``@serve.ingress``.)"""

    def __init__(self, app: FastAPI, prefix: str = "", responses: Optional[dict] = None, tags: Optional[list] = None):
        self.app, self.prefix, self.responses, self.tags = app, prefix, responses or {}, tags

    def _add(self, method: str, path: str, **kwargs: Any) -> Any:
        kwargs["responses"] = {**self.responses, **kwargs.get("responses", {})}
        if self.tags and "tags" not in kwargs:
            kwargs["tags"] = self.tags
        return self.app.api_route(self.prefix + path, methods=[method], **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self._add("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self._add("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self._add("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self._add("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self._add("DELETE", path, **kwargs)


def _check_patch_url(patch: dict[str, Any], egress: EgressPolicy) -> None:
    """A PATCH is validated whole by the backend after merging; new URLs are checked
    against the egress policy here, where the server's policy is known."""
    urls = [("webhook.url", (patch.get("webhook") or {}).get("url"))]
    urls += [(f"notify.{i}.url", t.get("url")) for i, t in enumerate(patch.get("notify") or []) if isinstance(t, dict)]
    for field, url in urls:
        problem = egress.url_problem(url) if isinstance(url, str) else None
        if problem:
            raise E.ValidationError(f"{field}: {problem}", [{"field": field, "message": problem}])


def _api_routes(app: FastAPI, backend: Backend, egress: EgressPolicy) -> None:
    router = _Routes(app, API_PREFIX, _COMMON_ERRORS)

    @router.post(
        "/jobs",
        status_code=201,
        tags=["jobs"],
        summary="Create a job",
        name="create_job",
        responses={409: {"description": "A job with this name exists (`DUPLICATE_JOB`)"}, **_JOB_ERRORS},
        openapi_extra=_doc("JobCreate", "job", ("201", "JobView")),
    )
    async def create_job(request: Request) -> Response:
        spec = parse_job(await read_json(request), egress=egress)
        job = await backend.create_job(spec)
        body = _job_json(job)
        location = f"{request.scope.get('root_path', '').rstrip('/')}{API_PREFIX}/jobs/{body['name']}"
        return JSONResponse(body, status_code=201, headers={"Location": location})

    @router.get(
        "/jobs",
        tags=["jobs"],
        summary="List jobs",
        name="list_jobs",
        description="Filter with `enabled`, `search` (name or description) and any number of "
        "`tag.<key>=<value>` parameters (all must match), e.g. `?tag.team=backend&tag.env=prod`. "
        "Ordered by name; follow `next_cursor` for the next page.",
        openapi_extra=_doc(ok=("200", "JobList")),
    )
    async def list_jobs(
        request: Request,
        enabled: Optional[bool] = Query(None, description="Only enabled (true) or disabled (false) jobs."),
        search: Optional[str] = Query(None, max_length=256, description="Substring of the name or description."),
        limit: int = Query(100, ge=1, le=500),
        cursor: Optional[str] = Query(
            None, max_length=JOB_CURSOR_MAX_LENGTH, pattern=JOB_CURSOR_PATTERN, description="`next_cursor` of the previous page."
        ),
    ) -> Response:
        tags = _tag_filters(request)
        items, next_cursor = await backend.list_jobs(
            enabled=enabled, tags=tags or None, search=search or None, limit=limit, cursor=cursor or None
        )
        return JSONResponse({"items": [_job_json(j) for j in items], "next_cursor": next_cursor})

    @router.get(
        "/jobs/{ref}",
        tags=["jobs"],
        summary="Get a job",
        name="get_job",
        responses=_JOB_ERRORS,
        openapi_extra=_doc(ok=("200", "JobView")),
    )
    async def get_job(ref: JobRef) -> Response:
        return JSONResponse(_job_json(await backend.get_job(ref)))

    @router.put(
        "/jobs/{ref}",
        tags=["jobs"],
        summary="Replace a job",
        name="replace_job",
        description="Full replace: fields left out take their defaults. Secrets sent as `***` keep their stored value.",
        responses={409: {"description": "Renamed to an existing name (`DUPLICATE_JOB`)"}, **_JOB_ERRORS},
        openapi_extra=_doc("JobCreate", "job", ("200", "JobView")),
    )
    async def replace_job(request: Request, ref: JobRef) -> Response:
        spec = parse_job(await read_json(request), egress=egress)
        return JSONResponse(_job_json(await backend.replace_job(ref, spec)))

    @router.patch(
        "/jobs/{ref}",
        tags=["jobs"],
        summary="Update a job",
        name="patch_job",
        description="A JSON merge patch (RFC 7396): objects merge, `null` removes a field (back to its default) "
        "or a tag. Secrets sent as `***` keep their stored value.",
        responses={409: {"description": "Renamed to an existing name (`DUPLICATE_JOB`)"}, **_JOB_ERRORS},
        openapi_extra=_doc("JobUpdate", "patch", ("200", "JobView")),
    )
    async def patch_job(request: Request, ref: JobRef) -> Response:
        data = await read_json(request)
        try:
            update = JobUpdate.model_validate(data)
        except PydanticValidationError as e:
            raise validation_error(e) from None
        patch = update.model_dump(mode="json", exclude_unset=True)
        _check_patch_url(patch, egress)
        return JSONResponse(_job_json(await backend.patch_job(ref, patch)))

    @router.delete(
        "/jobs/{ref}",
        status_code=204,
        tags=["jobs"],
        summary="Delete a job",
        name="delete_job",
        responses=_JOB_ERRORS,
    )
    async def delete_job(ref: JobRef) -> Response:
        await backend.delete_job(ref)
        return Response(status_code=204)

    @router.post(
        "/jobs/{ref}/trigger",
        status_code=202,
        tags=["jobs"],
        summary="Run a job now",
        name="trigger_job",
        description="Starts a `manual` execution and answers at once with it (202); follow it under "
        "`/jobs/{ref}/executions/{id}`.",
        responses={409: {"description": "Refused by the job's state (`CONFLICT`)"}, **_JOB_ERRORS},
        openapi_extra=_doc(ok=("202", "Execution")),
    )
    async def trigger_job(request: Request, ref: JobRef) -> Response:
        body = _execution_json(await backend.trigger(ref))
        location = (
            f"{request.scope.get('root_path', '').rstrip('/')}{API_PREFIX}/jobs/{body['job_name']}/executions/{body['id']}"
        )
        return JSONResponse(body, status_code=202, headers={"Location": location})

    @router.post(
        "/jobs/{ref}/enable",
        tags=["jobs"],
        summary="Enable a job",
        name="enable_job",
        responses=_JOB_ERRORS,
        openapi_extra=_doc(ok=("200", "JobView")),
    )
    async def enable_job(ref: JobRef) -> Response:
        return JSONResponse(_job_json(await backend.set_enabled(ref, True)))

    @router.post(
        "/jobs/{ref}/disable",
        tags=["jobs"],
        summary="Disable a job",
        name="disable_job",
        responses=_JOB_ERRORS,
        openapi_extra=_doc(ok=("200", "JobView")),
    )
    async def disable_job(ref: JobRef) -> Response:
        return JSONResponse(_job_json(await backend.set_enabled(ref, False)))

    @router.get(
        "/jobs/{ref}/executions",
        tags=["executions"],
        summary="List a job's executions",
        name="list_executions",
        description="Newest first; follow `next_cursor` for older ones.",
        responses=_JOB_ERRORS,
        openapi_extra=_doc(ok=("200", "ExecutionList")),
    )
    async def list_executions(
        ref: JobRef,
        status: Optional[ExecutionStatus] = Query(None, description="Only executions in this status."),
        limit: int = Query(50, ge=1, le=500),
        cursor: Optional[str] = Query(
            None,
            min_length=EXECUTION_CURSOR_LENGTH,
            max_length=EXECUTION_CURSOR_LENGTH,
            pattern=EXECUTION_CURSOR_PATTERN,
            description="`next_cursor` of the previous page.",
        ),
    ) -> Response:
        items, next_cursor = await backend.list_executions(ref, status=status, limit=limit, cursor=cursor or None)
        return JSONResponse({"items": [_execution_json(x) for x in items], "next_cursor": next_cursor})

    async def _execution_id(ref: str, execution_id: str) -> UUID:
        try:
            return UUID(execution_id)
        except ValueError:
            await backend.get_job(ref)  # a missing job says so first
            raise E.ExecutionNotFound(f'no execution "{execution_id}" for job "{ref}"') from None

    _EXEC_ERRORS = {404: {"description": "No such job (`JOB_NOT_FOUND`) or execution (`EXECUTION_NOT_FOUND`)"}}

    @router.get(
        "/jobs/{ref}/executions/{execution_id}",
        tags=["executions"],
        summary="Get an execution",
        name="get_execution",
        responses=_EXEC_ERRORS,
        openapi_extra=_doc(ok=("200", "Execution")),
    )
    async def get_execution(ref: JobRef, execution_id: ExecutionRef) -> Response:
        eid = await _execution_id(ref, execution_id)
        return JSONResponse(_execution_json(await backend.get_execution(ref, eid)))

    @router.post(
        "/jobs/{ref}/executions/{execution_id}/cancel",
        tags=["executions"],
        summary="Cancel a running execution",
        name="cancel_execution",
        responses={**_EXEC_ERRORS, 409: {"description": "The execution has already finished (`CONFLICT`)"}},
        openapi_extra=_doc(ok=("200", "Execution")),
    )
    async def cancel_execution(ref: JobRef, execution_id: ExecutionRef) -> Response:
        eid = await _execution_id(ref, execution_id)
        return JSONResponse(_execution_json(await backend.cancel_execution(ref, eid)))

    @router.post(
        "/schedules/validate",
        tags=["schedules"],
        summary="Validate a schedule",
        name="validate_schedule",
        description="Parses a schedule and lists its next runs. An invalid expression answers 422 "
        "`INVALID_SCHEDULE` naming the field `schedule`; a schedule that never fires again has "
        "empty `next_runs`.",
        responses={422: {"description": "Invalid schedule (`INVALID_SCHEDULE`) or request (`VALIDATION_ERROR`)"}},
        openapi_extra=_doc("ValidateRequest", "validate", ("200", "ValidateResponse")),
    )
    async def validate_schedule(request: Request) -> Response:
        data = await read_json(request)
        try:
            req = ValidateRequest.model_validate(data)
        except PydanticValidationError as e:
            raise validation_error(e) from None
        return JSONResponse(validate(req))

    @router.post(
        "/signing-secrets",
        status_code=201,
        tags=["jobs"],
        summary="Generate a signing secret",
        name="generate_signing_secret",
        description="A new `whsec_` secret for `webhook.signing_secret` (Standard Webhooks), shown this once: "
        "nothing is stored until a job is given it. `chronosctl ... --signing-secret generate` does the same locally.",
        openapi_extra=_doc(ok=("201", "SigningSecret")),
    )
    async def generate_signing_secret() -> Response:
        return JSONResponse({"signing_secret": generate_secret()}, status_code=201, headers={"Cache-Control": "no-store"})


def validate(req: ValidateRequest) -> dict[str, Any]:
    """The answer of ``POST /schedules/validate`` (pure: no backend involved)."""
    from chronos import schedules

    zone = ZoneInfo(req.timezone)
    if req.from_ is None:
        start = utcnow().replace(microsecond=0)
    elif req.from_.tzinfo is None:
        start = req.from_.replace(tzinfo=zone)
    else:
        start = req.from_
    start = start.astimezone(dt_timezone.utc)
    expression = req.schedule.strip()
    try:
        schedule = schedules.parse_schedule(expression, req.timezone, anchor=start)
    except E.InvalidSchedule as e:
        raise E.InvalidSchedule(e.message, e.errors or [{"field": "schedule", "message": e.message}]) from None
    try:
        runs = list(schedules.next_runs(schedule, start, req.count))
    except (OverflowError, ValueError):
        # Past the end of the calendar (year 9999): keep the runs before it.
        runs = []
        at: Optional[datetime] = start
        while at is not None and len(runs) < req.count:
            try:
                at = schedule.next_after(at)
            except (OverflowError, ValueError):
                at = None
            if at is not None:
                runs.append(at)
    return {
        "valid": True,
        "schedule": getattr(schedule, "expression", None) or expression,
        "timezone": req.timezone,
        "description": schedule.describe(),
        "next_runs": [_rfc3339_utc(r) for r in runs],
        "next_runs_local": [r.astimezone(zone).isoformat() for r in runs],
    }


def _ops_routes(app: FastAPI, backend: Backend, metrics: ApiMetrics) -> None:
    router = _Routes(app, tags=["operations"])

    @router.get(
        "/health",
        summary="Liveness",
        name="health",
        description="200 whenever the API process is up.",
        openapi_extra=_doc(ok=("200", "Health")),
    )
    async def health() -> Response:
        return JSONResponse({"status": "ok"})

    @router.get(
        "/ready",
        summary="Readiness",
        name="ready",
        description="200 when the supervisor and its store answer, else 503 `UNAVAILABLE`.",
        responses={503: {"description": "Not ready (`UNAVAILABLE`)"}},
        openapi_extra=_doc(ok=("200", "Ready")),
    )
    async def ready(request: Request) -> Response:
        try:
            await asyncio.wait_for(backend.ready(), READY_TIMEOUT)
        except E.Unavailable as e:
            detail = f"not ready: {e.message}"
        except asyncio.TimeoutError:
            detail = f"not ready: the supervisor did not answer within {READY_TIMEOUT:g}s"
        except Exception:  # noqa: BLE001 - any failure means not ready
            logger.warning("readiness check failed", exc_info=True)
            detail = "not ready: the readiness check failed; see the server log"
        else:
            return JSONResponse({"status": "ready"})
        return problem_response(
            503, "UNAVAILABLE", detail, request.url.path, headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)}
        )

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        name="metrics",
        description="Prometheus text format 0.0.4: the cluster-wide metrics from the supervisor, then the "
        "API's request metrics (`chronos_api_*`).",
        response_class=Response,
        responses={200: {"content": {METRICS_CONTENT_TYPE: {"schema": {"type": "string"}}}}},
    )
    async def prometheus_metrics() -> Response:
        try:
            cluster: bytes | str | None = await backend.metrics()
        except Exception:  # noqa: BLE001 - still serve the API's own metrics
            logger.warning("could not read the cluster metrics from the backend", exc_info=True)
            cluster = None
        return Response(metrics.render(cluster), media_type=METRICS_CONTENT_TYPE)


# ------------------------------------------------------------ OpenAPI

_DOC_MODELS: dict[str, tuple[Any, str]] = {
    "JobCreate": (JobCreate, "validation"),
    "JobUpdate": (JobUpdate, "validation"),
    "ValidateRequest": (ValidateRequest, "validation"),
    "JobView": (JobView, "serialization"),
    "JobList": (JobList, "serialization"),
    "Execution": (Execution, "serialization"),
    "ExecutionList": (ExecutionList, "serialization"),
    "ValidateResponse": (ValidateResponse, "serialization"),
    "SigningSecret": (SigningSecret, "serialization"),
    "ProblemDetails": (ProblemDetails, "serialization"),
    "Health": (Health, "serialization"),
    "Ready": (Ready, "serialization"),
}


def _decorate_openapi(schema: dict[str, Any], auth_on: bool, open_ops: frozenset[str]) -> dict[str, Any]:
    """Bodies documented as their models (they are parsed by hand so errors match
    the CLI's), answers as their shapes, errors as problems, bearer auth."""
    refs, top = models_json_schema(
        [(model, mode) for model, mode in _DOC_MODELS.values()],  # type: ignore[misc]
        ref_template="#/components/schemas/{model}",
    )
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {}).update(top.get("$defs", {}))
    components["securitySchemes"] = {
        BEARER_SCHEME_NAME: {
            "type": "http",
            "scheme": "bearer",
            "description": "One of the server's API tokens (`CHRONOS_API_TOKENS`), when it has any.",
        }
    }

    def ref(name: str) -> dict[str, Any]:
        return dict(refs[_DOC_MODELS[name]])  # type: ignore[index]

    problem = {PROBLEM_MEDIA_TYPE: {"schema": ref("ProblemDetails")}}
    for path, item in schema.get("paths", {}).items():
        for op in item.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            hint = op.pop("x-chronos-doc", {})
            if "body" in hint:
                content: dict[str, Any] = {"schema": ref(hint["body"])}
                if hint.get("examples"):
                    content["examples"] = _EXAMPLES[hint["examples"]]
                op["requestBody"] = {"required": True, "content": {"application/json": content}}
                op["responses"].setdefault("415", {"description": "The body is not JSON (`UNSUPPORTED_MEDIA_TYPE`)"})
            if "ok" in hint:
                status, name = hint["ok"]
                op["responses"].setdefault(status, {"description": "OK"})["content"] = {
                    "application/json": {"schema": ref(name)}
                }
            protected = auth_on and path not in open_ops
            if protected:
                op["security"] = [{BEARER_SCHEME_NAME: []}]
                op["responses"].setdefault("401", {"description": "Missing or wrong bearer token (`UNAUTHORIZED`)"})
            for status, response in op["responses"].items():
                if status[:1] in ("4", "5"):
                    response["content"] = problem
    return schema


# ------------------------------------------------------------ the app


def create_app(backend: Backend, settings: Settings, *, prometheus_registry: Any = None) -> FastAPI:
    """Build the REST API over ``backend``.

    ``prometheus_registry``: where the API's request metrics are registered
    (default: a new, dedicated ``CollectorRegistry``; never the global one).
    """
    metrics = ApiMetrics(prometheus_registry)
    auth_on = bool(settings.api_tokens)
    unauthenticated = open_paths(settings.open_metrics)

    app = FastAPI(
        title="Chronos",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
    )

    install_problem_handlers(app)
    _api_routes(app, backend, settings.egress_policy)
    _ops_routes(app, backend, metrics)
    install_console(app, backend, settings)  # its own session auth: open to the bearer check
    app.add_api_route("/", lambda: RedirectResponse(CONSOLE_PREFIX), include_in_schema=False)

    # add_middleware puts each new one outside the previous: innermost first.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        BearerAuthMiddleware, tokens=settings.api_tokens, open_paths=unauthenticated | {"/"}, open_prefix=CONSOLE_PREFIX
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=lambda: app.routes)
    app.add_middleware(LastResortMiddleware)  # outermost: even a failing middleware answers a problem

    cache: dict[str, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        if "schema" not in cache:
            cache["schema"] = _decorate_openapi(FastAPI.openapi(app), auth_on, unauthenticated)
        return cache["schema"]

    app.openapi = openapi  # type: ignore[method-assign]
    return app
