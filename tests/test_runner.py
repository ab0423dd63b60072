"""The per-job state machine on a fake clock: hours of schedule in milliseconds."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from chronos.clock import FakeClock
from chronos.outcome import Outcome
from chronos.models import Execution, ExecutionStatus, Job, Trigger
import chronos.host
from chronos.host import JobHost
from chronos.runner import CLAIM_LEAD, MAX_CLAIM_LEAD, JobRunner

T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=timezone.utc)  # a Monday, 12:00 UTC


class MemoryReporter:
    """The store's slot claim and execution history, in memory."""

    def __init__(self):
        self.slots: set[tuple] = set()
        self.executions: dict = {}
        self.reports: list[Execution] = []

    async def claim(self, execution: Execution) -> bool:
        key = (execution.job_id, execution.scheduled_at, execution.trigger)
        if key in self.slots:
            return False
        self.slots.add(key)
        self.executions[execution.id] = execution.model_copy(deep=True)
        return True

    def report(self, execution: Execution) -> None:
        self.reports.append(execution)
        self.executions[execution.id] = execution

    def by_status(self, status: ExecutionStatus) -> list[Execution]:
        return sorted((e for e in self.executions.values() if e.status is status), key=lambda e: e.scheduled_at)


class FakeWebhook:
    """Answers with programmed status codes, taking `latency` of fake time."""

    def __init__(self, clock: FakeClock, statuses=(200,), latency: float = 0.05):
        self.clock = clock
        self.statuses = list(statuses)
        self.latency = latency
        self.calls: list[tuple] = []  # (time, execution id, attempt)

    async def send(self, job, execution, attempt, timeout) -> Outcome:
        self.calls.append((self.clock.now(), execution.id, attempt))
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        await self.clock.sleep_until(self.clock.now() + timedelta(seconds=self.latency))
        if status == "timeout":
            return Outcome(status_code=None, duration=timeout, error=f"timed out after {timeout:g}s", kind="timeout")
        return Outcome(status_code=status, duration=self.latency, body="ok")


def make_job(schedule="@every 10s", **fields) -> Job:
    spec = {"name": "job", "schedule": schedule, "webhook": {"url": "http://127.0.0.1:9/hook"}}
    spec.update(fields)
    return Job.model_validate({**spec, "anchor": T0, "created_at": T0, "updated_at": T0})


@pytest.fixture
def clock():
    return FakeClock(T0)


def runner_for(job, clock, webhook, reporter=None):
    reporter = reporter or MemoryReporter()
    return JobRunner(job, clock=clock, send=webhook.send, reporter=reporter, node="n1", actor="a1"), reporter


def next_slot(runner: JobRunner):
    """The next slot the runner fires: one claimed and waiting for its instant, else the one planned
    (the API's next_run is the supervisor's, from the schedule)."""
    return runner._claimed or runner._planned


async def test_every_fires_at_fixed_rate_for_an_hour(clock):
    webhook = FakeWebhook(clock)
    runner, reporter = runner_for(make_job("@every 10s"), clock, webhook)
    runner.start()
    await clock.advance(timedelta(hours=1, seconds=1))
    done = reporter.by_status(ExecutionStatus.success)
    assert len(done) == 360
    assert [e.scheduled_at for e in done] == [T0 + timedelta(seconds=10 * k) for k in range(1, 361)]
    assert all(call[0] == e.scheduled_at for call, e in zip(webhook.calls, done))  # fired on time
    assert done[0].attempts[0].status_code == 200 and done[0].node == "n1" and done[0].actor == "a1"
    await runner.stop()


async def test_cron_fires_on_the_quarter_hours(clock):
    webhook = FakeWebhook(clock)
    runner, reporter = runner_for(make_job("*/15 * * * *"), clock, webhook)
    runner.start()
    await clock.advance(timedelta(hours=3, seconds=1))
    done = reporter.by_status(ExecutionStatus.success)
    assert [e.scheduled_at for e in done] == [T0 + timedelta(minutes=15 * k) for k in range(1, 13)]
    assert next_slot(runner) == T0 + timedelta(hours=3, minutes=15)
    await runner.stop()


