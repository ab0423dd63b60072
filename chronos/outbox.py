"""Delivery of notifications: each in a task of its own, off the report path.

:meth:`Outbox.put` never waits: it starts a task and returns, so a target that is slow or down
never delays a report, a claim or a job's firing. A notice is sent with the dispatcher's rules
(timeouts, egress policy, signing with the job's secret or the server's) and retried with
backoff (:func:`chronos.retry.judge`) up to ``policy.max_attempts``. Every notice ends counted
once, ``sent``, ``failed`` (logged with the job, event, target host and last error -- never the
URL, whose path may be a credential) or ``dropped`` (more than ``capacity`` in flight).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Callable
from urllib.parse import urlsplit

from chronos.dispatcher import Dispatcher
from chronos.outcome import Outcome
from chronos.models import Method, RetryPolicy, Webhook
from chronos.notifier import Notice
from chronos.retry import judge

log = logging.getLogger(__name__)

#: 1 s, 2 s, 4 s, 8 s between five attempts: a target back within ~15 s still hears.
DELIVERY_POLICY = RetryPolicy(max_attempts=5, initial_interval=timedelta(seconds=1), max_interval=timedelta(minutes=1))
DELIVERY_TIMEOUT = 10.0  # seconds per attempt


class Outbox:
    def __init__(
        self,
        dispatcher: Dispatcher,
        count: Callable[[str, str], None],
        *,
        policy: RetryPolicy = DELIVERY_POLICY,
        timeout: float = DELIVERY_TIMEOUT,
        capacity: int = 10_000,
    ):
        """``count(event, outcome)``: called once per notice when it ends."""
        self._dispatcher = dispatcher
        self._count = count
        self._policy = policy
        self._timeout = timeout
        self._capacity = capacity
        self._tasks: set[asyncio.Task] = set()

    def put(self, notice: Notice) -> None:
        if len(self._tasks) >= self._capacity:
            log.warning("notification dropped (%d in flight): job %s, event %s, target %s",
                        len(self._tasks), notice.job.name, notice.event.value, _host(notice))
            self._count(notice.event.value, "dropped")
            return
        task = asyncio.get_running_loop().create_task(self._deliver(notice))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop delivering (at shutdown): notices in flight are abandoned, uncounted."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._dispatcher.close()

    async def _deliver(self, notice: Notice) -> None:
        hook = Webhook(
            url=notice.target.url,
            method=Method.POST,
            headers={"Content-Type": "application/json"},
            body=notice.body,
            signing_secret=notice.job.webhook.signing_secret,
        )
        job = notice.job.model_copy(update={"webhook": hook})
        # The notice's own id: webhook-id and Idempotency-Key are the same on every retry.
        message = notice.execution.model_copy(update={"id": notice.id})
        outcome: Outcome | None = None
        for attempt in range(1, self._policy.max_attempts + 1):
            outcome = await self._dispatcher.send(job, message, attempt, self._timeout)
            verdict = judge(outcome, hook, self._policy, attempt)
            if outcome.ok or not verdict.retry or verdict.wait is None:
                break
            await asyncio.sleep(verdict.wait.total_seconds())
        if outcome is not None and outcome.ok:
            self._count(notice.event.value, "sent")
            return
        error = outcome.error if outcome is not None else "not sent"
        log.warning("notification not delivered after %d attempt(s): job %s, event %s, target %s: %s",
                    attempt, notice.job.name, notice.event.value, _host(notice), error)
        self._count(notice.event.value, "failed")


def _host(notice: Notice) -> str:
    parts = urlsplit(notice.target.url)
    return f"{parts.scheme}://{parts.netloc}"
