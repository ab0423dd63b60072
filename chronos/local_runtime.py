"""A :class:`chronos.runtime.Runtime` whose hosts live in this process: for tests and
single-process tools."""

from __future__ import annotations

from typing import Any, Optional

from chronos.host import JobHost, Upstream
from chronos.placement import Mode, Placement
from chronos.runtime import Host

__all__ = ["LocalRuntime"]


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