async def test_retries_follow_the_backoff_of_the_guide(clock):
    webhook = FakeWebhook(clock, statuses=[500], latency=0)
    policy = {"max_attempts": 5, "initial_interval": "10s", "max_interval": "5m", "multiplier": 2.0}
    runner, reporter = runner_for(make_job("0 * * * *", retry_policy=policy), clock, webhook)
    runner.start()
    await clock.advance(timedelta(hours=1, minutes=5))
    (failed,) = reporter.by_status(ExecutionStatus.failed)
    times = [call[0] for call in webhook.calls]
    assert [(b - a).total_seconds() for a, b in zip(times, times[1:])] == [10, 20, 40, 80]
    assert [a.number for a in failed.attempts] == [1, 2, 3, 4, 5]
    assert failed.status_code == 500 and "500" in failed.error
    await runner.stop()


async def test_retry_then_success_and_no_retry_on_404(clock):
    webhook = FakeWebhook(clock, statuses=[503, 503, 200, 404], latency=0)
    runner, reporter = runner_for(make_job("@every 1m"), clock, webhook)
    runner.start()
    await clock.advance(timedelta(minutes=2, seconds=30))
    first, second = sorted(reporter.executions.values(), key=lambda e: e.scheduled_at)
    assert first.status is ExecutionStatus.success and len(first.attempts) == 3
    assert second.status is ExecutionStatus.failed and len(second.attempts) == 1 and second.status_code == 404
    await runner.stop()


async def test_timeout_is_a_final_status(clock):
    webhook = FakeWebhook(clock, statuses=["timeout"], latency=0)
    runner, reporter = runner_for(make_job("@every 1m", retry_policy={"max_attempts": 2}), clock, webhook)
    runner.start()
    await clock.advance(timedelta(minutes=1, seconds=5))
    (execution,) = reporter.by_status(ExecutionStatus.timeout)
    assert len(execution.attempts) == 2 and "timed out" in execution.error
    await runner.stop()


async def test_forbid_skips_a_slot_while_the_previous_run_is_running(clock):
    webhook = FakeWebhook(clock, latency=90)  # each request takes 90 s
    runner, reporter = runner_for(make_job("@every 1m", concurrency="forbid"), clock, webhook)
    runner.start()
    await clock.advance(timedelta(minutes=4, seconds=1))
    ran = reporter.by_status(ExecutionStatus.success) + reporter.by_status(ExecutionStatus.running)
    skipped = reporter.by_status(ExecutionStatus.skipped)
    assert [e.scheduled_at.minute for e in ran] == [1, 3]
    assert [e.scheduled_at.minute for e in skipped] == [2, 4]
    assert "still running (concurrency: forbid)" in skipped[0].reason
    assert str(ran[0].id) in skipped[0].reason
    await runner.stop()


async def test_allow_runs_alongside(clock):
    webhook = FakeWebhook(clock, latency=150)
    runner, reporter = runner_for(make_job("@every 1m", concurrency="allow"), clock, webhook)
    runner.start()
    await clock.advance(timedelta(minutes=3, seconds=1))
    assert len(runner.running) == 3  # minutes 1 (till 3:30), 2 and 3
    assert not reporter.by_status(ExecutionStatus.skipped)
    await runner.stop()


async def test_replace_cancels_the_running_one(clock):
    webhook = FakeWebhook(clock, latency=90)
    runner, reporter = runner_for(make_job("@every 1m", concurrency="replace"), clock, webhook)
    runner.start()
    await clock.advance(timedelta(minutes=2, seconds=1))
    (cancelled,) = reporter.by_status(ExecutionStatus.cancelled)
    (running,) = reporter.by_status(ExecutionStatus.running)
    assert cancelled.scheduled_at.minute == 1 and running.scheduled_at.minute == 2
    assert f"replaced by execution {running.id}" in cancelled.reason
    assert cancelled.finished_at == T0 + timedelta(minutes=2)
    await runner.stop()


async def test_manual_trigger_and_cancel(clock):
    webhook = FakeWebhook(clock, latency=600)
    runner, reporter = runner_for(make_job("0 0 1 1 *"), clock, webhook)
    runner.start()
    execution = await runner.trigger()
    assert execution.trigger is Trigger.manual and execution.status is ExecutionStatus.running
    await clock.advance(5)
    cancelled = await runner.cancel(execution.id)
    assert cancelled.status is ExecutionStatus.cancelled and cancelled.reason == "cancelled by user"
    assert reporter.executions[execution.id].status is ExecutionStatus.cancelled
    assert await runner.cancel(execution.id) is None  # not running any more
    await runner.stop()


