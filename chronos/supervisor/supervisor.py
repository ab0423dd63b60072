"""The supervisor's face: :class:`chronos.backend.Backend` for the REST layer and
:class:`chronos.host.Upstream` for the hosts, made of the three parts of the package.

A job edit is decided and written under the registry's lock, remembered, and only then
told to its host (:meth:`Reconciler.sync`): a slow host holds up the edits of its own job,
never those of the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any, Awaitable, Callable, Optional
from uuid import UUID

from chronos.dispatcher import Dispatcher
from chronos.errors import Conflict, JobNotFound, Unavailable
from chronos.forecast import fires_per_minute
from chronos.metrics import Metrics
from chronos.models import (
    Execution,
    ExecutionChange,
    ExecutionStatus,
    Glance,
    Job,
    JobCreate,
    Overview,
    RetryPolicy,
    changed_spec,
    check_resolved,
    merge_patch,
    utcnow,
)
from chronos.notifier import Notifier
from chronos.outbox import DELIVERY_POLICY, DELIVERY_TIMEOUT, Outbox
from chronos.runtime import HostGone, Runtime
from chronos.store import Store
from chronos.supervisor.journal import Journal
from chronos.supervisor.reconciler import Reconciler
from chronos.supervisor.registry import Registry

log = logging.getLogger(__name__)

#: Reports are written as they come (``report`` waits for its flush); the timer only
#: retries what a failed write kept, so it need not wake often.
FLUSH_INTERVAL = 1.0
PRUNE_INTERVAL = 600.0
OVERVIEW_TTL = timedelta(seconds=5)
OVERVIEW_RUNNING = 100  # running executions the overview lists
_FAILING = (ExecutionStatus.failed, ExecutionStatus.timeout)


class Supervisor:
    def __init__(
        self,
        store: Store,
        *,
        history_keep: int = 1000,
        history_max_age: timedelta = timedelta(days=30),
        reconcile_interval: float = 1.0,
        metrics_job_labels: bool = False,
        notifier: Optional[Notifier] = None,
        notify_dispatcher: Optional[Dispatcher] = None,
        delivery_policy: RetryPolicy = DELIVERY_POLICY,
        delivery_timeout: float = DELIVERY_TIMEOUT,
    ):
        """``notifier``: decides notifications (default: only the jobs' own targets);
        ``notify_dispatcher`` sends them (the server's egress policy and default signing
        secrets), each attempt within ``delivery_timeout`` seconds, retried per ``delivery_policy``."""
        self.store = store
        self._runtime: Optional[Runtime] = None
        self.stats = Metrics(job_labels=metrics_job_labels)
        self.registry = Registry(moved=lambda keys: self.reconciler.check_soon(*keys))
        self.journal = Journal(store, self.registry, self._derive, (history_keep, history_max_age))
        self.reconciler = Reconciler(self.registry, self.journal, lambda: self.runtime, reconcile_interval)
        self._tasks: list[asyncio.Task] = []
        self._background_tasks: set[asyncio.Task] = set()
        self._overview: Optional[Overview] = None
        self._overview_lock = asyncio.Lock()
        self.notifier = notifier or Notifier()
        self.outbox = Outbox(notify_dispatcher or Dispatcher(), self._count_notice,
                             policy=delivery_policy, timeout=delivery_timeout)

    # ------------------------------------------------------------ lifecycle

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("the supervisor is not started")
        return self._runtime

    async def start(self, runtime: Runtime) -> None:
        self._runtime = runtime
        started = time.monotonic()
        await self.journal.io(self.store.create_schema)
        for job in await self.journal.io(self.store.all_jobs):
            self.registry.remember(job)
        self.notifier.seed(self.registry.jobs.values())
        self.registry.attach(runtime.placement, await runtime.slots())
        loaded = time.monotonic()
        await self.reconciler.stop_orphans()
        await self.reconciler.reconcile(every_host=True)
        log.info("restored %d jobs: loaded in %.1fs, assigned to their hosts in %.1fs",
                 len(self.registry.jobs), loaded - started, time.monotonic() - loaded)
        self._tasks = [
            asyncio.create_task(self._every(FLUSH_INTERVAL, self.flush)),
            asyncio.create_task(self.reconciler.loop()),
            asyncio.create_task(self._every(PRUNE_INTERVAL, self.prune)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runtime:
            await self._runtime.close()
        await self.flush()
        await self.outbox.close()
        self.journal.close()

    async def _every(self, seconds: float, step: Callable) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()
            except Exception:
                log.exception("supervisor: %s failed", getattr(step, "__name__", step))

    # ------------------------------------------------------------ upstream (hosts)

    async def claim(self, executions: list[Execution]) -> list[bool]:
        return await self.journal.claim(executions)

    async def report(self, executions: list[Execution]) -> None:
        await self.journal.report(executions)

    async def host_started(self, key: str) -> None:
        """A host (re)started (Ray restarted its process): refill it at once."""
        self.reconciler.check_soon(key)

    # ------------------------------------------------------------ writes and reconcile

    async def flush(self) -> None:
        await self.journal.flush()

    async def prune(self) -> int:
        return await self.journal.prune()

    async def reconcile(self, every_host: bool = False) -> bool:
        return await self.reconciler.reconcile(every_host)

    async def settle(self, timeout: float) -> bool:
        return await self.reconciler.settle(timeout)

    def check_soon(self, key: Optional[str] = None) -> None:
        """Run a reconcile round now, checking host ``key`` first."""
        self.reconciler.check_soon(*([key] if key else []))

    def _derive(self, changes: list[ExecutionChange]) -> None:
        """Metrics and notices follow what the store just wrote (each change once, by a
        claim or a report); notices are handed to the outbox, which sends in tasks of its own."""
        self.stats.record(changes)
        for change in changes:
            job = self.registry.jobs.get(change.execution.job_id)
            if job is not None and change.finished:
                for notice in self.notifier.decide(job, change.execution):
                    self.outbox.put(notice)

    def _count_notice(self, event: str, outcome: str) -> None:
        self.stats.notifications.labels(event, outcome).inc()

    # ------------------------------------------------------------ Backend: jobs

    async def create_job(self, spec: JobCreate) -> Job:
        check_resolved(spec)
        job = Job.from_spec(spec, utcnow())
        async with self.registry.lock:
            await self.journal.io(self.store.insert_job, job)
            self.registry.remember(job)
        # Not under the lock: in dedicated placement this creates an actor, a slow call.
        try:
            await self.runtime.host(self.registry.key(job))
        except Exception:  # e.g. CapacityExhausted: the job must not linger
            async with self.registry.lock:
                if job.id in self.registry.jobs:  # else deleted meanwhile
                    await self._delete(job)
            raise
        self._background(self.reconciler.sync(job.id, new=True), f"assign {job.name}")
        return self.registry.with_next_run(job)

    async def get_job(self, ref: str) -> Job:
        return self.registry.with_next_run(self.registry.find(ref))

    async def list_jobs(self, **query) -> tuple[list[Job], Optional[str]]:
        jobs, cursor = await self.journal.read(self.store.list_jobs, **query)
        return [self.registry.with_next_run(j) for j in jobs], cursor

    async def replace_job(self, ref: str, spec: JobCreate) -> Job:
        return await self._change(ref, lambda old: spec.model_dump(mode="json"))

    async def patch_job(self, ref: str, patch: dict[str, Any]) -> Job:
        return await self._change(ref, lambda old: merge_patch(old.spec_data(), patch))

    async def set_enabled(self, ref: str, enabled: bool) -> Job:
        return await self._change(ref, lambda old: {**old.spec_data(), "enabled": enabled})

    async def _change(self, ref: str, new_spec: Callable[[Job], dict]) -> Job:
        async with self.registry.lock:
            old = self.registry.find(ref)
            spec = changed_spec(old, new_spec(old))
            now = utcnow()
            rearm = spec.enabled and (not old.enabled or spec.schedule != old.schedule or spec.timezone != old.timezone)
            job = old.model_copy(update={**dict(spec), "updated_at": now, "anchor": now if rearm else old.anchor, "problem": None})
            await self.journal.io(self.store.update_job, job)
            current = self.registry.jobs[job.id]  # final reports may have come in meanwhile
            job = job.model_copy(update={"last_run": current.last_run, "last_status": current.last_status})
            left = self.registry.key(old)  # a renamed dedicated job moves to a host named after it
            self.registry.remember(job)
        await self.reconciler.sync(job.id, left=left)
        return self.registry.with_next_run(job)

    async def delete_job(self, ref: str) -> None:
        async with self.registry.lock:
            job = self.registry.find(ref)
            key = self.registry.key(job)
            await self._delete(job)
        await self.reconciler.sync(job.id, left=key)  # its host lets it go

    async def _delete(self, job: Job) -> None:
        """Forget the job, then delete it from the store (callers hold the lock).

        Forgotten first, with no await before the delete is queued: claims and
        reports queued after the delete then leave the job out (see Journal.claim)."""
        self.registry.forget(job.id)
        self.notifier.forget(job.id)
        self.journal.drop(job.id)
        try:
            await self.journal.io(self.store.delete_job, job.id)
        except JobNotFound:
            raise  # not stored (any more): stays forgotten
        except Exception:
            self.registry.remember(job)
            raise

    # ------------------------------------------------------------ Backend: executions

    async def trigger(self, ref: str) -> Execution:
        job = self.registry.find(ref)
        host = await self.reconciler.host_of(job)
        try:
            execution = await host.trigger(job.id)
            if execution is None:  # created a moment ago: its assignment is still on the way
                await self.reconciler.sync(job.id, new=True)
                execution = await host.trigger(job.id)
        except HostGone:
            execution = None
        if execution is None:
            raise Unavailable(f"job {job.name} is being (re)started: try again in a few seconds")
        # Written before the answer: a read of its Location must not find the older
        # "pending" claim until the host's next report (the store keeps the newer state).
        await self.report([execution])
        return execution

    # Reads do not flush: a host is answered only once its reports are written, so every
    # state acknowledged before a read began is in the store (read your own writes).

    async def list_executions(self, ref: str, **query) -> tuple[list[Execution], Optional[str]]:
        job = self.registry.find(ref)
        return await self.journal.read(self.store.list_executions, job.id, **query)

    async def get_execution(self, ref: str, execution_id: UUID) -> Execution:
        job = self.registry.find(ref)
        return await self.journal.read(self.store.get_execution, job.id, execution_id)

    async def cancel_execution(self, ref: str, execution_id: UUID) -> Execution:
        job = self.registry.find(ref)
        if self.journal.unwritten(execution_id):
            await self.flush()  # it may have just finished: decide on its latest state
        execution = await self.journal.read(self.store.get_execution, job.id, execution_id)
        if execution.status.final:
            raise Conflict(f"execution {execution_id} already finished with status {execution.status.value}")
        host = await self.reconciler.host_of(job)
        try:
            cancelled = await host.cancel(job.id, execution.id, "cancelled by user")
        except HostGone:
            cancelled = None
        if cancelled is None:  # not in flight anywhere: close the record here
            now = utcnow()
            cancelled = execution.model_copy(
                update={"status": ExecutionStatus.cancelled, "finished_at": now, "reason": "cancelled by user"}
            )
        await self.report([cancelled])
        return await self.journal.read(self.store.get_execution, job.id, execution.id)

    async def recent_executions(self, job_ids: list[UUID], per_job: int = 20) -> dict[UUID, list[Glance]]:
        return await self.journal.read(self.store.recent_executions, list(job_ids), per_job)

    async def overview(self) -> Overview:
        """Cached for OVERVIEW_TTL: every open console tab polls it."""
        async with self._overview_lock:  # one computation at a time: tabs arriving meanwhile share it
            cached = self._overview
            if cached is not None and utcnow() - cached.generated_at < OVERVIEW_TTL:
                return cached
            self._overview = await self._compute_overview()
            return self._overview

    async def _compute_overview(self) -> Overview:
        now, read = utcnow(), self.journal.read
        hour, _ = await read(self.store.status_counts, now - timedelta(hours=1))
        day, missed = await read(self.store.status_counts, now - timedelta(days=1))
        running = await read(self.store.running_executions, OVERVIEW_RUNNING)
        start = now.replace(second=0, microsecond=0)
        forecast = await read(fires_per_minute, list(self.registry.jobs.values()), start)
        failing = sorted(j.name for j in self.registry.jobs.values() if j.last_status in _FAILING)
        return Overview(
            generated_at=now, last_hour=hour, last_day=day, missed_last_day=missed, failing=failing,
            running=running, forecast_start=start, forecast=forecast,
        )

    # ------------------------------------------------------------ Backend: health

    async def metrics(self) -> bytes:
        running = await self.journal.read(self.store.count_running)  # the running gauge is read from the store
        jobs = self.registry.jobs.values()
        return self.stats.exposition(len(jobs), sum(job.enabled for job in jobs), running)

    async def ready(self) -> None:
        try:
            # A cheap query on a reader thread: the store answers, whatever the write queue holds.
            await asyncio.wait_for(self.journal.read(self.store.schema_version), timeout=5)
        except Exception as e:
            # /ready is open without a token: the driver's text (host, user) goes to the log only.
            log.warning("readiness check: the store is not reachable: %r", e)
            raise Unavailable("the store is not reachable (the server's log says why)") from None

    # ------------------------------------------------------------ helpers

    def _background(self, call: Awaitable[Any], what: str) -> None:
        async def run():
            try:
                await call
            except Exception as e:  # reconcile will retry it
                log.warning("%s failed (reconcile will retry): %s", what, e)
                self.reconciler.check_soon()

        task = asyncio.create_task(run())
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)
