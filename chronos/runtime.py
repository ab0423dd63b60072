"""Where job hosts live: the contract. The supervisor places each job on a host through a
:class:`Runtime`: Ray actors in production (``chronos.actors.runtime``), or this process for
tests and tools (:class:`chronos.local_runtime.LocalRuntime`).

Which job goes on which host is :mod:`chronos.placement`'s. This module holds only the
interfaces, so the supervisor's contract imports no host, runner or HTTP client.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional, Protocol
from uuid import UUID

from chronos.models import Execution, Job
from chronos.placement import Placement

__all__ = ["Host", "HostGone", "Placement", "Runtime"]


class HostGone(Exception):
    """The host died or cannot be reached; the supervisor will recreate it."""


class Host(Protocol):
    """A job host as the supervisor sees it. Every call raises :class:`HostGone` when the host
    died or did not answer in time (over Ray: 10 s); nothing else escapes but the errors of a
    bug."""

    async def assign(self, items: list[tuple[Job, Optional[datetime], list[Execution]]]) -> None:
        """Start jobs, each with its last claimed slot and its orphans; a job already here
        takes the new spec instead.

        :raises HostGone: the host is gone."""

    async def update(self, job: Job) -> None:
        """Give a job here its new spec (a job not here is ignored).

        :raises HostGone: the host is gone."""

    async def remove(self, job_id: UUID) -> None:
        """Stop a job's runner (a job not here is ignored); its running executions end.

        :raises HostGone: the host is gone."""

    async def trigger(self, job_id: UUID) -> Optional[Execution]:
        """Start a manual run: the claimed execution, or None when the job is not here.

        :raises HostGone: the host is gone."""

    async def cancel(self, job_id: UUID, execution_id: UUID, reason: str) -> Optional[Execution]:
        """Cancel an execution the host holds: it, closed as ``cancelled``, or None when the
        host does not hold it (the supervisor then closes it alone).

        :raises HostGone: the host is gone."""

    async def status(self, with_jobs: bool = False) -> dict[str, Any]:
        """``count`` and ``digest`` of the jobs here; ``with_jobs``: also ``jobs`` and the
        executions in flight (``running``).

        :raises HostGone: the host is gone."""

    async def settle(self, timeout: float) -> bool:
        """Wait for every job's first step and a quiet moment; False after ``timeout``.

        :raises HostGone: the host is gone."""


class Runtime(Protocol):
    placement: Placement
    """Where each job goes (host keys, modes)."""

    async def slots(self) -> int:
        """Dedicated hosts the cluster has room for (``auto`` placement dedicates that many jobs)."""

    async def host(self, key: str) -> Host:
        """The live host for ``key``, attaching to a surviving one or creating it.

        :raises CapacityExhausted: a dedicated host is needed and every slot is in use.
        :raises HostGone: the host could not be reached or made."""

    async def find(self, key: str) -> Optional[Host]:
        """The live host for ``key``, or None if there is none (never creates one).
        Raises nothing."""

    async def drop(self, key: str) -> None:
        """Destroy a host that holds no more jobs (dedicated placement); a host already gone
        is no error. Raises nothing."""

    async def names(self) -> list[str]:
        """The keys of the hosts that exist now, whoever made them. Raises nothing."""

    async def close(self) -> None:
        """Stop every host quietly: unfinished executions stay for the next start. Raises
        nothing."""
