"""The REST layer (``chronos.serve.app``), in-process over ASGI.

Every test runs the app over the real :class:`chronos.supervisor.Supervisor` and a SQLite
store, its hosts in this process (``LocalRuntime``, no Ray): one for the module, emptied
after each test. What the app itself must do is pinned: every endpoint, the problem+json
answers for every error class, auth, body limits, metrics and the OpenAPI document. The
supervisor is wrapped in :class:`Spy`, which records the calls the app makes and, for the
error classes no in-process supervisor produces (what the Ray client raises, unexpected
exceptions), makes one method raise. Jobs that a test fires send to a real receiver on
127.0.0.1 (``tests/receiver.py``); the hosts' dispatcher reaches nothing else (no DNS, no
address but loopback).

All API traffic stays in-process (ASGI transport, base URL 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Optional

import aiohttp
import httpx
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from chronos import errors as E
from chronos.backend import Backend
from chronos.dispatcher import Dispatcher
from chronos.egress import EgressPolicy
from chronos.local_runtime import LocalRuntime
from chronos.models import Execution, ExecutionStatus, Job, Trigger
from chronos.serve.app import create_app
from chronos.settings import Settings
from chronos.store import Store
from chronos.supervisor import Supervisor
import guide
from receiver import Receiver

BASE = "http://127.0.0.1"
JSON = {"Content-Type": "application/json"}

# The two request bodies of our guide, byte for byte as curl sends them: read from the pages
# (docs/getting-started.md, docs/retries.md), so the guide shows exactly what these tests send.
GUIDE_SIMPLE = guide.curl_body("getting-started.md", "hourly-health-check")
GUIDE_BACKUP = guide.curl_body("retries.md", "critical-backup")

SECRETS = ("your-api-key", "jwt-s3cret", "pa55word", "k3y-value", "hdr-t0ken")


def settings(**overrides: Any) -> Settings:
    # Every field the app reads is given, so CHRONOS_* variables cannot leak in.
    values: dict[str, Any] = {"api_tokens": [], "open_metrics": True, "max_body_bytes": 64 * 1024}
    values.update(overrides)
    return Settings(**values)


def job_body(name: str = "ping", **fields: Any) -> dict[str, Any]:
    # Yearly: the real hosts arm every job's timer, and a job due during a test would add
    # an execution of its own to those the test counts.
    body = {"name": name, "schedule": "0 0 1 1 *", "webhook": {"url": "http://127.0.0.1:9/hook"}}
    body.update(fields)
    return body


def client_for(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


_BACKEND_METHODS = frozenset(name for name in vars(Backend) if not name.startswith("_"))


class Spy:
    """The real supervisor as the app sees it (a :class:`Backend`), with each call the app
    makes recorded in ``calls`` as ``(method, args, kwargs)``; ``fail[method] = exc`` makes
    that method raise ``exc`` instead (the errors an in-process supervisor never raises).
    Everything else (``store``, the hosts' ``claim`` and ``report``) is the supervisor's own."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.calls: list[tuple[str, tuple, dict]] = []
        self.fail: dict[str, BaseException] = {}

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.supervisor, name)
        if name not in _BACKEND_METHODS:
            return real

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            if name in self.fail:
                raise self.fail[name]
            return await real(*args, **kwargs)

        return call


