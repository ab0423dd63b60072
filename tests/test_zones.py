"""One time-zone rule for the model and the schedules (chronos/zones.py), and
what happens to a stored job that an older, laxer rule let in."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from chronos.errors import InvalidSchedule, ValidationError
from chronos.models import parse_job
from chronos.local_runtime import LocalRuntime
from chronos.schedules import parse_schedule
from chronos.serve.app import create_app
from chronos.settings import Settings
from chronos.store import Store
from chronos.supervisor import Supervisor
from chronos.zones import UnknownZone, check_zone, zone_names

NOT_ZONES = ["localtime", "Factory", "posixrules", "", "Mars/Olympus", "../etc/passwd", " UTC"]


@pytest.mark.parametrize("name", NOT_ZONES)
def test_the_model_and_the_schedules_refuse_the_same_names(name):
    with pytest.raises(UnknownZone):
        check_zone(name)
    with pytest.raises(InvalidSchedule, match="IANA time zone"):
        parse_schedule("0 * * * *", name)
    with pytest.raises(ValidationError, match="timezone: .* IANA time zone"):
        parse_job({"name": "tz", "schedule": "0 * * * *", "timezone": name, "webhook": {"url": "http://127.0.0.1:9/"}})


def test_every_zone_the_model_accepts_the_schedules_accept():
    assert {"UTC", "America/New_York", "Europe/Berlin"} <= zone_names()
    for name in sorted(zone_names()):
        parse_schedule("0 * * * *", name)  # raises for any the schedule code would refuse


def _body(**fields):
    return {"name": "tz-local", "schedule": "0 * * * *", "webhook": {"url": "http://127.0.0.1:9/hook"}, **fields}


async def _client(sup: Supervisor) -> httpx.AsyncClient:
    app = create_app(sup, Settings(data_dir=Path("/nonexistent")))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


async def test_a_refused_zone_writes_nothing(supervisor):
    async with await _client(supervisor) as api:
        r = await api.post("/api/v1/jobs", json=_body(timezone="localtime"))
        assert r.status_code == 422, r.text
        assert "timezone" in r.text
        assert (await api.get("/api/v1/jobs/tz-local")).status_code == 404
        assert (await api.get("/api/v1/jobs")).json()["items"] == []
        created = await api.post("/api/v1/jobs", json=_body())
        r = await api.patch("/api/v1/jobs/tz-local", json={"timezone": "Factory"})
        assert r.status_code == 422, r.text
        assert (await api.get("/api/v1/jobs/tz-local")).json()["timezone"] == created.json()["timezone"] == "UTC"
    assert supervisor.store.get_job("tz-local").timezone == "UTC"


async def test_a_stored_job_that_no_longer_validates_stays_usable(tmp_path):
    url = f"sqlite:///{tmp_path / 'chronos.db'}"
    first = Supervisor(Store(url))
    await first.start(LocalRuntime(first))
    # Yearly, so this first server claims nothing that the second would resume.
    await first.create_job(parse_job(_body(schedule="0 0 1 1 *")))
    await first.stop()
    first.store.close()
    # As an older release that let "localtime" in would have stored it, per second:
    store = Store(url)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET spec = json_set(spec, '$.timezone', 'localtime', '$.schedule', '* * * * * *')"))
    sup = Supervisor(store)
    runtime = LocalRuntime(sup)
    await sup.start(runtime)
    try:
        async with await _client(sup) as api:
            listed = (await api.get("/api/v1/jobs")).json()["items"]
            assert [j["name"] for j in listed] == ["tz-local"]
            job = (await api.get("/api/v1/jobs/tz-local")).json()
            assert job["timezone"] == "localtime" and "IANA time zone" in job["problem"]
            assert job["next_run"] is None
            (host,) = runtime.hosts.values()
            runner = next(iter(host.runners.values()))
            await asyncio.sleep(1.5)  # a per-second job: it would have fired by now
            assert runner._timer is not None and not runner._timer.done(), "its timer died"
            assert runner.running == {}
            fixed = await api.patch("/api/v1/jobs/tz-local", json={"timezone": "UTC"})
            assert fixed.status_code == 200, fixed.text
            assert "problem" not in fixed.json() and fixed.json()["next_run"] is not None
            assert (await api.delete("/api/v1/jobs/tz-local")).status_code == 204
    finally:
        await sup.stop()
        store.close()
