"""Hostile clients: the API answers every request with a documented status and a body
that matches its OpenAPI document, and never a 5xx.

* schemathesis with every check: ``tests/test_openapi.py``;
* hand-written abuse over the real supervisor on SQLite and PostgreSQL: huge and deeply
  nested bodies, invalid UTF-8, unicode and NUL characters, 10,000 tags, negative and
  absurd durations and numbers, cron expressions that never fire, zones with odd offsets.

No webhook leaves the process: the hosts get a dispatcher that records and never sends,
and the API runs with an egress policy that refuses everything but loopback.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator
from zoneinfo import ZoneInfo

import httpx
import pytest

from chronos.local_runtime import LocalRuntime
from chronos.serve.app import create_app
from chronos.settings import Settings
from chronos.store import Store
from chronos.supervisor import Supervisor
from test_api import _NoNetworkDispatcher, assert_problem

TOKEN = "fuzz-token-0123456789"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def loopback_only(**overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        api_tokens=[], egress_deny_private=True, egress_deny_public=True, max_body_bytes=256 * 1024, open_metrics=True
    )
    values.update(overrides)
    return Settings(**values)


# ---------------------------------------------------------------- hand-written abuse


async def _api_over(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    supervisor = Supervisor(store)
    await supervisor.start(LocalRuntime(supervisor, dispatcher=_NoNetworkDispatcher()))
    app = create_app(supervisor, loopback_only())
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
            yield client
    finally:
        await supervisor.stop()


@pytest.fixture
async def api(tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    """The app over the real supervisor and a SQLite file, in the test's event loop."""
    store = Store(f"sqlite:///{tmp_path / 'chronos.db'}")
    try:
        async for client in _api_over(store):
            yield client
    finally:
        store.close()


@pytest.fixture
async def api_any_store(store) -> AsyncIterator[httpx.AsyncClient]:
    """The same over each store (SQLite and PostgreSQL): for what the database must hold."""
    async for client in _api_over(store):
        yield client


def job(name: str = "hostile", **fields: Any) -> dict[str, Any]:
    return {"name": name, "schedule": "0 3 * * *", "webhook": {"url": "http://127.0.0.1:9/hook"}, **fields}


async def post(api: httpx.AsyncClient, body: Any) -> httpx.Response:
    return await api.post("/api/v1/jobs", json=body)


async def test_huge_bodies_are_refused_before_parsing(api):
    big = json.dumps(job(description="x" * (512 * 1024))).encode()
    assert_problem(await api.post("/api/v1/jobs", content=big, headers={"Content-Type": "application/json"}), 413, "PAYLOAD_TOO_LARGE")

    async def stream():  # no Content-Length: the limit applies to what arrives
        for _ in range(64):
            yield b" " * 8192

    assert_problem(await api.post("/api/v1/jobs", content=stream()), 413, "PAYLOAD_TOO_LARGE")
    assert (await api.get("/api/v1/jobs")).json()["items"] == []


@pytest.mark.parametrize("depth", [50, 900, 5000, 100_000])
async def test_deeply_nested_bodies_are_client_errors(api, depth):
    nested = "[" * depth + "]" * depth
    for body in (
        f'{{"name": "deep", "schedule": "@daily", "webhook": {{"url": "http://127.0.0.1:9/", "headers": {nested}}}}}',
        f'{{"webhook": {{"auth": {nested}}}, "tags": {{"a": {nested}}}}}',
    ):
        if len(body) > 256 * 1024:
            continue
        for method, path in (("POST", "/api/v1/jobs"), ("PATCH", "/api/v1/jobs/deep"), ("POST", "/api/v1/schedules/validate")):
            r = await api.request(method, path, content=body.encode(), headers={"Content-Type": "application/json"})
            assert 400 <= r.status_code < 500, (method, depth, r.status_code, r.text[:300])
            assert r.headers["content-type"].startswith("application/problem+json")


