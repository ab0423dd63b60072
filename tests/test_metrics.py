"""Every metric measures what it claims.

First against the supervisor in-process (a real SQLite file, hosts in this
process), fed reports as hosts send them: repeated, late, final at once. Then
end to end: a real ``chronos serve`` started over a store a stopped server
left (slots missed), receivers on 127.0.0.1, a known
workload, each series moved by the expected amount, and one scrape by a real
Prometheus server whose lag quantile is a number."""

from __future__ import annotations

import math
import time
from collections import Counter
from datetime import datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chronos.models import Attempt, Execution, ExecutionStatus, Job, Trigger, parse_job, utcnow
from chronos.store import Store
from prometheus_server import PrometheusServer
from receiver import Receiver, ThreadedReceiver
from server import Server

NEVER = "0 0 1 1 *"  # once a year: no timer fires during a test


def value(text: str | bytes, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
    text = text.decode() if isinstance(text, bytes) else text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


LAG = "chronos_schedule_lag_seconds_count"


async def create(sup, name: str, url: str = "http://127.0.0.1:9/"):
    return await sup.create_job(parse_job({"name": name, "schedule": NEVER, "webhook": {"url": url}, "timeout": "1m"}))


def execution(job, trigger: Trigger = Trigger.scheduled, late: float = 0.5, **fields) -> Execution:
    at = utcnow() - timedelta(seconds=late)
    return Execution(job_id=job.id, job_name=job.name, trigger=trigger, scheduled_at=at, **fields)


def started(e: Execution, status: ExecutionStatus, *codes: int) -> Execution:
    """``e`` as reported with ``status``, started 0.25 s after its slot, with one attempt per code."""
    began = e.started_at or e.scheduled_at + timedelta(seconds=0.25)
    attempts = [Attempt(number=n, started_at=began, status_code=c) for n, c in enumerate(codes, 1)]
    finished = {"finished_at": began + timedelta(seconds=1), "duration": 1.0} if status.final else {}
    return e.model_copy(update={"status": status, "started_at": began, "attempts": attempts, **finished})


async def test_lag_is_observed_once_from_whichever_report_first_carries_the_start(supervisor):
    job = await create(supervisor, "lagging")
    fast, slow, manual = execution(job), execution(job, late=2), execution(job, Trigger.manual)
    assert await supervisor.claim([fast, slow, manual]) == [True, True, True]
    # Finished within one report flush: the host reports it once, already final.
    await supervisor.report([started(fast, ExecutionStatus.success, 200)])
    text = await supervisor.metrics()
    assert value(text, LAG, trigger="scheduled") == 1
    assert value(text, "chronos_schedule_lag_seconds_sum") == pytest.approx(0.25, abs=0.01)
    # A retried flush repeats it, a late running report follows it: nothing moves.
    await supervisor.report([started(fast, ExecutionStatus.success, 200)])
    await supervisor.report([started(fast, ExecutionStatus.running)])
    # Reported running, then final: observed at the first report only.
    await supervisor.report([started(slow, ExecutionStatus.running)])
    await supervisor.report([started(slow, ExecutionStatus.failed, 500)])
    await supervisor.report([started(manual, ExecutionStatus.success, 200)])  # manual runs have no schedule to lag
    text = await supervisor.metrics()
    assert value(text, LAG) == 2
    assert value(text, "chronos_executions_total", status="success") == 2
    assert value(text, "chronos_executions_total", status="failed") == 1
    assert value(text, "chronos_execution_duration_seconds_count") == 3


async def test_catch_up_lag_is_labelled_and_a_run_that_never_started_has_none(supervisor):
    job = await create(supervisor, "catching-up")
    catchup, skipped = execution(job, Trigger.catchup, late=120), execution(job)
    await supervisor.claim([catchup, skipped])
    await supervisor.report([started(catchup, ExecutionStatus.success, 200)])
    await supervisor.report([skipped.model_copy(update={"status": ExecutionStatus.skipped, "reason": "forbid"})])
    text = await supervisor.metrics()
    assert (value(text, LAG, trigger="catchup"), value(text, LAG, trigger="scheduled")) == (1, 0)
    assert value(text, "chronos_schedule_lag_seconds_sum", trigger="catchup") == pytest.approx(0.25, abs=0.01)
    assert value(text, "chronos_executions_total", status="skipped") == 1


async def test_attempts_and_missed_runs_count_once_across_retried_reports_and_claims(supervisor):
    job = await create(supervisor, "retrying")
    e = execution(job)
    await supervisor.claim([e])
    retrying = started(e, ExecutionStatus.running, 503)
    await supervisor.report([retrying])
    await supervisor.report([retrying])  # the host's flush retried: the same report twice
    await supervisor.report([started(e, ExecutionStatus.success, 503, 200)])
    # A missed-runs summary is final when claimed; a claim whose reply was lost is retried.
    summary = execution(job, Trigger.catchup, late=600, status=ExecutionStatus.skipped, missed_slots=7, reason="down")
    assert await supervisor.claim([summary]) == [True]
    assert await supervisor.claim([summary]) == [True]  # still ours, not counted again
    text = await supervisor.metrics()
    assert (value(text, "chronos_webhook_attempts_total", outcome="5xx"), value(text, "chronos_webhook_attempts_total", outcome="2xx")) == (1, 1)
    assert value(text, "chronos_missed_runs_total") == 7
    assert value(text, "chronos_executions_total", status="skipped") == 1


async def test_the_running_gauge_is_what_the_store_holds_across_a_supervisor_restart(make_supervisor):
    async with Receiver() as receiver:
        receiver.route("/hang", delay=math.inf)  # resumed runs stay running
        first = await make_supervisor()
        job = await create(first, "long", receiver.url("/hang"))
        runs = [execution(job, late=i) for i in (1, 2, 3)]
        await first.claim(runs)
        await first.report([started(e, ExecutionStatus.running) for e in runs])
        await first.report([started(runs[0], ExecutionStatus.success, 200)])
        assert value(await first.metrics(), "chronos_executions_running") == 2
        await first.stop()
        second = await make_supervisor()  # has seen none of them start
        assert value(await second.metrics(), "chronos_executions_running") == 2
        await second.delete_job("long")  # its running rows go with it
        assert value(await second.metrics(), "chronos_executions_running") == 0


async def test_job_labels_are_opt_in(make_supervisor):
    sup = await make_supervisor(metrics_job_labels=True)
    job = await create(sup, "labelled")
    e = execution(job)
    await sup.claim([e])
    await sup.report([started(e, ExecutionStatus.failed, 500)])
    text = await sup.metrics()
    for name, labels in [
        ("chronos_executions_total", {"status": "failed"}),
        ("chronos_webhook_attempts_total", {"outcome": "5xx"}),
        (LAG, {"trigger": "scheduled"}),
        ("chronos_execution_duration_seconds_count", {}),
    ]:
        assert value(text, name, job="labelled", **labels) == 1, name
    assert not [s for f in text_string_to_metric_families(text.decode()) for s in f.samples
                if s.name.startswith("chronos_executions_total") and "job" not in s.labels]


async def test_without_the_option_no_series_carries_a_job_label(supervisor):
    job = await create(supervisor, "plain")
    e = execution(job)
    await supervisor.claim([e])
    await supervisor.report([started(e, ExecutionStatus.success, 200)])
    text = (await supervisor.metrics()).decode()
    assert value(text, "chronos_executions_total", status="success") == 1
    assert not [s for f in text_string_to_metric_families(text) for s in f.samples if "job" in s.labels]


# ---------------------------------------------------------------- end to end


def api_metrics(server) -> str:
    return httpx.get(f"{server.url}/metrics", timeout=10).text


def until(check, timeout: float = 60.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what or check}")


class Api:
    def __init__(self, server):
        self.base = f"{server.url}/api/v1"

    def create(self, name: str, url: str, schedule: str = NEVER, **spec) -> None:
        r = httpx.post(f"{self.base}/jobs", json={"name": name, "schedule": schedule, "webhook": {"url": url}, **spec})
        assert r.status_code == 201, r.text

    def post(self, path: str) -> dict:
        r = httpx.post(f"{self.base}{path}", timeout=30)
        assert r.status_code < 300, r.text
        return r.json()

    def executions(self, job: str) -> list[dict]:
        items, cursor = [], None
        while True:
            params = {"limit": 500, **({"cursor": cursor} if cursor else {})}  # an empty cursor is not a cursor
            page = httpx.get(f"{self.base}/jobs/{job}/executions", params=params).json()
            items += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    def settled(self, *jobs: str) -> bool:
        return all(e["status"] not in ("pending", "running") for job in jobs for e in self.executions(job))


def _at(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def expected_from_history(executions: list[dict], since: datetime) -> dict[tuple, float]:
    """What the execution metrics must say after a restart at ``since``: the
    history the store holds, as this life of the server wrote it."""
    out: dict[tuple, float] = Counter()
    for e in executions:
        finished, begun = _at(e["finished_at"]), _at(e["started_at"])
        if e["status"] not in ("pending", "running") and finished and finished > since:
            out[("chronos_executions_total", "status", e["status"])] += 1
            out[("chronos_execution_duration_seconds_count",)] += e["duration"] is not None
            out[("chronos_missed_runs_total",)] += e["missed_slots"] or 0
        if begun and begun > since and e["trigger"] != "manual":
            out[(LAG, "trigger", e["trigger"])] += 1
        for a in e["attempts"]:
            if _at(a["started_at"]) > since:
                code = a["status_code"]
                kind = f"{code // 100}xx" if code else "timeout" if "timed out" in (a["error"] or "") else "error"
                out[("chronos_webhook_attempts_total", "outcome", kind)] += 1
    return out


def scraped(text: str, keys) -> dict[tuple, float]:
    return {key: value(text, key[0], **dict(zip(key[1::2], key[2::2]))) for key in keys}


@pytest.mark.e2e  # one server start: 55-147 s here on 2 cores shared with 5 busy agents
def test_every_series_moves_as_the_workload_says_and_prometheus_computes_the_lag_p99(tmp_path):
    with ThreadedReceiver() as receiver:
        receiver.route("/ok", status=200)
        receiver.route("/flaky", sequence=[503, 200])
        receiver.route("/fail", status=500)
        receiver.route("/slow", delay=5)
        receiver.route("/busy", delay=1.5)
        receiver.route("/hang", delay=math.inf)
        data = tmp_path / "data"
        since = _left_by_a_server_that_stopped(data, receiver.url("/ok"))
        server = Server(data, env={"CHRONOS_PLACEMENT": "pooled", "CHRONOS_POOL_SIZE": "1"})
        prometheus = PrometheusServer(tmp_path / "prometheus", targets=[f"127.0.0.1:{server.port}"])
        try:
            with prometheus as prom:
                server.start()
                api = Api(server)
                _workload(server, api, receiver)
                history = [e for job in JOBS for e in api.executions(job)]
                expected = expected_from_history(history, since)
                # The restart missed slots: a summary was recorded and counted, and a catch-up ran.
                assert expected[("chronos_missed_runs_total",)] >= 1
                assert expected[("chronos_executions_total", "status", "skipped")] >= 2  # missed + forbid
                assert expected[(LAG, "trigger", "scheduled")] >= 3 and expected[(LAG, "trigger", "catchup")] >= 1
                keys = set(expected) | {(LAG, "trigger", "catchup"), ("chronos_executions_total", "status", "cancelled")}
                assert scraped(api_metrics(server), keys) == {k: expected.get(k, 0) for k in keys}
                lag = 'sum by (le) (rate(chronos_schedule_lag_seconds_bucket{trigger="scheduled"}[5m]))'
                (result,) = prom.wait_for(f"histogram_quantile(0.99, {lag})")
                assert 0 <= float(result["value"][1]) <= 60  # the top bucket bounds it
        finally:
            server.stop()


def _left_by_a_server_that_stopped(data, url: str) -> datetime:
    """The store as a server leaves it that ran a per-second job until 30 s
    ago: the next start finds slots missed. (Seeded rather than run: a start
    of ``chronos serve`` is most of this test's time.) Returns when it stopped."""
    now = utcnow()
    store = Store(f"sqlite:///{data / 'chronos.db'}")
    try:
        store.create_schema()
        job = store.insert_job(Job(**parse_job({"name": "ticker", "schedule": "@every 1s", "webhook": {"url": url}}).model_dump(),
                                   created_at=now - timedelta(minutes=1), anchor=now - timedelta(minutes=1)))
        last = now - timedelta(seconds=30)
        done = {"status": ExecutionStatus.success, "started_at": last, "finished_at": last, "duration": 0.01,
                "attempts": [Attempt(number=1, started_at=last, status_code=200)]}
        store.save_executions([Execution(job_id=job.id, job_name=job.name, scheduled_at=last, **done)])
    finally:
        store.close()
    return now


JOBS = ("ticker", "busy", "flaky", "failing", "slow", "hang")


def _workload(server, api: Api, receiver: ThreadedReceiver) -> None:
    # A skipped slot under forbid: each run takes 1.5 s, due every second.
    api.create("busy", receiver.url("/busy"), "@every 1s", timeout="10s")
    until(lambda: any(e["status"] == "skipped" for e in api.executions("busy")), what="a slot skipped by forbid")
    for job in ("ticker", "busy"):
        api.post(f"/jobs/{job}/disable")
    until(lambda: api.settled("ticker", "busy"), what="the timers to settle")

    # Nothing fires now but what the test triggers: each series must move by exactly this.
    api.create("flaky", receiver.url("/flaky"), retry_policy={"max_attempts": 3, "initial_interval": "1s"})
    api.create("failing", receiver.url("/fail"), retry_policy={"max_attempts": 2, "initial_interval": "1s"})
    api.create("slow", receiver.url("/slow"), timeout="1s", retry_policy={"max_attempts": 1})
    api.create("hang", receiver.url("/hang"), timeout="1m")
    before = api_metrics(server)
    for job in ("flaky", "failing", "slow"):
        api.post(f"/jobs/{job}/trigger")
    until(lambda: api.settled("flaky", "failing", "slow") and len(api.executions("slow")) == 1, what="the manual runs")
    for _ in range(3):
        assert httpx.get(f"{api.base}/jobs/no-such-job").status_code == 404
        assert httpx.post(f"{api.base}/jobs", json={"name": "Not A Name"}).status_code == 422
    after = api_metrics(server)
    moved = {
        ("chronos_executions_total", "status", "success"): 1,  # flaky, at its second attempt
        ("chronos_executions_total", "status", "failed"): 1,
        ("chronos_executions_total", "status", "timeout"): 1,
        ("chronos_webhook_attempts_total", "outcome", "5xx"): 3,
        ("chronos_webhook_attempts_total", "outcome", "2xx"): 1,
        ("chronos_webhook_attempts_total", "outcome", "timeout"): 1,
        ("chronos_execution_duration_seconds_count",): 3,
        (LAG,): 0,  # manual runs
        ("chronos_missed_runs_total",): 0,
        ("chronos_api_requests_total", "route", "/api/v1/jobs/{ref}", "status", "404"): 3,
        ("chronos_api_requests_total", "route", "/api/v1/jobs", "status", "422"): 3,
        ("chronos_api_requests_total", "route", "/api/v1/jobs/{ref}/trigger", "status", "202"): 3,
    }
    start, end = scraped(before, moved), scraped(after, moved)
    assert {k: end[k] - start[k] for k in moved} == moved
    assert (value(after, "chronos_jobs_total"), value(after, "chronos_jobs_enabled")) == (6, 4)

    # The running gauge follows what the store holds as running.
    assert value(after, "chronos_executions_running") == 0
    hung = api.post("/jobs/hang/trigger")
    until(lambda: api.executions("hang")[0]["status"] == "running", what="the hanging run to start")
    assert value(api_metrics(server), "chronos_executions_running") == 1
    api.post(f"/jobs/hang/executions/{hung['id']}/cancel")
    assert value(api_metrics(server), "chronos_executions_running") == 0
