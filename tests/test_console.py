"""The web console's routes (``chronos.serve.console``), in-process over ASGI, over the
real supervisor and SQLite store with hosts in this process and the real dispatcher
sending to a receiver on 127.0.0.1. The browser tests (test_console_browser.py) drive
the same pages in Chromium; these pin the HTML, CSRF, auth and YAML rules fast."""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any, AsyncIterator

import httpx
import pytest

from chronos.local_runtime import LocalRuntime
from chronos.serve.app import create_app
from chronos.settings import Settings
from chronos.store import Store
from chronos.supervisor import Supervisor
from receiver import Receiver

BASE = "http://127.0.0.1"
SECRET = "s3cret-header-value"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as r:
        r.route("/fail", status=500)
        yield r


@pytest.fixture
async def supervisor(tmp_path) -> AsyncIterator[Supervisor]:
    sup = Supervisor(Store(f"sqlite:///{tmp_path / 'chronos.db'}"))
    await sup.start(LocalRuntime(sup))
    yield sup
    await sup.stop()
    sup.store.close()


def app_for(supervisor: Supervisor, **settings: Any):
    values: dict[str, Any] = {"api_tokens": [], "open_metrics": True}
    values.update(settings)
    return create_app(supervisor, Settings(**values))


@pytest.fixture
async def client(supervisor) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_for(supervisor)), base_url=BASE) as c:
        yield c


