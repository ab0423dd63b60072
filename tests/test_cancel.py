"""Cancel means it is not sent: an execution cancelled while it is claimed but not
yet due, or queued for its turn (a catch-up run, a run resumed after a restart),
never reaches the receiver. On a real Ray, against a receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import pytest

from chronos.models import ExecutionStatus, Trigger
from receiver import Receiver
from test_actors import Chronos, hook

pytestmark = pytest.mark.ray


@pytest.fixture
async def chronos(ray_session, tmp_path):
    system = await Chronos(tmp_path, "pooled").start()
    yield system
    await system.stop()


@pytest.fixture
async def receiver():
    async with Receiver() as r:
        # The run ahead ends soon: a queued run would go next.
        r.route("/slow", delay=3)
        r.route("/slower", delay=8)  # outlives the restart that interrupts it
        yield r


def sent_ids(receiver: Receiver, since: float = 0.0) -> list[str]:
    return [r.headers.get("X-Chronos-Execution-ID", "") for r in receiver.requests if r.time >= since]


async def restart(chronos: Chronos, down: float = 0.0) -> None:
    """Stop the supervisor and its hosts (unfinished executions stay in the store), then start again."""
    await chronos.stop()
    await asyncio.sleep(down)
    await chronos.start()


async def cancel(chronos: Chronos, job: str, execution_id) -> float:
    cancelled = await chronos.client.cancel_execution(job, execution_id)
    assert cancelled.status is ExecutionStatus.cancelled and cancelled.reason == "cancelled by user"
    return time.time()


async def test_a_slot_cancelled_before_its_instant_is_never_sent(chronos, receiver):
    await chronos.create(name="soon", schedule="*/10 * * * * *", webhook=hook(receiver))
    (waiting,) = await chronos.wait(lambda: chronos.executions("soon", status="pending"), timeout=30, what="a claimed slot")
    assert waiting.scheduled_at.timestamp() > time.time()  # claimed ahead of its instant
    await cancel(chronos, "soon", waiting.id)
    await asyncio.sleep(max(0.0, waiting.scheduled_at.timestamp() - time.time()) + 2)
    assert str(waiting.id) not in sent_ids(receiver)
    (stored,) = [e for e in await chronos.executions("soon") if e.id == waiting.id]
    assert stored.status is ExecutionStatus.cancelled


async def test_a_run_resumed_after_a_restart_cancelled_in_its_queue_is_never_sent(chronos, receiver):
    await chronos.create(name="resumed", schedule="0 0 1 1 *", webhook=hook(receiver, "/slower"), timeout="5m")
    runs = [await chronos.client.trigger("resumed") for _ in range(2)]
    await receiver.wait_for(2, timeout=15, path="/slower")
    await restart(chronos)
    await receiver.wait_for(3, timeout=30, path="/slower")  # one resumed run is sent again; the other waits its turn
    resent = sent_ids(receiver)[2]
    (queued,) = [run for run in runs if str(run.id) != resent]
    since = await cancel(chronos, "resumed", queued.id)
    await asyncio.sleep(11)  # the resent run has ended: the queued one would have been next
    assert str(queued.id) not in sent_ids(receiver, since)
    assert {e.id: e.status for e in await chronos.executions("resumed")}[queued.id] is ExecutionStatus.cancelled


async def test_a_catch_up_run_cancelled_in_its_queue_is_never_sent(chronos, receiver):
    await chronos.create(
        name="behind", schedule="*/1 * * * * *", missed_runs="execute_all", concurrency="forbid",
        webhook=hook(receiver, "/slow"), timeout="5m",
    )
    await receiver.wait_for(1, timeout=15, path="/slow")
    await restart(chronos, down=7)  # longer than LATE_GRACE: the slots meanwhile are caught up, in turn

    async def queued():
        pending = await chronos.executions("behind", status="pending")
        return [e for e in pending if e.trigger is Trigger.catchup]

    waiting = min(await chronos.wait(queued, timeout=30, what="queued catch-up runs"), key=lambda e: e.scheduled_at)
    since = await cancel(chronos, "behind", waiting.id)
    await asyncio.sleep(8)  # the runs ahead of it (3 s each) have ended: it would have been sent
    assert str(waiting.id) not in sent_ids(receiver, since)