class _NoNames(aiohttp.abc.AbstractResolver):
    """Resolves no name: the test hosts reach 127.0.0.1 and nothing else, not even a DNS server."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list:
        raise OSError(f"{host}: the test hosts resolve no names")

    async def close(self) -> None:
        pass


def loopback_dispatcher() -> Dispatcher:
    """A real dispatcher that reaches loopback addresses only (a guide job due during a test
    is refused before a packet leaves)."""
    return Dispatcher(egress=EgressPolicy(deny_private=True, deny_public=True), resolver=_NoNames)


# One supervisor for the module, emptied after each test (every job deleted, with its history):
# the tests run in the module's event loop, where it lives.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_supervisor(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Supervisor]:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('api') / 'chronos.db'}")
    supervisor = Supervisor(store, notify_dispatcher=loopback_dispatcher())
    await supervisor.start(LocalRuntime(supervisor, dispatcher=loopback_dispatcher()))
    yield supervisor
    await supervisor.stop()
    supervisor.store.close()


@pytest_asyncio.fixture(loop_scope="module")
async def backend(shared_supervisor: Supervisor) -> AsyncIterator[Spy]:
    yield Spy(shared_supervisor)
    for job in shared_supervisor.store.all_jobs():
        await shared_supervisor.delete_job(str(job.id))


@pytest_asyncio.fixture(loop_scope="module")
async def client(backend: Spy) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(backend, settings())) as c:
        yield c


@pytest_asyncio.fixture(loop_scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as r:
        yield r


def stored_jobs(backend: Spy) -> list[Job]:
    """The jobs as the store holds them (secrets in clear)."""
    return backend.store.all_jobs()


async def add_execution(backend: Spy, job: dict[str, Any], **fields: Any) -> Execution:
    """An execution of ``job`` (as the API answered it), written as a host reports one."""
    fields.setdefault("scheduled_at", datetime.now(timezone.utc))
    execution = Execution(job_id=uuid.UUID(job["id"]), job_name=job["name"], **fields)
    await backend.report([execution])
    return execution


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert set(body) == {"type", "title", "status", "detail", "code", "errors", "instance"}, body
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == "https://chronos.dev/problems/" + code.lower().replace("_", "-")
    assert body["title"] and body["detail"]
    assert body["instance"] == r.request.url.path
    for err in body["errors"]:
        assert set(err) == {"field", "message"}
    return body


def fields(problem: dict[str, Any]) -> dict[str, str]:
    return {e["field"]: e["message"] for e in problem["errors"]}


async def create(client: httpx.AsyncClient, body: Any, **kw: Any) -> dict[str, Any]:
    r = await client.post("/api/v1/jobs", json=body, **kw)
    assert r.status_code == 201, r.text
    return r.json()


# ------------------------------------------------------------------ the guide


async def test_guide_simple_job_is_created(client: httpx.AsyncClient, backend: Spy):
    r = await client.post("/api/v1/jobs", content=GUIDE_SIMPLE, headers=JSON)
    assert r.status_code == 201, r.text
    job = r.json()
    assert r.headers["location"] == "/api/v1/jobs/hourly-health-check"
    assert job["name"] == "hourly-health-check"
    assert job["description"] == "Check API health every hour"
    assert job["schedule"] == "0 * * * *"
    assert job["timezone"] == "UTC"
    assert job["webhook"]["url"] == "https://api.example.com/health"
    assert job["webhook"]["method"] == "GET"
    assert job["enabled"] is True
    assert job["retry_policy"] == {"max_attempts": 3, "initial_interval": "1s", "max_interval": "1m", "multiplier": 2.0}
    assert job["timeout"] == "5m" and job["concurrency"] == "forbid"
    uuid.UUID(job["id"])
    assert job["created_at"].endswith("Z")
    assert "anchor" not in job
    assert len(stored_jobs(backend)) == 1


async def test_guide_backup_job_reads_its_secret_back_as_stars(client: httpx.AsyncClient, backend: Spy):
    r = await client.post("/api/v1/jobs", content=GUIDE_BACKUP, headers=JSON)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["webhook"]["headers"] == {"Authorization": "***"}
    assert job["webhook"]["body"] == '{"type": "full"}'
    assert job["webhook"]["method"] == "POST"
    assert job["timezone"] == "America/New_York"
    assert job["retry_policy"] == {"max_attempts": 5, "initial_interval": "10s", "max_interval": "5m", "multiplier": 2.0}
    assert job["timeout"] == "30m"
    assert "your-api-key" not in r.text
    # stored for real
    (stored,) = stored_jobs(backend)
    assert stored.webhook.headers["Authorization"] == "Bearer your-api-key"
    # and never shown
    for path in ("/api/v1/jobs/critical-backup", f"/api/v1/jobs/{job['id']}", "/api/v1/jobs"):
        got = await client.get(path)
        assert got.status_code == 200
        assert "your-api-key" not in got.text
        assert '"Authorization":"***"' in got.text.replace(" ", "")


async def test_a_body_that_is_not_json_is_refused_with_415(client: httpx.AsyncClient, backend: Spy):
    # curl -d without -H sends application/x-www-form-urlencoded: the fix is named.
    for content_type in ("application/x-www-form-urlencoded", "text/plain; charset=utf-8", "multipart/form-data"):
        r = await client.post("/api/v1/jobs", content=GUIDE_SIMPLE, headers={"Content-Type": content_type})
        problem = assert_problem(r, 415, "UNSUPPORTED_MEDIA_TYPE")
        assert "Content-Type: application/json" in problem["detail"] and list(fields(problem)) == ["Content-Type"]
    assert not stored_jobs(backend)  # answered with an error: nothing changed
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json", None):
        headers = {"Content-Type": content_type} if content_type else {}
        r = await client.post("/api/v1/schedules/validate", content='{"schedule": "@daily"}', headers=headers)
        assert r.status_code == 200, (content_type, r.text)


# ------------------------------------------------------------------ jobs CRUD


async def test_every_auth_type_reads_back_as_stars(client: httpx.AsyncClient, backend: Spy):
    auths = {
        "bearer-job": {"type": "bearer", "token": "jwt-s3cret"},
        "basic-job": {"type": "basic", "username": "user", "password": "pa55word"},
        "key-job": {"type": "api_key", "api_key": "k3y-value", "header": "X-API-Key"},
    }
    for name, auth in auths.items():
        body = job_body(name, webhook={"url": "http://127.0.0.1:9/", "auth": auth, "headers": {"X-Auth-Token": "hdr-t0ken"}})
        r = await client.post("/api/v1/jobs", json=body)
        assert r.status_code == 201, r.text
        assert not any(s in r.text for s in SECRETS)
        webhook = r.json()["webhook"]
        assert webhook["headers"] == {"X-Auth-Token": "***"}
        for key in ("token", "password", "api_key"):
            if key in auth:
                assert webhook["auth"][key] == "***"
    assert (await client.get("/api/v1/jobs/basic-job")).json()["webhook"]["auth"]["username"] == "user"
    listed = await client.get("/api/v1/jobs")
    assert not any(s in listed.text for s in SECRETS)
    stored = {j.name: j for j in stored_jobs(backend)}
    assert stored["bearer-job"].webhook.auth.token == "jwt-s3cret"


async def test_get_by_name_and_by_id(client: httpx.AsyncClient):
    job = await create(client, job_body("alpha"))
    by_name = await client.get("/api/v1/jobs/alpha")
    by_id = await client.get(f"/api/v1/jobs/{job['id']}")
    assert by_name.status_code == by_id.status_code == 200
    assert by_name.json() == by_id.json() == job


async def test_put_replaces_the_whole_job_and_keeps_starred_secrets(client: httpx.AsyncClient, backend: Spy):
    created = await create(client, job_body("rep", tags={"team": "a"}, webhook={
        "url": "http://127.0.0.1:9/", "headers": {"Authorization": "Bearer hdr-t0ken"}}))
    new = job_body("rep", schedule="0 3 * * *", webhook={
        "url": "http://127.0.0.1:9/v2", "method": "POST", "headers": {"Authorization": "***"}})
    r = await client.put("/api/v1/jobs/rep", json=new)
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["id"] == created["id"]
    assert job["schedule"] == "0 3 * * *"
    assert job["tags"] == {}  # full replace: left out means default
    assert job["webhook"]["headers"] == {"Authorization": "***"}
    (stored,) = stored_jobs(backend)
    assert stored.webhook.headers["Authorization"] == "Bearer hdr-t0ken"
    assert stored.webhook.url == "http://127.0.0.1:9/v2"


async def test_put_validates_like_post(client: httpx.AsyncClient):
    await create(client, job_body("rep"))
    r = await client.put("/api/v1/jobs/rep", json={"name": "rep"})
    problem = assert_problem(r, 422, "VALIDATION_ERROR")
    assert fields(problem) == {"schedule": "is required", "webhook": "is required"}
    r = await client.put("/api/v1/jobs/missing", json=job_body("missing"))
    assert_problem(r, 404, "JOB_NOT_FOUND")


async def test_patch_with_stars_keeps_the_secret(client: httpx.AsyncClient, backend: Spy):
    await create(client, json.loads(GUIDE_BACKUP))
    patch = {
        "schedule": "0 3 * * *",
        "webhook": {"headers": {"Authorization": "***", "X-Trace": "on"}},
        "tags": {"team": "ops"},
    }
    r = await client.patch("/api/v1/jobs/critical-backup", json=patch)
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["schedule"] == "0 3 * * *"
    assert job["webhook"]["headers"] == {"Authorization": "***", "X-Trace": "on"}
    assert job["webhook"]["url"] == "https://backup.example.com/trigger"  # merged, not replaced
    assert job["retry_policy"]["max_attempts"] == 5
    assert "your-api-key" not in r.text
    (stored,) = stored_jobs(backend)
    assert stored.webhook.headers["Authorization"] == "Bearer your-api-key"
    # what reached the backend: only what was sent, JSON-ready
    name, (ref, sent), _ = backend.calls[-1]
    assert name == "patch_job" and ref == "critical-backup"
    assert sent == patch


async def test_patch_null_removes_a_tag_and_resets_a_field(client: httpx.AsyncClient):
    await create(client, job_body("p", tags={"team": "a", "env": "prod"}, timeout="1m", description="d"))
    r = await client.patch("/api/v1/jobs/p", json={"tags": {"env": None}, "timeout": None, "description": None})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["tags"] == {"team": "a"}
    assert job["timeout"] == "5m"
    assert job["description"] is None


async def test_patch_errors(client: httpx.AsyncClient):
    await create(client, job_body("p"))
    r = await client.patch("/api/v1/jobs/p", json={"enabled": "maybe"})
    assert "enabled" in fields(assert_problem(r, 422, "VALIDATION_ERROR"))
    r = await client.patch("/api/v1/jobs/p", json={"shedule": "* * * * *"})
    problem = assert_problem(r, 422, "VALIDATION_ERROR")
    assert "shedule" in problem["detail"] and "shedule" in fields(problem)
    r = await client.patch("/api/v1/jobs/p", json={"schedule": "61 * * * *"})
    problem = assert_problem(r, 422, "INVALID_SCHEDULE")
    assert list(fields(problem)) == ["schedule"]
    r = await client.patch("/api/v1/jobs/p", json={"webhook": {"method": "GET", "body": "x"}})
    assert_problem(r, 422, "VALIDATION_ERROR")  # whole-job validation after the merge (by the backend)
    r = await client.patch("/api/v1/jobs/p", json=[1, 2])
    assert_problem(r, 422, "VALIDATION_ERROR")
    r = await client.patch("/api/v1/jobs/nope", json={"enabled": False})
    assert_problem(r, 404, "JOB_NOT_FOUND")


async def test_delete(client: httpx.AsyncClient, backend: Spy):
    await create(client, job_body("gone"))
    r = await client.delete("/api/v1/jobs/gone")
    assert r.status_code == 204 and r.content == b""
    assert stored_jobs(backend) == []
    assert_problem(await client.get("/api/v1/jobs/gone"), 404, "JOB_NOT_FOUND")
    assert_problem(await client.delete("/api/v1/jobs/gone"), 404, "JOB_NOT_FOUND")


async def test_enable_and_disable(client: httpx.AsyncClient):
    await create(client, job_body("toggle"))
    r = await client.post("/api/v1/jobs/toggle/disable")
    assert r.status_code == 200 and r.json()["enabled"] is False
    r = await client.post("/api/v1/jobs/toggle/enable")
    assert r.status_code == 200 and r.json()["enabled"] is True
    assert_problem(await client.post("/api/v1/jobs/nope/enable"), 404, "JOB_NOT_FOUND")


async def test_duplicate_name_is_409(client: httpx.AsyncClient):
    await create(client, job_body("twin"))
    problem = assert_problem(await client.post("/api/v1/jobs", json=job_body("twin")), 409, "DUPLICATE_JOB")
    assert "twin" in problem["detail"]


# ------------------------------------------------------------------ list


async def test_list_filters(client: httpx.AsyncClient, backend: Spy):
    await create(client, job_body("api-backend-prod", tags={"team": "backend", "env": "prod"}))
    await create(client, job_body("api-backend-dev", tags={"team": "backend", "env": "dev"}, enabled=False))
    await create(client, job_body("web-frontend", tags={"team": "frontend", "env": "prod"}, description="The Backend proxy"))

    async def names(query: str) -> list[str]:
        r = await client.get("/api/v1/jobs" + query)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"items", "next_cursor"}
        return [j["name"] for j in body["items"]]

    assert await names("") == ["api-backend-dev", "api-backend-prod", "web-frontend"]
    assert await names("?enabled=false") == ["api-backend-dev"]
    assert await names("?enabled=true") == ["api-backend-prod", "web-frontend"]
    assert await names("?tag.team=backend") == ["api-backend-dev", "api-backend-prod"]
    assert await names("?tag.team=backend&tag.env=prod") == ["api-backend-prod"]
    assert await names("?tag.env=prod&enabled=true&search=front") == ["web-frontend"]
    assert await names("?search=backend") == ["api-backend-dev", "api-backend-prod", "web-frontend"]
    assert await names("?tag.team=nobody") == []
    _, _, kwargs = backend.calls[-1]
    assert kwargs == {"enabled": None, "tags": {"team": "nobody"}, "search": None, "limit": 100, "cursor": None}


async def test_list_pages_with_a_cursor(client: httpx.AsyncClient):
    for i in range(7):
        await create(client, job_body(f"job-{i}"))
    seen, cursor, pages = [], None, 0
    while True:
        r = await client.get("/api/v1/jobs", params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [j["name"] for j in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"job-{i}" for i in range(7)]


@pytest.mark.parametrize(
    "query, field",
    [("limit=0", "limit"), ("limit=501", "limit"), ("limit=ten", "limit"), ("enabled=perhaps", "enabled"),
     ("tag.=x", "tag."), ("tag.a=1&tag.a=2", "tag.a")],
)
async def test_list_rejects_bad_query(client: httpx.AsyncClient, query: str, field: str):
    problem = assert_problem(await client.get("/api/v1/jobs?" + query), 422, "VALIDATION_ERROR")
    assert field in fields(problem)


async def test_list_bad_cursor_is_a_validation_error(client: httpx.AsyncClient):
    assert_problem(await client.get("/api/v1/jobs?cursor=%FF%FE"), 422, "VALIDATION_ERROR")


# ------------------------------------------------------------------ executions


async def test_trigger_answers_202_with_the_execution(client: httpx.AsyncClient, receiver: Receiver):
    receiver.route("/hang", delay=math.inf)  # in flight until cancelled
    job = await create(client, job_body("run-me", webhook={"url": receiver.url("/hang")}))
    r = await client.post("/api/v1/jobs/run-me/trigger")
    assert r.status_code == 202, r.text
    execution = r.json()
    assert execution["job_id"] == job["id"] and execution["job_name"] == "run-me"
    # Running, not pending: the host starts a manual run before it answers.
    assert execution["trigger"] == "manual" and execution["status"] == "running"
    assert r.headers["location"] == f"/api/v1/jobs/run-me/executions/{execution['id']}"
    await receiver.wait_for(1, path="/hang")
    got = await client.get(r.headers["location"])  # the 202's state is written before it answers
    assert got.status_code == 200 and got.json() == execution
    assert_problem(await client.post("/api/v1/jobs/nope/trigger"), 404, "JOB_NOT_FOUND")
    # and the run in flight is stopped by a cancel
    r = await client.post(r.headers["location"] + "/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert r.json()["reason"] == "cancelled by user"


async def test_executions_list_newest_first_with_status_filter_and_paging(client: httpx.AsyncClient, backend: Spy):
    job = await create(client, job_body("hist"))
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    statuses = [ExecutionStatus.success, ExecutionStatus.failed] * 3 + [ExecutionStatus.running]
    made = [await add_execution(backend, job, scheduled_at=t0 + timedelta(minutes=i), status=s) for i, s in enumerate(statuses)]

    r = await client.get("/api/v1/jobs/hist/executions")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [e["id"] for e in body["items"]] == [str(e.id) for e in reversed(made)]
    assert body["next_cursor"] is None
    assert body["items"][0]["scheduled_at"] == "2025-01-01T00:06:00Z"

    r = await client.get("/api/v1/jobs/hist/executions", params={"status": "failed"})
    assert [e["status"] for e in r.json()["items"]] == ["failed"] * 3

    ids, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"/api/v1/jobs/{job['id']}/executions", params=params)).json()
        ids += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert ids == [str(e.id) for e in reversed(made)]

    # the guide's own query
    r = await client.get("/api/v1/jobs/hist/executions?limit=10")
    assert r.status_code == 200 and len(r.json()["items"]) == 7


async def test_executions_query_errors_and_404s(client: httpx.AsyncClient, backend: Spy):
    job = await create(client, job_body("hist"))
    execution = await add_execution(backend, job, status=ExecutionStatus.success)
    assert "status" in fields(assert_problem(await client.get("/api/v1/jobs/hist/executions?status=done"), 422, "VALIDATION_ERROR"))
    assert "limit" in fields(assert_problem(await client.get("/api/v1/jobs/hist/executions?limit=501"), 422, "VALIDATION_ERROR"))
    assert_problem(await client.get("/api/v1/jobs/nope/executions"), 404, "JOB_NOT_FOUND")
    assert_problem(await client.get(f"/api/v1/jobs/nope/executions/{execution.id}"), 404, "JOB_NOT_FOUND")
    assert_problem(await client.get(f"/api/v1/jobs/hist/executions/{uuid.uuid4()}"), 404, "EXECUTION_NOT_FOUND")
    assert_problem(await client.get("/api/v1/jobs/hist/executions/not-a-uuid"), 404, "EXECUTION_NOT_FOUND")
    assert_problem(await client.get("/api/v1/jobs/nope/executions/not-a-uuid"), 404, "JOB_NOT_FOUND")
    # an execution of another job is not found under this one
    await create(client, job_body("other"))
    assert_problem(await client.get(f"/api/v1/jobs/other/executions/{execution.id}"), 404, "EXECUTION_NOT_FOUND")


async def test_cancel(client: httpx.AsyncClient, backend: Spy):
    job = await create(client, job_body("c"))
    # a running record that no host holds (its runner is gone): the cancel closes the record
    running = await add_execution(backend, job, status=ExecutionStatus.running, trigger=Trigger.scheduled)
    r = await client.post(f"/api/v1/jobs/c/executions/{running.id}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["reason"] == "cancelled by user"
    problem = assert_problem(await client.post(f"/api/v1/jobs/c/executions/{running.id}/cancel"), 409, "CONFLICT")
    assert "already finished" in problem["detail"]
    assert_problem(await client.post(f"/api/v1/jobs/c/executions/{uuid.uuid4()}/cancel"), 404, "EXECUTION_NOT_FOUND")


# ------------------------------------------------------------------ schedules/validate


async def test_validate_lists_next_runs_in_utc_and_local(client: httpx.AsyncClient):
    r = await client.post(
        "/api/v1/schedules/validate",
        json={"schedule": "0 2 * * *", "timezone": "America/New_York", "from": "2024-03-09T00:00:00Z", "count": 4},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"valid", "schedule", "timezone", "description", "next_runs", "next_runs_local"}
    assert body["valid"] is True and body["schedule"] == "0 2 * * *" and body["timezone"] == "America/New_York"
    assert body["description"]
    # 10 March 2024: 02:00 does not exist in New York; a fixed-time job fires at 03:00 EDT.
    assert body["next_runs"] == [
        "2024-03-09T07:00:00Z", "2024-03-10T07:00:00Z", "2024-03-11T06:00:00Z", "2024-03-12T06:00:00Z",
    ]
    assert body["next_runs_local"] == [
        "2024-03-09T02:00:00-05:00", "2024-03-10T03:00:00-04:00", "2024-03-11T02:00:00-04:00", "2024-03-12T02:00:00-04:00",
    ]


async def test_validate_defaults(client: httpx.AsyncClient):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    r = await client.post("/api/v1/schedules/validate", json={"schedule": "@every 90s"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["timezone"] == "UTC" and len(body["next_runs"]) == 5
    runs = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in body["next_runs"]]
    assert before < runs[0] <= before + timedelta(seconds=92)
    assert all(b - a == timedelta(seconds=90) for a, b in zip(runs, runs[1:]))
    assert body["next_runs_local"][0].endswith("+00:00")


async def test_validate_naive_from_is_wall_clock_in_the_zone(client: httpx.AsyncClient):
    r = await client.post(
        "/api/v1/schedules/validate",
        json={"schedule": "0 9 * * 1-5", "timezone": "America/Los_Angeles", "from": "2025-06-02T08:59:00", "count": 1},
    )
    assert r.status_code == 200, r.text
    assert r.json()["next_runs"] == ["2025-06-02T16:00:00Z"]
    assert r.json()["next_runs_local"] == ["2025-06-02T09:00:00-07:00"]


async def test_validate_invalid_schedule(client: httpx.AsyncClient):
    r = await client.post("/api/v1/schedules/validate", json={"schedule": "61 * * * *"})
    problem = assert_problem(r, 422, "INVALID_SCHEDULE")
    assert list(fields(problem)) == ["schedule"]
    assert "minute" in problem["detail"]


async def test_validate_schedule_that_never_fires_again(client: httpx.AsyncClient):
    r = await client.post(
        "/api/v1/schedules/validate", json={"schedule": "0 0 * * *", "from": "9999-12-31T20:00:00Z"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["next_runs"] == [] and r.json()["next_runs_local"] == []


@pytest.mark.parametrize(
    "body, field",
    [
        ({"schedule": "* * * * *", "count": 0}, "count"),
        ({"schedule": "* * * * *", "count": 101}, "count"),
        ({"schedule": "* * * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"schedule": "* * * * *", "from": "yesterday"}, "from"),
        ({"schedule": "* * * * *", "colour": "red"}, "colour"),
        ({}, "schedule"),
    ],
)
async def test_validate_rejects_bad_requests(client: httpx.AsyncClient, body: dict, field: str):
    problem = assert_problem(await client.post("/api/v1/schedules/validate", json=body), 422, "VALIDATION_ERROR")
    assert field in fields(problem)


# ------------------------------------------------------------------ error classes


async def test_malformed_json(client: httpx.AsyncClient):
    r = await client.post("/api/v1/jobs", content='{"name": "x",', headers=JSON)
    problem = assert_problem(r, 400, "MALFORMED_JSON")
    assert "not valid JSON" in problem["detail"] and "line 1" in problem["detail"]
    r = await client.post("/api/v1/jobs", content='{"timeout": NaN}', headers=JSON)
    assert_problem(r, 400, "MALFORMED_JSON")


async def test_invalid_utf8(client: httpx.AsyncClient):
    r = await client.post("/api/v1/jobs", content=b'{"name": "caf\xe9"}', headers=JSON)
    problem = assert_problem(r, 400, "MALFORMED_JSON")
    assert "UTF-8" in problem["detail"]


async def test_empty_body(client: httpx.AsyncClient):
    problem = assert_problem(await client.post("/api/v1/jobs", headers=JSON), 422, "VALIDATION_ERROR")
    assert "body" in fields(problem)


async def test_unknown_field_is_named(client: httpx.AsyncClient):
    body = job_body("x", retries=3)
    body["webhook"]["verb"] = "POST"
    problem = assert_problem(await client.post("/api/v1/jobs", json=body), 422, "VALIDATION_ERROR")
    assert fields(problem) == {
        "retries": "is not a known field: remove it or check its spelling",
        "webhook.verb": "is not a known field: remove it or check its spelling",
    }
    assert "retries" in problem["detail"] and "webhook.verb" in problem["detail"]


async def test_wrong_types_and_values_name_their_fields(client: httpx.AsyncClient):
    body = job_body("Bad_Name", enabled="sometimes", timeout="soon", retry_policy={"max_attempts": 0})
    body["webhook"]["url"] = "ftp://example"
    problem = assert_problem(await client.post("/api/v1/jobs", json=body), 422, "VALIDATION_ERROR")
    errs = fields(problem)
    assert set(errs) == {"name", "enabled", "timeout", "retry_policy.max_attempts", "webhook.url"}
    assert "kebab-case" in errs["name"]
    assert not any(k.startswith("body") for k in errs)
    problem = assert_problem(await client.post("/api/v1/jobs", json=["not", "an", "object"]), 422, "VALIDATION_ERROR")


async def test_invalid_schedule_on_create(client: httpx.AsyncClient):
    problem = assert_problem(
        await client.post("/api/v1/jobs", json=job_body("x", schedule="every tuesday")), 422, "INVALID_SCHEDULE"
    )
    assert list(fields(problem)) == ["schedule"]


async def test_oversize_body_by_content_length(backend: Spy):
    async with client_for(create_app(backend, settings(max_body_bytes=2048))) as c:
        big = json.dumps(job_body("big", description="x" * 4000))
        r = await c.post("/api/v1/jobs", content=big, headers=JSON)
        problem = assert_problem(r, 413, "PAYLOAD_TOO_LARGE")
        assert "2048" in problem["detail"]
        assert stored_jobs(backend) == []
        # a lying Content-Length is refused too
        r = await c.post("/api/v1/jobs", content=b"{}", headers={**JSON, "Content-Length": "999999"})
        assert_problem(r, 413, "PAYLOAD_TOO_LARGE")


async def test_oversize_body_streamed_in_chunks(backend: Spy):
    sent = []

    async def chunks(total: int) -> AsyncIterator[bytes]:
        payload = json.dumps(job_body("big", description="x" * total)).encode()
        for i in range(0, len(payload), 512):
            sent.append(i)
            yield payload[i:i + 512]

    async with client_for(create_app(backend, settings(max_body_bytes=2048))) as c:
        r = await c.post("/api/v1/jobs", content=chunks(10_000), headers=JSON)
        assert "content-length" not in r.request.headers
        assert r.request.headers["transfer-encoding"] == "chunked"
        assert_problem(r, 413, "PAYLOAD_TOO_LARGE")
        assert stored_jobs(backend) == []
        assert len(sent) <= 6  # reading stopped at the limit
        # a small chunked body is fine
        r = await c.post("/api/v1/jobs", content=chunks(10), headers=JSON)
        assert r.status_code == 201, r.text


async def test_unknown_route_is_404_problem(client: httpx.AsyncClient):
    problem = assert_problem(await client.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
    assert "/api/v1/nothing-here" in problem["detail"]
    assert_problem(await client.get("/nope"), 404, "NOT_FOUND")
    assert_problem(await client.get("/api/v1/jobs/a/b/c/d"), 404, "NOT_FOUND")


async def test_wrong_method_is_405_problem(client: httpx.AsyncClient):
    r = await client.delete("/api/v1/jobs")
    problem = assert_problem(r, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in r.headers["allow"] and "POST" in r.headers["allow"]
    assert "DELETE" in problem["detail"]
    assert_problem(await client.get("/api/v1/jobs/x/trigger"), 405, "METHOD_NOT_ALLOWED")
    assert_problem(await client.put("/health"), 405, "METHOD_NOT_ALLOWED")


async def test_capacity_exhausted_is_503_with_retry_after(client: httpx.AsyncClient, backend: Spy):
    # As the Ray runtime refuses a dedicated host (test_supervisor: the job is then not kept).
    backend.fail["create_job"] = E.CapacityExhausted("no job slot is free on any node: add a node or delete jobs")
    r = await client.post("/api/v1/jobs", json=job_body("x"))
    problem = assert_problem(r, 503, "CAPACITY_EXHAUSTED")
    assert int(r.headers["retry-after"]) > 0
    assert "add a node" in problem["detail"]


async def test_unavailable_is_503(client: httpx.AsyncClient, backend: Spy):
    backend.fail["list_jobs"] = E.Unavailable("the supervisor did not answer")
    r = await client.get("/api/v1/jobs")
    assert_problem(r, 503, "UNAVAILABLE")
    assert "retry-after" in r.headers


async def test_backend_unauthorized_is_401(client: httpx.AsyncClient, backend: Spy):
    backend.fail["get_job"] = E.Unauthorized("nope")
    r = await client.get("/api/v1/jobs/x")
    assert_problem(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"].startswith("Bearer")


async def test_validation_errors_from_the_backend_keep_their_fields(client: httpx.AsyncClient, backend: Spy):
    backend.fail["list_jobs"] = E.ValidationError("cursor: is stale", [{"field": "cursor", "message": "is stale", "type": "x"}])
    problem = assert_problem(await client.get("/api/v1/jobs"), 422, "VALIDATION_ERROR")
    assert problem["errors"] == [{"field": "cursor", "message": "is stale"}]


async def test_unexpected_error_is_a_500_problem_without_internals(
    client: httpx.AsyncClient, backend: Spy, caplog: pytest.LogCaptureFixture
):
    backend.fail["get_job"] = RuntimeError("db password=hunter2 exploded")
    with caplog.at_level(logging.ERROR, logger="chronos.serve"):
        r = await client.get("/api/v1/jobs/x")
    problem = assert_problem(r, 500, "INTERNAL_ERROR")
    for leak in ("hunter2", "Traceback", "RuntimeError", "exploded", "test_api"):
        assert leak not in r.text
    assert "incident" in problem["detail"]
    incident = problem["detail"].split("incident ")[1].rstrip(").")
    logged = [rec for rec in caplog.records if incident in rec.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info and logged[0].exc_info[0] is RuntimeError
    assert 'route="/api/v1/jobs/{ref}",status="500"' in (await client.get("/metrics")).text


async def test_unmapped_chronos_error_is_a_generic_500(client: httpx.AsyncClient, backend: Spy):
    backend.fail["trigger"] = E.ChronosError("internal state: token=jwt-s3cret")
    r = await client.post("/api/v1/jobs/x/trigger")
    assert_problem(r, 500, "INTERNAL_ERROR")
    assert "jwt-s3cret" not in r.text


async def test_errors_while_answering_are_still_problems(client: httpx.AsyncClient, backend: Spy):
    # a backend answering garbage (not a Job) must not escape as a bare 500
    async def broken(ref: str) -> Any:
        return {"no": "job"}

    backend.get_job = broken  # type: ignore[method-assign]
    assert_problem(await client.get("/api/v1/jobs/x"), 500, "INTERNAL_ERROR")


# ------------------------------------------------------------------ health, ready


async def test_health_and_ready(client: httpx.AsyncClient, backend: Spy, monkeypatch: pytest.MonkeyPatch):
    r = await client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await client.get("/ready")
    assert r.status_code == 200 and r.json() == {"status": "ready"}

    def outage() -> Optional[int]:
        raise OSError('connection to server at "db.internal", user "chronos" failed')

    monkeypatch.setattr(backend.store, "schema_version", outage)  # the query ready() asks the store
    problem = assert_problem(await client.get("/ready"), 503, "UNAVAILABLE")
    # /ready is open without a token: the store's own words (host, user) stay in the log.
    assert "not reachable" in problem["detail"] and "db.internal" not in problem["detail"]
    backend.fail["ready"] = RuntimeError("secret-ish detail")
    r = await client.get("/ready")
    assert_problem(r, 503, "UNAVAILABLE")
    assert "secret-ish" not in r.text
    # health does not depend on the backend
    assert (await client.get("/health")).status_code == 200


# ------------------------------------------------------------------ auth


@pytest_asyncio.fixture(loop_scope="module")
async def secured(backend: Spy) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(backend, settings(api_tokens=["t0ken-one", "t0ken-two"]))
    async with client_for(app) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_auth_required_on_the_api(secured: httpx.AsyncClient, backend: Spy):
    r = await secured.get("/api/v1/jobs")
    problem = assert_problem(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in problem["detail"]
    for headers in (bearer("t0ken-on"), bearer("t0ken-one-and-more"), bearer(""), {"Authorization": "Basic dDBrZW4tb25l"},
                    {"Authorization": "t0ken-one"}):
        r = await secured.get("/api/v1/jobs", headers=headers)
        assert_problem(r, 401, "UNAUTHORIZED")
        assert r.headers["www-authenticate"].startswith("Bearer")
    for headers in (bearer("t0ken-one"), bearer("t0ken-two"), {"Authorization": "bearer t0ken-two"}):
        assert (await secured.get("/api/v1/jobs", headers=headers)).status_code == 200
    # unknown routes and writes too, before the body is even read
    assert_problem(await secured.get("/api/v1/nothing"), 401, "UNAUTHORIZED")
    r = await secured.post("/api/v1/jobs", content="{broken", headers=JSON)
    assert_problem(r, 401, "UNAUTHORIZED")
    r = await secured.post("/api/v1/jobs", json=job_body("ok"), headers=bearer("t0ken-two"))
    assert r.status_code == 201
    assert [c[0] for c in backend.calls] == ["list_jobs", "list_jobs", "list_jobs", "create_job"]


async def test_auth_leaves_probes_metrics_and_docs_open(secured: httpx.AsyncClient):
    for path in ("/health", "/ready", "/metrics", "/openapi.json", "/docs"):
        assert (await secured.get(path)).status_code == 200, path


async def test_closed_metrics_need_the_token(backend: Spy):
    app = create_app(backend, settings(api_tokens=["t0ken-one"], open_metrics=False))
    async with client_for(app) as c:
        for path in ("/health", "/ready", "/metrics"):
            assert_problem(await c.get(path), 401, "UNAUTHORIZED")
            assert (await c.get(path, headers=bearer("t0ken-one"))).status_code == 200
        assert (await c.get("/openapi.json")).status_code == 200


async def test_no_tokens_means_no_auth(client: httpx.AsyncClient):
    assert (await client.get("/api/v1/jobs", headers=bearer("anything"))).status_code == 200


# ------------------------------------------------------------------ metrics


async def test_metrics_joins_cluster_and_api_expositions(client: httpx.AsyncClient):
    await create(client, job_body("m1"))
    await client.get("/api/v1/jobs/m1")
    await client.get("/api/v1/jobs/m1")
    await client.get("/api/v1/jobs/missing")
    await client.get("/no/such/route")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # from the backend: chronos_jobs_total, exposed as a counter (chronos/metrics.py)
    (jobs,) = families["chronos_jobs"].samples
    assert (jobs.name, jobs.value) == ("chronos_jobs_total", 1)
    requests = {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for s in families["chronos_api_requests"].samples
        if s.name == "chronos_api_requests_total"
    }
    assert requests[("GET", "/api/v1/jobs/{ref}", "200")] == 2
    assert requests[("GET", "/api/v1/jobs/{ref}", "404")] == 1
    assert requests[("POST", "/api/v1/jobs", "201")] == 1
    assert requests[("GET", "unmatched", "404")] == 1
    assert not any("m1" in route or "missing" in route for _, route, _ in requests)
    durations = families["chronos_api_request_duration_seconds"]
    assert any(s.labels.get("route") == "/api/v1/jobs/{ref}" for s in durations.samples)
    # valid together: each HELP/TYPE once
    meta = [line for line in text.splitlines() if line.startswith(("# HELP", "# TYPE"))]
    assert len(meta) == len(set(meta))
    assert len({line.split()[2] for line in meta if line.startswith("# TYPE")}) == len([m for m in meta if m.startswith("# TYPE")])


async def test_metrics_labels_routes_answered_before_routing(secured: httpx.AsyncClient):
    await secured.get("/api/v1/jobs/some-job")  # 401 from the auth middleware
    text = (await secured.get("/metrics")).text
    assert 'route="/api/v1/jobs/{ref}",status="401"' in text


async def test_metrics_survives_a_backend_failure_and_drops_duplicate_families(backend: Spy):
    registry = CollectorRegistry()
    app = create_app(backend, settings(), prometheus_registry=registry)
    async with client_for(app) as c:
        await c.get("/health")
        backend.fail["metrics"] = E.Unavailable("down")
        r = await c.get("/metrics")
        assert r.status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(r.text)}
        assert families["chronos_api_cluster_metrics_up"].samples[0].value == 0
        assert "chronos_api_requests" in families
        assert registry.get_sample_value(
            "chronos_api_requests_total", {"method": "GET", "route": "/health", "status": "200"}
        ) == 1

        # a backend that (wrongly) exports chronos_api_* families does not duplicate ours
        async def clashing() -> bytes:
            return (
                b"# HELP chronos_api_requests_total x\n# TYPE chronos_api_requests_total counter\n"
                b'chronos_api_requests_total{method="GET",route="/x",status="200"} 5.0\n'
                b"# HELP chronos_jobs_total Jobs.\n# TYPE chronos_jobs_total gauge\nchronos_jobs_total 3.0\n# EOF\n"
            )

        del backend.fail["metrics"]
        backend.metrics = clashing  # type: ignore[method-assign]
        text = (await c.get("/metrics")).text
        assert text.count("# TYPE chronos_api_requests_total counter") == 1
        assert 'route="/x"' not in text and "# EOF" not in text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["chronos_jobs_total"].samples[0].value == 3
        assert families["chronos_api_cluster_metrics_up"].samples[0].value == 1


async def test_each_app_has_its_own_registry(backend: Spy):
    a, b = create_app(backend, settings()), create_app(backend, settings())
    async with client_for(a) as ca, client_for(b) as cb:
        await ca.get("/health")
        text = (await cb.get("/metrics")).text
        assert 'route="/health"' not in text


# ------------------------------------------------------------------ OpenAPI


async def test_openapi_documents_the_guide_examples(client: httpx.AsyncClient):
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    post = doc["paths"]["/api/v1/jobs"]["post"]
    content = post["requestBody"]["content"]["application/json"]
    assert content["schema"] == {"$ref": "#/components/schemas/JobCreate"}
    examples = [e["value"] for e in content["examples"].values()]
    assert json.loads(GUIDE_SIMPLE) in examples
    assert json.loads(GUIDE_BACKUP) in examples
    assert "201" in post["responses"]
    assert post["responses"]["422"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/ProblemDetails"
    }
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"]
    }
    schemas = doc["components"]["schemas"]
    for name in ("JobCreate", "JobUpdate", "JobView", "JobList", "ExecutionList", "ProblemDetails", "ValidateResponse"):
        assert name in schemas, name
    for item in doc["paths"].values():
        for op in item.values():
            assert "x-chronos-doc" not in op
            for ref in json.dumps(op).split('"$ref": "')[1:]:
                assert ref.split('"')[0].removeprefix("#/components/schemas/") in schemas
    expected = {
        ("/api/v1/jobs", "get"), ("/api/v1/jobs/{ref}", "get"), ("/api/v1/jobs/{ref}", "put"),
        ("/api/v1/jobs/{ref}", "patch"), ("/api/v1/jobs/{ref}", "delete"), ("/api/v1/jobs/{ref}/trigger", "post"),
        ("/api/v1/jobs/{ref}/enable", "post"), ("/api/v1/jobs/{ref}/disable", "post"),
        ("/api/v1/jobs/{ref}/executions", "get"), ("/api/v1/jobs/{ref}/executions/{execution_id}", "get"),
        ("/api/v1/jobs/{ref}/executions/{execution_id}/cancel", "post"), ("/api/v1/schedules/validate", "post"),
        ("/health", "get"), ("/ready", "get"), ("/metrics", "get"),
    }
    assert expected <= {(p, m) for p, item in doc["paths"].items() for m in item}
    assert "security" not in doc["paths"]["/api/v1/jobs"]["get"]  # no tokens configured
    assert (await client.get("/docs")).status_code == 200


async def test_openapi_marks_secured_operations(secured: httpx.AsyncClient):
    doc = (await secured.get("/openapi.json")).json()
    assert doc["paths"]["/api/v1/jobs"]["get"]["security"] == [{"bearerAuth": []}]
    assert "401" in doc["paths"]["/api/v1/jobs"]["get"]["responses"]
    assert "security" not in doc["paths"]["/health"]["get"]


# ------------------------------------------------------------------ Ray Serve


async def test_lifespan_passes_through_the_middlewares(backend: Spy):
    app = create_app(backend, settings(api_tokens=["t"]))
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict:
        return incoming.pop(0)

    async def send(message: dict) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


_BY_NAME: dict[str, Backend] = {}


class _Named:
    """A backend found by its name when used, as the Ray client finds the supervisor actor:
    it pickles as the name alone."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> tuple:
        return (_Named, (self.name,))

    def __getattr__(self, attr: str) -> Any:
        return getattr(_BY_NAME[self.name], attr)


