"""The supervisor: the only writer to the store, and the keeper of job hosts.

It implements :class:`chronos.backend.Backend` for the REST layer and
:class:`chronos.host.Upstream` for the hosts. It owns no Ray code: the
``chronos.actors`` package wraps it in a detached Ray actor and gives it a
Ray :class:`~chronos.runtime.Runtime`.

Reconcile (at start, then every ``reconcile_interval``): every stored job must
be assigned to exactly one live host. A host that died is recreated; a host
that came back empty (restarted by Ray) is refilled; each (re)assigned job
gets its last claimed slot (to apply ``missed_runs``) and its unfinished
executions that no live host is running (to finish them honestly). A check
compares the host's job count and digest with ours. At start every host is
checked; then at most ``RECONCILE_HOSTS`` a round, in turn (100 dedicated
hosts are each checked every 5 s: a check is a call into each process).

Threads: every write (claims, reports, job changes) goes through ONE store
thread, in order; claims that arrive while one is written are written
together, in one transaction (:mod:`chronos.group_commit`). API reads do not
queue behind them: a job is read from memory (``_jobs``, kept current by the
one writer, last run included), pages and executions from a few reader threads
with their own connections.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any, Callable, Optional, TypeVar
from uuid import UUID

from chronos.forecast import fires_per_minute
from chronos.dispatcher import Dispatcher
from chronos.errors import Conflict, JobNotFound, NotFound, Unavailable
from chronos.group_commit import GroupCommit
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
    last_runs,
    merge_patch,
    utcnow,
)
from chronos.host import digest
from chronos.notifier import Notifier
from chronos.outbox import DELIVERY_POLICY, DELIVERY_TIMEOUT, Outbox
from chronos.placement import is_dedicated_key
from chronos.runtime import Host, HostGone, Runtime
from chronos.schedules import parse_schedule
from chronos.store import Store, parse_uuid

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Reports are written as they come (``report`` waits for its flush); the timer only
#: retries what a failed write kept, so it need not wake often.
FLUSH_INTERVAL = 1.0
#: A round that finds nothing to repair doubles the wait before the next, up to this:
#: each check is a call into every checked host's process, which an idle server should
#: not make every second. Edits and restarted hosts ask for a round at once (check_soon).
RECONCILE_MAX_INTERVAL = 8.0
#: Reported states written per transaction: a claim waits for one chunk's
#: write, not behind a whole burst's (10,000 executions take seconds).
FLUSH_CHUNK = 1000
PRUNE_INTERVAL = 600.0
READER_THREADS = 2
OVERVIEW_TTL = timedelta(seconds=5)
OVERVIEW_RUNNING = 100  # running executions the overview lists
_FAILING = (ExecutionStatus.failed, ExecutionStatus.timeout)
RECONCILE_HOSTS = 20  # hosts checked per reconcile round after the start


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
        self._history = (history_keep, history_max_age)
        self._reconcile_interval = reconcile_interval
        self._db = ThreadPoolExecutor(1, thread_name_prefix="chronos-store")
        # API reads must not queue behind the writes (claims and reports of every host).
        self._reader = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="chronos-store-read")
        self._pending: dict[UUID, Execution] = {}
        self._jobs: dict[UUID, Job] = {}  # the one writer keeps them in memory
        self._names: dict[str, UUID] = {}
        self._placement: Optional[dict[str, tuple[set[UUID], int]]] = None  # see _hosts
        self._dedicated: frozenset[UUID] = frozenset()  # jobs on hosts of their own (auto)
        self._slots = 0
        self._previous: Optional[dict[str, tuple[set[UUID], int]]] = None
        self._retired: set[str] = set()  # hosts no job is placed on any more (see _hosts)
        self._turn = 0  # where the next reconcile round starts
        self._lock = asyncio.Lock()
        self._soon = asyncio.Event()  # ends the reconcile's wait (check_soon)
        self._urgent: set[str] = set()  # hosts to check in the next round, first
        self._flush_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self._background_tasks: set[asyncio.Task] = set()
        self._schedules: dict[tuple, Any] = {}
        self._claims = GroupCommit(self._claim_rows)
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
        await self._io(self.store.create_schema)
        for job in await self._io(self.store.all_jobs):
            self._remember(job)
        self.notifier.seed(self._jobs.values())
        self._slots = await self.runtime.slots()
        loaded = time.monotonic()
        await self._stop_orphans()
        await self.reconcile(every_host=True)
        log.info("restored %d jobs: loaded in %.1fs, assigned to their hosts in %.1fs",
                 len(self._jobs), loaded - started, time.monotonic() - loaded)
        self._tasks = [
            asyncio.create_task(self._every(FLUSH_INTERVAL, self.flush)),
            asyncio.create_task(self._reconcile_loop()),
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
        self._db.shutdown(wait=True)
        self._reader.shutdown(wait=True)

    async def _every(self, seconds: float, step: Callable) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()
            except Exception:
                log.exception("supervisor: %s failed", getattr(step, "__name__", step))

    async def _io(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Store calls run on one worker thread, never on the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._db, partial(fn, *args, **kwargs))

    async def _read(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Read-only store calls, on the reader threads (their own connections)."""
        return await asyncio.get_running_loop().run_in_executor(self._reader, partial(fn, *args, **kwargs))

    def _remember(self, job: Job) -> None:
        old = self._jobs.get(job.id)
        if old is not None and old.name != job.name:
            del self._names[old.name]
        if old is None or old.name != job.name:  # a name places a dedicated job
            self._placement = None
        self._jobs[job.id] = job
        self._names[job.name] = job.id

    def _forget(self, job_id: UUID) -> None:
        job = self._jobs.pop(job_id, None)
        if job is not None:
            del self._names[job.name]
            self._placement = None

    def _hosts(self) -> dict[str, tuple[set[UUID], int]]:
        """Each host's job ids and their digest, worked out again only after
        jobs come, go or are renamed, or the dedicated slots change. Hosts that
        no job is placed on any more (a job that moved between a pool host and
        one of its own) are retired: the next reconcile round stops them."""
        if self._placement is None:
            self._dedicated = self.runtime.placement.dedicated(self._jobs.values(), self._slots)
            placed: dict[str, set[UUID]] = {}
            for job in self._jobs.values():
                placed.setdefault(self.runtime.placement.key(job, job.id in self._dedicated), set()).add(job.id)
            placement = {key: (ids, digest(ids)) for key, ids in placed.items()}
            previous = self._previous or {}
            retired = previous.keys() - placement.keys()
            if retired:  # jobs moved (a slot freed in auto placement): their hosts first, now
                self._retired |= retired
                self._urgent |= {key for key, held in placement.items() if previous.get(key) != held}
                self._soon.set()
            self._placement = self._previous = placement
        return self._placement

    def _key(self, job: Job) -> str:
        """The host of a job known to the registry."""
        if self._placement is None:
            self._hosts()
        return self.runtime.placement.key(job, job.id in self._dedicated)

    async def _refresh_slots(self) -> None:
        """Dedicated slots come with nodes (``auto`` places that many jobs on hosts of their own)."""
        slots = await self.runtime.slots()
        if slots != self._slots:
            async with self._lock:
                self._slots, self._placement = slots, None

    def _find(self, ref: str | UUID) -> Job:
        """A job by id or by name, as :meth:`Store.get_job` finds it, from memory."""
        job_id = ref if isinstance(ref, UUID) else parse_uuid(ref)
        job = self._jobs.get(job_id) if job_id is not None else None
        if job is None and isinstance(ref, str) and ref in self._names:  # a name may look like a UUID
            job = self._jobs.get(self._names[ref])
        if job is None:
            raise JobNotFound(f'job "{ref}" not found')
        return job

    # ------------------------------------------------------------ upstream (hosts)

    async def claim(self, executions: list[Execution]) -> list[bool]:
        inserted = await self._claims(executions)
        # Counted once, by the claim that wrote the row (a skipped summary is final at once).
        written = [ExecutionChange(e) for e, ok in zip(executions, inserted, strict=True) if ok]
        self.stats.record(written)
        self._notify(written)
        lost = [e for e, ok in zip(executions, inserted, strict=True) if not ok and e.job_id in self._jobs]
        if not lost:
            return inserted
        # A retried claim whose first try was written (its reply was lost) is still ours.
        mine = await self._io(self._own_rows, lost)
        return [ok or e.id in mine for e, ok in zip(executions, inserted, strict=True)]

    async def _claim_rows(self, executions: list[Execution]) -> list[bool]:
        """One store transaction for the claims of every host waiting (``_claims``)."""
        # A deleted job leaves _jobs before its store delete is queued (delete_job),
        # and this filter and the queueing below happen in one step of the loop: no
        # claim can insert a row for a job after its delete.
        known = [i for i, e in enumerate(executions) if e.job_id in self._jobs]
        won = await self._io(self.store.claim, [executions[i] for i in known])
        results = [False] * len(executions)
        for i, ok in zip(known, won, strict=True):
            results[i] = ok
        return results

    def _own_rows(self, executions: list[Execution]) -> set[UUID]:
        """Which of these executions already have their own row (same id)."""
        mine = set()
        for e in executions:
            try:
                self.store.get_execution(e.job_id, e.id)
                mine.add(e.id)
            except NotFound:
                pass
        return mine

    async def report(self, executions: list[Execution]) -> None:
        for execution in executions:
            job = self._jobs.get(execution.job_id)
            if job is None:
                continue  # deleted (see claim): its rows are gone
            queued = self._pending.get(execution.id)
            if _latest(queued, execution) is queued:
                continue  # a late report of a state already queued past (the store refuses the rest)
            self._pending[execution.id] = execution
        # Acknowledge only once written: a host forgets what it reported, so a
        # supervisor killed while holding acknowledged states would lose final
        # statuses for good (the execution would stay "running" forever).
        await self.flush()

    async def flush(self) -> None:
        """Write reported states (batched, off the loop), FLUSH_CHUNK a transaction.
        Flushes run one at a time: whatever is reported while one writes goes
        into the next, so concurrent reports from many hosts share transactions."""
        async with self._flush_lock:
            batch, self._pending = list(self._pending.values()), {}
            for start in range(0, len(batch), FLUSH_CHUNK):
                try:
                    written = await self._io(self.store.save_executions, batch[start : start + FLUSH_CHUNK])
                except Exception:
                    for execution in batch[start:]:  # keep them: a newer state may have arrived meanwhile
                        newer = self._pending.get(execution.id)
                        self._pending[execution.id] = execution if newer is None else _latest(execution, newer)
                    raise
                self._remember_runs(written)
                self.stats.record(written)
                self._notify(written)

    def _remember_runs(self, changes: list[ExecutionChange]) -> None:
        """The jobs' last runs as the store just wrote them (get_job reads memory)."""
        for job_id, (at, status) in last_runs(changes).items():
            job = self._jobs.get(job_id)
            if job is not None and (job.last_run is None or job.last_run <= at):
                self._jobs[job_id] = job.model_copy(update={"last_run": at, "last_status": status})

    def _notify(self, changes: list[ExecutionChange]) -> None:
        """Notices for what the store just made final (each once, by a claim or a report), handed to the outbox:
        deciding is quick and sending happens in tasks of their own."""
        for change in changes:
            job = self._jobs.get(change.execution.job_id)
            if job is not None and change.finished:
                for notice in self.notifier.decide(job, change.execution):
                    self.outbox.put(notice)

    def _count_notice(self, event: str, outcome: str) -> None:
        self.stats.notifications.labels(event, outcome).inc()

    async def prune(self) -> int:
        keep, max_age = self._history
        return await self._io(self.store.prune, keep=keep, max_age=max_age, now=utcnow())

    # ------------------------------------------------------------ reconcile

    async def settle(self, timeout: float) -> bool:
        """True once every host has settled after the restore (:meth:`JobHost.settle`)."""
        hosts = [await self.runtime.host(key) for key in self._hosts()]
        results = await asyncio.gather(*(host.settle(timeout) for host in hosts), return_exceptions=True)
        return all(result is True for result in results)

    def check_soon(self, key: Optional[str] = None) -> None:
        """Run a reconcile round now (after an edit), checking host ``key`` first."""
        if key is not None:
            self._urgent.add(key)
        self._soon.set()

    async def host_started(self, key: str) -> None:
        """A host (re)started (Ray restarted its process): refill it at once."""
        self.check_soon(key)

    async def _reconcile_loop(self) -> None:
        interval = self._reconcile_interval
        while True:
            try:
                await asyncio.wait_for(self._soon.wait(), interval)
            except asyncio.TimeoutError:
                pass
            self._soon.clear()
            try:
                repaired = await self.reconcile()
            except Exception:
                log.exception("supervisor: reconcile failed")
                repaired = True
            interval = self._reconcile_interval if repaired else min(interval * 2, RECONCILE_MAX_INTERVAL)

    async def reconcile(self, every_host: bool = False) -> bool:
        """Check that hosts (RECONCILE_HOSTS a round) hold exactly their jobs;
        True if any needed a repair. Hosts are asked without the lock: a dedicated
        host whose process is still starting answers only seconds later, and
        creates, edits and deletes must not wait for it. What to repair is decided
        under the lock."""
        if self.runtime.placement.mode == "auto":
            await self._refresh_slots()
        async with self._lock:
            hosts = self._hosts()
            retired, self._retired = [key for key in self._retired if key not in hosts], set()
            urgent, self._urgent = [key for key in self._urgent if key in hosts], set()
            keys = list(hosts)
            if not every_host and len(keys) > RECONCILE_HOSTS:
                start = self._turn % len(keys)
                keys = (keys + keys)[start : start + RECONCILE_HOSTS]
                self._turn = start + RECONCILE_HOSTS
            keys = urgent + [key for key in keys if key not in urgent]
        await self._for_hosts(retired, self._stop_orphan, "retiring")
        results = await self._for_hosts(keys, lambda key: self._reconcile_host(key, *hosts[key]), "reconcile")
        return bool(retired) or any(result is not False for result in results)

    async def _stop_orphans(self) -> None:
        """Hosts outlive the supervisor on a cluster, and one may run jobs the
        store does not place on it: a dedicated host still named after a job's
        old name (the supervisor died between a rename's write and stopping the
        old host), or any host running jobs the store does not hold (a store
        brought back from a backup older than them). Left alone, it would go on
        claiming and firing specs no edit reaches. The reconcile visits only
        hosts that jobs are placed on; these are stopped (a dedicated host) or
        emptied (a pool host) here, before the first reconcile, so the jobs'
        own hosts then resume their unfinished executions."""
        placed = self._hosts()
        orphans = [key for key in await self.runtime.names() if key not in placed]
        await self._for_hosts(orphans, self._stop_orphan, "stopping the jobs")

    async def _stop_orphan(self, key: str) -> None:
        if is_dedicated_key(key):
            log.warning("stopping host %s: no stored job is placed on it", key)
            await self.runtime.drop(key)
        else:
            await self._reconcile_host(key, set(), digest(set()))

    @staticmethod
    async def _for_hosts(keys: list[str], step: Callable[[str], Any], what: str) -> list[Any]:
        """``step`` on every host at once; a host that fails it is logged, not fatal.
        Returns each step's result (the exception, for a step that failed)."""
        results = await asyncio.gather(*(step(key) for key in keys), return_exceptions=True)
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("%s of host %s failed: %r", what, key, result)
        return results

    async def _reconcile_host(self, key: str, job_ids: set[UUID], expected: int) -> bool:
        """Make host ``key`` hold exactly its jobs; False if it already did."""
        host = await self.runtime.find(key)
        status = await _status(host) if host is not None else None
        if status is not None and status["count"] == len(job_ids) and status["digest"] == expected:
            return False
        if host is None or status is None:
            async with self._lock:
                if not self._placed(key):
                    return True  # its jobs went meanwhile: no host to make
                log.warning("host %s is missing: creating it", key)
                host = await self.runtime.host(key)
        status = await host.status(with_jobs=True)
        async with self._lock:  # decided on the placement as it is now, not the snapshot's
            placed, hosted = self._placed(key), {UUID(job_id) for job_id in status["jobs"]}
            # Not its own: deleted while it was away, or moved by a new pool size. Left
            # running, it would claim and fire them with specs no edit reaches.
            strangers = hosted - placed
            if strangers:
                log.warning("host %s runs %d job(s) placed elsewhere or deleted: stopping them", key, len(strangers))
                for job_id in strangers:
                    await host.remove(job_id)
            missing = [self._jobs[job_id] for job_id in placed - hosted]
            if missing:
                await host.assign(await self._io(self._recovery, missing, set(status["running"])))
        return True

    def _placed(self, key: str) -> set[UUID]:
        """The ids of the jobs placed on host ``key`` now (a reconcile's snapshot
        ages while it waits for the host)."""
        return self._hosts().get(key, (set(), 0))[0]

    def _recovery(self, jobs: list[Job], running: set[str]) -> list[tuple]:
        """For each job: its last claimed slot, and its unfinished executions
        that the host is not running (left behind by a runner that died)."""
        unfinished: dict[UUID, list[Execution]] = {}
        for e in self.store.unfinished_executions([job.id for job in jobs]):
            if str(e.id) not in running:
                unfinished.setdefault(e.job_id, []).append(e)
        last = self.store.last_slots([job.id for job in jobs])
        return [(job, last.get(job.id), unfinished.get(job.id, [])) for job in jobs]

    async def _host_of(self, job: Job) -> Host:
        try:
            return await self.runtime.host(self._key(job))
        except HostGone:
            raise Unavailable(f"the host of job {job.name} is restarting: try again in a few seconds") from None

    # ------------------------------------------------------------ Backend: jobs

    async def create_job(self, spec: JobCreate) -> Job:
        check_resolved(spec)
        now = utcnow()
        job = Job(**spec.model_dump(), created_at=now, updated_at=now, anchor=now)
        async with self._lock:
            await self._io(self.store.insert_job, job)
            self._remember(job)
        # Not under the lock: in dedicated placement this creates an actor, a slow call.
        try:
            host = await self.runtime.host(self._key(job))
        except Exception:  # e.g. CapacityExhausted: the job must not linger
            async with self._lock:
                if job.id in self._jobs:  # else deleted meanwhile
                    await self._delete(job)
            raise
        self._background(host.assign([(job, None, [])]), f"assign {job.name}")
        return self._with_next_run(job)

    async def get_job(self, ref: str) -> Job:
        return self._with_next_run(self._find(ref))

    async def list_jobs(self, **query) -> tuple[list[Job], Optional[str]]:
        jobs, cursor = await self._read(self.store.list_jobs, **query)
        return [self._with_next_run(j) for j in jobs], cursor

    async def replace_job(self, ref: str, spec: JobCreate) -> Job:
        return await self._change(ref, lambda old: spec.model_dump(mode="json"))

    async def patch_job(self, ref: str, patch: dict[str, Any]) -> Job:
        return await self._change(ref, lambda old: merge_patch(old.spec_data(), patch))

    async def set_enabled(self, ref: str, enabled: bool) -> Job:
        return await self._change(ref, lambda old: {**old.spec_data(), "enabled": enabled})

    async def _change(self, ref: str, new_spec: Callable[[Job], dict]) -> Job:
        async with self._lock:
            old = self._find(ref)
            spec = changed_spec(old, new_spec(old))
            now = utcnow()
            rearm = spec.enabled and (not old.enabled or spec.schedule != old.schedule or spec.timezone != old.timezone)
            job = old.model_copy(update={**dict(spec), "updated_at": now, "anchor": now if rearm else old.anchor, "problem": None})
            await self._io(self.store.update_job, job)
            old_key, new_key = self._key(old), self._key(job)
            if old_key != new_key:  # a renamed dedicated job moves to a host named after it
                old_host = await self.runtime.find(old_key)
                if old_host:
                    await self._quietly(old_host.remove(job.id))
                    await self.runtime.drop(old_key)
                host = await self.runtime.host(new_key)
                self._background(host.assign(await self._io(self._recovery, [job], set())), f"assign {job.name}")
            else:
                host = await self._host_of(job)
                await self._quietly(host.update(job))
            current = self._jobs[job.id]  # final reports may have come in meanwhile
            job = job.model_copy(update={"last_run": current.last_run, "last_status": current.last_status})
            self._remember(job)
        return self._with_next_run(job)

    async def delete_job(self, ref: str) -> None:
        async with self._lock:
            job = self._find(ref)
            key = self._key(job)
            host = await self.runtime.find(key)
            if host:
                await self._quietly(host.remove(job.id))
            if is_dedicated_key(key):
                await self.runtime.drop(key)
            await self._delete(job)

    async def _delete(self, job: Job) -> None:
        """Forget the job, then delete it from the store (callers hold the lock).

        Forgotten first, with no await before the delete is queued: claims and
        reports queued after the delete then leave the job out (see claim)."""
        self._forget(job.id)
        self.notifier.forget(job.id)
        self._pending = {k: v for k, v in self._pending.items() if v.job_id != job.id}
        try:
            await self._io(self.store.delete_job, job.id)
        except JobNotFound:
            raise  # not stored (any more): stays forgotten
        except Exception:
            self._remember(job)
            raise

    # ------------------------------------------------------------ Backend: executions

    async def trigger(self, ref: str) -> Execution:
        job = self._find(ref)
        host = await self._host_of(job)
        try:
            execution = await host.trigger(job.id)
            if execution is None:  # created a moment ago: its assignment is still on the way
                await host.assign([(job, None, [])])
                execution = await host.trigger(job.id)
        except HostGone:
            execution = None
        if execution is None:
            raise Unavailable(f"job {job.name} is being (re)started: try again in a few seconds")
        return execution

    async def list_executions(self, ref: str, **query) -> tuple[list[Execution], Optional[str]]:
        job = self._find(ref)
        await self.flush()  # read your own writes
        return await self._read(self.store.list_executions, job.id, **query)

    async def get_execution(self, ref: str, execution_id: UUID) -> Execution:
        job = self._find(ref)
        await self.flush()
        return await self._read(self.store.get_execution, job.id, execution_id)

    async def cancel_execution(self, ref: str, execution_id: UUID) -> Execution:
        job = self._find(ref)
        await self.flush()
        execution = await self._read(self.store.get_execution, job.id, execution_id)
        if execution.status.final:
            raise Conflict(f"execution {execution_id} already finished with status {execution.status.value}")
        host = await self._host_of(job)
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
        await self.flush()
        return await self._read(self.store.get_execution, job.id, execution.id)

    async def recent_executions(self, job_ids: list[UUID], per_job: int = 20) -> dict[UUID, list[Glance]]:
        await self.flush()
        return await self._read(self.store.recent_executions, list(job_ids), per_job)

    async def overview(self) -> Overview:
        """Cached for OVERVIEW_TTL: every open console tab polls it."""
        async with self._overview_lock:  # one computation at a time: tabs arriving meanwhile share it
            cached = self._overview
            if cached is not None and utcnow() - cached.generated_at < OVERVIEW_TTL:
                return cached
            self._overview = await self._compute_overview()
            return self._overview

    async def _compute_overview(self) -> Overview:
        now = utcnow()
        await self.flush()
        hour, _ = await self._read(self.store.status_counts, now - timedelta(hours=1))
        day, missed = await self._read(self.store.status_counts, now - timedelta(days=1))
        running = await self._read(self.store.running_executions, OVERVIEW_RUNNING)
        start = now.replace(second=0, microsecond=0)
        forecast = await self._read(fires_per_minute, list(self._jobs.values()), start)
        failing = sorted(j.name for j in self._jobs.values() if j.last_status in _FAILING)
        return Overview(
            generated_at=now, last_hour=hour, last_day=day, missed_last_day=missed, failing=failing,
            running=running, forecast_start=start, forecast=forecast,
        )

    # ------------------------------------------------------------ Backend: health

    async def metrics(self) -> bytes:
        await self.flush()  # the running gauge is read from the store
        running = await self._read(self.store.count_running)
        return self.stats.exposition(len(self._jobs), sum(job.enabled for job in self._jobs.values()), running)

    async def ready(self) -> None:
        try:
            # A cheap query on a reader thread: the store answers, whatever the write queue holds.
            await asyncio.wait_for(self._read(self.store.schema_version), timeout=5)
        except Exception as e:
            raise Unavailable(f"the store is not reachable: {e}") from None

    # ------------------------------------------------------------ helpers

    def _with_next_run(self, job: Job) -> Job:
        if not job.enabled or job.problem:
            return job.model_copy(update={"next_run": None})
        key = (job.schedule, job.timezone, job.anchor)
        schedule = self._schedules.get(key)
        if schedule is None:
            if len(self._schedules) > 50_000:
                self._schedules.clear()
            schedule = self._schedules[key] = parse_schedule(job.schedule, job.timezone, anchor=job.anchor)
        return job.model_copy(update={"next_run": schedule.next_after(datetime.now(timezone.utc))})

    def _background(self, coro, what: str) -> None:
        async def run():
            try:
                await coro
            except Exception as e:  # reconcile will retry it
                log.warning("%s failed (reconcile will retry): %s", what, e)
                self.check_soon()

        task = asyncio.create_task(run())
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)

    async def _quietly(self, coro) -> None:
        try:
            await coro
        except HostGone:
            self.check_soon()  # reconcile sees to it


def _latest(earlier: Optional[Execution], later: Execution) -> Execution:
    """Of two reports of one execution (in the order they came), the one to
    write: the store's rule (:meth:`ExecutionStatus.may_replace`)."""
    return later if earlier is None or later.status.may_replace(earlier.status) else earlier


async def _status(host: Host) -> Optional[dict]:
    """A host's count and digest, or None if it is gone."""
    try:
        return await host.status()
    except HostGone:
        return None
