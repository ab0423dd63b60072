"""A small synchronous client for the Chronos REST API (``/api/v1``).

Every failure is raised as :class:`CliError` carrying the exit code the CLI
uses for it, so commands never deal with HTTP details::

    0  success
    1  anything else (conflict, server error, ...)
    2  usage error (Typer's own, and ours for bad option values)
    3  not found (404)
    4  server unreachable (connection refused, DNS, timeout)
    5  authentication or authorisation failed (401 / 403)
    6  validation failed (422 / 400, or a file that fails local validation)
"""

from __future__ import annotations

from typing import Any, Iterator, Optional
from urllib.parse import urlsplit

import httpx

from chronos import __version__
from chronos.http_codes import code_for_status

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNREACHABLE = 4
EXIT_AUTH = 5
EXIT_VALIDATION = 6

#: What each exit code means (the command-line reference is generated from this).
EXIT_CODES = {
    0: "success",
    EXIT_ERROR: "any other error (a conflict, a server error, ...)",
    EXIT_USAGE: "usage error: a bad option or argument, or a confirmation needed without a terminal (pass --yes)",
    EXIT_NOT_FOUND: "not found (404): no such job or execution",
    EXIT_UNREACHABLE: "server unreachable: connection refused, DNS failure, timeout",
    EXIT_AUTH: "authentication or authorisation failed (401 / 403): check --token / CHRONOS_TOKEN",
    EXIT_VALIDATION: "validation failed (400 / 422), or a file that fails local validation",
}

API_PREFIX = "/api/v1"
PAGE_SIZE = 100


