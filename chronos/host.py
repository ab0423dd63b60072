"""A job host: the runners of one or many jobs in one process, and the
batched link from them to the supervisor. It is the
:class:`chronos.runtime.Host` the supervisor talks to (in this process, or
inside a Ray actor).

In ``dedicated`` placement a host holds one job; in ``pooled`` placement it
holds many. Either way claims made in the same event-loop tick travel to the
supervisor as one call, at once (a slot is claimed before it fires). State
reports are coalesced (latest state per execution wins: the host keeps the
live execution and copies its state when it flushes) and flushed every
``REPORT_INTERVAL``, retried until accepted: the "running" and final states of
a burst of fires go up together, after the burst.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from functools import reduce
from operator import xor
from typing import Any, Iterable, Optional, Protocol
from uuid import UUID

from chronos.clock import Clock, SystemClock
from chronos.dispatcher import Dispatcher
from chronos.models import Execution, Job
from chronos.runner import JobRunner, snapshot

log = logging.getLogger(__name__)

REPORT_INTERVAL = 0.25  # seconds between report flushes


def digest(job_ids: Iterable[UUID]) -> int:
    """An order-free fingerprint of a set of job ids (XOR): the supervisor and a
    host compare it instead of shipping thousands of ids every second."""
    return reduce(xor, (job_id.int for job_id in job_ids), 0)


class Upstream(Protocol):
    """The supervisor, as a host sees it. Both calls may fail while the supervisor is away;
    the host retries them."""

    async def claim(self, executions: list[Execution]) -> list[bool]:
        """Insert each execution's row before it is sent: True where this call owns the slot,
        False where another claim already holds it (a duplicate runner must not fire).

        :raises Unavailable: the supervisor cannot be reached (over Ray: it is not running,
            or died under the call)."""

    async def report(self, executions: list[Execution]) -> None:
        """Store the executions' latest states; returns once they are written (a late state
        after a final one is ignored, never an error).

        :raises Unavailable: the supervisor cannot be reached."""


class JobHost:
    def __init__(
        self,
        upstream: Upstream,
        *,
        clock: Optional[Clock] = None,
        dispatcher: Optional[Dispatcher] = None,
        node: Optional[str] = None,
        actor: Optional[str] = None,
    ):
        self._upstream = upstream
        self._clock = clock or SystemClock()
        self._dispatcher = dispatcher or Dispatcher()
        self._node, self._actor = node, actor
        self.runners: dict[UUID, JobRunner] = {}
        self._claims: list[tuple[Execution, asyncio.Future]] = []
        self._reports: dict[UUID, Execution] = {}
        self._flusher: Optional[asyncio.Task] = None

    # ------------------------------------------------------------ jobs

    async def assign(self, items: list[tuple[Job, Optional[datetime], list[Execution]]]) -> None:
        """Start jobs (each with its last claimed slot and its orphans); a job
        already here takes the new spec instead."""
        for job, last_slot, orphans in items:
            if job.id in self.runners:
                self.runners[job.id].update(job)
                continue
            runner = JobRunner(
                job,
                clock=self._clock,
                send=self._dispatcher.send,
                prepare=self._dispatcher.prepare,
                reporter=self,
                node=self._node,
                actor=self._actor,
            )
            self.runners[job.id] = runner
            runner.start(last_slot=last_slot, orphans=orphans)

    async def update(self, job: Job) -> None:
        runner = self.runners.get(job.id)
        if runner:
            runner.update(job)

    async def remove(self, job_id: UUID) -> None:
        runner = self.runners.pop(job_id, None)
        if runner:
            await runner.stop()

    async def trigger(self, job_id: UUID) -> Optional[Execution]:
        runner = self.runners.get(job_id)
        return await runner.trigger() if runner else None

    async def cancel(self, job_id: UUID, execution_id: UUID, reason: str) -> Optional[Execution]:
        runner = self.runners.get(job_id)
        return await runner.cancel(execution_id, reason) if runner else None

    async def status(self, with_jobs: bool = False) -> dict[str, Any]:
        """What this host runs, cheaply: how many jobs and their :func:`digest`
        (the supervisor's check every second); ``with_jobs``: also the job ids
        and the executions in flight (when the check fails)."""
        status: dict[str, Any] = {"count": len(self.runners), "digest": digest(self.runners)}
        if with_jobs:
            status["jobs"] = [str(job_id) for job_id in self.runners]
            status["running"] = [str(eid) for r in self.runners.values() for eid in r.running]
        return status

    @property
    def idle(self) -> bool:
        """No execution began, retried or ended since the last report flush (at
        most ``REPORT_INTERVAL`` ago): a quiet moment between bursts."""
        return not self._reports

    async def settle(self, timeout: float) -> bool:
        """Wait until every job has taken its first step (slots missed before
        the start fired or recorded) and the host has had a quiet moment (see
        ``idle``: its catch-up burst is through; a long run may go on); False
        after ``timeout``. The server starts its API only then: on a small node,
        starting it beside a restore's catch-up burst slowed both."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (self.idle and all(r.caught_up for r in self.runners.values())):
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def shutdown(self) -> None:
        await asyncio.gather(*(r.stop() for r in self.runners.values()))
        self.runners.clear()
        await self.flush()
        if self._flusher:
            self._flusher.cancel()
        await self._dispatcher.close()

    # ------------------------------------------------------------ reporter (for the runners)

    async def claim(self, execution: Execution) -> bool:
        future = asyncio.get_running_loop().create_future()
        self._claims.append((execution, future))
        if len(self._claims) == 1:
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._send_claims()))
        return await future

    async def _send_claims(self) -> None:
        batch, self._claims = self._claims, []
        try:
            results = await self._upstream.claim([e for e, _ in batch])
        except Exception as e:  # each runner decides whether to retry
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        for (_, future), ok in zip(batch, results):
            if not future.done():
                future.set_result(ok)

    def report(self, execution: Execution) -> None:
        self._reports[execution.id] = execution
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_loop())

    async def _flush_loop(self) -> None:
        delay = REPORT_INTERVAL
        while self._reports:
            await asyncio.sleep(delay)
            delay = REPORT_INTERVAL if await self.flush() else min(delay * 2, 5.0)

    async def flush(self) -> bool:
        """Send the pending reports; keep them for the next try on failure."""
        batch, self._reports = self._reports, {}
        if not batch:
            return True
        try:
            await self._upstream.report([snapshot(e) for e in batch.values()])
            return True
        except Exception as e:
            log.warning("reporting %d execution update(s) failed, will retry: %s", len(batch), e)
            batch.update(self._reports)  # newer states win
            self._reports = batch
            return False
