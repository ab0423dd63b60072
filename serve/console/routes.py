"""The console's routes under ``/ui``, registered straight on the app (like the API's,
see ``chronos.serve.app._Routes``: Ray Serve must be able to pickle the app).

Every page reads and acts through the same :class:`chronos.backend.Backend` the
REST API uses. GET pages change nothing; every POST checks the session (when the
server has API tokens) and the CSRF token first, and answers with a redirect
(303, post/redirect/get) or the form again with its errors.
"""

from __future__ import annotations

import inspect
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import parse_qsl, quote, urlencode
from uuid import UUID

from fastapi import FastAPI, Request
from starlette.responses import RedirectResponse, Response

from chronos import errors as E
from chronos.backend import Backend
from chronos.egress import EgressPolicy
from chronos.manifests import changed_fields, parse_document, parse_documents, unkeepable_secrets
from chronos.models import ExecutionStatus, Job
from chronos.serve.console import session
from chronos.serve.console.charts import bar_chart, hot_minutes
from chronos.serve.console.render import STATIC, Renderer
from chronos.serve.console.views import describe, history_charts, job_row, public_spec, spec_yaml, upcoming
from chronos.serve.console.yaml_errors import locate_errors
from chronos.serve.problems import chronos_error_parts
from chronos.settings import Settings

PREFIX = "/ui"
JOBS_PER_PAGE = 50
OVERVIEW_JOBS = 20
HISTORY_PER_PAGE = 20
CHART_EXECUTIONS = 50
#: How often live parts of a page poll for a fresh copy (seconds).
REFRESH_SECONDS = 3
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}

Handler = Callable[..., Awaitable[Response]]