async def test_deeply_nested_merge_patch_is_refused_not_crashed(api):
    assert (await post(api, job("deep"))).status_code == 201
    for depth, status, code in ((6, 422, "VALIDATION_ERROR"), (900, 400, "MALFORMED_JSON")):
        nested: Any = "x"
        for _ in range(depth):
            nested = {"a": nested}
        r = await api.patch("/api/v1/jobs/deep", json={"webhook": {"headers": nested}})
        assert_problem(r, status, code)
    assert (await api.get("/api/v1/jobs/deep")).json()["webhook"]["headers"] == {}


@pytest.mark.parametrize(
    "raw",
    [b'{"name": "caf\xe9"}', b"\xff\xfe{}", b'{"name": "\xed\xa0\x80"}', b'{"name": "ok", "x": "\xc0\xaf"}'],
    ids=["latin1", "bom16", "surrogate", "overlong"],
)
async def test_invalid_utf8_is_malformed_json(api, raw):
    for method, path in (("POST", "/api/v1/jobs"), ("POST", "/api/v1/schedules/validate")):
        r = await api.request(method, path, content=raw, headers={"Content-Type": "application/json"})
        problem = assert_problem(r, 400, "MALFORMED_JSON")
        assert "UTF-8" in problem["detail"]


async def test_lone_surrogate_escapes_are_refused(api_any_store):
    api = api_any_store
    # Valid JSON, but "\ud800" is no character: it must not reach the database or crash it.
    body = json.dumps(job("surrogate", description="a\ud800b", tags={"k": "\udfff"})).encode()
    r = await api.post("/api/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    problem = assert_problem(r, 422, "VALIDATION_ERROR")
    assert problem["errors"][0]["field"] == "description"
    assert (await api.get("/api/v1/jobs")).json()["items"] == []


async def test_unicode_and_nul_characters(api_any_store):
    api = api_any_store
    r = await post(api, job("café-✓"))
    problem = assert_problem(r, 422, "VALIDATION_ERROR")
    assert problem["errors"][0]["field"] == "name" and "kebab-case" in problem["errors"][0]["message"]

    spec = job("unicode-everywhere", description="Zürich ☕ 東京 🚀 \u202eevil\u202c", tags={"équipe": "données 🚀", "k": "v"})
    r = await post(api, spec)
    assert r.status_code == 201, r.text
    got = (await api.get("/api/v1/jobs/unicode-everywhere")).json()
    assert got["description"] == spec["description"] and got["tags"] == spec["tags"]
    listed = (await api.get("/api/v1/jobs", params={"tag.équipe": "données 🚀", "search": "東京"})).json()["items"]
    assert [j["name"] for j in listed] == ["unicode-everywhere"]

    # NUL: PostgreSQL cannot turn a JSON "\u0000" into text, so tags refuse it (one such tag
    # would fail every tag filter), as do header values (HTTP forbids it). Free text keeps it.
    r = await post(api, job("nul-text", description="a\x00b"))
    assert r.status_code == 201, r.text
    assert (await api.get("/api/v1/jobs/nul-text")).json()["description"] == "a\x00b"
    for field, where in (({"tags": {"n\x00ul": "v"}}, "tags"), ({"tags": {"k": "v\x00"}}, "tags"),
                         ({"webhook": {"url": "http://127.0.0.1:9/", "headers": {"X-A": "a\x00b"}}}, "webhook.headers")):
        problem = assert_problem(await post(api, job("nul", **field)), 422, "VALIDATION_ERROR")
        assert problem["errors"][0]["field"] == where and "NUL" in problem["errors"][0]["message"]
    assert (await api.get("/api/v1/jobs", params={"limit": 500, "tag.k": "v"})).status_code == 200


async def test_ten_thousand_tags(api_any_store):
    api = api_any_store
    tags = {f"k{i}": "v" for i in range(10_000)}
    r = await post(api, job("many-tags", tags=tags))
    problem = assert_problem(r, 422, "VALIDATION_ERROR")
    assert problem["errors"] == [{"field": "tags", "message": "at most 64 tags are allowed"}]
    assert (await post(api, job("max-tags", tags=dict(list(tags.items())[:64])))).status_code == 201
    many = "&".join(f"tag.k{i}=v" for i in range(2000))
    problem = assert_problem(await api.get(f"/api/v1/jobs?{many}"), 422, "VALIDATION_ERROR")
    assert "at most 64 tag filters" in problem["detail"]
    all_64 = "&".join(f"tag.k{i}=v" for i in range(64))
    assert [j["name"] for j in (await api.get(f"/api/v1/jobs?{all_64}")).json()["items"]] == ["max-tags"]


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"timeout": "-5s"}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "0s"}, "timeout"),
        ({"timeout": "99999999d"}, "timeout"),
        ({"timeout": 1e308}, "timeout"),
        ({"timeout": "1e400"}, "timeout"),
        ({"timeout": "nan"}, "timeout"),
        ({"timeout": "-inf"}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"timeout": "PT5M"}, "timeout"),
        ({"catchup_window": "1h-30m"}, "catchup_window"),
        ({"catchup_window": [1]}, "catchup_window"),
        ({"retry_policy": {"initial_interval": "-1s"}}, "retry_policy.initial_interval"),
        ({"retry_policy": {"max_attempts": 10**30}}, "retry_policy.max_attempts"),
        ({"retry_policy": {"max_attempts": 0}}, "retry_policy.max_attempts"),
        ({"retry_policy": {"multiplier": 1e308}}, "retry_policy.multiplier"),
        ({"retry_policy": {"multiplier": -2}}, "retry_policy.multiplier"),
        ({"webhook": {"url": "http://127.0.0.1:9/", "success_codes": [99999999999999999999]}}, "webhook.success_codes.0"),
    ],
)
async def test_negative_and_absurd_numbers_are_field_errors(api, fields, field):
    problem = assert_problem(await post(api, job(**fields)), 422, "VALIDATION_ERROR")
    assert field in [e["field"] for e in problem["errors"]], problem