def job_body(name: str, url: str, **fields: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "schedule": "0 * * * *",
        "webhook": {"url": url, "headers": {"Authorization": f"Bearer {SECRET}"}},
        "retry_policy": {"max_attempts": 1},
    }
    body.update(fields)
    return body


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def wait_status(c: httpx.AsyncClient, job: str, wanted: str) -> dict[str, Any]:
    for _ in range(200):
        items = (await c.get(f"/api/v1/jobs/{job}/executions")).json()["items"]
        if items and items[0]["status"] == wanted:
            return items[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {wanted} execution of {job}: {items}")


async def test_root_redirects_and_pages_render_without_secrets(client, receiver):
    assert (await client.post("/api/v1/jobs", json=job_body("ping", receiver.url("/ok")))).status_code == 201
    root = await client.get("/")
    assert root.status_code in (302, 307) and root.headers["location"] == "/ui"

    for path in ("/ui", "/ui/jobs", "/ui/jobs/ping", "/ui/jobs/ping/edit", "/ui/parts/jobs", "/ui/parts/overview"):
        page = await client.get(path)
        assert page.status_code == 200, (path, page.text[:300])
        assert "text/html" in page.headers["content-type"]
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
        assert SECRET not in page.text, path
        assert "<script>" not in page.text and " style=" not in page.text  # nothing inline for the CSP to block
        assert "ping" in page.text
    job_page = (await client.get("/ui/jobs/ping")).text
    assert "Authorization: &#39;***&#39;" in job_page or "Authorization: '***'" in job_page
    assert "Every hour" in job_page or "every hour" in job_page.lower()
    assert (await client.get("/ui/static/console.css")).status_code == 200
    assert (await client.get("/ui/static/../app.py")).status_code == 404
    assert (await client.get("/ui/jobs/nope")).status_code == 404


async def test_actions_need_the_csrf_token_and_change_nothing_without_it(client, receiver, supervisor):
    await client.post("/api/v1/jobs", json=job_body("ping", receiver.url("/ok")))
    page = await client.get("/ui/jobs/ping")
    token = csrf_of(page)

    refused = await client.post("/ui/jobs/ping/disable", data={})
    assert refused.status_code == 403 and "security token" in refused.text
    foreign = await client.post("/ui/jobs/ping/disable", data={"csrf": token}, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403 and "another site" in foreign.text
    assert (await client.get("/api/v1/jobs/ping")).json()["enabled"] is True

    done = await client.post("/ui/jobs/ping/disable", data={"csrf": token})
    assert done.status_code == 303 and done.headers["location"] == "/ui/jobs/ping"
    assert (await client.get("/api/v1/jobs/ping")).json()["enabled"] is False
    assert (await client.post("/ui/jobs/ping/enable", data={"csrf": token})).status_code == 303
    assert (await client.get("/api/v1/jobs/ping")).json()["enabled"] is True

    assert (await client.post("/ui/jobs/ping/trigger", data={"csrf": token})).status_code == 303
    execution = await wait_status(client, "ping", "success")
    assert (await receiver.wait_for(1, timeout=5, path="/ok"))[0].headers["Authorization"] == f"Bearer {SECRET}"
    shown = await client.get(f"/ui/jobs/ping/executions/{execution['id']}")
    assert shown.status_code == 200 and "success" in shown.text and "200" in shown.text

    assert (await client.post("/ui/jobs/ping/delete", data={"csrf": token})).status_code == 303
    assert (await client.get("/api/v1/jobs/ping")).status_code == 404


async def test_a_failing_job_turns_its_strip_red(client, receiver):
    await client.post("/api/v1/jobs", json=job_body("broken", receiver.url("/fail")))
    await client.post("/api/v1/jobs/broken/trigger")
    await wait_status(client, "broken", "failed")
    table = (await client.get("/ui/parts/jobs")).text
    assert re.search(r'class="cell s-failed" href="/ui/jobs/broken/executions/[0-9a-f-]+"', table), table
    overview = (await client.get("/ui/parts/overview")).text
    assert 'href="/ui/jobs/broken"' in overview  # listed as failing now


async def test_yaml_edit_has_apply_semantics(client, receiver, supervisor):
    await client.post("/api/v1/jobs", json=job_body("ping", receiver.url("/ok")))
    before = (await client.get("/api/v1/jobs/ping")).json()
    edit = await client.get("/ui/jobs/ping/edit")
    token = csrf_of(edit)
    text = re.search(r'<textarea[^>]*>(.*?)</textarea>', edit.text, re.S).group(1)
    text = text.replace("&#39;", "'").replace("&#34;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    assert "'***'" in text or '"***"' in text or "***" in text

    bad = await client.post("/ui/jobs/ping/edit", data={"csrf": token, "yaml": text.replace("0 * * * *", "61 * * * *")})
    assert bad.status_code == 422
    line = next(i for i, row in enumerate(text.splitlines(), start=1) if row.startswith("schedule:"))
    beside = rf'data-field="schedule"><span class="line">line {line}</span> <strong>schedule</strong>'
    assert re.search(beside, bad.text), bad.text
    assert (await client.get("/api/v1/jobs/ping")).json() == before  # nothing changed

    unchanged = await client.post("/ui/jobs/ping/edit", data={"csrf": token, "yaml": text})
    assert unchanged.status_code == 303
    assert (await client.get("/api/v1/jobs/ping")).json()["updated_at"] == before["updated_at"]  # not written

    edited = await client.post("/ui/jobs/ping/edit", data={"csrf": token, "yaml": text.replace("0 * * * *", "'*/5 * * * *'")})
    assert edited.status_code == 303, edited.text
    assert (await client.get("/api/v1/jobs/ping")).json()["schedule"] == "*/5 * * * *"
    assert supervisor.store.get_job("ping").webhook.headers["Authorization"] == f"Bearer {SECRET}"  # *** kept

    invented = text.replace("auth: null", "auth:\n    type: bearer\n    token: '***'")
    assert invented != text
    refused = await client.post("/ui/jobs/ping/edit", data={"csrf": token, "yaml": invented})
    assert refused.status_code == 422 and "webhook.auth.token" in refused.text
    garbage = await client.post("/ui/jobs/ping/edit", data={"csrf": token, "yaml": "name: [unclosed"})
    assert garbage.status_code == 422 and "not valid YAML" in garbage.text


async def test_with_tokens_the_console_needs_a_session(supervisor, receiver):
    app = app_for(supervisor, api_tokens=["tok-1", "tok-2"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        api = {"Authorization": "Bearer tok-1"}
        assert (await c.post("/api/v1/jobs", json=job_body("ping", receiver.url("/ok")), headers=api)).status_code == 201
        assert (await c.get("/")).status_code in (302, 307)  # the redirect is open
        gate = await c.get("/ui/jobs/ping")
        assert gate.status_code == 303 and gate.headers["location"].startswith("/ui/login?next=%2Fui%2Fjobs%2Fping")
        assert (await c.get("/ui/parts/jobs")).status_code == 401  # a polled part: no login form inside the page
        login = await c.get("/ui/login")
        token = csrf_of(login)
        assert (await c.post("/ui/jobs/ping/disable", data={"csrf": token})).status_code == 401

        wrong = await c.post("/ui/login", data={"csrf": token, "token": "nope", "next": "/ui/jobs/ping"})
        assert wrong.status_code == 401 and "not one of" in wrong.text
        offsite = await c.post("/ui/login", data={"csrf": token, "token": "tok-2", "next": "//evil.example/"})
        assert offsite.status_code == 303 and offsite.headers["location"] == "/ui"
        cookie = offsite.headers["set-cookie"]
        assert "chronos_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert "Secure" not in cookie  # plain HTTP here; HTTPS adds it
        assert "tok-2" not in cookie

        page = await c.get("/ui/jobs/ping")
        assert page.status_code == 200 and "Sign out" in page.text
        assert (await c.post("/ui/jobs/ping/disable", data={"csrf": token})).status_code == 303
        assert (await c.get("/api/v1/jobs/ping")).status_code == 401  # the API still wants its bearer token

        out = await c.post("/ui/logout", data={"csrf": token})
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"
        assert (await c.get("/ui/jobs/ping")).status_code == 303
        c.cookies.set("chronos_session", "1.forged.0000", path="/ui")
        assert (await c.get("/ui/jobs/ping")).status_code == 303


async def test_history_filter_and_bad_input_answer_in_html(client, receiver):
    await client.post("/api/v1/jobs", json=job_body("ping", receiver.url("/ok")))
    await client.post("/api/v1/jobs/ping/trigger")
    await wait_status(client, "ping", "success")
    assert "No executions with status failed" in (await client.get("/ui/jobs/ping?status=failed")).text
    bad = await client.get("/ui/jobs/ping?status=bogus")
    assert bad.status_code == 422 and "is not a status" in bad.text and "text/html" in bad.headers["content-type"]
    assert (await client.get("/ui/jobs?tag=nokey")).status_code == 422
    assert (await client.get("/ui/jobs?tag=team%3Dnone")).status_code == 200
    assert "No jobs match" in (await client.get("/ui/jobs?search=zzz")).text


def test_the_store_reads_for_the_console(store):
    """recent_executions / status_counts / running_executions, on SQLite and PostgreSQL."""
    from datetime import timedelta

    from chronos.models import Execution, ExecutionStatus, Job, parse_job, utcnow

    now = utcnow()
    jobs = [Job(**parse_job({"name": f"j{i}", "schedule": "@hourly", "webhook": {"url": "http://127.0.0.1:9/"}}).model_dump())
            for i in range(3)]
    for job in jobs:
        store.insert_job(job)
    rows = []
    for k in range(25):
        status = ExecutionStatus.failed if k % 5 == 0 else ExecutionStatus.success
        rows.append(Execution(job_id=jobs[0].id, job_name="j0", status=status, scheduled_at=now - timedelta(minutes=k)))
    rows.append(Execution(job_id=jobs[1].id, job_name="j1", status=ExecutionStatus.running, scheduled_at=now))
    rows.append(Execution(job_id=jobs[1].id, job_name="j1", status=ExecutionStatus.skipped, missed_slots=7,
                          scheduled_at=now - timedelta(hours=3)))
    assert all(store.claim(rows))

    recent = store.recent_executions([j.id for j in jobs], 20)
    assert [g.scheduled_at for g in recent[jobs[0].id]] == [now - timedelta(minutes=k) for k in range(20)]
    assert recent[jobs[0].id][0].status is ExecutionStatus.failed and recent[jobs[2].id] == []
    assert [g.status for g in recent[jobs[1].id]] == [ExecutionStatus.running, ExecutionStatus.skipped]

    hour, missed_hour = store.status_counts(now - timedelta(hours=1))
    assert hour == {"success": 20, "failed": 5, "running": 1} and missed_hour == 0
    day, missed_day = store.status_counts(now - timedelta(days=1))
    assert day["skipped"] == 1 and missed_day == 7
    assert [e.job_name for e in store.running_executions(10)] == ["j1"]


async def test_cancel_a_running_execution_from_the_console(client, receiver):
    receiver.route("/hang", delay=math.inf)
    await client.post("/api/v1/jobs", json=job_body("stuck", receiver.url("/hang")))
    await client.post("/api/v1/jobs/stuck/trigger")
    running = await wait_status(client, "stuck", "running")
    page = await client.get("/ui/jobs/stuck")
    assert f'action="/ui/jobs/stuck/executions/{running["id"]}/cancel"' in page.text
    done = await client.post(f"/ui/jobs/stuck/executions/{running['id']}/cancel", data={"csrf": csrf_of(page)})
    assert done.status_code == 303 and done.headers["location"] == f"/ui/jobs/stuck/executions/{running['id']}"
    shown = await client.get(done.headers["location"])
    assert "cancelled" in shown.text and "cancelled by user" in shown.text
    again = await client.post(f"/ui/jobs/stuck/executions/{running['id']}/cancel", data={"csrf": csrf_of(page)})
    assert again.status_code == 409 and "already finished" in again.text