class Console:
    """The pages and actions; one instance per app."""

    def __init__(self, backend: Backend, settings: Settings):
        self.backend = backend
        self.auth = session.ConsoleAuth(settings.api_tokens)
        self.egress: EgressPolicy = settings.egress_policy
        self.renderer = Renderer()
        self.static = {p.name: p.read_bytes() for p in STATIC.iterdir() if p.suffix in STATIC_TYPES}

    # ------------------------------------------------------------ plumbing

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        token, new = session.csrf_token(request)
        context.update(
            csrf=token,
            csrf_field=session.CSRF_FIELD,
            signed_in=self.auth.enabled and self.auth.signed_in(request),
            auth_on=self.auth.enabled,
            refresh=REFRESH_SECONDS,
            path=request.url.path,
        )
        response = self.renderer.page(template, context, status)
        if new:
            session.set_cookie(response, request, session.CSRF_COOKIE, token)
        return response

    def error_page(self, request: Request, status: int, code: str, message: str, errors: Any = ()) -> Response:
        return self.page(request, "error.html", status, code=code, message=message, errors=list(errors))

    async def form(self, request: Request) -> dict[str, str]:
        """An urlencoded form body (the console's forms send nothing else)."""
        body = (await request.body()).decode("utf-8", errors="replace")
        return dict(parse_qsl(body, keep_blank_values=True))

    def view(self, handler: Handler) -> Handler:
        """A GET page: signed in (or sent to the login form), domain errors as an HTML page."""

        async def run(request: Request, **params: Any) -> Response:
            if not self.auth.signed_in(request):
                if _is_part(request):  # polled by a page whose session ended: no login form inside it
                    return Response("sign in again", status_code=401, media_type="text/plain")
                return RedirectResponse(f"{PREFIX}/login?{urlencode({'next': _local(request)})}", status_code=303)
            try:
                return await handler(request, **params)
            except E.ChronosError as e:
                return self._domain_error(request, e)

        return _named(run, handler)

    def action(self, handler: Handler) -> Handler:
        """A POST: signed in, CSRF token and origin checked, domain errors as an HTML page."""

        async def run(request: Request, **params: Any) -> Response:
            form = await self.form(request)
            if not self.auth.signed_in(request):
                return self._domain_error(request, E.Unauthorized("sign in first: your session is missing or has expired"))
            problem = session.csrf_problem(request, form)
            if problem:
                return self.error_page(request, 403, "CSRF_REFUSED", problem)
            try:
                return await handler(request, form, **params)
            except E.ChronosError as e:
                return self._domain_error(request, e)

        return _named(run, handler)

    def _domain_error(self, request: Request, error: E.ChronosError) -> Response:
        status, code, _ = chronos_error_parts(error)
        if status == 500:
            raise error  # the last-resort middleware logs it and answers generically
        return self.error_page(request, status, code, error.message, error.errors)

    # ------------------------------------------------------------ pages

    async def overview(self, request: Request) -> Response:
        return self.page(request, "overview.html", **await self._overview_parts())

    async def overview_part(self, request: Request) -> Response:
        return self.page(request, "_overview.html", **await self._overview_parts())

    async def _overview_parts(self) -> dict[str, Any]:
        summary = await self.backend.overview()
        jobs, more = await self.backend.list_jobs(limit=OVERVIEW_JOBS)
        return {
            "o": summary,
            "forecast": bar_chart(summary.forecast, height=80),
            "hot": hot_minutes(summary.forecast),
            "rows": await self._rows(jobs),
            "more_jobs": more is not None,
        }

    async def jobs(self, request: Request) -> Response:
        return self.page(request, "jobs.html", **await self._jobs_parts(request))

    async def jobs_part(self, request: Request) -> Response:
        return self.page(request, "_jobs_table.html", **await self._jobs_parts(request))

    async def _jobs_parts(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        search = q.get("search", "").strip()[:256]
        tag = q.get("tag", "").strip()
        enabled = {"yes": True, "no": False}.get(q.get("enabled", ""))
        tags = _tag_filter(tag)
        jobs, next_cursor = await self.backend.list_jobs(
            enabled=enabled, tags=tags, search=search or None, limit=JOBS_PER_PAGE, cursor=q.get("cursor") or None
        )
        filters = {k: v for k, v in (("search", search), ("tag", tag), ("enabled", q.get("enabled", ""))) if v}
        return {
            "rows": await self._rows(jobs),
            "filters": filters,
            "filter_query": urlencode(filters),
            "next_query": urlencode({**filters, "cursor": next_cursor}) if next_cursor else None,
            "paged": bool(q.get("cursor")),
        }

    async def _rows(self, jobs: list[Job]) -> list[Any]:
        recent = await self.backend.recent_executions([j.id for j in jobs]) if jobs else {}
        return [job_row(j, recent.get(j.id, [])) for j in jobs]

    async def job(self, request: Request, ref: str) -> Response:
        job = await self.backend.get_job(ref)
        chart_items, _ = await self.backend.list_executions(job.name, limit=CHART_EXECUTIONS)
        return self.page(
            request,
            "job.html",
            job=job,
            spec=public_spec(job),
            spec_yaml=spec_yaml(job),
            description=describe(job.schedule, job.timezone),
            runs=upcoming(job),
            charts=history_charts(chart_items),
            **await self._history_parts(request, job),
        )

    async def history_part(self, request: Request, ref: str) -> Response:
        job = await self.backend.get_job(ref)
        return self.page(request, "_history.html", job=job, **await self._history_parts(request, job))

    async def _history_parts(self, request: Request, job: Job) -> dict[str, Any]:
        q = request.query_params
        status = _status(q.get("status", ""))
        items, next_cursor = await self.backend.list_executions(
            job.name, status=status, limit=HISTORY_PER_PAGE, cursor=q.get("cursor") or None
        )
        base = {"status": status.value} if status else {}
        return {
            "executions": items,
            "status_filter": status.value if status else "",
            "statuses": [s.value for s in ExecutionStatus],
            "history_query": urlencode(base),
            "next_history": urlencode({**base, "cursor": next_cursor}) if next_cursor else None,
            "live": not q.get("cursor"),
        }

    async def execution(self, request: Request, ref: str, execution_id: str) -> Response:
        job = await self.backend.get_job(ref)
        execution = await self.backend.get_execution(job.name, _execution_id(execution_id))
        return self.page(request, "execution.html", job=job, x=execution)

    async def execution_part(self, request: Request, ref: str, execution_id: str) -> Response:
        job = await self.backend.get_job(ref)
        execution = await self.backend.get_execution(job.name, _execution_id(execution_id))
        return self.page(request, "_execution.html", job=job, x=execution)

    async def edit(self, request: Request, ref: str) -> Response:
        job = await self.backend.get_job(ref)
        return self.page(request, "edit.html", job=job, text=spec_yaml(job), errors=[])

    async def confirm_delete(self, request: Request, ref: str) -> Response:
        return self.page(request, "delete.html", job=await self.backend.get_job(ref))

    async def login_page(self, request: Request) -> Response:
        if not self.auth.enabled:
            return RedirectResponse(PREFIX, status_code=303)
        return self.page(request, "login.html", next=_next(request.query_params.get("next")), failed=False)

    # ------------------------------------------------------------ actions

    async def trigger(self, request: Request, form: dict[str, str], ref: str) -> Response:
        execution = await self.backend.trigger(ref)
        return _back(f"{PREFIX}/jobs/{quote(execution.job_name)}", form)

    async def enable(self, request: Request, form: dict[str, str], ref: str) -> Response:
        job = await self.backend.set_enabled(ref, True)
        return _back(f"{PREFIX}/jobs/{quote(job.name)}", form)

    async def disable(self, request: Request, form: dict[str, str], ref: str) -> Response:
        job = await self.backend.set_enabled(ref, False)
        return _back(f"{PREFIX}/jobs/{quote(job.name)}", form)

    async def delete(self, request: Request, form: dict[str, str], ref: str) -> Response:
        await self.backend.delete_job(ref)
        return RedirectResponse(f"{PREFIX}/jobs", status_code=303)

    async def cancel(self, request: Request, form: dict[str, str], ref: str, execution_id: str) -> Response:
        execution = await self.backend.cancel_execution(ref, _execution_id(execution_id))
        return RedirectResponse(f"{PREFIX}/jobs/{quote(execution.job_name)}/executions/{execution.id}", status_code=303)

    async def save(self, request: Request, form: dict[str, str], ref: str) -> Response:
        """The YAML editor: ``chronosctl job apply`` for one job. Invalid -> the form again,
        each error beside its line, nothing changed; unchanged -> nothing written."""
        job = await self.backend.get_job(ref)
        text = form.get("yaml", "")
        try:
            spec = self._spec_from_yaml(text, job)
        except E.ValidationError as e:
            errors = locate_errors(text, e.errors or [{"field": "yaml", "message": e.message}])
            return self.page(request, "edit.html", 422, job=job, text=text, errors=errors)
        if changed_fields(job.public(), spec):
            job = await self.backend.replace_job(job.name, spec)
        return RedirectResponse(f"{PREFIX}/jobs/{quote(job.name)}", status_code=303)

    def _spec_from_yaml(self, text: str, job: Job) -> Any:
        documents = parse_documents("the YAML", text)
        if len(documents) != 1:
            message = f"give exactly one job document here (found {len(documents)})"
            raise E.ValidationError(message, [{"field": "yaml", "message": message}])
        spec = parse_document(documents[0], egress=self.egress)
        unkept = unkeepable_secrets(spec, job.public())
        if unkept:
            raise E.ValidationError("secrets given as *** that the job does not store", unkept)
        return spec

    async def login(self, request: Request) -> Response:
        form = await self.form(request)
        problem = session.csrf_problem(request, form)
        if problem:
            return self.error_page(request, 403, "CSRF_REFUSED", problem)
        value = self.auth.login(form.get("token", ""))
        target = _next(form.get("next"))
        if value is None:
            return self.page(request, "login.html", 401, next=target, failed=True)
        response = RedirectResponse(target, status_code=303)
        session.set_cookie(response, request, session.SESSION_COOKIE, value, max_age=session.SESSION_MAX_AGE)
        return response

    async def logout(self, request: Request, form: dict[str, str]) -> Response:
        response = RedirectResponse(f"{PREFIX}/login" if self.auth.enabled else PREFIX, status_code=303)
        session.clear_cookie(response, request, session.SESSION_COOKIE)
        return response

    async def asset(self, request: Request, name: str) -> Response:
        body = self.static.get(name)
        if body is None:
            return Response("not found", status_code=404, media_type="text/plain")
        suffix = name[name.rfind("."):]
        return Response(body, media_type=STATIC_TYPES[suffix], headers={"Cache-Control": "max-age=300"})


# ------------------------------------------------------------ helpers


def _named(run: Handler, handler: Handler) -> Handler:
    """``run`` as FastAPI should see it: the handler's name and parameters (the path's),
    without the form, which ``run`` reads itself."""
    signature = inspect.signature(handler)
    params = [p for name, p in signature.parameters.items() if name != "form"]
    run.__name__ = f"console_{handler.__name__}"
    run.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return run


def _is_part(request: Request) -> bool:
    path = request.url.path
    return "/parts/" in path or path.endswith("/part")


def _local(request: Request) -> str:
    query = f"?{request.url.query}" if request.url.query else ""
    return request.url.path + query


def _next(target: Optional[str]) -> str:
    """Where to go after login: a console path only (never another site)."""
    if target and target.startswith(PREFIX) and not target.startswith("//"):
        return target
    return PREFIX


def _back(default: str, form: dict[str, str]) -> Response:
    return RedirectResponse(_next(form.get("back")) if form.get("back") else default, status_code=303)


def _status(text: str) -> Optional[ExecutionStatus]:
    try:
        return ExecutionStatus(text) if text else None
    except ValueError:
        message = f'"{text}" is not a status: use one of {", ".join(s.value for s in ExecutionStatus)}'
        raise E.ValidationError(message, [{"field": "status", "message": message}]) from None


def _tag_filter(text: str) -> Optional[dict[str, str]]:
    if not text:
        return None
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        message = 'write a tag filter as key=value, e.g. "team=backend"'
        raise E.ValidationError(message, [{"field": "tag", "message": message}])
    return {key.strip(): value.strip()}


def _execution_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise E.ExecutionNotFound(f'no execution "{text}"') from None


def install_console(app: FastAPI, backend: Backend, settings: Settings) -> None:
    """Add the console's routes to ``app`` (hidden from the API's OpenAPI document)."""
    c = Console(backend, settings)

    def get(path: str, handler: Handler) -> None:
        app.add_api_route(PREFIX + path, c.view(handler), methods=["GET"], include_in_schema=False)

    def post(path: str, handler: Handler) -> None:
        app.add_api_route(PREFIX + path, c.action(handler), methods=["POST"], include_in_schema=False)

    get("", c.overview)
    get("/parts/overview", c.overview_part)
    get("/jobs", c.jobs)
    get("/parts/jobs", c.jobs_part)
    get("/jobs/{ref}", c.job)
    get("/jobs/{ref}/parts/history", c.history_part)
    get("/jobs/{ref}/edit", c.edit)
    get("/jobs/{ref}/delete", c.confirm_delete)
    get("/jobs/{ref}/executions/{execution_id}", c.execution)
    get("/jobs/{ref}/executions/{execution_id}/part", c.execution_part)
    post("/jobs/{ref}/trigger", c.trigger)
    post("/jobs/{ref}/enable", c.enable)
    post("/jobs/{ref}/disable", c.disable)
    post("/jobs/{ref}/delete", c.delete)
    post("/jobs/{ref}/edit", c.save)
    post("/jobs/{ref}/executions/{execution_id}/cancel", c.cancel)
    post("/logout", c.logout)
    # Open to everyone: the way in, and the console's own CSS and JS.
    app.add_api_route(PREFIX + "/login", c.login_page, methods=["GET"], include_in_schema=False)
    app.add_api_route(PREFIX + "/login", c.login, methods=["POST"], include_in_schema=False)
    app.add_api_route(PREFIX + "/static/{name}", c.asset, methods=["GET"], include_in_schema=False)
