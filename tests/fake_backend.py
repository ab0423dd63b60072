"""An in-memory :class:`chronos.backend.Backend` for the REST layer's tests.

It keeps ``Job`` and ``Execution`` objects in dicts, raises the real Chronos
errors, and changes jobs the way the supervisor does (``merge_patch``, then
``keep_secrets``, then ``parse_job``), so the app's own behaviour can be tested
without Ray or a database. ``fail[method] = exc`` makes that method raise.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional
from uuid import UUID

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from chronos.errors import (
    Conflict,
    DuplicateJob,
    ExecutionNotFound,
    JobNotFound,
    Unavailable,
)
from chronos.cursors import decode_execution_cursor, decode_job_cursor, encode_execution_cursor, encode_job_cursor
from chronos.models import (
    Execution,
    ExecutionStatus,
    Job,
    JobCreate,
    Trigger,
    changed_spec,
    merge_patch,
    utcnow,
)




def _order(execution: Execution) -> tuple[datetime, UUID]:
    """Newest-first sort key (and cursor): scheduled time, then id."""
    return execution.scheduled_at.astimezone(timezone.utc), execution.id


class FakeBackend:
    def __init__(self) -> None:
        self.jobs: dict[UUID, Job] = {}
        self.executions: dict[UUID, Execution] = {}
        self.fail: dict[str, BaseException] = {}
        self.is_ready = True
        self.calls: list[tuple[str, tuple, dict]] = []
        self.registry = CollectorRegistry()
        self._jobs_total = Gauge("chronos_jobs_total", "Jobs defined.", registry=self.registry)
        self._jobs_enabled = Gauge("chronos_jobs_enabled", "Jobs enabled.", registry=self.registry)

    # ------------------------------------------------------------ helpers

    def _enter(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((method, args, kwargs))
        if method in self.fail:
            raise self.fail[method]

    def _find(self, ref: str) -> Job:
        for job in self.jobs.values():
            if job.name == ref or str(job.id) == ref:
                return job
        raise JobNotFound(f'no job "{ref}"')

    def _check_name_free(self, name: str, except_id: Optional[UUID] = None) -> None:
        for job in self.jobs.values():
            if job.name == name and job.id != except_id:
                raise DuplicateJob(f'a job named "{name}" already exists')

    def _change(self, old: Job, data: dict[str, Any]) -> Job:
        spec = changed_spec(old, data)
        self._check_name_free(spec.name, old.id)
        job = old.model_copy(update={**dict(spec), "updated_at": utcnow()})
        self.jobs[job.id] = job
        return job

    def add_execution(self, job: Job, **fields: Any) -> Execution:
        fields.setdefault("scheduled_at", utcnow())
        execution = Execution(job_id=job.id, job_name=job.name, **fields)
        self.executions[execution.id] = execution
        return execution

    # ------------------------------------------------------------ jobs

    async def create_job(self, spec: JobCreate) -> Job:
        self._enter("create_job", spec)
        assert isinstance(spec, JobCreate)
        self._check_name_free(spec.name)
        now = utcnow()
        job = Job(**spec.model_dump(), created_at=now, updated_at=now, anchor=now)
        self.jobs[job.id] = job
        return job

    async def get_job(self, ref: str) -> Job:
        self._enter("get_job", ref)
        return self._find(ref)

    async def list_jobs(
        self,
        *,
        enabled: Optional[bool] = None,
        tags: Optional[dict[str, str]] = None,
        search: Optional[str] = None,
        limit: int = 100,
        cursor: Optional[str] = None,
    ) -> tuple[list[Job], Optional[str]]:
        self._enter("list_jobs", enabled=enabled, tags=tags, search=search, limit=limit, cursor=cursor)
        after = decode_job_cursor(cursor) if cursor else None
        needle = (search or "").lower()
        jobs = sorted(self.jobs.values(), key=lambda j: j.name)
        out = [
            j
            for j in jobs
            if (enabled is None or j.enabled == enabled)
            and all(j.tags.get(k) == v for k, v in (tags or {}).items())
            and (not needle or needle in j.name.lower() or needle in (j.description or "").lower())
            and (after is None or j.name > after)
        ]
        page = out[:limit]
        next_cursor = encode_job_cursor(page[-1].name) if len(out) > limit else None
        return page, next_cursor

    async def replace_job(self, ref: str, spec: JobCreate) -> Job:
        self._enter("replace_job", ref, spec)
        assert isinstance(spec, JobCreate)
        return self._change(self._find(ref), spec.model_dump(mode="json"))

    async def patch_job(self, ref: str, patch: dict[str, Any]) -> Job:
        self._enter("patch_job", ref, patch)
        old = self._find(ref)
        return self._change(old, merge_patch(old.spec().model_dump(mode="json"), patch))

    async def delete_job(self, ref: str) -> None:
        self._enter("delete_job", ref)
        job = self._find(ref)
        del self.jobs[job.id]
        self.executions = {k: v for k, v in self.executions.items() if v.job_id != job.id}

    async def set_enabled(self, ref: str, enabled: bool) -> Job:
        self._enter("set_enabled", ref, enabled)
        old = self._find(ref)
        return self._change(old, {**old.spec().model_dump(mode="json"), "enabled": enabled})

    # ------------------------------------------------------------ executions

    async def trigger(self, ref: str) -> Execution:
        self._enter("trigger", ref)
        job = self._find(ref)
        return self.add_execution(job, trigger=Trigger.manual, status=ExecutionStatus.pending)

    async def list_executions(
        self,
        ref: str,
        *,
        status: Optional[ExecutionStatus] = None,
        limit: int = 50,
        cursor: Optional[str] = None,
    ) -> tuple[list[Execution], Optional[str]]:
        self._enter("list_executions", ref, status=status, limit=limit, cursor=cursor)
        job = self._find(ref)
        mine = [e for e in self.executions.values() if e.job_id == job.id and (status is None or e.status == status)]
        mine.sort(key=_order, reverse=True)
        if cursor:
            at, eid = decode_execution_cursor(cursor)
            mine = [e for e in mine if _order(e) < (at, eid)]
        page = mine[:limit]
        next_cursor = encode_execution_cursor(*_order(page[-1])) if len(mine) > limit else None
        return page, next_cursor

    async def get_execution(self, ref: str, execution_id: UUID) -> Execution:
        self._enter("get_execution", ref, execution_id)
        assert isinstance(execution_id, UUID)
        job = self._find(ref)
        execution = self.executions.get(execution_id)
        if execution is None or execution.job_id != job.id:
            raise ExecutionNotFound(f'no execution "{execution_id}" for job "{job.name}"')
        return execution

    async def cancel_execution(self, ref: str, execution_id: UUID) -> Execution:
        self._enter("cancel_execution", ref, execution_id)
        execution = await self.get_execution(ref, execution_id)
        if execution.status.final:
            raise Conflict(f"execution {execution_id} already finished with status {execution.status.value}")
        cancelled = execution.model_copy(
            update={
                "status": ExecutionStatus.cancelled,
                "finished_at": datetime.now(timezone.utc),
                "reason": "cancelled by user",
            }
        )
        self.executions[execution_id] = cancelled
        return cancelled

    # ------------------------------------------------------------ health

    async def metrics(self) -> bytes:
        self._enter("metrics")
        self._jobs_total.set(len(self.jobs))
        self._jobs_enabled.set(sum(j.enabled for j in self.jobs.values()))
        return generate_latest(self.registry)

    async def ready(self) -> None:
        self._enter("ready")
        if not self.is_ready:
            raise Unavailable("the store is not reachable: fake outage")
