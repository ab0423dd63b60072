"""The job-host actor: a :class:`chronos.host.JobHost` inside a Ray actor.

One class serves both placements: in ``dedicated`` placement each job gets
its own actor named ``chronos:job:<name>``; in ``pooled`` placement a few
actors named ``chronos:pool:<n>`` hold many jobs each.
"""

from __future__ import annotations

import asyncio
import gc

import ray
from ray.exceptions import RayActorError

from chronos.dispatcher import Dispatcher
from chronos.egress import DEFAULT_POLICY
from chronos.errors import Unavailable
from chronos.host import JobHost
from chronos.models import Execution

from chronos.actors.collector import collect_between_bursts
from chronos.actors.remote import SUPERVISOR_NAME, ErrorTable, ray_errors, supervisor
from chronos.actors.wire import pack, unpack_assignments

__all__ = ["SUPERVISOR_NAME", "HostActor", "SupervisorLink"]

_LINK_ERRORS: ErrorTable = (
    ((RayActorError,), lambda e: Unavailable(f"the supervisor is unreachable: {type(e).__name__}")),
)


class SupervisorLink:
    """The supervisor as a host sees it (:class:`chronos.host.Upstream`), looked up by name
    (again after a restart). No timeout: the host retries claims and reports on its own clock."""

    def __init__(self, namespace: str):
        self._supervisor = supervisor(namespace)

    async def claim(self, executions: list[Execution]) -> list[bool]:
        return await self._call("claim", pack(executions))

    async def report(self, executions: list[Execution]) -> None:
        await self._call("report", pack(executions))

    async def _call(self, method: str, *args: bytes):
        with ray_errors(_LINK_ERRORS, lost=self._supervisor.forget):
            return await getattr(self._supervisor.get(), method).remote(*args)


# No task events: a host is called by the supervisor only (reconcile checks, edits),
# and each event costs its idle process and the GCS work; the dashboard still lists
# every host actor by name with its state.
@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=10_000, enable_task_events=False)
class HostActor:
    def __init__(self, key: str, namespace: str, egress=DEFAULT_POLICY, signing_secrets: tuple[str, ...] = ()):
        self.key = key
        context = ray.get_runtime_context()
        node = f"{ray.util.get_node_ip_address()}/{context.get_node_id()[:8]}"
        dispatcher = Dispatcher(egress=egress, signing_secrets=signing_secrets)
        self.host = JobHost(SupervisorLink(namespace), node=node, actor=key, dispatcher=dispatcher)
        self._collector = asyncio.get_running_loop().create_task(collect_between_bursts(lambda: self.host.idle))
        self._announce(namespace)

    def _announce(self, namespace: str) -> None:
        """Tell the supervisor this host (re)started, so it is refilled at once
        rather than at the next reconcile round (which backs off while idle)."""
        try:
            supervisor(namespace).get().host_started.remote(self.key)
        except Exception:  # no supervisor yet: its start checks every host anyway
            pass

    def __repr__(self) -> str:  # what the Ray dashboard shows for this actor
        return f"HostActor({self.key}, jobs={len(self.host.runners)})"

    async def assign(self, items: bytes) -> None:
        await self.host.assign(unpack_assignments(items))
        # The jobs just assigned live as long as the host: keep them (and their
        # runners) out of every later collection, whose pauses grow with them.
        gc.freeze()

    async def update(self, job) -> None:
        await self.host.update(job)

    async def remove(self, job_id) -> None:
        await self.host.remove(job_id)
        gc.unfreeze()  # a removed runner's cycles must be collectable again

    async def trigger(self, job_id):
        return await self.host.trigger(job_id)

    async def cancel(self, job_id, execution_id, reason):
        return await self.host.cancel(job_id, execution_id, reason)

    async def status(self, with_jobs: bool = False):
        return await self.host.status(with_jobs)

    async def settle(self, timeout: float) -> bool:
        return await self.host.settle(timeout)

    async def shutdown(self) -> None:
        await self.host.shutdown()
