"""The supervisor actor: :class:`chronos.supervisor.Supervisor` in a named,
detached Ray actor that Ray restarts if it dies. On every (re)start it
restores the job hosts from the store (re-attaching to surviving ones)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import ray
from ray.exceptions import RayActorError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from chronos.backend import Backend
from chronos.settings import Settings

from chronos.actors.remote import SUPERVISOR_NAME
from chronos.actors.runtime import RayRuntime
from chronos.actors.wire import unpack

#: The Backend operations the REST layer may call through :meth:`SupervisorActor.call`.
BACKEND_METHODS = frozenset(name for name in dir(Backend) if not name.startswith("_"))


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=10_000)
class SupervisorActor:
    def __init__(self, settings: Settings):
        # Imported here, in the actor's process only: the driver that creates this
        # actor then holds no SQLAlchemy, store or metrics (≈ 25 MiB it never uses).
        from chronos.dispatcher import Dispatcher
        from chronos.notifier import Notifier
        from chronos.store import Store
        from chronos.supervisor import Supervisor

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger(__name__).info("supervisor process up")
        self.supervisor = Supervisor(
            Store(settings.store_url, secret_key=settings.secret_key),
            history_keep=settings.history_keep,
            history_max_age=settings.history_max_age,
            metrics_job_labels=settings.metrics_job_labels,
            notifier=Notifier(settings.notify, public_url=settings.link_base),
            notify_dispatcher=Dispatcher(egress=settings.egress_policy, signing_secrets=settings.signing_secrets),
        )
        runtime = RayRuntime(
            placement=settings.placement,
            pool_size=settings.pool_size,
            namespace=settings.namespace,
            egress=settings.egress_policy,
            signing_secrets=settings.signing_secrets,
        )
        runtime.start_pool()
        self._started = asyncio.get_running_loop().create_task(self._start(runtime))

    async def _start(self, runtime: RayRuntime) -> None:
        await self.supervisor.start(runtime)
        # The restored jobs live as long as the supervisor: keep them out of every
        # later collection (a full one over 10,000 jobs pauses claims and the API).
        gc.freeze()

    def __repr__(self) -> str:
        return f"Supervisor(jobs={len(self.supervisor.registry.jobs)})"

    async def _ready(self) -> None:
        await asyncio.shield(self._started)

    async def call(self, method: str, *args, **kwargs):
        """One entry point for the REST layer's Backend operations."""
        if method not in BACKEND_METHODS:
            raise AttributeError(method)
        await self._ready()
        return await getattr(self.supervisor, method)(*args, **kwargs)

    # Claims and reports are the hosts' steady traffic: no task events for them (each
    # event is work for the caller's and this process's core workers and the GCS).
    @ray.method(enable_task_events=False)
    async def claim(self, executions: bytes):
        await self._ready()
        return await self.supervisor.claim(unpack(executions))

    @ray.method(enable_task_events=False)
    async def report(self, executions: bytes):
        await self._ready()
        return await self.supervisor.report(unpack(executions))

    @ray.method(enable_task_events=False)
    async def host_started(self, key: str) -> None:
        await self._ready()
        await self.supervisor.host_started(key)

    async def settle(self, timeout: float) -> bool:
        await self._ready()
        return await self.supervisor.settle(timeout)

    async def shutdown(self) -> None:
        await self._ready()
        await self.supervisor.stop()


def start_supervisor(settings: Settings, timeout: float = 120.0):
    """Create the supervisor actor (or attach to the live one) and wait until
    it has restored every job. A just-killed supervisor's name can linger for
    a moment, so a dead handle is retried."""
    deadline = time.monotonic() + timeout
    while True:
        handle = SupervisorActor.options(  # type: ignore[attr-defined]  # added by @ray.remote
            name=SUPERVISOR_NAME,
            namespace=settings.namespace,
            lifetime="detached",
            get_if_exists=True,
            # On the node that runs `chronos serve` (the head under `ray up`);
            # soft, so Ray may restart it elsewhere when that node is lost.
            scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True),
        ).remote(settings)
        try:
            ray.get(handle.call.remote("ready"), timeout=max(1.0, deadline - time.monotonic()))
            return handle
        except (RayActorError, RayTaskError):  # dead handle, or still restoring a large store
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
