"""What the hosts tell the supervisor, made durable: claims, reports, pruning, and the
threads every store call runs on.

Every write (claims, reports, job changes) goes through ONE store thread, in order;
claims that arrive while one is written are written together, in one transaction
(:mod:`chronos.group_commit`). A host is answered only once its claims or reports are
written, so what was acknowledged is in the store: reads run on a few reader threads with
their own connections and never wait for a write.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial
from typing import Callable, Optional, TypeVar
from uuid import UUID

from chronos.errors import NotFound
from chronos.group_commit import GroupCommit
from chronos.models import Execution, ExecutionChange, utcnow
from chronos.store import Store
from chronos.supervisor.registry import Registry

T = TypeVar("T")

#: Reported states written per transaction: a claim waits for one chunk's
#: write, not behind a whole burst's (10,000 executions take seconds).
FLUSH_CHUNK = 1000
READER_THREADS = 2


class Journal:
    def __init__(
        self, store: Store, registry: Registry, written: Callable[[list[ExecutionChange]], None],
        history: tuple[int, timedelta],
    ):
        """``written``: told every execution row a claim or a report wrote (metrics, notices)."""
        self.store = store
        self._registry = registry
        self._written = written
        self._history = history
        self._db = ThreadPoolExecutor(1, thread_name_prefix="chronos-store")
        # API reads must not queue behind the writes (claims and reports of every host).
        self._reader = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="chronos-store-read")
        self._pending: dict[UUID, Execution] = {}
        self._writing: dict[UUID, Execution] = {}  # taken from _pending by the flush under way
        self._flush_lock = asyncio.Lock()
        self._claims = GroupCommit(self._claim_rows)

    async def io(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Store calls run on one worker thread, never on the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._db, partial(fn, *args, **kwargs))

    async def read(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Read-only store calls, on the reader threads (their own connections)."""
        return await asyncio.get_running_loop().run_in_executor(self._reader, partial(fn, *args, **kwargs))

    def close(self) -> None:
        self._db.shutdown(wait=True)
        self._reader.shutdown(wait=True)

    # ------------------------------------------------------------ claims

    async def claim(self, executions: list[Execution]) -> list[bool]:
        inserted = await self._claims(executions)
        # Counted once, by the claim that wrote the row (a skipped summary is final at once).
        self._written([ExecutionChange(e) for e, ok in zip(executions, inserted, strict=True) if ok])
        lost = [e for e, ok in zip(executions, inserted, strict=True) if not ok and e.job_id in self._registry.jobs]
        if not lost:
            return inserted
        # A retried claim whose first try was written (its reply was lost) is still ours.
        mine = await self.io(self._own_rows, lost)
        return [ok or e.id in mine for e, ok in zip(executions, inserted, strict=True)]

    async def _claim_rows(self, executions: list[Execution]) -> list[bool]:
        """One store transaction for the claims of every host waiting (``_claims``)."""
        # A deleted job leaves the registry before its store delete is queued (see
        # Supervisor._delete), and this filter and the queueing below happen in one
        # step of the loop: no claim can insert a row for a job after its delete.
        known = [i for i, e in enumerate(executions) if e.job_id in self._registry.jobs]
        won = await self.io(self.store.claim, [executions[i] for i in known])
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

    # ------------------------------------------------------------ reports

    async def report(self, executions: list[Execution]) -> None:
        for execution in executions:
            if execution.job_id not in self._registry.jobs:
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
            self._writing, self._pending = self._pending, {}
            batch = list(self._writing.values())
            try:
                for start in range(0, len(batch), FLUSH_CHUNK):
                    try:
                        written = await self.io(self.store.save_executions, batch[start : start + FLUSH_CHUNK])
                    except Exception:
                        for execution in batch[start:]:  # keep them: a newer state may have arrived meanwhile
                            newer = self._pending.get(execution.id)
                            self._pending[execution.id] = execution if newer is None else _latest(execution, newer)
                        raise
                    self._registry.remember_runs(written)
                    self._written(written)
            finally:
                self._writing = {}

    def unwritten(self, execution_id: UUID) -> bool:
        """Whether a state of this execution was reported and is not written yet."""
        return execution_id in self._pending or execution_id in self._writing

    def drop(self, job_id: UUID) -> None:
        """Forget the unwritten states of a deleted job (its rows are going)."""
        self._pending = {k: v for k, v in self._pending.items() if v.job_id != job_id}

    async def prune(self) -> int:
        keep, max_age = self._history
        return await self.io(self.store.prune, keep=keep, max_age=max_age, now=utcnow())


def _latest(earlier: Optional[Execution], later: Execution) -> Execution:
    """Of two reports of one execution (in the order they came), the one to
    write: the store's rule (:meth:`ExecutionStatus.may_replace`)."""
    return later if earlier is None or later.status.may_replace(earlier.status) else earlier
