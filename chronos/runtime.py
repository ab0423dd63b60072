"""Where job hosts live. The supervisor places each job on a host through a
:class:`Runtime`: Ray actors in production (``chronos.actors.runtime``), or
this process for tests and tools (:class:`LocalRuntime`).

Placement is one code path: ``dedicated`` gives every job its own host
(named after the job); ``pooled`` spreads jobs over N hosts by a stable hash.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Optional, Protocol
from uuid import UUID

from chronos.host import JobHost, Upstream
from chronos.models import Execution, Job


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
    def host_key(self, job: Job) -> str:
        """Which host a job belongs on."""

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


JOB_PREFIX, POOL_PREFIX = "chronos:job:", "chronos:pool:"


def host_key(job: Job, placement: str, pool_size: int) -> str:
    if placement == "dedicated":
        return f"{JOB_PREFIX}{job.name}"
    digest = hashlib.blake2b(job.id.bytes, digest_size=8).digest()
    return pool_key(int.from_bytes(digest, "big") % pool_size)


def pool_key(n: int) -> str:
    return f"{POOL_PREFIX}{n}"


class LocalRuntime:
    """Hosts in the supervisor's own process: for tests and single-process tools."""

    def __init__(self, upstream: Upstream, *, placement: str = "pooled", pool_size: int = 1, **host_options: Any):
        self._upstream = upstream
        self._placement = placement
        self._pool_size = pool_size
        self._options = host_options
        self.hosts: dict[str, JobHost] = {}

    def host_key(self, job: Job) -> str:
        return host_key(job, self._placement, self._pool_size)

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
