"""Keeping the hosts true to the registry: every call that changes what a host holds is
made here, and never under the registry's lock (a host may take up to
its call timeout, 10 s over Ray, to answer; the API edits of every other job go on).

- After an edit, :meth:`Reconciler.sync` brings the job's host(s) up to date. Syncs of one
  job run one at a time, and each sends the job as the registry holds it when it runs,
  so the last one leaves the host current whatever order concurrent edits come in.
- Reconcile (at start, then every ``reconcile_interval``): every stored job must be
  assigned to exactly one live host. A host that died is recreated; a host that came back
  empty (restarted by Ray) is refilled; each (re)assigned job gets its last claimed slot
  (to apply ``missed_runs``) and its unfinished executions that no live host is running
  (to finish them honestly). A check compares the host's job count and digest with the
  registry's. At start every host is checked; then at most ``RECONCILE_HOSTS`` a round,
  in turn (100 dedicated hosts are each checked every 5 s: a check is a call into each
  process). What to repair is decided under the lock; the repair is made after it, and
  what an edit changed meanwhile is synced again.
- Orphans: hosts that no stored job is placed on are stopped (dedicated) or emptied
  (pooled), at start and when jobs move off them.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, AsyncIterator, Awaitable, Callable, Optional
from uuid import UUID

from chronos.errors import Unavailable
from chronos.host import digest
from chronos.models import Execution, Job
from chronos.placement import is_dedicated_key
from chronos.runtime import Host, HostGone, Runtime
from chronos.supervisor.journal import Journal
from chronos.supervisor.registry import Registry

log = logging.getLogger(__name__)

#: A round that finds nothing to repair doubles the wait before the next, up to this:
#: each check is a call into every checked host's process, which an idle server should
#: not make every second. Edits and restarted hosts ask for a round at once (check_soon).
RECONCILE_MAX_INTERVAL = 8.0
RECONCILE_HOSTS = 20  # hosts checked per reconcile round after the start

Assignment = tuple[Job, Optional[datetime], list[Execution]]


class Reconciler:
    def __init__(self, registry: Registry, journal: Journal, runtime: Callable[[], Runtime], interval: float):
        """``runtime``: the supervisor's (raises until it is started)."""
        self._registry = registry
        self._journal = journal
        self._runtime = runtime
        self._interval = interval
        self._turn = 0  # where the next reconcile round starts
        self._soon = asyncio.Event()  # ends the reconcile's wait (check_soon)
        self._urgent: set[str] = set()  # hosts to check in the next round, first
        self._syncs: dict[UUID, tuple[asyncio.Lock, int]] = {}  # see _in_turn

    def check_soon(self, *keys: str) -> None:
        """Run a reconcile round now (after an edit), checking hosts ``keys`` first."""
        self._urgent.update(keys)
        self._soon.set()

    # ------------------------------------------------------------ one job, after an edit

    async def sync(self, job_id: UUID, left: Optional[str] = None, new: bool = False) -> None:
        """Make the hosts hold job ``job_id`` as the registry does now: ``left``, the host
        it was on before the edit (a rename, a delete), gives it up; ``new``: a job just
        created, assigned with no history. A host that is gone is left to the reconcile.

        :raises Unavailable: the job's host cannot be reached to be told.
        :raises CapacityExhausted: a renamed dedicated job finds no slot for its host."""
        async with self._in_turn(job_id):
            job = self._registry.jobs.get(job_id)
            key = self._registry.key(job) if job is not None else None
            if left is not None and left != key:
                await self._leave(left, job_id)
            if job is None:
                return
            host = await self.host_of(job)
            if new or left not in (None, key):
                items = [(job, None, [])] if new else await self._journal.io(self._recovery, [job], set())
                await self._quietly(host.assign(items))
            else:
                await self._quietly(host.update(job))

    @asynccontextmanager
    async def _in_turn(self, job_id: UUID) -> AsyncIterator[None]:
        """One sync of a job at a time (a lock kept only while someone holds or awaits it)."""
        lock, users = self._syncs.get(job_id, (asyncio.Lock(), 0))
        self._syncs[job_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._syncs.pop(job_id)
            if users > 1:
                self._syncs[job_id] = (lock, users - 1)

    async def _leave(self, key: str, job_id: UUID) -> None:
        host = await self._runtime().find(key)
        if host is not None:
            await self._quietly(host.remove(job_id))
        await self._drop_unplaced(key)

    async def _drop_unplaced(self, key: str) -> None:
        """Stop a dedicated host no job is placed on (its name may be a new job's by now)."""
        if is_dedicated_key(key) and not self._registry.placed(key):
            await self._runtime().drop(key)

    async def host_of(self, job: Job) -> Host:
        """The live host of a job the registry holds.

        :raises Unavailable: it cannot be reached or made."""
        key = self._registry.key(job)
        try:
            return await self._runtime().host(key)
        except HostGone:
            self.check_soon(key)
            raise Unavailable(f"the host of job {job.name} is restarting: try again in a few seconds") from None

    async def _quietly(self, call: Awaitable[Any]) -> None:
        try:
            await call
        except HostGone:
            self.check_soon()  # the reconcile sees to it

    # ------------------------------------------------------------ every host, in rounds

    async def loop(self) -> None:
        interval = self._interval
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
            interval = self._interval if repaired else min(interval * 2, RECONCILE_MAX_INTERVAL)

    async def reconcile(self, every_host: bool = False) -> bool:
        """Check that hosts (RECONCILE_HOSTS a round) hold exactly their jobs;
        True if any needed a repair. Hosts are asked without the lock: a dedicated
        host whose process is still starting answers only seconds later, and
        creates, edits and deletes must not wait for it. What to repair is decided
        under the lock."""
        runtime = self._runtime()
        if runtime.placement.mode == "auto":
            slots = await runtime.slots()  # dedicated slots come with nodes
            if slots != self._registry.slots:
                async with self._registry.lock:
                    self._registry.set_slots(slots)
        async with self._registry.lock:
            hosts = self._registry.hosts()
            retired = self._registry.take_retired()
            urgent, self._urgent = [key for key in self._urgent if key in hosts], set()
            keys = list(hosts)
            if not every_host and len(keys) > RECONCILE_HOSTS:
                start = self._turn % len(keys)
                keys = (keys + keys)[start : start + RECONCILE_HOSTS]
                self._turn = start + RECONCILE_HOSTS
            keys = urgent + [key for key in keys if key not in urgent]
        await _for_hosts(retired, self._stop_orphan, "retiring")
        results = await _for_hosts(keys, lambda key: self._reconcile_host(key, *hosts[key]), "reconcile")
        return bool(retired) or any(result is not False for result in results)

    async def stop_orphans(self) -> None:
        """Hosts outlive the supervisor on a cluster, and one may run jobs the
        store does not place on it: a dedicated host still named after a job's
        old name (the supervisor died between a rename's write and stopping the
        old host), or any host running jobs the store does not hold (a store
        brought back from a backup older than them). Left alone, it would go on
        claiming and firing specs no edit reaches. The reconcile visits only
        hosts that jobs are placed on; these are stopped (a dedicated host) or
        emptied (a pool host) here, before the first reconcile, so the jobs'
        own hosts then resume their unfinished executions."""
        placed = self._registry.hosts()
        orphans = [key for key in await self._runtime().names() if key not in placed]
        await _for_hosts(orphans, self._stop_orphan, "stopping the jobs")

    async def _stop_orphan(self, key: str) -> None:
        if is_dedicated_key(key):
            log.warning("stopping host %s: no stored job is placed on it", key)
            await self._drop_unplaced(key)
        else:
            await self._reconcile_host(key, set(), digest(set()))

    async def _reconcile_host(self, key: str, job_ids: set[UUID], expected: int) -> bool:
        """Make host ``key`` hold exactly its jobs; False if it already did."""
        runtime = self._runtime()
        host = await runtime.find(key)
        status = await _status(host) if host is not None else None
        if status is not None and status["count"] == len(job_ids) and status["digest"] == expected:
            return False
        if host is None or status is None:
            if not self._registry.placed(key):
                return True  # its jobs went meanwhile: no host to make
            log.warning("host %s is missing: creating it", key)
            host = await runtime.host(key)
        status = await host.status(with_jobs=True)
        async with self._registry.lock:  # decided on the placement as it is now, not the snapshot's
            placed, hosted = self._registry.placed(key), {UUID(job_id) for job_id in status["jobs"]}
            # Not its own: deleted while it was away, or moved by a new pool size. Left
            # running, it would claim and fire them with specs no edit reaches.
            strangers = hosted - placed
            missing = [self._registry.jobs[job_id] for job_id in placed - hosted]
        if strangers:
            log.warning("host %s runs %d job(s) placed elsewhere or deleted: stopping them", key, len(strangers))
            for job_id in strangers:
                await host.remove(job_id)
        if missing:
            await host.assign(await self._journal.io(self._recovery, missing, set(status["running"])))
        await self._catch_up(key, strangers, missing)
        return True

    async def _catch_up(self, key: str, removed: set[UUID], assigned: list[Job]) -> None:
        """Edits that came while the host was being repaired: a job stopped here that is
        placed here again is checked for in the next round (the digest shows it missing);
        a job assigned here that was edited, moved or deleted meanwhile is synced again
        (the digest does not show a stale spec); a dedicated host whose job went while it
        was being made is stopped."""
        if removed & self._registry.placed(key):
            self.check_soon(key)
        await self._drop_unplaced(key)
        for job in assigned:
            now = self._registry.jobs.get(job.id)
            if now is None or now.updated_at != job.updated_at or self._registry.key(now) != key:
                await self.sync(job.id, left=key)

    def _recovery(self, jobs: list[Job], running: set[str]) -> list[Assignment]:
        """For each job: its last claimed slot, and its unfinished executions
        that the host is not running (left behind by a runner that died). Runs on the store thread."""
        store = self._journal.store
        unfinished: dict[UUID, list[Execution]] = {}
        for e in store.unfinished_executions([job.id for job in jobs]):
            if str(e.id) not in running:
                unfinished.setdefault(e.job_id, []).append(e)
        last = store.last_slots([job.id for job in jobs])
        return [(job, last.get(job.id), unfinished.get(job.id, [])) for job in jobs]

    async def settle(self, timeout: float) -> bool:
        """True once every host has settled after the restore (:meth:`JobHost.settle`)."""
        hosts = [await self._runtime().host(key) for key in self._registry.hosts()]
        results = await asyncio.gather(*(host.settle(timeout) for host in hosts), return_exceptions=True)
        return all(result is True for result in results)


async def _for_hosts(keys: list[str], step: Callable[[str], Any], what: str) -> list[Any]:
    """``step`` on every host at once; a host that fails it is logged, not fatal.
    Returns each step's result (the exception, for a step that failed)."""
    results = await asyncio.gather(*(step(key) for key in keys), return_exceptions=True)
    for key, result in zip(keys, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("%s of host %s failed: %r", what, key, result)
    return results


async def _status(host: Host) -> Optional[dict]:
    """A host's count and digest, or None if it is gone."""
    try:
        return await host.status()
    except HostGone:
        return None
