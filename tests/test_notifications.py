"""Notifications: what the notifier decides (pure, on made-up executions), and a real supervisor
(real SQLite, hosts in this process, receivers on 127.0.0.1) telling targets of failures,
recoveries and missed slots -- and never firing a job later because a target is down."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import statistics
import time
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook as Verifier

from chronos.errors import ValidationError
from chronos.models import (
    Execution,
    ExecutionStatus,
    Job,
    NotifyTarget,
    RetryPolicy,
    Trigger,
    check_resolved,
    keep_secrets,
    mask_url,
    parse_job,
    utcnow,
)
from chronos.notifier import Notifier
from chronos.local_runtime import LocalRuntime
from chronos.signing import generate_secret
from chronos.store import Store
from chronos.supervisor import Supervisor
from receiver import Receiver

SLACK = "https://hooks.slack.com/services/T0000/B0000/S3CRETslackpath"


def job_with(*targets: dict[str, Any], **extra: Any) -> Job:
    spec = {"name": "nightly", "schedule": "@every 1m", "webhook": {"url": "http://127.0.0.1:9/"},
            "notify": list(targets), **extra}
    return Job(**parse_job(spec).model_dump())


def run(job: Job, status: ExecutionStatus, **extra: Any) -> Execution:
    return Execution(job_id=job.id, job_name=job.name, scheduled_at=utcnow(), status=status, **extra)


def told(notifier: Notifier, job: Job, statuses: list[ExecutionStatus]) -> list[str]:
    return [n.event.value for s in statuses for n in notifier.decide(job, run(job, s))]


F, T, S = ExecutionStatus.failed, ExecutionStatus.timeout, ExecutionStatus.success

# ---------------------------------------------------------------- deciding


def test_by_default_a_target_hears_of_state_changes_not_of_every_failure():
    job = job_with({"url": "http://127.0.0.1:9/n"})
    assert told(Notifier(), job, [F] * 30 + [S, S, F, T, S]) == ["failed", "recovered", "failed", "recovered"]


def test_mode_every_hears_every_listed_outcome_and_the_recovery():
    job = job_with({"url": "http://127.0.0.1:9/n", "mode": "every", "events": ["failed", "recovered", "succeeded"]})
    assert told(Notifier(), job, [S, F, F, T, S, S]) == ["succeeded", "failed", "failed", "recovered", "succeeded"]


def test_succeeded_without_recovered_is_told_on_the_change_only():
    job = job_with({"url": "http://127.0.0.1:9/n", "events": ["succeeded", "failed"]})
    assert told(Notifier(), job, [S, F, F, S, S]) == ["failed", "succeeded"]


def test_the_state_survives_a_restart_through_the_stored_last_status():
    job = job_with({"url": "http://127.0.0.1:9/n"}).model_copy(update={"last_status": F})
    notifier = Notifier()
    notifier.seed([job])
    assert told(notifier, job, [F, F, S]) == ["recovered"]  # it was failing already: no second "failed"


def test_missed_slots_and_cancellations():
    job = job_with({"url": "http://127.0.0.1:9/n"})
    notifier = Notifier()
    missed = run(job, ExecutionStatus.skipped, trigger=Trigger.catchup, missed_slots=7, reason="7 run(s) missed while down")
    skipped = run(job, ExecutionStatus.skipped, reason="concurrency: forbid")
    assert [n.event.value for n in notifier.decide(job, missed)] == ["missed"]
    assert notifier.decide(job, skipped) == [] and notifier.decide(job, run(job, ExecutionStatus.cancelled)) == []
    assert json.loads(notifier.decide(job, missed)[0].body)["execution"]["missed_slots"] == 7


def test_server_targets_hear_every_job_and_each_target_gets_at_most_one_message():
    job = job_with({"url": "http://127.0.0.1:9/own", "events": ["failed", "timeout"]})
    server = NotifyTarget(url=SLACK, format="slack", mode="every")
    notices = Notifier([server]).decide(job, run(job, T, error="timed out after 5s"))
    assert [(n.target.url, n.event.value) for n in notices] == [("http://127.0.0.1:9/own", "timeout"), (SLACK, "timeout")]


def test_the_json_event_and_the_slack_message():
    job = job_with({"url": "http://127.0.0.1:9/j"}, {"url": SLACK, "format": "slack"})
    e = run(job, F, status_code=503, error="HTTP 503", attempts=[], started_at=utcnow())
    as_json, as_slack = Notifier(public_url="https://chronos.example.com/").decide(job, e)
    event = json.loads(as_json.body)
    assert event["type"] == "chronos.job.failed" and event["job"] == {"id": str(job.id), "name": "nightly"}
    assert event["execution"]["id"] == str(e.id) and event["execution"]["status"] == "failed"
    assert event["execution"]["status_code"] == 503 and event["execution"]["error"] == "HTTP 503"
    assert event["execution"]["scheduled_at"].endswith("Z")
    assert event["link"] == f"https://chronos.example.com/api/v1/jobs/nightly/executions/{e.id}"
    text = json.loads(as_slack.body)["text"]
    assert text.startswith(":x: Chronos job *nightly* failed after 0 attempt(s): HTTP 503")
    assert f"<{event['link']}|execution>" in text
    assert as_json.id != as_slack.id  # one id per (execution, event, target): stable, whoever decides it
    assert as_json.id == Notifier().decide(job, e)[0].id


# ---------------------------------------------------------------- validation and secrecy


@pytest.mark.parametrize(
    "target, field, says",
    [
        ({"url": "ftp://x"}, "notify.0.url", "http:// or https://"),
        ({"url": "http://127.0.0.1/", "events": ["exploded"]}, "notify.0.events.0", "failed"),
        ({"url": "http://127.0.0.1/", "events": []}, "notify.0.events", "at least 1"),
        ({"url": "http://127.0.0.1/", "format": "teams"}, "notify.0.format", "json"),
        ({"url": "http://127.0.0.1/", "mode": "sometimes"}, "notify.0.mode", "change"),
        ({"url": "http://127.0.0.1/", "when": "always"}, "notify.0.when", "not a known field"),
    ],
)
def test_bad_targets_are_refused_naming_the_field(target, field, says):
    with pytest.raises(ValidationError) as info:
        job_with(target)
    assert field in [e["field"] for e in info.value.errors] and says in str(info.value), str(info.value)


def test_at_most_ten_targets():
    with pytest.raises(ValidationError, match="notify: at most 10 notification targets"):
        job_with(*[{"url": f"http://127.0.0.1/{i}"} for i in range(11)])


def test_a_targets_url_reads_back_masked_and_the_mask_keeps_it():
    job = job_with({"url": SLACK, "format": "slack"}, {"url": "http://127.0.0.1:9/"})
    shown = job.public()["notify"]
    assert [t["url"] for t in shown] == ["https://hooks.slack.com/***", "http://127.0.0.1:9/"]
    assert "S3CRET" not in repr(job) and "S3CRET" not in repr(job.notify) and "S3CRET" not in json.dumps(shown)
    def echoed() -> dict[str, Any]:  # what a client sends back after reading the job
        return {**job.spec().model_dump(mode="json"), "notify": copy.deepcopy(shown)}

    assert check_resolved(parse_job(keep_secrets(echoed(), job))).notify[0].url == SLACK
    with pytest.raises(ValidationError, match="notify.0.url: a masked URL keeps the stored URL"):
        check_resolved(parse_job(keep_secrets(echoed(), job_with())))  # nothing stored to keep
    assert mask_url("https://example.com") == "https://example.com"


# ---------------------------------------------------------------- a real supervisor


@asynccontextmanager
async def supervisor_over(db: str, **options: Any):
    sup = Supervisor(Store(db), **options)
    await sup.start(LocalRuntime(sup))
    try:
        yield sup
    finally:
        await sup.stop()
        sup.store.close()


def sample(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


async def wait_until(predicate, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()


async def test_failing_every_second_tells_once_then_once_when_it_recovers(tmp_path):
    """A job fails every second for 12 s: each target hears one "failed"; once it heals, one
    "recovered". The json target's requests verify with the job's signing secret."""
    secret = generate_secret()
    async with Receiver() as receiver, supervisor_over(f"sqlite:///{tmp_path / 'c.db'}") as sup:
        receiver.route("/job", status=500)
        spec = {"name": "flaky", "schedule": "*/1 * * * * *", "retry_policy": {"max_attempts": 1},
                "webhook": {"url": receiver.url("/job"), "signing_secret": secret},
                "notify": [{"url": receiver.url("/json")}, {"url": receiver.url("/slack"), "format": "slack"}]}
        await sup.create_job(parse_job(spec))
        await receiver.wait_for(12, timeout=30, path="/job")
        receiver.route("/job", status=200)
        assert await wait_until(lambda: len(receiver.requests_for("/json")) >= 2, timeout=15)
        await asyncio.sleep(3)  # more successes: still nothing more to say
        failures = sum(1 for r in receiver.requests_for("/job"))
        events = [r.json()["event"] for r in receiver.requests_for("/json")]
        slack = [r.json()["text"] for r in receiver.requests_for("/slack")]
        metrics = (await sup.metrics()).decode()
    assert failures >= 12 and events == ["failed", "recovered"], events
    assert len(slack) == 2 and "*flaky* failed after 1 attempt(s): HTTP 500" in slack[0] and "recovered" in slack[1]
    for request in receiver.requests_for("/json") + receiver.requests_for("/slack"):
        Verifier(secret).verify(request.body, dict(request.headers))
    failed = receiver.requests_for("/json")[0].json()
    assert failed["execution"]["status"] == "failed" and failed["execution"]["status_code"] == 500
    assert sample(metrics, "chronos_notifications_total", event="failed", outcome="sent") == 2
    assert sample(metrics, "chronos_notifications_total", event="recovered", outcome="sent") == 2


async def test_a_restart_that_skipped_slots_tells_missed(tmp_path):
    db = f"sqlite:///{tmp_path / 'c.db'}"
    async with Receiver() as receiver:
        async with supervisor_over(db) as sup:
            spec = {"name": "ticker", "schedule": "*/1 * * * * *", "webhook": {"url": receiver.url("/tick")},
                    "notify": [{"url": receiver.url("/notify"), "events": ["missed"]}]}
            await sup.create_job(parse_job(spec))
            await receiver.wait_for(1, timeout=10, path="/tick")
        await asyncio.sleep(9)  # down longer than LATE_GRACE (5 s): slots are missed, not just late
        async with supervisor_over(db) as sup:
            (hit,) = await receiver.wait_for(1, timeout=15, path="/notify")
    event = hit.json()
    assert event["event"] == "missed" and event["execution"]["missed_slots"] >= 2, event
    assert event["execution"]["trigger"] == "catchup" and "missed" in event["execution"]["reason"]


async def test_a_down_target_does_not_make_the_job_late(tmp_path, caplog):
    """Every run fails and is told (mode every) to a target that never answers. Each fire's
    lateness (arrival at the receiver minus its scheduled second) stays what it is without
    notifications; the undeliverable notices end counted and logged (without the URL's path)."""
    caplog.set_level(logging.WARNING, logger="chronos.outbox")
    quick = RetryPolicy(max_attempts=2, initial_interval=timedelta(seconds=0.5))
    async with Receiver() as receiver, supervisor_over(
        f"sqlite:///{tmp_path / 'c.db'}", delivery_policy=quick, delivery_timeout=1.5
    ) as sup:
        receiver.route("/job", status=500)
        receiver.route("/hang/S3CRETpath", delay=3600)
        spec = {"name": "late-or-not", "schedule": "*/1 * * * * *", "retry_policy": {"max_attempts": 1},
                "webhook": {"url": receiver.url("/job")},
                "notify": [{"url": receiver.url("/hang/S3CRETpath"), "mode": "every"}]}
        await sup.create_job(parse_job(spec))
        hits = await receiver.wait_for(10, timeout=30, path="/job")
        assert await wait_until(lambda: undelivered(sup) >= 3, timeout=15)
        hung = len(receiver.requests_for("/hang/S3CRETpath"))
    lateness = [h.time - datetime.fromisoformat(h.headers["X-Chronos-Scheduled-Time"].replace("Z", "+00:00")).timestamp()
                for h in hits[1:]]  # the first fire may be a catch-up of the creation second
    print(f"lateness over {len(lateness)} fires: median {statistics.median(lateness) * 1000:.0f} ms, "
          f"max {max(lateness) * 1000:.0f} ms; {hung} notification requests hung")
    assert hung >= 5  # the target really was being called, and hanging, while the job fired
    assert statistics.median(lateness) < 0.25 and max(lateness) < 0.75, lateness
    logged = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert logged and "job late-or-not, event failed" in logged[0] and "timed out" in logged[0]
    assert all("S3CRET" not in line for line in logged)


def undelivered(sup: Supervisor) -> float:
    value = sup.stats.registry.get_sample_value("chronos_notifications_total", {"event": "failed", "outcome": "failed"})
    return value or 0.0


def test_server_targets_come_from_the_environment_and_never_show(monkeypatch):
    from chronos.settings import load_settings

    monkeypatch.setenv("CHRONOS_CONFIG", "/nonexistent.yaml")
    monkeypatch.setenv("CHRONOS_NOTIFY", json.dumps([{"url": SLACK, "format": "slack", "events": ["failed", "recovered"]}]))
    settings = load_settings()
    assert settings.notify[0].url == SLACK and settings.notify[0].format.value == "slack"
    assert "S3CRET" not in repr(settings) and settings.link_base == "http://127.0.0.1:8080"
    monkeypatch.setenv("CHRONOS_NOTIFY", json.dumps([{"url": SLACK, "events": ["boom"]}]))
    with pytest.raises(Exception, match="notify"):
        load_settings()
