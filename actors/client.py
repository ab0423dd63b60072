"""``SupervisorClient``: the :class:`chronos.backend.Backend` over Ray, for the
REST layer. Looks the supervisor up by name and again after it restarts;
Ray's errors come out as Chronos errors (:mod:`chronos.actors.remote`)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Optional
from uuid import UUID

from ray.exceptions import RayActorError

from chronos.errors import Unavailable
from chronos.models import Execution, Glance, Job, JobCreate, Overview

from chronos.actors.remote import TIMEOUTS, ErrorTable, ray_errors, supervisor

CALL_TIMEOUT = 60.0


class _Restarting(Unavailable):
    """The supervisor actor died under a call: Ray is restarting it."""


_ERRORS: ErrorTable = (
    ((RayActorError,), lambda e: _Restarting(f"the supervisor is restarting ({type(e).__name__}): try again shortly")),
    # Not retried: the call may still complete (a create would then clash).
    (TIMEOUTS, lambda e: Unavailable(f"the supervisor did not answer within {CALL_TIMEOUT:g}s: try again shortly")),
)


class SupervisorClient:
    def __init__(self, namespace: str = "chronos"):
        self._supervisor = supervisor(namespace)

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self._once(method, args, kwargs)
        except _Restarting:  # a restarted supervisor: resolve it again, once
            return await self._once(method, args, kwargs)

    async def _once(self, method: str, args: tuple, kwargs: dict) -> Any:
        with ray_errors(_ERRORS, lost=self._supervisor.forget):
            return await asyncio.wait_for(self._supervisor.get().call.remote(method, *args, **kwargs), CALL_TIMEOUT)

    # The Backend, one line each (the supervisor actor's ``call`` checks the name).

    async def create_job(self, spec: JobCreate) -> Job:
        return await self._call("create_job", spec)

    async def get_job(self, ref: str) -> Job:
        return await self._call("get_job", ref)

    async def list_jobs(self, **query: Any) -> tuple[list[Job], Optional[str]]:
        return await self._call("list_jobs", **query)

    async def replace_job(self, ref: str, spec: JobCreate) -> Job:
        return await self._call("replace_job", ref, spec)

    async def patch_job(self, ref: str, patch: dict[str, Any]) -> Job:
        return await self._call("patch_job", ref, patch)

    async def delete_job(self, ref: str) -> None:
        return await self._call("delete_job", ref)

    async def set_enabled(self, ref: str, enabled: bool) -> Job:
        return await self._call("set_enabled", ref, enabled)

    async def trigger(self, ref: str) -> Execution:
        return await self._call("trigger", ref)

    async def list_executions(self, ref: str, **query: Any) -> tuple[list[Execution], Optional[str]]:
        return await self._call("list_executions", ref, **query)

    async def get_execution(self, ref: str, execution_id: UUID) -> Execution:
        return await self._call("get_execution", ref, execution_id)

    async def cancel_execution(self, ref: str, execution_id: UUID) -> Execution:
        return await self._call("cancel_execution", ref, execution_id)

    async def recent_executions(self, job_ids: list[UUID], per_job: int = 20) -> dict[UUID, list[Glance]]:
        return await self._call("recent_executions", job_ids, per_job)

    async def overview(self) -> Overview:
        return await self._call("overview")

    async def metrics(self) -> bytes:
        return await self._call("metrics")

    async def ready(self) -> None:
        return await self._call("ready")


if TYPE_CHECKING:  # mypy checks the client is a whole Backend
    from chronos.backend import Backend

    _: type[Backend] = SupervisorClient
