"""The operations the REST layer needs, as one small interface.

The supervisor implements it (``chronos.supervisor.Supervisor``, in-process),
and ``chronos.actors.client.SupervisorClient`` implements it over Ray by
calling the supervisor actor. The FastAPI app depends only on this.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol
from uuid import UUID

from chronos.models import Execution, ExecutionStatus, Glance, Job, JobCreate, Overview

Page = tuple[list[Any], Optional[str]]  # (items, next_cursor)


class Backend(Protocol):
    async def create_job(self, spec: JobCreate) -> Job: ...

    async def get_job(self, ref: str) -> Job: ...

    async def list_jobs(
        self,
        *,
        enabled: Optional[bool] = None,
        tags: Optional[dict[str, str]] = None,
        search: Optional[str] = None,
        limit: int = 100,
        cursor: Optional[str] = None,
    ) -> tuple[list[Job], Optional[str]]: ...

    async def replace_job(self, ref: str, spec: JobCreate) -> Job:
        """PUT: full replace; secrets sent back as "***" keep their stored value."""

    async def patch_job(self, ref: str, patch: dict[str, Any]) -> Job:
        """PATCH: RFC 7396 merge patch over the stored spec, then validated whole."""

    async def delete_job(self, ref: str) -> None: ...

    async def set_enabled(self, ref: str, enabled: bool) -> Job: ...

    async def trigger(self, ref: str) -> Execution: ...

    async def list_executions(
        self,
        ref: str,
        *,
        status: Optional[ExecutionStatus] = None,
        limit: int = 50,
        cursor: Optional[str] = None,
    ) -> tuple[list[Execution], Optional[str]]: ...

    async def get_execution(self, ref: str, execution_id: UUID) -> Execution: ...

    async def cancel_execution(self, ref: str, execution_id: UUID) -> Execution: ...

    async def recent_executions(self, job_ids: list[UUID], per_job: int = 20) -> dict[UUID, list[Glance]]:
        """Each job's newest executions, newest first, as summaries (the console's strips)."""

    async def overview(self) -> Overview:
        """Counts, failing jobs, running executions and the fires-per-minute forecast."""

    async def metrics(self) -> bytes:
        """Prometheus text exposition of the cluster-wide registry."""

    async def ready(self) -> None:
        """Return when the supervisor and store answer; raise ``Unavailable`` otherwise."""