async def test_non_finite_json_constants_are_malformed(api):
    for constant in ("NaN", "Infinity", "-Infinity"):
        body = f'{{"name": "x", "schedule": "@daily", "timeout": {constant}, "webhook": {{"url": "http://127.0.0.1:9/"}}}}'
        assert_problem(await api.post("/api/v1/jobs", content=body), 400, "MALFORMED_JSON")


async def test_absurd_query_parameters(api):
    for params in ({"limit": "0"}, {"limit": "-1"}, {"limit": str(10**30)}, {"limit": "1e3"}, {"enabled": "maybe"},
                   {"cursor": "x" * 2000}, {"cursor": "%%%"}, {"search": "x" * 300}):
        r = await api.get("/api/v1/jobs", params=params)
        assert r.status_code == 422, (params, r.status_code, r.text)
    assert (await api.get("/api/v1/jobs", params={"search": "%_\\'\"; DROP TABLE jobs;--"})).status_code == 200
    r = await api.get("/api/v1/jobs/x/executions/not-a-uuid")
    assert_problem(r, 404, "JOB_NOT_FOUND")


@pytest.mark.parametrize(
    "expression, why",
    [
        ("0 0 30 2 *", "February has no day 30"),
        ("0 0 31 2 *", "February has no day 31"),
        ("0 0 31 4,6,9,11 *", "no day 31"),
        ("0 0 0 1 1 * *", "fields"),
        ("60 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("@every 0s", "every"),
        ("@every -5m", "every"),
        ("@reboot", "reboot"),
    ],
)
async def test_cron_that_never_fires_or_cannot_be_read_is_rejected(api, expression, why):
    for r in (await post(api, job(schedule=expression)),
              await api.post("/api/v1/schedules/validate", json={"schedule": expression})):
        problem = assert_problem(r, 422, "INVALID_SCHEDULE")
        assert problem["errors"][0]["field"] == "schedule"
        assert why.lower() in problem["detail"].lower(), problem["detail"]
    if "no day" in why:
        assert "never fires" in problem["detail"]


async def test_feb_29_is_valid_and_waits_for_a_leap_year(api):
    body = (await api.post("/api/v1/schedules/validate",
                           json={"schedule": "0 0 29 2 *", "from": "2026-03-01T00:00:00Z", "count": 2})).json()
    assert body["next_runs"] == ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]