async def test_update_rearms_without_losing_the_running_execution(clock):
    webhook = FakeWebhook(clock, latency=30)
    job = make_job("@every 1m")
    runner, reporter = runner_for(job, clock, webhook)
    runner.start()
    await clock.advance(timedelta(minutes=1, seconds=10))  # the 12:01 run is in flight
    runner.update(job.model_copy(update={"schedule": "*/5 * * * *"}))
    await clock.advance(timedelta(minutes=10))
    done = reporter.by_status(ExecutionStatus.success)
    assert [e.scheduled_at.minute for e in done] == [1, 5, 10]
    await runner.stop()


async def test_disabled_job_does_not_fire(clock):
    webhook = FakeWebhook(clock)
    job = make_job("@every 10s")
    runner, reporter = runner_for(job, clock, webhook)
    runner.start()
    await clock.advance(25)
    runner.update(job.model_copy(update={"enabled": False}))
    await clock.advance(600)
    assert len(reporter.executions) == 2
    assert next_slot(runner) is None
    await runner.stop()


async def test_two_runners_of_one_job_fire_each_slot_once(clock):
    webhook = FakeWebhook(clock)
    job = make_job("@every 5s")
    reporter = MemoryReporter()
    a, _ = runner_for(job, clock, webhook, reporter)
    b, _ = runner_for(job, clock, webhook, reporter)
    a.start()
    b.start()
    await clock.advance(timedelta(minutes=5))
    assert len(webhook.calls) == 60
    assert len({call[1] for call in webhook.calls}) == 60
    assert len(reporter.executions) == 60
    await asyncio.gather(a.stop(), b.stop())