class CliError(Exception):
    """An error to print as ``Error: CODE: message`` (plus field errors) and exit with."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        exit_code: int = EXIT_ERROR,
        errors: Optional[list[dict[str, Any]]] = None,
        hint: Optional[str] = None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code
        self.errors = errors or []
        self.hint = hint


def exit_code_for_status(status: int) -> int:
    if status == 404:
        return EXIT_NOT_FOUND
    if status in (401, 403):
        return EXIT_AUTH
    if status in (400, 422):
        return EXIT_VALIDATION
    return EXIT_ERROR


def normalise_server(server: str) -> str:
    """``http://host:8080``, ``http://host:8080/`` and ``http://host:8080/api/v1`` all
    name the same server; return it without the API prefix or a trailing slash."""
    url = (server or "").strip().rstrip("/")
    if url.endswith(API_PREFIX):
        url = url[: -len(API_PREFIX)]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(
            "USAGE",
            f'--server "{server}" is not a server URL: use one like http://localhost:8080',
            exit_code=EXIT_USAGE,
        )
    return url


def _only_repeats(detail: str, errors: list[dict[str, Any]]) -> bool:
    rest = detail
    for err in errors:
        msg = str(err.get("message") or "")
        if not msg or msg not in rest:
            return False
        rest = rest.replace(msg, "", 1)
        rest = rest.replace(str(err.get("field") or ""), "", 1)
    return not rest.strip(" ;:,.")


class ChronosClient:
    def __init__(self, server: str, token: Optional[str] = None, timeout: float = 30.0):
        self.server = normalise_server(server)
        headers = {"User-Agent": f"chronosctl/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.server + API_PREFIX,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
            follow_redirects=False,
            trust_env=False,  # never route through a proxy from the environment
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ChronosClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------ transport

    def request(self, method: str, path: str, *, json: Any = None, params: Any = None) -> Any:
        url = self.server + API_PREFIX + path
        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.TimeoutException as e:
            raise CliError(
                "UNREACHABLE",
                f"the Chronos server at {url} did not answer in time ({type(e).__name__})",
                exit_code=EXIT_UNREACHABLE,
                hint="check that `chronos serve` is running, or point --server / CHRONOS_SERVER at it",
            ) from None
        except httpx.TransportError as e:
            reason = str(e) or type(e).__name__
            raise CliError(
                "UNREACHABLE",
                f"cannot reach the Chronos server at {url}: {reason}",
                exit_code=EXIT_UNREACHABLE,
                hint="check that `chronos serve` is running, or point --server / CHRONOS_SERVER at it",
            ) from None
        if response.status_code >= 400:
            raise self._problem(response, method, url)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(
                "BAD_RESPONSE",
                f"{method} {url} answered {response.status_code} with a body that is not JSON: is --server a Chronos server?",
            ) from None

    @staticmethod
    def _problem(response: httpx.Response, method: str, url: str) -> CliError:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        code = None
        message = None
        errors: list[dict[str, Any]] = []
        if isinstance(body, dict):
            code = body.get("code")
            message = body.get("detail") or body.get("title")
            if isinstance(body.get("errors"), list):
                errors = [e for e in body["errors"] if isinstance(e, dict)]
            # FastAPI's default {"detail": ...} shape, in case a route answers without a problem
            if isinstance(message, list):
                errors = errors or [
                    {"field": ".".join(str(p) for p in e.get("loc", [])[1:]) or "body", "message": e.get("msg", "")}
                    for e in message
                    if isinstance(e, dict)
                ]
                message = "the request was not valid"
        if not code:
            code = code_for_status(status)
        if not message:
            message = f"{method} {url} answered HTTP {status} {response.reason_phrase}".rstrip()
        elif errors and _only_repeats(str(message), errors):
            # The detail just repeats the field errors printed below it: headline with the title.
            title = body.get("title") if isinstance(body, dict) else None
            message = str(title or "the request is not valid")
        hint = None
        if status in (401, 403):
            hint = "pass a valid API token with --token or the CHRONOS_TOKEN environment variable"
        return CliError(str(code), str(message), exit_code=exit_code_for_status(status), errors=errors, hint=hint)

    def paginate(self, path: str, params: dict[str, Any], limit: Optional[int] = None) -> Iterator[dict[str, Any]]:
        """Yield items of a ``{"items", "next_cursor"}`` collection, following cursors until
        the end or until ``limit`` items have been yielded."""
        params = {k: v for k, v in params.items() if v is not None}
        cursor = None
        seen = 0
        while True:
            page_size = PAGE_SIZE if limit is None else max(1, min(PAGE_SIZE, limit - seen))
            query = dict(params, limit=page_size)
            if cursor:
                query["cursor"] = cursor
            page = self.request("GET", path, params=query) or {}
            items = page.get("items") or []
            for item in items:
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
            cursor = page.get("next_cursor")
            if not cursor or not items:
                return

    # ------------------------------------------------------------ jobs

    @staticmethod
    def _ref(ref: str) -> str:
        from urllib.parse import quote

        return quote(ref, safe="")

    def list_jobs(
        self,
        *,
        enabled: Optional[bool] = None,
        tags: Optional[dict[str, str]] = None,
        search: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"search": search or None}
        if enabled is not None:
            params["enabled"] = "true" if enabled else "false"
        for key, value in (tags or {}).items():
            params[f"tag.{key}"] = value
        return list(self.paginate("/jobs", params, limit))

    def get_job(self, ref: str) -> dict[str, Any]:
        return self.request("GET", f"/jobs/{self._ref(ref)}")

    def find_job(self, ref: str) -> Optional[dict[str, Any]]:
        """The job, or None when the server says 404."""
        try:
            return self.get_job(ref)
        except CliError as e:
            if e.exit_code == EXIT_NOT_FOUND:
                return None
            raise

    def create_job(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", "/jobs", json=spec)

    def replace_job(self, ref: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.request("PUT", f"/jobs/{self._ref(ref)}", json=spec)

    def patch_job(self, ref: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", f"/jobs/{self._ref(ref)}", json=patch)

    def delete_job(self, ref: str) -> None:
        self.request("DELETE", f"/jobs/{self._ref(ref)}")

    def set_enabled(self, ref: str, enabled: bool) -> dict[str, Any]:
        return self.request("POST", f"/jobs/{self._ref(ref)}/{'enable' if enabled else 'disable'}")

    def trigger(self, ref: str) -> dict[str, Any]:
        return self.request("POST", f"/jobs/{self._ref(ref)}/trigger")

    # ------------------------------------------------------------ executions

    def list_executions(
        self, ref: str, *, status: Optional[str] = None, limit: Optional[int] = None
    ) -> list[dict[str, Any]]:
        return list(self.paginate(f"/jobs/{self._ref(ref)}/executions", {"status": status}, limit))

    def get_execution(self, ref: str, execution_id: str) -> dict[str, Any]:
        return self.request("GET", f"/jobs/{self._ref(ref)}/executions/{self._ref(execution_id)}")

    def cancel_execution(self, ref: str, execution_id: str) -> dict[str, Any]:
        return self.request("POST", f"/jobs/{self._ref(ref)}/executions/{self._ref(execution_id)}/cancel")

    # ------------------------------------------------------------ schedules

    def validate_schedule(self, schedule: str, timezone: str, count: int) -> dict[str, Any]:
        return self.request(
            "POST", "/schedules/validate", json={"schedule": schedule, "timezone": timezone, "count": count}
        )
