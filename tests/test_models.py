"""The models' memory sharing (chronos.models.Lean): jobs and executions given
every field share their class's set of field names, and no instance can change
what another reports as set."""

from __future__ import annotations

from datetime import datetime, timezone

from chronos.actors.wire import pack, pack_assignments, unpack, unpack_assignments
from chronos.models import Execution, Job, JobUpdate, parse_job


def job(name: str) -> Job:
    spec = parse_job({"name": name, "schedule": "*/10 * * * * *", "webhook": {"url": "http://127.0.0.1:9/hit"}})
    return Job(**spec.model_dump())


def test_jobs_read_back_share_one_set_of_field_names():
    (a, _, _), (b, _, _) = unpack_assignments(pack_assignments([(job("a"), None, []), (job("b"), None, [])]))
    assert a.model_fields_set == set(Job.model_fields)
    assert a.model_fields_set is b.model_fields_set
    assert a.webhook.model_fields_set is b.webhook.model_fields_set
    assert a.retry_policy.model_fields_set is b.retry_policy.model_fields_set


def test_assigning_a_field_changes_no_other_instance():
    now = datetime.now(timezone.utc)
    a, b = unpack(pack([Execution(job_id=job("x").id, job_name="x", scheduled_at=now) for _ in range(2)]))
    assert a.model_fields_set is b.model_fields_set
    a.status_code = 200
    a.error = "boom"
    assert b.model_fields_set == set(Execution.model_fields)
    assert b.status_code is None and b.error is None


def test_a_partial_model_keeps_its_own_set():
    """A PATCH body says which fields it sets: sharing must not widen that."""
    first = JobUpdate.model_validate({"description": "x"})
    second = JobUpdate.model_validate({"enabled": False})
    assert first.model_dump(exclude_unset=True) == {"description": "x"}
    assert second.model_dump(exclude_unset=True) == {"enabled": False}
    fresh = Execution(job_id=job("y").id, job_name="y", scheduled_at=datetime.now(timezone.utc))
    assert fresh.model_fields_set == {"job_id", "job_name", "scheduled_at"}
    fresh.status_code = 500
    assert "status_code" in fresh.model_fields_set
    assert unpack(pack([fresh]))[0].model_fields_set is not fresh.model_fields_set