async def test_the_app_survives_serve_ingress_pickling(backend: Spy, monkeypatch: pytest.MonkeyPatch):
    """``@serve.ingress(app)`` pickles the app: it must pickle, and the copy must work."""
    serve = pytest.importorskip("ray.serve")
    from ray import cloudpickle
    from ray._common.serialization import pickle_dumps
    from ray.serve._private.utils import ensure_serialization_context

    monkeypatch.setitem(_BY_NAME, "supervisor", backend)
    app = create_app(_Named("supervisor"), settings())

    @serve.ingress(app)
    class Api:
        pass

    ensure_serialization_context()
    copy = cloudpickle.loads(pickle_dumps(app, error_msg="app"))
    async with client_for(copy) as c:
        assert (await c.post("/api/v1/jobs", json=job_body("p"))).status_code == 201
        assert_problem(await c.get("/api/v1/jobs/nope"), 404, "JOB_NOT_FOUND")
        assert 'route="/api/v1/jobs/{ref}"' in (await c.get("/metrics")).text


# ------------------------------------------------------------------ over the real supervisor


class _NoNetworkDispatcher:
    """Stands in for the webhook dispatcher: records, never sends a packet."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, uuid.UUID]] = []

    def prepare(self, job, execution, attempt):
        return None  # nothing to build ahead: send() builds nothing either

    async def send(self, job, execution, attempt, timeout, prepared=None):
        from chronos.outcome import Outcome

        self.sent.append((job.webhook.url, execution.id))
        return Outcome(200, 0.001, body="ok")

    async def close(self) -> None:
        pass


async def test_guide_flow_over_the_real_supervisor(store):
    """The app over ``chronos.supervisor.Supervisor`` and a real store (in-process hosts)."""
    from chronos.local_runtime import LocalRuntime
    from chronos.supervisor import Supervisor

    dispatcher = _NoNetworkDispatcher()
    supervisor = Supervisor(store)
    await supervisor.start(LocalRuntime(supervisor, dispatcher=dispatcher))
    try:
        async with client_for(create_app(supervisor, settings())) as c:
            assert (await c.post("/api/v1/jobs", content=GUIDE_SIMPLE, headers=JSON)).status_code == 201
            r = await c.post("/api/v1/jobs", content=GUIDE_BACKUP, headers=JSON)
            assert r.status_code == 201, r.text
            assert r.json()["webhook"]["headers"] == {"Authorization": "***"}
            assert r.json()["next_run"].endswith("Z")

            r = await c.patch("/api/v1/jobs/critical-backup", json={"webhook": {"headers": {"Authorization": "***"}}, "tags": {"team": "ops"}})
            assert r.status_code == 200, r.text
            assert store.get_job("critical-backup").webhook.headers["Authorization"] == "Bearer your-api-key"
            assert [j["name"] for j in (await c.get("/api/v1/jobs?tag.team=ops")).json()["items"]] == ["critical-backup"]

            assert_problem(await c.post("/api/v1/jobs", content=GUIDE_SIMPLE, headers=JSON), 409, "DUPLICATE_JOB")
            assert_problem(await c.get("/api/v1/jobs/nope"), 404, "JOB_NOT_FOUND")
            assert_problem(await c.get("/api/v1/jobs?cursor=garbage!"), 422, "VALIDATION_ERROR")

            r = await c.post("/api/v1/jobs/critical-backup/trigger")
            assert r.status_code == 202, r.text
            execution_id = r.json()["id"]
            for _ in range(100):
                got = await c.get(f"/api/v1/jobs/critical-backup/executions/{execution_id}")
                if got.json()["status"] == "success":
                    break
                await asyncio.sleep(0.02)
            assert got.json()["status"] == "success"
            listed = (await c.get("/api/v1/jobs/critical-backup/executions?limit=10")).json()
            assert execution_id in [e["id"] for e in listed["items"]]
            assert_problem(await c.get(f"/api/v1/jobs/critical-backup/executions/{uuid.uuid4()}"), 404, "EXECUTION_NOT_FOUND")
            assert_problem(
                await c.post(f"/api/v1/jobs/critical-backup/executions/{execution_id}/cancel"), 409, "CONFLICT"
            )

            assert (await c.get("/ready")).status_code == 200
            families = {f.name for f in text_string_to_metric_families((await c.get("/metrics")).text)}
            assert {"chronos_jobs", "chronos_executions", "chronos_api_requests"} <= families  # counter families

            assert (await c.delete("/api/v1/jobs/hourly-health-check")).status_code == 204
            assert [j["name"] for j in (await c.get("/api/v1/jobs")).json()["items"]] == ["critical-backup"]
        assert ("https://backup.example.com/trigger", uuid.UUID(execution_id)) in dispatcher.sent
    finally:
        await supervisor.stop()
