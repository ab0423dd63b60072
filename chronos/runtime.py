"""Where job hosts live. The supervisor places each job on a host through a
:class:`Runtime`: Ray actors in production (``chronos.actors.runtime``), or
this process for tests and tools (:class:`LocalRuntime`).

Which job goes on which host is :mod:`chronos.placement`'s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional, Protocol
from uuid import UUID

from chronos.host import JobHost, Upstream
from chronos.models import Execution, Job
from chronos.placement import JOB_PREFIX, POOL_PREFIX, Mode, Placement, pool_key

__all__ = ["JOB_PREFIX", "POOL_PREFIX", "Host", "HostGone", "LocalRuntime", "Placement", "Runtime", "pool_key"]


class HostGone(Exception):
    """The host died or cannot be reached; the supervisor will recreate it."""


class Host(Protocol):
    """A job host as the supervisor sees it (all calls may raise HostGone)."""

    async def assign(self, items: list[tuple[Job, Optional[datetime], list[Execution]]]) -> None:
        """Start (or update) jobs: each with its last claimed slot and its orphans."""

    async def update(self, job: Job) -> None: ...

    async def remove(self, job_id: UUID) -> None: ...

    async def trigger(self, job_id: UUID) -> Optional[Execution]: ...

    async def cancel(self, job_id: UUID, execution_id: UUID, reason: str) -> Optional[Execution]: ...

    async def status(self, with_jobs: bool = False) -> dict[str, Any]: ...

    async def settle(self, timeout: float) -> bool: ...


class Runtime(Protocol):
    placement: Placement
    """Where each job goes (host keys, modes)."""

    async def slots(self) -> int:
        """Dedicated hosts the cluster has room for (``auto`` placement dedicates that many jobs)."""

    async def host(self, key: str) -> Host:
        """The live host for ``key``, attaching to a surviving one or creating
        it (may raise ``CapacityExhausted``)."""

    async def find(self, key: str) -> Optional[Host]:
        """The live host for ``key``, or None if there is none (never creates one)."""

    async def drop(self, key: str) -> None:
        """Destroy a host that holds no more jobs (dedicated placement)."""

    async def names(self) -> list[str]:
        """The keys of the hosts that exist now, whoever made them."""

    async def close(self) -> None: ...


class LocalRuntime:
    """Hosts in the supervisor's own process: for tests and single-process tools."""

    def __init__(
        self, upstream: Upstream, *, placement: Mode = "pooled", pool_size: int = 1, slots: int = 8, **host_options: Any
    ):
        self._upstream = upstream
        self.placement = Placement(placement, pool_size)
        self._slots = slots
        self._options = host_options
        self.hosts: dict[str, JobHost] = {}

    async def slots(self) -> int:
        return self._slots

    async def host(self, key: str) -> Host:
        if key not in self.hosts:
            self.hosts[key] = JobHost(self._upstream, actor=key, **self._options)
        return self.hosts[key]

    async def find(self, key: str) -> Optional[Host]:
        return self.hosts.get(key)

    async def drop(self, key: str) -> None:
        host = self.hosts.pop(key, None)
        if host:
            await host.shutdown()

    async def names(self) -> list[str]:
        return list(self.hosts)

    async def kill(self, key: str) -> None:
        """Simulate a crash: the host vanishes without a word (tests)."""
        host = self.hosts.pop(key, None)
        if host:
            for runner in host.runners.values():
                await runner.stop()

    async def close(self) -> None:
        for key in list(self.hosts):
            await self.drop(key)