@pytest.mark.parametrize(
    "policy, ran, skipped_count",
    [("execute_one", [59], 59), ("execute_all", list(range(0, 60)), 0), ("ignore", [], 60)],
)
async def test_missed_runs_after_downtime(clock, policy, ran, skipped_count):
    # Last fired 10:59, back at 12:00 with a 1h window: slots 11:00 .. 11:59 were missed
    # (60 of them, all inside the window); 12:00 is only late, so it fires as scheduled.
    webhook = FakeWebhook(clock, latency=0)
    job = make_job("* * * * *", missed_runs=policy)
    job = job.model_copy(update={"anchor": T0 - timedelta(days=1)})
    runner, reporter = runner_for(job, clock, webhook)
    runner.start(last_slot=T0 - timedelta(hours=1, minutes=1))
    for _ in range(100):
        await clock.advance(0.01)
    catchups = sorted((e for e in reporter.executions.values() if e.trigger is Trigger.catchup), key=lambda e: e.scheduled_at)
    run = [e for e in catchups if e.status is ExecutionStatus.success]
    assert [(e.scheduled_at - (T0 - timedelta(hours=1))).total_seconds() // 60 for e in run] == ran
    summaries = [e for e in catchups if e.status is ExecutionStatus.skipped]
    on_time = [e for e in reporter.executions.values() if e.trigger is Trigger.scheduled]
    assert [e.scheduled_at for e in on_time] == [T0]
    assert sum(e.missed_slots for e in summaries) == skipped_count
    if summaries:
        assert "missed while no scheduler was running" in summaries[0].reason
    await runner.stop()


async def test_orphans_resume_with_the_same_id_or_fail_when_too_old(clock):
    webhook = FakeWebhook(clock, latency=0)
    job = make_job("0 0 1 1 *", catchup_window="10m")
    recent = Execution(job_id=job.id, job_name=job.name, scheduled_at=T0 - timedelta(minutes=2), status=ExecutionStatus.running)
    old = Execution(job_id=job.id, job_name=job.name, scheduled_at=T0 - timedelta(hours=2), status=ExecutionStatus.pending)
    runner, reporter = runner_for(job, clock, webhook)
    runner.start(orphans=[recent.model_copy(), old.model_copy()])
    await clock.advance(1)
    assert reporter.executions[recent.id].status is ExecutionStatus.success
    assert webhook.calls[0][1] == recent.id
    assert reporter.executions[old.id].status is ExecutionStatus.failed
    assert "older than catchup_window" in reporter.executions[old.id].error
    await runner.stop()


async def test_missed_runs_outside_the_window_are_recorded_not_run(clock):
    webhook = FakeWebhook(clock, latency=0)
    job = make_job("*/10 * * * *", missed_runs="execute_all", catchup_window="30m")
    job = job.model_copy(update={"anchor": T0 - timedelta(days=1)})
    runner, reporter = runner_for(job, clock, webhook)
    runner.start(last_slot=T0 - timedelta(hours=2))  # 10:10 .. 11:50 missed: 11 slots
    for _ in range(50):
        await clock.advance(0.01)
    run = sorted(e.scheduled_at for e in reporter.by_status(ExecutionStatus.success) if e.trigger is Trigger.catchup)
    assert run == [T0 - timedelta(minutes=m) for m in (30, 20, 10)]  # inside the window
    on_time = [e for e in reporter.executions.values() if e.trigger is Trigger.scheduled]
    assert [e.scheduled_at for e in on_time] == [T0]  # due now: fired (or skipped by forbid), not missed
    (summary,) = [e for e in reporter.by_status(ExecutionStatus.skipped) if e.trigger is Trigger.catchup]
    assert summary.missed_slots == 8 and summary.scheduled_at == T0 - timedelta(minutes=40)
    assert summary.trigger is Trigger.catchup
    await runner.stop()


async def test_a_new_runner_fires_slightly_late_slots_as_scheduled(clock):
    webhook = FakeWebhook(clock, latency=0)
    job = make_job("@every 1s")  # anchored at T0, but the runner starts 2.5 s later
    await clock.advance(2.5)
    runner, reporter = runner_for(job, clock, webhook)
    runner.start()
    await clock.advance(0.6)
    slots = sorted((e.scheduled_at, e.trigger) for e in reporter.executions.values())
    assert slots == [(T0 + timedelta(seconds=k), Trigger.scheduled) for k in (1, 2, 3)]
    await runner.stop()


async def test_an_update_while_a_slot_is_being_claimed_does_not_lose_it(clock):
    class SlowReporter(MemoryReporter):
        async def claim(self, execution):
            await clock.sleep_until(clock.now() + timedelta(milliseconds=200))
            return await super().claim(execution)

    webhook = FakeWebhook(clock, latency=0)
    job = make_job("@every 10s")
    runner, reporter = runner_for(job, clock, webhook, SlowReporter())
    runner.start()
    await clock.advance(9.85)  # the claim of 12:00:10 is in flight
    runner.update(job.model_copy(update={"description": "changed"}))
    await clock.advance(10.5)
    assert sorted(e.scheduled_at for e in reporter.executions.values()) == [
        T0 + timedelta(seconds=10),
        T0 + timedelta(seconds=20),
    ]
    await runner.stop()


@pytest.mark.parametrize("policy", ["execute_one", "execute_all", "ignore"])
async def test_slots_missed_while_a_claim_is_held_up_are_recorded(clock, policy):
    """A claim that waits 20 s (the supervisor restarting) makes the slots behind
    it more than LATE_GRACE late: they follow missed_runs, none is dropped."""

    class StalledReporter(MemoryReporter):
        stalled = False

        async def claim(self, execution):
            if execution.scheduled_at == T0 + timedelta(seconds=3) and not self.stalled:
                self.stalled = True
                await clock.sleep_until(clock.now() + timedelta(seconds=20))
            return await super().claim(execution)

    webhook = FakeWebhook(clock, latency=0)
    runner, reporter = runner_for(make_job("@every 1s", missed_runs=policy), clock, webhook, StalledReporter())
    runner.start()
    for _ in range(400):
        await clock.advance(0.1)  # to T0 + 40 s
    handled: dict = {}
    for e in reporter.executions.values():
        slots = [e.scheduled_at - timedelta(seconds=k) for k in range(e.missed_slots or 1)]
        for slot in slots:
            handled[slot] = handled.get(slot, 0) + 1
    expected = [T0 + timedelta(seconds=k) for k in range(1, 40)]
    assert [s for s in expected if handled.get(s) != 1] == [], "every slot handled exactly once"
    catchups = [e for e in reporter.executions.values() if e.trigger is Trigger.catchup]
    ran = [e for e in catchups if e.status is ExecutionStatus.success]
    summaries = [e for e in catchups if e.status is ExecutionStatus.skipped]
    assert len(ran) == {"execute_one": 1, "execute_all": sum(1 for _ in catchups), "ignore": 0}[policy]
    assert all("timer was held up" in e.reason for e in summaries)
    assert bool(summaries) == (policy != "execute_all")
    await runner.stop()


async def test_a_timer_that_starts_late_records_the_slots_it_missed(clock):
    """A host busy starting many jobs runs a new timer only seconds later:
    the slots more than LATE_GRACE late are recorded as missed, not dropped."""
    webhook = FakeWebhook(clock, latency=0)
    runner, reporter = runner_for(make_job("@every 1s", missed_runs="ignore"), clock, webhook)
    runner.start()
    clock._now += timedelta(seconds=8)  # the event loop was blocked before the timer task ran
    for _ in range(30):
        await clock.advance(0.1)
    handled: dict = {}
    for e in reporter.executions.values():
        for k in range(e.missed_slots or 1):
            handled[e.scheduled_at - timedelta(seconds=k)] = handled.get(e.scheduled_at - timedelta(seconds=k), 0) + 1
    assert {T0 + timedelta(seconds=k): 1 for k in range(1, 11)} == {s: n for s, n in handled.items() if s <= T0 + timedelta(seconds=10)}
    (summary,) = [e for e in reporter.executions.values() if e.missed_slots]
    assert summary.status is ExecutionStatus.skipped and "missed while no scheduler was running" in summary.reason
    await runner.stop()


@pytest.mark.parametrize("policy, runs", [("execute_one", 2), ("ignore", 1)])
async def test_a_restored_per_second_job_fires_only_its_newest_late_slot(clock, policy, runs):
    """Down for 10 s: of the slots due meanwhile only the newest fires late, as
    scheduled (a CronJob's latest missed schedule); the rest follow missed_runs.
    Five late slots each, for a thousand restored jobs, started the server
    seconds behind."""
    webhook = FakeWebhook(clock, latency=0)
    job = make_job("@every 1s", missed_runs=policy).model_copy(update={"anchor": T0 - timedelta(hours=1)})
    runner, reporter = runner_for(job, clock, webhook)
    runner.start(last_slot=T0 - timedelta(seconds=10))
    await clock.advance(0.2)
    history = sorted(reporter.executions.values(), key=lambda e: e.scheduled_at)
    fired = [(e.trigger, e.scheduled_at) for e in history if e.status is not ExecutionStatus.skipped]
    late = [(Trigger.scheduled, T0)]
    assert fired == ([(Trigger.catchup, T0 - timedelta(seconds=1))] + late if runs == 2 else late)
    (summary,) = [e for e in history if e.status is ExecutionStatus.skipped]
    assert summary.missed_slots == 10 - runs and "while no scheduler was running" in summary.reason
    await runner.stop()


async def test_a_job_resumed_within_the_grace_fires_every_late_slot(clock):
    """A restart quicker than LATE_GRACE (or a new job's host still starting):
    the slots since fire late, as scheduled; nothing is missed."""
    webhook = FakeWebhook(clock, latency=0)
    job = make_job("@every 1s").model_copy(update={"anchor": T0 - timedelta(hours=1)})
    runner, reporter = runner_for(job, clock, webhook)
    runner.start(last_slot=T0 - timedelta(seconds=3))
    await clock.advance(0.2)
    fired = sorted((e.trigger, e.scheduled_at) for e in reporter.executions.values())
    assert fired == [(Trigger.scheduled, T0 - timedelta(seconds=k)) for k in (2, 1, 0)]
    await runner.stop()


async def test_missed_slots_are_claimed_before_any_later_slot(clock):
    """A runner killed right after claiming a later slot must not lose the
    catch-up: the next runner starts from the last claimed slot, so the
    missed ones have to be claimed first."""

    class OrderedReporter(MemoryReporter):
        order: list = []

        async def claim(self, execution):
            self.order.append((execution.trigger, execution.scheduled_at))
            await clock.sleep_until(clock.now() + timedelta(milliseconds=50))
            return await super().claim(execution)

    webhook = FakeWebhook(clock, latency=0)
    job = make_job("@every 1s", missed_runs="execute_one").model_copy(update={"anchor": T0 - timedelta(hours=1)})
    runner, reporter = runner_for(job, clock, webhook, OrderedReporter())
    runner.start(last_slot=T0 - timedelta(minutes=1))
    for _ in range(30):
        await clock.advance(0.1)
    first_scheduled = next(i for i, (trigger, _) in enumerate(reporter.order) if trigger is Trigger.scheduled)
    assert [t for t, _ in reporter.order[:first_scheduled]] == [Trigger.catchup, Trigger.catchup]
    await runner.stop()


async def test_an_update_that_keeps_the_schedule_does_not_drop_late_slots(clock):
    """The same spec assigned again (a reconcile racing the creation) while
    the runner is claiming its missed slots must not make it skip the slots
    that fell behind meanwhile: they are fired or recorded."""

    class SlowReporter(MemoryReporter):
        async def claim(self, execution):
            await clock.sleep_until(clock.now() + timedelta(seconds=2))  # a busy supervisor
            return await super().claim(execution)

    webhook = FakeWebhook(clock, latency=0)
    job = make_job("@every 1s", missed_runs="ignore")
    runner, reporter = runner_for(job, clock, webhook, SlowReporter())
    clock._now += timedelta(seconds=6.5)  # the host got the job late: slot 1 is missed
    runner.start()
    await clock.advance(0.5)  # the claim of the missed slot is in flight
    runner.update(job.model_copy(update={"description": "assigned again"}))
    for _ in range(100):
        await clock.advance(0.1)
    handled: dict = {}
    for e in reporter.executions.values():
        for k in range(e.missed_slots or 1):
            handled[e.scheduled_at - timedelta(seconds=k)] = handled.get(e.scheduled_at - timedelta(seconds=k), 0) + 1
    assert [handled.get(T0 + timedelta(seconds=k)) for k in range(1, 9)] == [1] * 8
    await runner.stop()


# ------------------------------------------------------------ work ahead of the due instant


class PreparingWebhook(FakeWebhook):
    """A dispatcher that builds attempts ahead: records when, and what each send was given."""

    def __init__(self, clock: FakeClock, statuses=(200,)):
        super().__init__(clock, statuses, latency=0)
        self.prepared: list[tuple] = []  # (time, job, execution id, attempt)
        self.given: list[tuple] = []  # (attempt, job, what send got)

    def prepare(self, job, execution, attempt):
        built = (self.clock.now(), job, execution.id, attempt)
        self.prepared.append(built)
        return built

    async def send(self, job, execution, attempt, timeout, prepared=None) -> Outcome:
        self.given.append((attempt, job, prepared))
        return await super().send(job, execution, attempt, timeout)

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("every, lead", [(1, CLAIM_LEAD), (4, timedelta(seconds=1)), (60, MAX_CLAIM_LEAD)])
async def test_a_slot_is_claimed_a_quarter_of_its_interval_ahead_within_bounds(clock, every, lead):
    """Per-second jobs claim mid-second, between bursts; jobs with longer
    intervals claim earlier, time for a large burst's claims to be written."""

    class TimedReporter(MemoryReporter):
        def __init__(self):
            super().__init__()
            self.claimed_at = {}

        async def claim(self, execution):
            self.claimed_at[execution.scheduled_at] = clock.now()
            return await super().claim(execution)

    webhook = FakeWebhook(clock, latency=0)
    runner, reporter = runner_for(make_job(f"@every {every}s"), clock, webhook, TimedReporter())
    runner.start()
    for _ in range(int(every * 2.5 * 20)):
        await clock.advance(0.05)
    second = T0 + timedelta(seconds=2 * every)  # its interval is known: the slot before it
    assert abs(second - reporter.claimed_at[second] - lead) <= timedelta(milliseconds=60)
    await runner.stop()


async def test_the_first_attempt_is_built_between_claim_and_due_instant(clock):
    webhook = PreparingWebhook(clock, statuses=[503, 200])
    job = make_job("@every 10s", retry_policy={"max_attempts": 2, "initial_interval": "1s"})
    reporter = MemoryReporter()
    runner = JobRunner(job, clock=clock, send=webhook.send, prepare=webhook.prepare, reporter=reporter)
    runner.start()
    await clock.advance(9.8)  # claimed (a quarter of the interval ahead: 2.5 s), not yet due
    assert next_slot(runner) == T0 + timedelta(seconds=10)  # the claimed slot, not the one after
    assert [e.status for e in reporter.executions.values()] == [ExecutionStatus.pending]
    ((built_at, _, execution_id, attempt),) = webhook.prepared
    due = T0 + timedelta(seconds=10)
    assert due - MAX_CLAIM_LEAD <= built_at < due and attempt == 1
    await clock.advance(2)
    (done,) = reporter.by_status(ExecutionStatus.success)
    assert done.id == execution_id and [a.number for a in done.attempts] == [1, 2]
    (first, retry) = webhook.given
    assert first == (1, job, webhook.prepared[0]) and retry == (2, job, None)  # retries are built when due
    assert next_slot(runner) == T0 + timedelta(seconds=20)
    await runner.stop()


async def test_a_spec_changed_between_claim_and_fire_is_the_one_fired(clock):
    webhook = PreparingWebhook(clock)
    job = make_job("@every 10s")
    runner = JobRunner(job, clock=clock, send=webhook.send, prepare=webhook.prepare, reporter=MemoryReporter())
    runner.start()
    await clock.advance(9.9)  # claimed and built for the old spec
    new = job.model_copy(update={"webhook": {"url": "http://127.0.0.1:9/new"}})
    runner.update(new)
    await clock.advance(0.2)
    ((attempt, fired_job, prepared),) = webhook.given
    assert fired_job is new and prepared[1] is job  # the dispatcher sees the mismatch and rebuilds
    await runner.stop()


async def test_stop_between_claim_and_fire_leaves_the_slot_unfired_and_pending(clock):
    webhook = PreparingWebhook(clock)
    runner, reporter = runner_for(make_job("@every 10s"), clock, webhook)
    runner.start()
    await clock.advance(9.9)
    await runner.stop()
    await clock.advance(1)
    assert webhook.calls == []
    assert [e.status for e in reporter.executions.values()] == [ExecutionStatus.pending]


class MemoryUpstream:
    def __init__(self):
        self.claims: list[Execution] = []
        self.reports: list[list[Execution]] = []

    async def claim(self, executions):
        self.claims += executions
        return [True] * len(executions)

    async def report(self, executions):
        self.reports.append(executions)


async def test_a_host_reports_each_fire_once_with_its_latest_state(clock, monkeypatch):
    monkeypatch.setattr(chronos.host, "REPORT_INTERVAL", 60.0)  # real seconds: only our flush below
    upstream = MemoryUpstream()
    webhook = PreparingWebhook(clock)
    host = JobHost(upstream, clock=clock, dispatcher=webhook)
    jobs = [make_job("@every 10s", name=f"job-{n}") for n in range(3)]
    await host.assign([(job, None, []) for job in jobs])
    await clock.advance(10.5)  # fired and finished: "running" then final, both unsent
    assert len(upstream.claims) == 3 and upstream.reports == []
    await host.flush()
    (batch,) = upstream.reports
    assert sorted(e.id for e in batch) == sorted(e.id for e in upstream.claims)
    assert all(e.status is ExecutionStatus.success and len(e.attempts) == 1 for e in batch)
    live = {e.id: e for e in upstream.claims}
    assert all(e is not live[e.id] for e in batch)  # copies: the runner may go on changing its own
    await host.shutdown()


async def test_a_restored_host_settles_once_its_catch_up_is_sent_and_reported(clock):
    """The server starts its API after this: every job has taken its first step
    and the states of the catch-up runs it began have gone to the supervisor."""
    upstream = MemoryUpstream()
    host = JobHost(upstream, clock=clock, dispatcher=PreparingWebhook(clock))
    job = make_job("@every 10s", name="restored").model_copy(update={"anchor": T0 - timedelta(hours=1)})
    await host.assign([(job, T0 - timedelta(minutes=5), [])])
    assert not host.runners[job.id].caught_up
    assert await host.settle(timeout=10)
    assert host.runners[job.id].caught_up
    (run,) = [e for e in upstream.claims if e.trigger is Trigger.catchup and e.status is not ExecutionStatus.skipped]
    assert run.id in {e.id for batch in upstream.reports for e in batch}  # reported, though still running
    await host.shutdown()


# ------------------------------------------------------------ cancel before the send


async def test_a_claimed_slot_cancelled_before_its_instant_is_never_sent(clock):
    webhook = FakeWebhook(clock)
    runner, reporter = runner_for(make_job("@every 10s"), clock, webhook)
    runner.start()
    await clock.advance(8.5)  # the 12:00:10 slot is claimed (2.5 s ahead) and waits
    (waiting,) = reporter.by_status(ExecutionStatus.pending)
    cancelled = await runner.cancel(waiting.id)
    assert cancelled.status is ExecutionStatus.cancelled and cancelled.reason == "cancelled by user"
    await clock.advance(25)
    assert waiting.id not in {call[1] for call in webhook.calls}
    assert reporter.executions[waiting.id].status is ExecutionStatus.cancelled
    assert len(reporter.by_status(ExecutionStatus.success)) == 2  # 12:00:20 and 12:00:30 still fire
    await runner.stop()


async def test_a_queued_catch_up_run_cancelled_in_its_turn_is_never_sent(clock):
    webhook = FakeWebhook(clock, latency=600)
    job = make_job("* * * * *", missed_runs="execute_all", concurrency="forbid")
    job = job.model_copy(update={"anchor": T0 - timedelta(days=1)})
    runner, reporter = runner_for(job, clock, webhook)
    runner.start(last_slot=T0 - timedelta(minutes=4))  # down since 11:56: three slots missed
    await clock.advance(1)
    catchups = [e for e in reporter.executions.values() if e.trigger is Trigger.catchup]
    first, *queued = sorted(catchups, key=lambda e: e.scheduled_at)
    assert len(queued) == 2 and first.status is ExecutionStatus.running
    assert all(e.status is ExecutionStatus.pending for e in queued)
    assert (await runner.cancel(queued[0].id)).status is ExecutionStatus.cancelled
    await clock.advance(timedelta(minutes=30))
    sent = {call[1] for call in webhook.calls}
    assert first.id in sent and queued[1].id in sent and queued[0].id not in sent
    await runner.stop()


async def test_a_resumed_run_cancelled_while_queued_is_never_sent(clock):
    webhook = FakeWebhook(clock, latency=600)
    job = make_job("0 0 1 1 *")
    left = [Execution(job_id=job.id, job_name=job.name, trigger=Trigger.manual, scheduled_at=T0, status=ExecutionStatus.running)
            for _ in range(2)]
    runner, reporter = runner_for(job, clock, webhook)
    runner.start(orphans=[e.model_copy() for e in left])
    await clock.advance(1)
    assert [call[1] for call in webhook.calls] == [left[0].id]  # one at a time: the second waits its turn
    assert (await runner.cancel(left[1].id)).status is ExecutionStatus.cancelled
    await clock.advance(timedelta(minutes=30))
    assert left[1].id not in {call[1] for call in webhook.calls}
    await runner.stop()


# ------------------------------------------------------------ an unreachable supervisor


class OutageReporter(MemoryReporter):
    """Claims fail (as when the supervisor cannot be reached) until ``up`` is set."""

    def __init__(self):
        super().__init__()
        self.up = False

    async def claim(self, execution: Execution) -> bool:
        if not self.up:
            raise ConnectionError("supervisor unreachable")
        return await super().claim(execution)


@pytest.mark.parametrize("window", ["30s", "0s"])
async def test_slots_that_could_not_be_claimed_are_recorded_once_the_supervisor_answers(clock, window):
    webhook = FakeWebhook(clock, latency=0)
    reporter = OutageReporter()
    job = make_job("@every 10s", catchup_window=window, missed_runs="ignore")
    runner, _ = runner_for(job, clock, webhook, reporter)
    runner.start()
    for _ in range(190):  # 114 s without a supervisor: slots 12:00:10 .. 12:01:50 are due meanwhile
        await clock.advance(0.6)
    assert reporter.executions == {}
    reporter.up = True  # reachable again, no restart
    for _ in range(30):  # until 12:02:09
        await clock.advance(0.5)
    records = reporter.by_status(ExecutionStatus.skipped)
    fired = [e.scheduled_at for e in reporter.by_status(ExecutionStatus.success)]
    assert fired == [T0 + timedelta(minutes=2)]  # the first slot after the outage fires as usual
    assert sum(e.missed_slots for e in records) == 11  # every slot of the outage is recorded, none dropped
    assert any("could not be claimed within catchup_window" in e.reason for e in records)
    assert webhook.calls and len(webhook.calls) == 1
    await runner.stop()
