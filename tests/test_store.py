"""The store contract, run on SQLite and (with CHRONOS_TEST_POSTGRES_URL) PostgreSQL."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, text

import chronos.schedules
from chronos.errors import DuplicateJob, ExecutionNotFound, InvalidSchedule, JobNotFound, Unavailable, ValidationError
from chronos.models import Attempt, Execution, ExecutionStatus, Job, Trigger
from chronos.store import SCHEMA_VERSION, Store

from stored import count_jobs

UTC = timezone.utc
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _schedule_parser(monkeypatch):
    # chronos.schedules is written in parallel; while it is a placeholder, accept any
    # schedule so that Job models can be built. Once it parses cron, this does nothing.
    try:
        chronos.schedules.parse_schedule("*/5 * * * *")
    except (InvalidSchedule, NotImplementedError):
        monkeypatch.setattr(chronos.schedules, "parse_schedule", lambda *a, **k: None)


def make_job(name: str, **kw) -> Job:
    kw.setdefault("schedule", "*/5 * * * *")
    kw.setdefault("webhook", {"url": "http://127.0.0.1:9/hook"})
    return Job(name=name, **kw)


def make_execution(job: Job, at: datetime, **kw) -> Execution:
    return Execution(job_id=job.id, job_name=job.name, scheduled_at=at, **kw)


def count(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def assert_utc(value: datetime) -> None:
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0), value


# ---------------------------------------------------------------- schema


def test_schema_version_recorded_and_second_create_is_a_noop(store):
    assert store.schema_version() == SCHEMA_VERSION == 1
    job = store.insert_job(make_job("kept"))
    store.create_schema()
    assert store.schema_version() == 1
    assert store.get_job("kept") == job


def test_schema_version_mismatch_is_refused(store):
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE chronos_meta SET value = '99' WHERE key = 'schema_version'"))
    with pytest.raises(Unavailable, match="schema version 99"):
        store.create_schema()


# ---------------------------------------------------------------- jobs


def test_insert_and_get_by_name_and_by_id(store):
    job = make_job(
        "backup-db",
        description="Nightly backup",
        timezone="Europe/Berlin",
        webhook={
            "url": "https://127.0.0.1:8443/backup",
            "method": "POST",
            "body": '{"full": true}',
            "headers": {"X-Api-Key": "s3cret"},
            "auth": {"type": "bearer", "token": "tok"},
            "success_codes": [200, 202],
        },
        retry_policy={"max_attempts": 5, "initial_interval": "10s", "max_interval": "5m"},
        timeout="1h30m",
        tags={"team": "ops"},
    )
    stored = store.insert_job(job)
    assert stored == job  # secrets included: the dispatcher needs them
    assert store.get_job("backup-db") == job
    assert store.get_job(job.id) == job
    assert store.get_job(str(job.id)) == job
    for field in ("created_at", "updated_at", "anchor"):
        assert_utc(getattr(store.get_job(job.id), field))


def test_get_unknown_job_names_the_ref(store):
    with pytest.raises(JobNotFound, match='"nope"'):
        store.get_job("nope")
    missing = uuid.uuid4()
    with pytest.raises(JobNotFound, match=str(missing)):
        store.get_job(missing)


def test_a_name_that_looks_like_a_uuid_still_resolves(store):
    name = str(uuid.uuid4())  # kebab-case hex: a valid job name
    job = store.insert_job(make_job(name))
    assert store.get_job(name).id == job.id


def test_duplicate_name_is_refused(store):
    store.insert_job(make_job("dup"))
    with pytest.raises(DuplicateJob, match='"dup"') as err:
        store.insert_job(make_job("dup"))
    assert err.value.errors[0]["field"] == "name"
    assert count_jobs(store) == (1, 1)


def test_update_replaces_and_renames(store):
    job = store.insert_job(make_job("old-name", tags={"a": "1"}))
    changed = job.model_copy(
        update={"name": "new-name", "description": "renamed", "tags": {"b": "2"}, "updated_at": T0}
    )
    assert store.update_job(changed) == changed
    assert store.get_job("new-name") == changed
    with pytest.raises(JobNotFound):
        store.get_job("old-name")
    assert store.list_jobs(tags={"a": "1"})[0] == []
    assert [j.name for j in store.list_jobs(tags={"b": "2"})[0]] == ["new-name"]


def test_rename_onto_a_taken_name_is_refused(store):
    store.insert_job(make_job("taken"))
    job = store.insert_job(make_job("mine"))
    with pytest.raises(DuplicateJob, match='"taken"'):
        store.update_job(job.model_copy(update={"name": "taken"}))
    assert store.get_job(job.id).name == "mine"


def test_update_unknown_job(store):
    with pytest.raises(JobNotFound):
        store.update_job(make_job("ghost"))


def test_delete_cascades_to_executions_and_attempts(store):
    doomed = store.insert_job(make_job("doomed"))
    other = store.insert_job(make_job("other"))
    attempt = Attempt(number=1, started_at=T0, status_code=500)
    runs = [make_execution(doomed, T0 + timedelta(minutes=i), attempts=[attempt]) for i in range(3)]
    store.save_executions([*runs, make_execution(other, T0, attempts=[attempt])])
    assert (count(store, "executions"), count(store, "attempts")) == (4, 4)

    store.delete_job(doomed.id)

    assert (count(store, "executions"), count(store, "attempts")) == (1, 1)
    with pytest.raises(JobNotFound):
        store.get_job(doomed.id)
    with pytest.raises(ExecutionNotFound):
        store.get_execution(doomed.id, runs[0].id)
    assert len(store.list_executions(other.id)[0]) == 1
    with pytest.raises(JobNotFound):
        store.delete_job(doomed.id)


def test_list_filters(store):
    store.insert_job(make_job("api-health", description="Ping the API", tags={"team": "web", "env": "prod"}))
    store.insert_job(make_job("db-backup", description="Nightly BACKUP 100%", tags={"team": "ops", "env": "prod"}))
    store.insert_job(make_job("web-report", tags={"team": "web", "env": "dev"}, enabled=False))
    store.insert_job(make_job("odd-tags", tags={"app.kubernetes.io/name": "x", 'we"ird': "y"}))

    def names(**kw):
        jobs, cursor = store.list_jobs(**kw)
        assert cursor is None
        return [j.name for j in jobs]

    assert names() == ["api-health", "db-backup", "odd-tags", "web-report"]
    assert names(enabled=True) == ["api-health", "db-backup", "odd-tags"]
    assert names(enabled=False) == ["web-report"]
    assert names(tags={"team": "web"}) == ["api-health", "web-report"]
    assert names(tags={"team": "web", "env": "prod"}) == ["api-health"]
    assert names(tags={"team": "nobody"}) == []
    assert names(tags={"app.kubernetes.io/name": "x", 'we"ird': "y"}) == ["odd-tags"]
    assert names(search="API") == ["api-health"]  # name or description, any case
    assert names(search="backup") == ["db-backup"]
    assert names(search="nightly") == ["db-backup"]
    assert names(search="100%") == ["db-backup"]  # LIKE wildcards are literal
    assert names(search="_") == []
    assert names(search="web", enabled=False, tags={"env": "dev"}) == ["web-report"]


def test_list_pages_with_a_cursor(store):
    # Byte order on both backends: "a-c" sorts before "ab" ("-" < "b").
    wanted = sorted(["ab", "a-c", *(f"job-{i:02d}" for i in range(8))])
    assert wanted[:2] == ["a-c", "ab"]
    for name in reversed(wanted):
        store.insert_job(make_job(name))
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = store.list_jobs(limit=3, cursor=cursor)
        seen += [j.name for j in page]
        pages += 1
        if cursor is None:
            break
        assert isinstance(cursor, str) and "=" not in cursor
    assert seen == wanted and pages == 4
    # An exact multiple ends without an empty trailing page.
    page, cursor = store.list_jobs(limit=5)
    page, cursor = store.list_jobs(limit=5, cursor=cursor)
    assert len(page) == 5 and cursor is None


@pytest.mark.parametrize("cursor", ["!!!", "A", "Zm9v=", "A" * 85])
def test_invalid_job_cursor(store, cursor):
    with pytest.raises(ValidationError, match="cursor .* is not valid") as err:
        store.list_jobs(cursor=cursor)
    assert err.value.errors[0]["field"] == "cursor"


def test_any_well_formed_cursor_is_a_position(store):
    """The OpenAPI document publishes the cursor pattern: every text it matches is accepted,
    as the place in the order it spells (a forged cursor only moves the page)."""
    for name in ("alpha", "foo-bar", "zulu"):
        store.insert_job(make_job(name))
    assert [j.name for j in store.list_jobs(cursor="Zm9vIGJhcg")[0]] == ["foo-bar", "zulu"]  # after "foo bar"
    assert [j.name for j in store.list_jobs(cursor="")[0]] == ["alpha", "foo-bar", "zulu"]
    assert store.list_jobs(cursor="_" * 84) == ([], None)  # past every name
    assert store.list_jobs(cursor="AAAA")[0]  # NUL bytes are no position PostgreSQL refuses


def test_all_jobs_and_counts(store):
    for name, enabled in [("c", True), ("a", False), ("b", True)]:
        store.insert_job(make_job(name, enabled=enabled))
    assert [j.name for j in store.all_jobs()] == ["a", "b", "c"]
    assert count_jobs(store) == (3, 2)


def test_counts_of_an_empty_store(store):
    assert count_jobs(store) == (0, 0)
    assert store.all_jobs() == []
    assert store.list_jobs() == ([], None)


def test_set_runtime_batch(store):
    a = store.insert_job(make_job("a"))
    b = store.insert_job(make_job("b"))
    berlin = T0.astimezone(ZoneInfo("Europe/Berlin"))
    store.set_runtime(
        [
            (a.id, {"last_run": berlin, "last_status": ExecutionStatus.success}),
            (b.id, {"last_status": "failed"}),
            (uuid.uuid4(), {"last_run": T0}),  # deleted meanwhile: ignored
        ]
    )
    got_a, got_b = store.get_job("a"), store.get_job("b")
    assert got_a.last_run == T0 and got_a.last_run.tzinfo == UTC and got_a.last_run.microsecond == 123456
    assert got_a.last_status is ExecutionStatus.success
    assert got_a.updated_at == a.updated_at  # runtime is not an edit
    assert (got_b.last_run, got_b.last_status) == (None, ExecutionStatus.failed)
    with pytest.raises(ValueError):  # not stored: worked out from the schedule on read
        store.set_runtime([(a.id, {"next_run": None})])
    with pytest.raises(ValueError):
        store.set_runtime([(a.id, {"name": "x"})])
    with pytest.raises(ValueError):
        store.set_runtime([(a.id, {"last_status": "bogus"})])
    assert store.get_job("a").last_status is ExecutionStatus.success



def test_an_update_keeps_the_run_state_a_report_wrote_meanwhile(store):
    """An edit read the job before a run finished; writing it must not undo the report."""
    job = store.insert_job(make_job("edited"))
    store.set_runtime([(job.id, {"last_run": T0, "last_status": ExecutionStatus.failed})])
    updated = store.update_job(job.model_copy(update={"description": "edited while it ran"}))
    assert (updated.last_run, updated.last_status) == (T0, ExecutionStatus.failed)
    got = store.get_job("edited")
    assert got.description == "edited while it ran" and got.last_status is ExecutionStatus.failed

# ---------------------------------------------------------------- claims


def test_claim_twice_inserts_one_row(store):
    job = store.insert_job(make_job("tick"))
    first = make_execution(job, T0)
    rival = make_execution(job, T0)  # another actor, same slot, its own id
    assert store.claim([first]) == [True]
    assert store.claim([rival]) == [False]
    assert store.claim([first]) == [False]
    assert count(store, "executions") == 1
    assert store.list_executions(job.id)[0][0].id == first.id


def test_claim_batch_with_duplicates_and_preclaimed(store):
    job = store.insert_job(make_job("tick"))
    gone = make_job("deleted-meanwhile")
    store.claim([make_execution(job, T0)])
    batch = [
        make_execution(job, T0),  # pre-claimed
        make_execution(job, T0 + timedelta(minutes=1)),
        make_execution(job, T0 + timedelta(minutes=1)),  # duplicate inside the batch
        make_execution(job, T0 + timedelta(minutes=1), trigger=Trigger.manual),  # manual runs never collide
        make_execution(job, T0 + timedelta(microseconds=1)),  # one microsecond later: another slot
        make_execution(job, T0.astimezone(ZoneInfo("Asia/Tokyo"))),  # the same instant, another zone
        make_execution(gone, T0),  # its job does not exist
    ]
    assert store.claim(batch) == [False, True, False, True, True, False, False]
    # A catch-up of a slot a timer already claimed is refused: a slot fires once.
    assert store.claim([make_execution(job, T0 + timedelta(minutes=1), trigger=Trigger.catchup)]) == [False]
    assert count(store, "executions") == 4
    assert store.claim([]) == []


def test_claim_the_same_object_twice_in_one_batch(store):
    job = store.insert_job(make_job("tick"))
    e = make_execution(job, T0, attempts=[Attempt(number=1, started_at=T0)])
    assert store.claim([e, e]) == [True, False]
    assert store.get_execution(job.id, e.id) == e


# ---------------------------------------------------------------- executions


def test_save_executions_upserts_with_attempts(store):
    job = store.insert_job(make_job("hook"))
    e = make_execution(job, T0)
    assert store.claim([e]) == [True]

    running = e.model_copy(
        update={
            "status": ExecutionStatus.running,
            "started_at": T0 + timedelta(seconds=1),
            "attempts": [Attempt(number=1, started_at=T0 + timedelta(seconds=1), duration=0.5, status_code=503)],
            "node": "10.0.0.7",
            "actor": "hook",
        }
    )
    new = make_execution(job, T0 + timedelta(minutes=1), status=ExecutionStatus.skipped, reason="previous running")
    store.save_executions([running, new])
    assert store.get_execution(job.id, e.id) == running
    assert store.get_execution(job.id, str(new.id)) == new

    done = running.model_copy(
        update={
            "status": ExecutionStatus.success,
            "finished_at": T0 + timedelta(seconds=3),
            "duration": 2.0,
            "status_code": 200,
            "response_body": "ok" * 10,
            "response_truncated": True,
            "attempts": [
                Attempt(number=1, started_at=T0 + timedelta(seconds=1), duration=0.5, status_code=503, error="HTTP 503"),
                Attempt(number=2, started_at=T0 + timedelta(seconds=2), duration=1.0, status_code=200),
            ],
        }
    )
    gone = make_execution(make_job("deleted"), T0)
    # A stale report, then the final one for the same id: the last one wins.
    store.save_executions([running, gone, done])
    got = store.get_execution(job.id, e.id)
    assert got == done
    assert [a.number for a in got.attempts] == [1, 2]
    assert got.attempts[0].error == "HTTP 503"
    assert count(store, "executions") == 2 and count(store, "attempts") == 2
    store.save_executions([])


def test_save_sets_the_runtime_in_the_same_transaction(store):
    job = store.insert_job(make_job("hook"))
    done = make_execution(job, T0, status=ExecutionStatus.success, started_at=T0)
    with pytest.raises(ValueError):
        store.save_executions([done], runtime=[(job.id, {"last_status": "bogus"})])
    assert count(store, "executions") == 0
    store.save_executions([done], runtime=[(job.id, {"last_run": T0, "last_status": done.status})])
    assert store.get_execution(job.id, done.id) == done
    assert (store.get_job(job.id).last_run, store.get_job(job.id).last_status) == (T0, ExecutionStatus.success)
    store.save_executions([], runtime=[(job.id, {"last_status": ExecutionStatus.failed})])
    assert store.get_job(job.id).last_status is ExecutionStatus.failed


FINAL = [s for s in ExecutionStatus if s.final]


@pytest.mark.parametrize("final", FINAL)
def test_a_final_status_is_final_whatever_comes_later(store, final):
    job = store.insert_job(make_job("hook"))
    e = make_execution(job, T0)
    store.claim([e])
    attempt = Attempt(number=1, started_at=T0, status_code=200)
    done = e.model_copy(update={"status": final, "started_at": T0, "finished_at": T0, "attempts": [attempt]})
    assert [(c.execution, c.before) for c in store.save_executions([done])] == [(done, ExecutionStatus.pending)]
    late = [
        e.model_copy(update={"status": ExecutionStatus.running, "started_at": T0, "node": "late"}),
        e.model_copy(update={"status": ExecutionStatus.pending}),
        e.model_copy(update={"status": next(s for s in FINAL if s is not final), "error": "older report",
                             "attempts": [attempt.model_copy(update={"status_code": 500})]}),
        done,  # the same report again (a retried flush)
    ]
    for report in late:
        assert store.save_executions([report]) == []
    assert store.save_executions(late) == []  # in one batch too
    assert store.get_execution(job.id, e.id) == done


def test_running_never_returns_to_pending_and_a_batch_keeps_the_furthest_state(store):
    job = store.insert_job(make_job("hook"))
    e = make_execution(job, T0)
    store.claim([e])
    running = e.model_copy(update={"status": ExecutionStatus.running, "started_at": T0})
    done = running.model_copy(update={"status": ExecutionStatus.success, "finished_at": T0})
    # A retried flush can deliver an older state after a newer one, even in one batch.
    [change] = store.save_executions([running, e])
    assert (change.execution, change.before, change.started) == (running, ExecutionStatus.pending, True)
    assert store.save_executions([e]) == []
    [change] = store.save_executions([done, running])
    assert (change.execution, change.before, change.started, change.finished) == (done, ExecutionStatus.running, False, True)
    assert store.get_execution(job.id, e.id) == done


def test_a_write_returns_what_it_inserted_and_changed_with_the_new_attempts(store):
    job = store.insert_job(make_job("hook"))
    claimed, gone = make_execution(job, T0), make_execution(make_job("deleted"), T0)
    store.claim([claimed])
    first = Attempt(number=1, started_at=T0, status_code=503)
    second = Attempt(number=2, started_at=T0 + timedelta(seconds=1), status_code=200)
    retrying = claimed.model_copy(update={"status": ExecutionStatus.running, "started_at": T0, "attempts": [first]})
    fresh = make_execution(job, T0 + timedelta(minutes=1), status=ExecutionStatus.skipped, reason="forbid")
    changes = {c.execution.id: c for c in store.save_executions([retrying, fresh, gone])}
    assert set(changes) == {claimed.id, fresh.id}
    assert (changes[fresh.id].before, changes[fresh.id].finished) == (None, True)
    assert changes[claimed.id].new_attempts == [first]
    done = retrying.model_copy(update={"status": ExecutionStatus.success, "attempts": [first, second]})
    [change] = store.save_executions([done])
    assert (change.before, change.started, change.new_attempts) == (ExecutionStatus.running, False, [second])


def test_the_guard_reads_the_store_not_a_memory(store_url):
    """Another writer (a restarted supervisor, a stale twin) finished the
    execution: this writer's older report must not undo it, however many
    executions either has seen (the rows are read in chunks of 1,000)."""
    first, second = Store(store_url), Store(store_url)
    try:
        first.create_schema()
        job = first.insert_job(make_job("hook"))
        runs = [make_execution(job, T0 + timedelta(seconds=i)) for i in range(2500)]
        assert all(first.claim(runs))
        running = [e.model_copy(update={"status": ExecutionStatus.running, "started_at": T0}) for e in runs]
        assert len(first.save_executions(running)) == 2500
        done = [e.model_copy(update={"status": ExecutionStatus.success, "finished_at": T0}) for e in running]
        assert len(second.save_executions(done[::2])) == 1250
        # Only the other half is still running: a report of running may refresh those.
        assert {c.execution.id for c in first.save_executions(running)} == {e.id for e in done[1::2]}
        assert {c.execution.id for c in first.save_executions(done)} == {e.id for e in done[1::2]}
        assert {e.status for e in first.list_executions(job.id, limit=3000)[0]} == {ExecutionStatus.success}
        assert first.count_running() == 0
    finally:
        first.close()
        second.close()


def test_a_jobs_last_run_follows_the_runs_written_and_never_goes_back(store):
    job = store.insert_job(make_job("hook"))
    older, newer, skipped = (make_execution(job, T0 + timedelta(minutes=m)) for m in (0, 1, 2))
    store.claim([older, newer, skipped])

    def ended(e, status):
        return e.model_copy(update={"status": status, "started_at": e.scheduled_at, "finished_at": T0 + timedelta(hours=1)})

    store.save_executions([ended(newer, ExecutionStatus.success)])
    store.save_executions([ended(older, ExecutionStatus.failed)])  # an older run that ended late
    store.save_executions([ended(skipped, ExecutionStatus.skipped)])  # a skipped slot is no run
    store.save_executions([ended(newer, ExecutionStatus.timeout)])  # refused: the run was already final
    got = store.get_job(job.id)
    assert (got.last_run, got.last_status) == (newer.scheduled_at, ExecutionStatus.success)


def test_count_running_counts_what_is_stored_as_running(store):
    job = store.insert_job(make_job("hook"))
    runs = [make_execution(job, T0 + timedelta(seconds=i)) for i in range(3)]
    store.claim(runs)
    assert store.count_running() == 0
    store.save_executions([e.model_copy(update={"status": ExecutionStatus.running}) for e in runs[:2]])
    assert store.count_running() == 2
    store.save_executions([runs[0].model_copy(update={"status": ExecutionStatus.failed})])
    assert store.count_running() == 1


def test_save_keeps_attempts_ordered_by_number(store):
    job = store.insert_job(make_job("hook"))
    attempts = [Attempt(number=n, started_at=T0 + timedelta(seconds=n)) for n in (3, 1, 10, 2)]
    e = make_execution(job, T0, attempts=attempts)
    store.save_executions([e])
    assert [a.number for a in store.get_execution(job.id, e.id).attempts] == [1, 2, 3, 10]


def test_save_new_execution_onto_a_held_slot_is_dropped_not_raised(store):
    job = store.insert_job(make_job("hook"))
    held = make_execution(job, T0)
    store.claim([held])
    intruder = make_execution(job, T0, status=ExecutionStatus.skipped)
    fine = make_execution(job, T0 + timedelta(minutes=1))
    store.save_executions([intruder, fine])
    assert {e.id for e in store.list_executions(job.id)[0]} == {held.id, fine.id}


def test_every_execution_field_round_trips(store):
    job = store.insert_job(make_job("hook"))
    fields = set(Execution.model_fields) - {"id", "job_id", "job_name", "scheduled_at", "attempts"}
    e = make_execution(
        job,
        T0,
        trigger=Trigger.manual,
        status=ExecutionStatus.timeout,
        started_at=T0,
        finished_at=T0 + timedelta(minutes=5),
        duration=300.0,
        status_code=None,
        response_body="x" * 70_000,
        response_truncated=True,
        error="timed out after 5m",
        reason="r",
        node="n",
        actor="a",
        **({"missed_slots": 3} if "missed_slots" in Execution.model_fields else {}),
    )
    assert all(getattr(e, f) not in (None, False) for f in fields - {"status_code"}), "fill every field"
    store.save_executions([e])
    assert store.get_execution(job.id, e.id) == e


def test_a_report_updates_every_field_it_can_change_and_none_fixed_by_the_claim(store):
    job = store.insert_job(make_job("hook"))
    claimed = make_execution(job, T0)
    assert store.claim([claimed]) == [True]
    report = claimed.model_copy(
        update={
            "status": ExecutionStatus.failed,
            "started_at": T0 + timedelta(seconds=1),
            "finished_at": T0 + timedelta(seconds=2),
            "duration": 1.0,
            "status_code": 500,
            "response_body": "boom",
            "response_truncated": True,
            "error": "HTTP 500",
            "reason": "r",
            "missed_slots": 2,
            "node": "n",
            "actor": "a",
        }
    )
    changed = {f for f in Execution.model_fields if getattr(report, f) != getattr(claimed, f)}
    assert changed == set(Execution.model_fields) - {"id", "job_id", "job_name", "trigger", "scheduled_at", "attempts"}
    store.save_executions([report.model_copy(update={"job_name": "renamed", "trigger": Trigger.manual})])
    assert store.get_execution(job.id, claimed.id) == report


def test_a_report_of_a_job_deleted_meanwhile_does_not_fail_the_batch(store):
    job, other = store.insert_job(make_job("gone")), store.insert_job(make_job("kept"))
    mine, kept = make_execution(job, T0), make_execution(other, T0)
    store.claim([mine, kept])
    store.delete_job(job.id)
    attempt = [Attempt(number=1, started_at=T0, status_code=200)]
    done = {"status": ExecutionStatus.success, "attempts": attempt}
    store.save_executions([mine.model_copy(update=done), kept.model_copy(update=done)])
    assert store.get_execution(other.id, kept.id).attempts == attempt
    assert count(store, "executions") == 1 and count(store, "attempts") == 1


def test_nul_characters_do_not_fail_a_batch(store):
    job = store.insert_job(make_job("nul", description="a\x00b"))
    e = make_execution(job, T0, status=ExecutionStatus.failed, response_body="bin\x00ary", error="e\x00",
                       attempts=[Attempt(number=1, started_at=T0, error="x\x00")])
    store.save_executions([e])
    got = store.get_execution(job.id, e.id)
    assert (got.response_body, got.error, got.attempts[0].error) == ("bin\ufffdary", "e\ufffd", "x\ufffd")
    assert store.get_job("nul").description == "a\x00b"  # the spec JSON keeps it as it was
    assert [j.name for j in store.list_jobs(search="a")[0]] == ["nul"]


def test_timezone_round_trip(store):
    job = store.insert_job(make_job("tz"))
    tokyo = datetime(2026, 3, 1, 21, 0, 0, 999999, tzinfo=ZoneInfo("Asia/Tokyo"))
    naive = datetime(2026, 3, 1, 13, 0, 0, 1)  # naive is read as UTC
    a = make_execution(job, tokyo, started_at=tokyo, finished_at=tokyo + timedelta(microseconds=1),
                       attempts=[Attempt(number=1, started_at=tokyo)])
    b = make_execution(job, naive)
    store.save_executions([a, b])
    got = store.get_execution(job.id, a.id)
    for value in (got.scheduled_at, got.started_at, got.finished_at, got.attempts[0].started_at):
        assert_utc(value)
    assert got.scheduled_at == tokyo and got.scheduled_at.tzinfo is UTC
    assert got.scheduled_at.isoformat() == "2026-03-01T12:00:00.999999+00:00"
    assert got.finished_at - got.started_at == timedelta(microseconds=1)
    assert store.get_execution(job.id, b.id).scheduled_at == naive.replace(tzinfo=UTC)
    job2 = store.insert_job(make_job("tz2", created_at=tokyo, anchor=naive))
    got_job = store.get_job(job2.id)
    assert got_job.created_at == tokyo and got_job.created_at.tzinfo is UTC
    assert got_job.anchor == naive.replace(tzinfo=UTC) and got_job.anchor.tzinfo is UTC


def test_list_executions_newest_first_with_paging_and_status(store):
    job = store.insert_job(make_job("hook"))
    other = store.insert_job(make_job("other"))
    runs = [
        make_execution(job, T0 + timedelta(minutes=i), status=ExecutionStatus.failed if i % 3 == 0 else ExecutionStatus.success)
        for i in range(10)
    ]
    # Two executions on one instant (a scheduled and a manual run): id breaks the tie.
    runs.append(make_execution(job, T0 + timedelta(minutes=9), trigger=Trigger.manual))
    store.save_executions(runs + [make_execution(other, T0 + timedelta(hours=1))])
    expected = [e.id for e in sorted(runs, key=lambda e: (e.scheduled_at, e.id), reverse=True)]

    seen, cursor = [], None
    while True:
        page, cursor = store.list_executions(job.id, limit=4, cursor=cursor)
        seen += [e.id for e in page]
        if cursor is None:
            break
    assert seen == expected

    failed, cursor = store.list_executions(job.id, status=ExecutionStatus.failed, limit=3)
    assert [e.scheduled_at for e in failed] == [T0 + timedelta(minutes=m) for m in (9, 6, 3)]
    rest, cursor = store.list_executions(job.id, status=ExecutionStatus.failed, limit=3, cursor=cursor)
    assert [e.scheduled_at for e in rest] == [T0] and cursor is None
    assert store.list_executions(uuid.uuid4()) == ([], None)
    with pytest.raises(ValidationError, match="cursor"):
        store.list_executions(job.id, cursor="bm90IGEgY3Vyc29y")
    # Any 32 base64url characters are a position: before the newest, and past the calendar.
    assert store.list_executions(job.id, cursor="A" * 32) == ([], None)
    assert len(store.list_executions(job.id, cursor="_" * 32, limit=500)[0]) == len(seen)


def test_list_executions_loads_attempts_without_n_plus_one(store):
    job = store.insert_job(make_job("hook"))
    runs = [
        make_execution(job, T0 + timedelta(minutes=i), attempts=[Attempt(number=n, started_at=T0) for n in (1, 2)])
        for i in range(20)
    ]
    store.save_executions(runs)
    selects = []

    def record(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        page, _ = store.list_executions(job.id, limit=20)
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    assert len(page) == 20 and all(len(e.attempts) == 2 for e in page)
    assert len(selects) == 2, selects


def test_get_execution_of_another_job_or_bad_id(store):
    job = store.insert_job(make_job("hook"))
    other = store.insert_job(make_job("other"))
    e = make_execution(job, T0)
    store.claim([e])
    with pytest.raises(ExecutionNotFound):
        store.get_execution(other.id, e.id)
    with pytest.raises(ExecutionNotFound, match="not-a-uuid"):
        store.get_execution(job.id, "not-a-uuid")
    with pytest.raises(ExecutionNotFound):
        store.get_execution(job.id, uuid.uuid4())


def test_unfinished_executions(store):
    a = store.insert_job(make_job("a"))
    b = store.insert_job(make_job("b"))
    pending = make_execution(a, T0)
    running = make_execution(b, T0 - timedelta(minutes=1), status=ExecutionStatus.running,
                             attempts=[Attempt(number=1, started_at=T0)])
    finished = [make_execution(a, T0 + timedelta(minutes=i), status=s) for i, s in enumerate(
        [ExecutionStatus.success, ExecutionStatus.failed, ExecutionStatus.timeout, ExecutionStatus.skipped, ExecutionStatus.cancelled], 1)]
    store.save_executions([pending, running, *finished])
    got = store.unfinished_executions()
    assert [e.id for e in got] == [running.id, pending.id]
    assert got[0].attempts == running.attempts
    assert [e.id for e in store.unfinished_executions([a.id])] == [pending.id]
    assert [e.id for e in store.unfinished_executions([b.id, uuid.uuid4()])] == [running.id]
    assert store.unfinished_executions([]) == []
    strangers = [uuid.uuid4() for _ in range(1500)]  # more than one IN list
    assert [e.id for e in store.unfinished_executions([*strangers, a.id])] == [pending.id]


def test_last_slot(store):
    job = store.insert_job(make_job("hook"))
    assert store.last_slots([job.id]) == {}
    store.claim([make_execution(job, T0), make_execution(job, T0 + timedelta(hours=1), trigger=Trigger.manual)])
    assert store.last_slots([job.id]) == {job.id: T0}
    store.claim([make_execution(job, T0 + timedelta(minutes=5), trigger=Trigger.catchup, status=ExecutionStatus.skipped)])
    slot = store.last_slots([job.id])[job.id]
    assert slot == T0 + timedelta(minutes=5) and slot.tzinfo is UTC and slot.microsecond == 123456


def test_last_slots_of_many_jobs(store):
    jobs = [store.insert_job(make_job(f"j{i}")) for i in range(3)]
    store.claim([make_execution(jobs[0], T0), make_execution(jobs[0], T0 + timedelta(minutes=1))])
    store.claim([make_execution(jobs[1], T0 + timedelta(hours=1), trigger=Trigger.manual)])  # not a slot
    stranger = uuid.uuid4()
    assert store.last_slots([j.id for j in jobs] + [stranger]) == {jobs[0].id: T0 + timedelta(minutes=1)}


# ---------------------------------------------------------------- retention


def test_prune_keeps_newest_n_per_job(store):
    a = store.insert_job(make_job("a"))
    b = store.insert_job(make_job("b"))
    attempt = [Attempt(number=1, started_at=T0)]
    a_runs = [make_execution(a, T0 + timedelta(minutes=i), status=ExecutionStatus.success, attempts=attempt) for i in range(6)]
    # The oldest of a's is still pending (a lost actor): never pruned.
    a_runs[0] = a_runs[0].model_copy(update={"status": ExecutionStatus.pending})
    b_runs = [make_execution(b, T0 + timedelta(minutes=i), status=ExecutionStatus.failed) for i in range(2)]
    store.save_executions(a_runs + b_runs)

    deleted = store.prune(keep=3, max_age=timedelta(days=30), now=T0 + timedelta(hours=1))

    assert deleted == 2  # a's minutes 1 and 2
    left = [e.id for e in store.list_executions(a.id)[0]]
    assert left == [a_runs[i].id for i in (5, 4, 3, 0)]
    assert len(store.list_executions(b.id)[0]) == 2
    assert count(store, "attempts") == 4
    assert store.prune(keep=3, max_age=timedelta(days=30), now=T0 + timedelta(hours=1)) == 0


def test_prune_by_age(store):
    job = store.insert_job(make_job("hook"))
    now = T0 + timedelta(days=31)
    old = make_execution(job, T0, status=ExecutionStatus.success, finished_at=T0 + timedelta(seconds=1))
    old_skipped = make_execution(job, T0 + timedelta(minutes=1), status=ExecutionStatus.skipped)  # no finished_at
    late_finish = make_execution(job, T0 + timedelta(minutes=2), status=ExecutionStatus.success,
                                 finished_at=now - timedelta(days=1))
    old_running = make_execution(job, T0 + timedelta(minutes=3), status=ExecutionStatus.running)
    recent = make_execution(job, now - timedelta(days=29), status=ExecutionStatus.failed, finished_at=now - timedelta(days=29))
    store.save_executions([old, old_skipped, late_finish, old_running, recent])

    assert store.prune(keep=1000, max_age=timedelta(days=30), now=now) == 2
    assert {e.id for e in store.list_executions(job.id)[0]} == {late_finish.id, old_running.id, recent.id}


# ---------------------------------------------------------------- SQLite specifics


def test_two_sqlite_stores_on_one_file_see_each_others_writes(tmp_path):
    url = f"sqlite:///{tmp_path / 'data' / 'chronos.db'}"  # the directory is created
    first, second = Store(url), Store(url)
    try:
        first.create_schema()
        second.create_schema()
        job = first.insert_job(make_job("shared"))
        assert second.get_job("shared") == job
        e = make_execution(job, T0)
        assert second.claim([e]) == [True]
        assert first.claim([make_execution(job, T0)]) == [False]
        first.save_executions([e.model_copy(update={"status": ExecutionStatus.success})])
        assert second.get_execution(job.id, e.id).status is ExecutionStatus.success
        second.delete_job(job.id)
        assert count_jobs(first) == (0, 0)
        with first.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        first.close()
        second.close()


def test_postgres_urls_use_psycopg3(postgres_url):
    store = Store(postgres_url)
    try:
        assert store.engine.dialect.driver == "psycopg"
    finally:
        store.close()


def test_unsupported_url():
    with pytest.raises(ValueError, match="unsupported"):
        Store("mysql://u@127.0.0.1/db")


def test_racing_claimers_fire_each_slot_once(store_url):
    """Stores (as after a split brain) claim overlapping batches in different orders at once."""
    stores = [Store(store_url) for _ in range(4)]
    try:
        stores[0].create_schema()
        job = stores[0].insert_job(make_job("contended"))
        slots = [T0 + timedelta(seconds=i) for i in range(400)]
        wins: list[int] = []
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def claimer(i: int) -> None:
            order = slots[:]
            random.Random(i).shuffle(order)
            try:
                start.wait()
                for k in range(0, len(order), 40):
                    batch = [make_execution(job, at) for at in order[k : k + 40]]
                    wins.append(sum(stores[i % 4].claim(batch)))
            except BaseException as e:  # reported below, not lost in the thread
                errors.append(e)

        threads = [threading.Thread(target=claimer, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert sum(wins) == len(slots)
        assert count(stores[0], "executions") == len(slots)
    finally:
        for s in stores:
            s.close()
