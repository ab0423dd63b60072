"""Every metric measures what it claims.

First against the supervisor in-process (a real SQLite file, hosts in this
process), fed reports as hosts send them: repeated, late, final at once. Then
end to end: a real ``chronos serve``, receivers on 127.0.0.1, a known
workload, each series moved by the expected amount, and one scrape by a real
Prometheus server whose lag quantile is a number."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chronos.models import Attempt, Execution, ExecutionStatus, Trigger, parse_job, utcnow
from receiver import Receiver

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