def _utc(local: datetime, zone: str) -> str:
    """A local wall time of ``zone`` as RFC 3339 UTC, by zoneinfo (independent of croniter)."""
    return local.replace(tzinfo=ZoneInfo(zone)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    "zone, schedule, start, local_runs",
    [
        # +05:45 all year
        ("Asia/Kathmandu", "0 9 * * *", datetime(2026, 1, 1), [datetime(2026, 1, 1, 9), datetime(2026, 1, 2, 9)]),
        # +10:30 / +11:00: its DST moves the clock by 30 minutes (02:00 -> 02:30 on 2026-10-04)
        ("Australia/Lord_Howe", "15 2 * * *", datetime(2026, 10, 3), [datetime(2026, 10, 3, 2, 15), datetime(2026, 10, 4, 2, 30),
                                                                     datetime(2026, 10, 5, 2, 15)]),
        ("Australia/Lord_Howe", "*/20 2 * * *", datetime(2026, 10, 4), [datetime(2026, 10, 4, 2, 40), datetime(2026, 10, 5, 2, 0)]),
        # +12:45 / +13:45: 02:45 -> 03:45 on the last Sunday of September (2026-09-27)
        ("Pacific/Chatham", "0 3 * * *", datetime(2026, 9, 26), [datetime(2026, 9, 26, 3), datetime(2026, 9, 27, 3, 45),
                                                                datetime(2026, 9, 28, 3)]),
    ],
)
async def test_zones_with_odd_offsets(api, zone, schedule, start, local_runs):
    body = {"schedule": schedule, "timezone": zone, "from": start.isoformat(), "count": len(local_runs)}
    r = await api.post("/api/v1/schedules/validate", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["next_runs"] == [_utc(t, zone) for t in local_runs]
    created = await post(api, job(f"odd-{zone.split('/')[1].lower().replace('_', '-')}", schedule=schedule, timezone=zone))
    assert created.status_code == 201, created.text
    next_run = datetime.fromisoformat(created.json()["next_run"].replace("Z", "+00:00"))
    assert next_run > datetime.now(timezone.utc) - timedelta(seconds=5)
    # the offset of the zone shows in the local rendering
    offset = ZoneInfo(zone).utcoffset(local_runs[0])
    assert r.json()["next_runs_local"][0].endswith(f"{int(offset.total_seconds() // 3600):+03d}:{int(offset.total_seconds() % 3600 // 60):02d}")


async def test_bad_zones(api):
    for zone in ("Mars/Olympus", "../../etc/passwd", "UTC+5", "", "a" * 65, "Europe/Berlin\x00"):
        r = await post(api, job(timezone=zone))
        problem = assert_problem(r, 422, "VALIDATION_ERROR")
        assert problem["errors"][0]["field"] == "timezone"


async def test_openapi_documents_what_the_parser_reads(api):
    """Found by schemathesis: the document advertised ISO 8601 durations ("PT1H") that the
    parser refuses, and `from` accepted a number where it documents a date-time."""
    doc = (await api.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    timeout = schemas["JobCreate"]["properties"]["timeout"]
    assert '"duration"' not in json.dumps(timeout)  # pydantic's default was `format: duration` (ISO 8601)
    assert {s["type"] for s in timeout["anyOf"]} == {"string", "integer"}
    for example in timeout["anyOf"][0]["examples"]:
        assert (await post(api, job(f"d-{example}", timeout=example))).status_code == 201
    assert schemas["JobView"]["properties"]["timeout"]["type"] == "string"  # answers are "5m"
    r = await api.post("/api/v1/schedules/validate", json={"schedule": "@daily", "from": 0})
    assert assert_problem(r, 422, "VALIDATION_ERROR")["errors"][0]["field"] == "from"
