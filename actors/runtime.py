"""The Ray :class:`chronos.runtime.Runtime`: job hosts as named, detached Ray
actors (so they outlive a supervisor restart and it re-attaches to them).

Dedicated capacity is admission-controlled with the ``chronos_job_slots``
custom resource each node declares: one slot per dedicated host actor.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Callable, Optional
from uuid import UUID

import ray
from ray.exceptions import RayActorError

from chronos.egress import DEFAULT_POLICY
from chronos.errors import CapacityExhausted
from chronos.models import Execution, Job
from chronos.placement import JOB_PREFIX, POOL_PREFIX, Mode, Placement, is_dedicated_key, pool_key
from chronos.runtime import HostGone

from chronos.actors.ray_host import HostActor
from chronos.actors.remote import TIMEOUTS, ErrorTable, ray_errors
from chronos.actors.wire import pack_assignments

SLOT_RESOURCE = "chronos_job_slots"
log = logging.getLogger(__name__)
CALL_TIMEOUT = 10.0  # a host that does not answer in 10 s is treated as gone


# A host that died, or did not answer in CALL_TIMEOUT, is gone: the supervisor recreates it.
_HOST_ERRORS: ErrorTable = ((
    (RayActorError, *TIMEOUTS), lambda e: HostGone(f"{type(e).__name__}: {e}")),
)


class RayHost:
    """A host actor handle behind the async :class:`chronos.runtime.Host` interface."""

    def __init__(self, handle: Any, forget: Callable[[], Any]):
        self._handle = handle
        self._forget = forget

    async def assign(self, items: list[tuple[Job, Optional[datetime], list[Execution]]]) -> None:
        await self._call("assign", pack_assignments(items))

    async def update(self, job: Job) -> None:
        await self._call("update", job)

    async def remove(self, job_id: UUID) -> None:
        await self._call("remove", job_id)

    async def trigger(self, job_id: UUID) -> Optional[Execution]:
        return await self._call("trigger", job_id)

    async def cancel(self, job_id: UUID, execution_id: UUID, reason: str) -> Optional[Execution]:
        return await self._call("cancel", job_id, execution_id, reason)

    async def status(self, with_jobs: bool = False) -> dict[str, Any]:
        return await self._call("status", with_jobs)

    async def settle(self, timeout: float) -> bool:
        return await self._call("settle", timeout)

    async def _call(self, method: str, *args: Any) -> Any:
        with ray_errors(_HOST_ERRORS, lost=self._forget, lost_on=(RayActorError, *TIMEOUTS)):
            return await asyncio.wait_for(getattr(self._handle, method).remote(*args), CALL_TIMEOUT)


class RayRuntime:
    def __init__(
        self, *, placement: Mode, pool_size: int, namespace: str, egress=DEFAULT_POLICY, signing_secrets: tuple[str, ...] = ()
    ):
        self._egress = egress
        self._signing_secrets = signing_secrets
        self.placement = Placement(placement, pool_size)
        self._namespace = namespace
        self._handles: dict[str, object] = {}

    async def slots(self) -> int:
        return await asyncio.to_thread(self._capacity)

    @staticmethod
    def _capacity() -> int:
        return int(ray.cluster_resources().get(SLOT_RESOURCE, 0))

    def start_pool(self) -> None:
        """A pool's hosts are known before any job is: create them at once, so
        their processes start while the supervisor loads the store (restore
        time on a small node is mostly processes starting)."""
        self._drop_strays()
        if self.placement.mode != "pooled":
            return  # auto: pool hosts start when a job is first placed on one
        for key in map(pool_key, range(self.placement.pool_size)):
            self._handles[key] = self._lookup(key) or self._create(key)

    def _drop_strays(self) -> None:
        """Hosts outlive a restart on a cluster. Those the settings no longer
        name (a pool host beyond a smaller pool, every pool host after a switch
        to dedicated, every job host after a switch to pooled) would go on
        claiming and firing their jobs with specs no edit reaches: stop them.
        Their unfinished executions are resumed by the jobs' new hosts."""
        for name in self._names():
            if self.placement.is_stray(name):
                log.warning("stopping host %s: the placement settings no longer name it", name)
                handle = self._lookup(name)
                if handle is not None:
                    ray.kill(handle, no_restart=True)

    def _names(self) -> list[str]:
        """The hosts in our namespace (the supervisor and Serve's actors are named too)."""
        actors = ray.util.list_named_actors(all_namespaces=True)
        return [a["name"] for a in actors
                if a["namespace"] == self._namespace and a["name"].startswith((JOB_PREFIX, POOL_PREFIX))]

    async def names(self) -> list[str]:
        return await asyncio.to_thread(self._names)

    async def host(self, key: str) -> RayHost:
        host = await self.find(key)
        if host is None:
            handle = self._handles[key] = await asyncio.to_thread(self._create, key)
            host = self._wrap(key, handle)
        return host

    async def find(self, key: str) -> Optional[RayHost]:
        handle = self._handles.get(key)
        if handle is None:
            # Lookups and creation are blocking calls to Ray's control store:
            # keep them off the supervisor's event loop.
            handle = await asyncio.to_thread(self._lookup, key)
            if handle is None:
                return None
            self._handles[key] = handle
        return self._wrap(key, handle)

    def _wrap(self, key: str, handle: Any) -> RayHost:
        return RayHost(handle, lambda: self._handles.pop(key, None))

    def _lookup(self, key: str):
        try:
            return ray.get_actor(key, namespace=self._namespace)
        except ValueError:
            return None

    def _create(self, key: str):
        options = dict(name=key, namespace=self._namespace, lifetime="detached", get_if_exists=True)
        options["scheduling_strategy"] = "SPREAD"
        if is_dedicated_key(key):
            self._admit()
            options["resources"] = {SLOT_RESOURCE: 1}
        return HostActor.options(**options).remote(key, self._namespace, self._egress, self._signing_secrets)

    def _admit(self) -> None:
        capacity = self._capacity()
        used = sum(1 for k in self._handles if is_dedicated_key(k))
        if used >= capacity:
            raise CapacityExhausted(
                f"all {capacity} dedicated job slots are in use: add a node "
                f"(ray start --address=<head> --resources='{{\"{SLOT_RESOURCE}\": 64}}'), raise "
                f"CHRONOS_JOB_SLOTS_PER_NODE, or run with CHRONOS_PLACEMENT=pooled"
            )

    async def drop(self, key: str) -> None:
        handle = self._handles.pop(key, None) or await asyncio.to_thread(self._lookup, key)
        if handle is not None:
            ray.kill(handle, no_restart=True)

    async def close(self) -> None:
        """Stop every host quietly: unfinished executions stay for the next start."""
        handles: list[Any] = list(self._handles.values())
        self._handles.clear()
        await asyncio.gather(*(h.shutdown.remote() for h in handles), return_exceptions=True)
        for handle in handles:
            ray.kill(handle, no_restart=True)
