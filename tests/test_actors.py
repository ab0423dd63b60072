"""Job actors and the supervisor on a real local Ray, against real receivers
on 127.0.0.1, in both placements."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import pytest
import ray

from chronos.actors.client import SupervisorClient
from chronos.actors.ray_host import HostActor, SUPERVISOR_NAME
from chronos.actors.supervisor import start_supervisor
from chronos.actors.wire import pack_assignments
from chronos.models import ExecutionStatus, Trigger, parse_job
from chronos.settings import Settings

from receiver import Receiver

pytestmark = pytest.mark.ray


class Chronos:
    """A supervisor (and its hosts) in its own Ray namespace, on its own SQLite file."""

    def __init__(self, tmp_path, placement: str):
        self.settings = Settings(
            data_dir=tmp_path, namespace=f"test-{uuid.uuid4().hex[:8]}", placement=placement, pool_size=2
        )
        self.client = SupervisorClient(self.settings.namespace)
        self.actor = None

    async def start(self):
        self.actor = await asyncio.to_thread(start_supervisor, self.settings)
        return self

    async def stop(self):
        if self.actor is not None:
            await self.actor.shutdown.remote()
            ray.kill(self.actor, no_restart=True)
            self.actor = None

    async def create(self, **spec):
        return await self.client.create_job(parse_job(spec))

    async def executions(self, job, status=None):
        items, _ = await self.client.list_executions(job, limit=500, status=status)
        return sorted(items, key=lambda e: e.scheduled_at)

    async def wait(self, predicate, timeout=20.0, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = await predicate()
            if result:
                return result
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(params=["dedicated", "pooled"])
async def chronos(ray_session, tmp_path, request):
    system = await Chronos(tmp_path, request.param).start()
    yield system
    await system.stop()


@pytest.fixture
async def receiver():
    async with Receiver() as r:
        yield r


def hook(receiver, path="/hook", **fields):
    return {"url": receiver.url(path), "method": "POST", "body": "{}", **fields}


async def test_every_second_job_fires_and_is_persisted(chronos, receiver):
    job = await chronos.create(name="tick", schedule="*/1 * * * * *", webhook=hook(receiver))
    requests = await receiver.wait_for(4, timeout=20, path="/hook")
    done = await chronos.wait(
        lambda: _at_least(chronos.executions("tick", ExecutionStatus.success), 3), what="3 successes"
    )
    history = [e for e in await chronos.executions("tick") if e.scheduled_at <= done[-1].scheduled_at]
    slots = [e.scheduled_at for e in history]
    assert all(b - a == timedelta(seconds=1) for a, b in zip(slots, slots[1:])), slots
    assert {e.status for e in history} <= {ExecutionStatus.success, ExecutionStatus.running}
    assert all(len(e.attempts) == 1 and e.attempts[0].status_code == 200 for e in done)
    assert all(e.node and e.actor for e in done)
    ids = [r.headers["X-Chronos-Execution-ID"] for r in requests]
    assert len(ids) == len(set(ids))
    assert requests[0].headers["X-Chronos-Job-Name"] == "tick"
    assert requests[0].headers["Idempotency-Key"] == requests[0].headers["X-Chronos-Execution-ID"]
    assert str(job.id) == requests[0].headers["X-Chronos-Job-ID"]


async def test_retries_follow_the_backoff(chronos, receiver):
    receiver.route("/flaky", sequence=[503, 503, 200])
    policy = {"max_attempts": 3, "initial_interval": "1s", "multiplier": 2}
    await chronos.create(name="flaky", schedule="0 0 1 1 *", webhook=hook(receiver, "/flaky"), retry_policy=policy)
    execution = await chronos.client.trigger("flaky")
    requests = await receiver.wait_for(3, timeout=15, path="/flaky")
    gaps = [b.time - a.time for a, b in zip(requests, requests[1:])]
    assert 0.9 <= gaps[0] <= 1.8 and 1.9 <= gaps[1] <= 2.8, gaps
    assert {r.headers["Idempotency-Key"] for r in requests} == {str(execution.id)}
    final = await chronos.wait(lambda: _final(chronos, "flaky", execution.id), what="final status")
    assert final.status is ExecutionStatus.success
    assert [a.status_code for a in final.attempts] == [503, 503, 200]


@pytest.mark.parametrize("policy", ["forbid", "allow", "replace"])
async def test_concurrency_policies(chronos, receiver, policy):
    receiver.route("/slow", delay=2.5)
    await chronos.create(name="slow", schedule="*/1 * * * * *", concurrency=policy, webhook=hook(receiver, "/slow"))
    # From its first fire: a dedicated actor's process can take many seconds to start on a busy machine.
    await receiver.wait_for(1, timeout=60, path="/slow")
    await asyncio.sleep(5)
    await chronos.client.set_enabled("slow", False)
    # Slots a loaded machine made the timer miss are recorded as catch-up summaries: not the policy's doing.
    history = [e for e in await chronos.executions("slow") if e.trigger is not Trigger.catchup]
    statuses = [e.status for e in history]
    if policy == "forbid":
        skipped = [e for e in history if e.status is ExecutionStatus.skipped]
        assert skipped and all("concurrency: forbid" in e.reason for e in skipped)
        assert ExecutionStatus.cancelled not in statuses
    elif policy == "allow":
        assert ExecutionStatus.skipped not in statuses and ExecutionStatus.cancelled not in statuses
        assert sum(1 for e in history if e.status is ExecutionStatus.running) >= 2
    else:
        cancelled = [e for e in history if e.status is ExecutionStatus.cancelled]
        assert cancelled and all("concurrency: replace" in e.reason for e in cancelled)
        assert ExecutionStatus.skipped not in statuses


async def test_manual_trigger_and_cancel(chronos, receiver):
    receiver.route("/hang", delay=60)
    await chronos.create(name="manual", schedule="0 0 1 1 *", webhook=hook(receiver, "/hang"))
    execution = await chronos.client.trigger("manual")
    assert execution.trigger is Trigger.manual
    await receiver.wait_for(1, timeout=10, path="/hang")
    cancelled = await chronos.client.cancel_execution("manual", execution.id)
    assert cancelled.status is ExecutionStatus.cancelled and cancelled.reason == "cancelled by user"


async def test_a_killed_job_actor_comes_back_and_keeps_firing(chronos, receiver):
    job = await chronos.create(name="survivor", schedule="*/1 * * * * *", webhook=hook(receiver))
    await receiver.wait_for(2, timeout=20, path="/hook")
    key = "chronos:job:survivor" if chronos.settings.placement == "dedicated" else _pool_key(chronos, job)
    ray.kill(ray.get_actor(key, namespace=chronos.settings.namespace), no_restart=True)
    killed_at = time.time()
    await asyncio.sleep(0.5)
    seen = len(receiver.requests_for("/hook"))
    await receiver.wait_for(seen + 2, timeout=20, path="/hook")
    recovery = receiver.requests_for("/hook")[seen].time - killed_at
    print(f"\n{chronos.settings.placement}: fired again {recovery:.2f}s after the kill")
    _assert_no_duplicate_slots(receiver.requests_for("/hook"))


async def test_a_killed_supervisor_comes_back_without_duplicates(chronos, receiver):
    await chronos.create(name="steady", schedule="*/1 * * * * *", webhook=hook(receiver))
    await receiver.wait_for(2, timeout=20, path="/hook")
    ray.kill(ray.get_actor(SUPERVISOR_NAME, namespace=chronos.settings.namespace), no_restart=False)
    await asyncio.sleep(3)
    await chronos.wait(lambda: _ready(chronos), what="supervisor back")
    seen = len(receiver.requests_for("/hook"))
    await receiver.wait_for(seen + 2, timeout=20, path="/hook")
    _assert_no_duplicate_slots(receiver.requests_for("/hook"))
    history = await chronos.executions("steady")
    assert len({e.scheduled_at for e in history}) == len(history)


async def test_two_actors_for_one_job_fire_each_slot_once(chronos, receiver):
    job = await chronos.create(name="twin", schedule="*/1 * * * * *", webhook=hook(receiver))
    twin = HostActor.options(namespace=chronos.settings.namespace).remote("twin-impostor", chronos.settings.namespace)
    stored = await chronos.client.get_job("twin")
    await twin.assign.remote(pack_assignments([(stored, None, [])]))
    await asyncio.sleep(4)
    await twin.shutdown.remote()
    ray.kill(twin)
    requests = receiver.requests_for("/hook")
    assert len(requests) >= 3
    _assert_no_duplicate_slots(requests)
    history = await chronos.executions("twin")
    assert len({(e.scheduled_at, e.trigger) for e in history}) == len(history)
    assert job.id == stored.id


async def test_restart_resumes_jobs_and_applies_missed_runs(ray_session, tmp_path, receiver):
    system = await Chronos(tmp_path, "pooled").start()
    await system.create(name="one", schedule="*/1 * * * * *", webhook=hook(receiver, "/one"), missed_runs="execute_one")
    await system.create(name="none", schedule="*/1 * * * * *", webhook=hook(receiver, "/none"), missed_runs="ignore")
    await receiver.wait_for(2, timeout=20, path="/one")
    await system.stop()
    await asyncio.sleep(8)  # slots more than LATE_GRACE (5 s) late are missed
    stopped = {path: len(receiver.requests_for(path)) for path in ("/one", "/none")}
    await system.start()
    for path, seen in stopped.items():
        await receiver.wait_for(seen + 2, timeout=30, path=path)
    for name, expect_catchup_run in (("one", True), ("none", False)):
        history = await system.executions(name)
        catchups = [e for e in history if e.trigger is Trigger.catchup]
        skipped = [e for e in catchups if e.status is ExecutionStatus.skipped and "while no scheduler was running" in e.reason]
        ran = [e for e in catchups if e.status is not ExecutionStatus.skipped]
        assert skipped and max(e.missed_slots for e in skipped) >= 2, (name, [(e.trigger.value, e.status.value, e.scheduled_at.time(), e.reason) for e in history])
        assert bool(ran) == expect_catchup_run, name
    for path in ("/one", "/none"):
        _assert_no_duplicate_slots(receiver.requests_for(path))
    await system.stop()


# ---------------------------------------------------------------- helpers


async def _at_least(coro, n):
    items = await coro
    return items if len(items) >= n else None


async def _final(chronos, job, execution_id):
    execution = await chronos.client.get_execution(job, execution_id)
    return execution if execution.status.final else None


async def _ready(chronos):
    try:
        await chronos.client.ready()
        return True
    except Exception:
        return False


def _pool_key(chronos, job):
    from chronos.placement import Placement

    return Placement("pooled", chronos.settings.pool_size).key(job, dedicated=False)


def _assert_no_duplicate_slots(requests):
    slots = [(r.headers["X-Chronos-Job-ID"], r.headers["X-Chronos-Scheduled-Time"], r.headers["X-Chronos-Execution-ID"]) for r in requests]
    by_slot = {}
    for job_id, slot, execution_id in slots:
        by_slot.setdefault((job_id, slot), set()).add(execution_id)
    doubled = {k: v for k, v in by_slot.items() if len(v) > 1}
    assert not doubled, f"slots delivered under two execution ids: {doubled}"


async def test_hosts_the_settings_no_longer_name_are_stopped(ray_session):
    """Hosts outlive a restart on a cluster: after a smaller pool, or a switch of
    placement, the old hosts must not go on claiming and firing their jobs."""
    from chronos.actors.runtime import RayRuntime

    namespace = f"test-{uuid.uuid4().hex[:8]}"

    async def hosts_become(expected: set[str]) -> None:
        deadline = time.monotonic() + 30
        while True:
            actors = await asyncio.to_thread(ray.util.list_named_actors, all_namespaces=True)
            names = {a["name"] for a in actors if a["namespace"] == namespace}
            if names == expected or time.monotonic() > deadline:
                assert names == expected
                return
            await asyncio.sleep(0.2)

    def start(placement: str, pool_size: int) -> None:
        RayRuntime(placement=placement, pool_size=pool_size, namespace=namespace).start_pool()

    await asyncio.to_thread(start, "pooled", 3)
    await hosts_become({"chronos:pool:0", "chronos:pool:1", "chronos:pool:2"})
    runtime = RayRuntime(placement="dedicated", pool_size=1, namespace=namespace)
    assert sorted(await runtime.names()) == ["chronos:pool:0", "chronos:pool:1", "chronos:pool:2"]
    await asyncio.to_thread(start, "pooled", 1)
    await hosts_become({"chronos:pool:0"})
    await asyncio.to_thread(start, "dedicated", 1)
    await hosts_become(set())
