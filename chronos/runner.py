"""The per-job state machine: a plain asyncio object, no Ray.

A :class:`JobRunner` owns one job's timer, its concurrency state and its
retries. It is given a clock (real or fake), a ``send`` coroutine (the webhook
dispatcher) and a :class:`Reporter` (the way to the supervisor, the only
writer to the store). Every slot is *claimed* through the reporter before it
fires: the store's unique (job, scheduled instant, trigger) key makes a second
claim of the same slot fail, so two runners of one job cannot both fire it.

A host fires hundreds of runners at the same instant, and whatever runs then
delays every request after it, so the work is done ahead: a slot is claimed
``CLAIM_LEAD`` before it is due, then waits for its instant in a task of its
own while its first attempt is built (``prepare``) and the timer plans the
next slot. At the due instant only the fire runs; reports of state changes
are read by the reporter when it sends them.

Lifecycle of an execution::

    claim (pending) ──▶ running ──▶ success | failed | timeout
         │                  └──────▶ cancelled   (cancel, or concurrency: replace)
         └──────────────────────────▶ skipped    (concurrency: forbid, missed runs)
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, Iterable, Optional, Protocol
from uuid import UUID

from chronos.clock import Clock
from chronos.outcome import Outcome
from chronos.durations import format_duration
from chronos.models import Attempt, Concurrency, Execution, ExecutionStatus, Job, MissedRuns, Trigger
from chronos.retry import judge
from chronos.errors import InvalidSchedule
from chronos.schedules import Schedule, compiled

log = logging.getLogger(__name__)

#: ``send(job, execution, attempt, timeout[, prepared])``: one attempt (the webhook dispatcher).
Send = Callable[..., Awaitable[Outcome]]
#: ``prepare(job, execution, attempt)``: that attempt built ahead, for ``send``.
Prepare = Callable[[Job, Execution, int], Any]

#: Claim a slot this long before it is due, so the claim's round trip to the
#: store is not paid at the due instant: a quarter of the job's interval,
#: within these bounds. Per-second jobs claim mid-second, between two bursts;
#: jobs due every 10 s or more claim 2.5 s ahead, time enough to write the
#: claims of 10,000 jobs due at the same instant.
CLAIM_LEAD = timedelta(milliseconds=500)
MAX_CLAIM_LEAD = timedelta(seconds=2.5)
#: A slot at most this late when its runner starts still fires, as scheduled.
LATE_GRACE = timedelta(seconds=5)
#: Counting missed slots stops here (a per-second job down for a week).
MISSED_COUNT_LIMIT = 100_000


class Reporter(Protocol):
    async def claim(self, execution: Execution) -> bool:
        """Insert the execution's row; False if its slot was already claimed."""

    def report(self, execution: Execution) -> None:
        """Record a state change (fire-and-forget; the reporter batches and retries).
        The execution goes on changing: the reporter sends the state it has when it
        sends (latest state wins), so a report costs nothing at the due instant."""


