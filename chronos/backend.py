"""The operations the REST layer needs, as one small interface.

The supervisor implements it (``chronos.supervisor.Supervisor``, in-process),
and ``chronos.actors.client.SupervisorClient`` implements it over Ray by
calling the supervisor actor. The FastAPI app depends only on this.

Every error is a :mod:`chronos.errors` class (the API maps each to its status through
:mod:`chronos.http_codes`). Besides those each method names, any method may raise
:class:`~chronos.errors.Unavailable` when the supervisor or the store cannot be reached
(over Ray: the supervisor is restarting or did not answer in time). A ``ref`` is a job's
name or id; a ``cursor`` that does not decode raises :class:`~chronos.errors.ValidationError`.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol
from uuid import UUID

from chronos.models import Execution, ExecutionStatus, Glance, Job, JobCreate, Overview

class Backend(Protocol):
    async def create_job(self, spec: JobCreate) -> Job:
        """Store a job and start it on its host.

        :raises DuplicateJob: a job of that name exists.
        :raises ValidationError: a ``***`` placeholder has no stored secret to keep.
        :raises CapacityExhausted: it needs a dedicated host and every slot is in use."""

    async def get_job(self, ref: str) -> Job:
        """:raises JobNotFound: no job by that name or id."""

    async def list_jobs(
        self,
        *,
        enabled: Optional[bool] = None,
        tags: Optional[dict[str, str]] = None,
        search: Optional[str] = None,
        limit: int = 100,
        cursor: Optional[str] = None,
    ) -> tuple[list[Job], Optional[str]]:
        """A page of jobs matching every filter given, and the cursor of the next page."""

    async def replace_job(self, ref: str, spec: JobCreate) -> Job:
        """PUT: full replace; secrets sent back as "***" keep their stored value.

        :raises JobNotFound: no such job.
        :raises DuplicateJob: a rename to a name another job has.
        :raises ValidationError: the spec with its kept secrets is not valid."""

    async def patch_job(self, ref: str, patch: dict[str, Any]) -> Job:
        """PATCH: RFC 7396 merge patch over the stored spec, then validated whole.

        :raises JobNotFound: no such job.
        :raises DuplicateJob: a rename to a name another job has.
        :raises ValidationError: the merged spec is not valid (``InvalidSchedule`` when only
            its schedule or zone is wrong)."""

    async def delete_job(self, ref: str) -> None:
        """Delete a job and its history; its running executions end.

        :raises JobNotFound: no such job."""

    async def set_enabled(self, ref: str, enabled: bool) -> Job:
        """:raises JobNotFound: no such job."""

    async def trigger(self, ref: str) -> Execution:
        """Start a manual run now, whatever the concurrency policy.

        :raises JobNotFound: no such job.
        :raises Unavailable: its host is (re)starting."""

    async def list_executions(
        self,
        ref: str,
        *,
        status: Optional[ExecutionStatus] = None,
        limit: int = 50,
        cursor: Optional[str] = None,
    ) -> tuple[list[Execution], Optional[str]]:
        """A page of the job's executions, newest first.

        :raises JobNotFound: no such job."""

    async def get_execution(self, ref: str, execution_id: UUID) -> Execution:
        """:raises JobNotFound: no such job.
        :raises ExecutionNotFound: the job has no such execution."""

    async def cancel_execution(self, ref: str, execution_id: UUID) -> Execution:
        """Cancel a pending or running execution: it, closed as ``cancelled``.

        :raises JobNotFound: no such job.
        :raises ExecutionNotFound: the job has no such execution.
        :raises Conflict: it already finished."""

    async def recent_executions(self, job_ids: list[UUID], per_job: int = 20) -> dict[UUID, list[Glance]]:
        """Each job's newest executions, newest first, as summaries (the console's strips);
        unknown ids are left out."""

    async def overview(self) -> Overview:
        """Counts, failing jobs, running executions and the fires-per-minute forecast."""

    async def metrics(self) -> bytes:
        """Prometheus text exposition of the cluster-wide registry."""

    async def ready(self) -> None:
        """Return when the supervisor and store answer.

        :raises Unavailable: they do not."""