class JobRunner:
    def __init__(
        self,
        job: Job,
        *,
        clock: Clock,
        send: Send,
        reporter: Reporter,
        prepare: Optional[Prepare] = None,
        node: Optional[str] = None,
        actor: Optional[str] = None,
        claim_lead: timedelta = CLAIM_LEAD,
    ):
        self.job = job
        self._clock = clock
        self._send = send
        self._reporter = reporter
        self._prepare = prepare  # builds a slot's first attempt between its claim and its due instant
        self._where = {"node": node, "actor": actor}
        self._claim_lead = claim_lead
        self._timer: Optional[asyncio.Task] = None
        self._background: set[asyncio.Task] = set()
        self.running: dict[UUID, tuple[Execution, asyncio.Task]] = {}
        self._cancel_reasons: dict[UUID, str] = {}
        # Claimed but not started: a slot waiting for its instant, catch-up and resumed
        # runs waiting for their turn. A cancel takes one out, and it is never sent.
        self._waiting: dict[UUID, Execution] = {}
        self._planned: Optional[datetime] = None  # the slot the timer waits for
        self._claimed: Optional[datetime] = None  # a claimed slot waiting for its instant
        self._stopping = False
        self._changed = asyncio.Event()
        #: The first step is taken: slots missed before the start are fired or recorded.
        self.caught_up = False
        self._wake: Optional[asyncio.Future] = None  # ends the timer's sleep (see _sleep)

    # ------------------------------------------------------------ lifecycle

    def start(self, *, last_slot: Optional[datetime] = None, orphans: Iterable[Execution] = ()) -> None:
        """Finish what a previous runner left behind, then arm the timer from
        the last slot claimed (its first step applies ``missed_runs``)."""
        now = self._clock.now()
        for execution in orphans:
            self._resume(execution, now)
        since = now
        if self.job.enabled:
            since = max(t for t in (last_slot, self.job.anchor) if t is not None)
        self._arm(after=since)

    def update(self, job: Job) -> None:
        """Take a new spec: the timer re-plans from the last slot it handled (a
        slot being claimed or fired right now is never lost); running
        executions finish on the old spec."""
        self.job = job
        self._changed.set()
        if self._wake is not None:
            _set(self._wake)

    async def stop(self) -> None:
        """Stop without recording anything: unfinished executions stay as they
        are in the store, and whoever runs the job next resumes them."""
        tasks = [t for t in (self._timer, *self._background) if t]
        tasks += [task for _, task in self.running.values()]
        self._stopping = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _arm(self, after: datetime) -> None:
        self._timer = asyncio.create_task(self._timer_loop(after), name=f"timer:{self.job.name}")

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------ timer

    def _schedule(self) -> Schedule:
        """The compiled schedule (asked for every slot: from the shared cache)."""
        return compiled(self.job.schedule, self.job.timezone, self.job.anchor)

    def _schedule_compiles(self) -> bool:
        """False (logged) for a stored spec that no longer validates: its timer
        waits for an edit instead of dying on the first slot it plans."""
        try:
            self._schedule()
            return True
        except InvalidSchedule as e:
            log.error("job %s does not fire: %s (fix its schedule or timezone)", self.job.name, e)
            return False

    async def _timer_loop(self, after: datetime) -> None:
        """``after``: the last slot handled (or claimed by a previous runner)."""
        while True:
            self._changed.clear()
            plan = self._plan()
            if not self._schedule_compiles():
                await self._changed.wait()  # until an edit fixes it
                after = self._replan(after, plan)
                continue
            after, due = await self._catch_up(after)
            self.caught_up = True
            self._planned = due
            if due is None:
                await self._changed.wait()
                after = self._replan(after, plan)
                continue
            if not await self._sleep(due - self._lead(after, due)):
                after = self._replan(after, plan)
                continue
            try:
                execution = self._new(Trigger.scheduled, due)
                if await self._claim(execution):
                    # The slot waits for its instant in a task of its own, and the timer plans
                    # the next slot now: at the due instant, when every runner of the host
                    # fires, only the fire itself runs.
                    self._claimed = due
                    self._waiting[execution.id] = execution
                    self._spawn(self._fire(execution))
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop the job's timer
                log.exception("job %s: slot %s could not be claimed", self.job.name, due)
            after = due

    def _lead(self, after: datetime, due: datetime) -> timedelta:
        """How long before ``due`` to claim it: a quarter of the interval, bounded."""
        return min(max((due - after) / 4, self._claim_lead), MAX_CLAIM_LEAD)

    async def _fire(self, execution: Execution) -> None:
        """Fire a claimed slot at its instant, its first attempt built while it waits."""
        due = execution.scheduled_at
        try:
            prepared = self._prepare(self.job, execution, 1) if self._prepare else None
            await self._clock.sleep_until(due)
            if self._claimed == due:
                self._claimed = None
            if self._waiting.pop(execution.id, None) is None:
                return  # cancelled while it waited for its instant
            if self._admit(execution):
                # Run it in this task: its request leaves now, not after every other
                # runner of the host due at this instant has been woken.
                task = asyncio.current_task()
                assert task is not None  # _fire always runs as a task
                self._begin(execution, task)
                await self._execute(execution, self.job, prepared)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not leave other slots unfired
            log.exception("job %s: slot %s could not be fired", self.job.name, due)

    def _plan(self) -> tuple:
        """What the timer's plan depends on."""
        return (self.job.enabled, self.job.schedule, self.job.timezone, self.job.anchor)

    def _replan(self, after: datetime, plan: tuple) -> datetime:
        """After a change of spec. A new schedule (or enabled again) plans
        from now: slots of the old schedule, or of the time it was disabled,
        are not missed runs (slots only a little late still fire). A change
        that leaves the plan as it was (a new description, the same spec
        assigned twice) keeps it: late slots are still fired or recorded."""
        if self._plan() == plan:
            return after
        return max(after, self._clock.now() - LATE_GRACE)

    async def _sleep(self, until: datetime) -> bool:
        """Sleep until ``until``; False if woken early by a change of spec.
        One future woken by the clock or by ``update``: cheaper than waiting
        on two tasks, and every runner of a host does this every slot."""
        if self._changed.is_set():
            return False
        wake = self._wake = asyncio.get_running_loop().create_future()
        nap = asyncio.ensure_future(self._clock.sleep_until(until))
        nap.add_done_callback(lambda _: _set(wake))
        try:
            await wake
        finally:
            self._wake = None
            nap.cancel()
        return not self._changed.is_set()

    async def _claim(self, execution: Execution) -> bool:
        """Claim, retrying while the supervisor is unreachable; True if the run is
        ours to fire. A run whose claim cannot be made within the catch-up window
        (0: on time) is not given up: it becomes a ``skipped`` record of a missed
        run, claimed (and so recorded, and counted) as soon as the supervisor
        answers again, with no restart needed."""
        delay, given_up = 0.1, False
        while True:
            try:
                won = await self._reporter.claim(execution)
                if won and given_up:
                    self._reporter.report(execution)  # an earlier try may have been written as pending
                return won and not execution.status.final
            except asyncio.CancelledError:
                raise
            except Exception as e:
                late = self._clock.now() - execution.scheduled_at
                if not execution.status.final and late > self.job.catchup_window:
                    self._give_up(execution, e)
                    given_up = True
                log.warning("job %s: claim failed (%s), retrying in %.1fs", self.job.name, e, delay)
                await self._clock.sleep_until(self._clock.now() + timedelta(seconds=delay))
                delay = min(delay * 2, 5.0)

    def _give_up(self, execution: Execution, error: Exception) -> None:
        """Too late to run: the run is recorded as missed instead (see ``_claim``)."""
        log.error("job %s: slot %s missed, the supervisor could not be reached: %s", self.job.name, execution.scheduled_at, error)
        execution.status = ExecutionStatus.skipped
        execution.finished_at = self._clock.now()
        execution.missed_slots = 1
        execution.reason = (
            f"1 run(s) missed: its slot could not be claimed within catchup_window "
            f"({format_duration(self.job.catchup_window)}), the supervisor was unreachable ({type(error).__name__})"
        )

    # ------------------------------------------------------------ executions

    def _new(self, trigger: Trigger, scheduled_at: datetime, **fields) -> Execution:
        return Execution(job_id=self.job.id, job_name=self.job.name, trigger=trigger, scheduled_at=scheduled_at, **fields)

    async def trigger(self) -> Execution:
        """A manual run: always runs, alongside whatever is running."""
        execution = self._new(Trigger.manual, self._clock.now())
        await self._reporter.claim(execution)
        self._dispatch(execution)
        return snapshot(execution)

    async def cancel(self, execution_id: UUID, reason: str = "cancelled by user") -> Optional[Execution]:
        """Cancel an execution of this runner: one in flight is stopped; one claimed
        and waiting (for its instant, or its turn after a catch-up or a restart) is
        closed now and never sent. None if the runner does not hold it."""
        waiting = self._waiting.pop(execution_id, None)
        if waiting is not None:
            self._close(waiting, ExecutionStatus.cancelled, reason=reason)
            return snapshot(waiting)
        entry = self.running.get(execution_id)
        if entry is None:
            return None
        execution, task = entry
        self._cancel_reasons[execution_id] = reason
        task.cancel()
        await asyncio.wait([task])
        return snapshot(execution)

    def _dispatch(self, execution: Execution) -> None:
        """Start an execution whose slot is due, applying the concurrency policy."""
        if self._admit(execution):
            self._start(execution)

    def _admit(self, execution: Execution) -> bool:
        """Apply the concurrency policy to a due execution: False if it is skipped."""
        busy = [e for e, _ in self.running.values()]
        if busy and execution.trigger is not Trigger.manual:
            if self.job.concurrency is Concurrency.forbid:
                reason = f"previous execution {busy[0].id} still running (concurrency: forbid)"
                self._close(execution, ExecutionStatus.skipped, reason=reason)
                return False
            if self.job.concurrency is Concurrency.replace:
                for old in busy:
                    self._cancel_reasons[old.id] = f"replaced by execution {execution.id} (concurrency: replace)"
                    self.running[old.id][1].cancel()
        return True

    def _start(self, execution: Execution) -> asyncio.Task:
        """Run the execution in a task of its own."""
        task = asyncio.create_task(self._execute(execution, self.job, None), name=f"exec:{execution.id}")
        self._begin(execution, task)
        return task

    def _begin(self, execution: Execution, task: asyncio.Task) -> None:
        """Mark the execution running in ``task`` (the task a cancel cancels)."""
        execution.status = ExecutionStatus.running
        execution.started_at = execution.started_at or self._clock.now()
        execution.node, execution.actor = self._where["node"], self._where["actor"]
        self._reporter.report(execution)
        self.running[execution.id] = (execution, task)

    async def _execute(self, execution: Execution, job: Job, prepared: Any) -> None:
        first = len(execution.attempts) + 1  # a resumed execution numbers on
        try:
            for attempt in range(first, first + job.retry_policy.max_attempts):
                started = self._clock.now()
                ahead = () if prepared is None else (prepared,)
                prepared = None  # retries are built when they are due
                outcome = await self._send(job, execution, attempt, job.timeout.total_seconds(), *ahead)
                execution.attempts.append(
                    Attempt(
                        number=attempt,
                        started_at=started,
                        duration=outcome.duration,
                        status_code=outcome.status_code,
                        error=outcome.error,
                    )
                )
                verdict = judge(outcome, job.webhook, job.retry_policy, attempt - first + 1)
                if not verdict.retry:
                    break
                self._reporter.report(execution)
                await self._clock.sleep_until(self._clock.now() + (verdict.wait or timedelta(0)))
            self._close(
                execution,
                verdict.status,
                error=verdict.error,
                status_code=outcome.status_code,
                response_body=outcome.body,
                response_truncated=outcome.truncated,
            )
        except asyncio.CancelledError:
            reason = self._cancel_reasons.pop(execution.id, None)
            if reason is None or self._stopping:
                raise  # stopped: the execution stays unfinished for whoever resumes it
            self._close(execution, ExecutionStatus.cancelled, reason=reason)
        except Exception as e:  # a bug must not leave the execution running forever
            log.exception("job %s: execution %s crashed", job.name, execution.id)
            self._close(execution, ExecutionStatus.failed, error=f"internal error: {type(e).__name__}")
        finally:
            self.running.pop(execution.id, None)

    def _close(self, execution: Execution, status: ExecutionStatus, **fields) -> None:
        now = self._clock.now()
        execution.status = status
        execution.finished_at = now
        if execution.started_at:
            execution.duration = (now - execution.started_at).total_seconds()
        for key, value in fields.items():
            setattr(execution, key, value)
        self._reporter.report(execution)

    # ------------------------------------------------------------ after a restart

    def _resume(self, execution: Execution, now: datetime) -> None:
        """An execution left pending/running by a runner that died."""
        if self.job.enabled and now - execution.scheduled_at <= self.job.catchup_window:
            execution.reason = "resumed after a restart (same execution id)"
            self._queue([execution])
        else:
            self._close(
                execution,
                ExecutionStatus.failed,
                error="interrupted by a restart and not resumed: "
                + ("the job is disabled" if not self.job.enabled else "older than catchup_window"),
            )

    async def _catch_up(self, after: datetime) -> tuple[datetime, Optional[datetime]]:
        """Where the timer goes on from ``after``, and the slot that follows
        (None: the job is disabled or its schedule has ended). Slots only a little late (a
        host still starting) fire late, as scheduled; slots more than
        LATE_GRACE late (the server was down, or the timer fell behind: a
        claim waiting for a restarting supervisor, a host busy starting many
        jobs) are missed: they follow ``missed_runs`` and are recorded, never
        silently dropped. Their claims are made before the timer claims any
        later slot, so a crash in between cannot lose them.

        The runner's first step (not yet ``caught_up``): when the gap began more than
        LATE_GRACE ago (the server was down), only the newest slot due fires
        late, like a CronJob's latest missed schedule; the others were missed
        too. A restored per-second job would otherwise fire five slots at once,
        and a thousand of them would start the server seconds behind."""
        if not self.job.enabled:
            return after, None
        schedule = self._schedule()
        following = schedule.next_after(after)
        now = self._clock.now()
        horizon = now - LATE_GRACE
        first = not self.caught_up
        if first and following is not None and following <= horizon:
            horizon = max(horizon, _before_newest(schedule, horizon, now))
        if following is None or following > horizon:
            return after, following
        cause = "while no scheduler was running" if first else "while the job's timer was held up"
        claimed = await self._claim_missed(after, horizon, cause)
        if claimed:
            self._queue(claimed)
        return horizon, schedule.next_after(horizon)

    async def _claim_missed(self, since: datetime, now: datetime, cause: str) -> list[Execution]:
        """Apply ``missed_runs`` to the slots in (since, now]: claim a summary
        of those not run and the catch-up runs; returns the runs claimed."""
        missed, count = self._missed_slots(since, now)
        if not count:
            return []
        window_start = now - self.job.catchup_window
        in_window = [s for s in missed if s >= window_start]
        policy = self.job.missed_runs
        to_run = in_window if policy is MissedRuns.execute_all else in_window[-1:] if policy is MissedRuns.execute_one else []
        not_run = [s for s in missed if s not in to_run]
        claims = []
        if not_run:
            first, last = not_run[0], not_run[-1]
            why = "missed_runs: ignore" if policy is MissedRuns.ignore else f"outside catchup_window or not selected (missed_runs: {policy.value})"
            claims.append(self._new(
                Trigger.catchup,
                last,
                status=ExecutionStatus.skipped,
                finished_at=now,
                missed_slots=count - len(to_run),
                reason=f"{count - len(to_run)} run(s) missed {cause} "
                f"({first.isoformat()} .. {last.isoformat()}); not run: {why}",
            ))
        runs = [self._new(Trigger.catchup, s) for s in to_run]
        granted = await asyncio.gather(*(self._claim(e) for e in claims + runs))  # one batch
        return [e for e, ok in zip(runs, granted[len(claims):]) if ok]

    def _missed_slots(self, since: datetime, now: datetime) -> tuple[list[datetime], int]:
        """Slots in (since, now]; keeps the last ``MISSED_COUNT_LIMIT`` and counts all (bounded)."""
        schedule, slots, count = self._schedule(), [], 0
        slot = schedule.next_after(since)
        while slot is not None and slot <= now and count < MISSED_COUNT_LIMIT:
            slots.append(slot)
            count += 1
            slot = schedule.next_after(slot)
        return slots[-1000:], count

    def _queue(self, executions: list[Execution]) -> None:
        """Catch-up and resumed runs wait for their turn (cancellable meanwhile)."""
        for execution in executions:
            self._waiting[execution.id] = execution
        self._spawn(self._run_in_turn(executions))

    async def _run_in_turn(self, executions: list[Execution]) -> None:
        """Catch-up and resumed runs go one after another, never piling up."""
        for execution in executions:
            while self.running:
                await asyncio.wait([task for _, task in list(self.running.values())])
            if self._waiting.pop(execution.id, None) is not None:  # else cancelled while queued
                await asyncio.wait([self._start(execution)])


def _set(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def snapshot(execution: Execution) -> Execution:
    """A copy of the execution's state now, for a report or a reply. Shallow but
    for the attempts list (the only part mutated in place; attempts themselves
    never change once appended): deep copies cost a sixth of a host's CPU."""
    return execution.model_copy(update={"attempts": list(execution.attempts)})


def _before_newest(schedule: Schedule, start: datetime, now: datetime) -> datetime:
    """The slot before the newest one due in (start, now], else ``start``."""
    previous, slot = start, schedule.next_after(start)
    while slot is not None and (following := schedule.next_after(slot)) is not None and following <= now:
        previous, slot = slot, following
    return previous if slot is not None and slot <= now else start
