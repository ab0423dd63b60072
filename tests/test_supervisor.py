"""The supervisor in-process: a real SQLite file, hosts in this process (LocalRuntime), no Ray."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from chronos.errors import CapacityExhausted, JobNotFound
from chronos.models import Execution, ExecutionStatus, Job, parse_job, utcnow
from chronos.local_runtime import LocalRuntime
from chronos.runtime import HostGone
from chronos.supervisor import Supervisor

from stored import count_jobs

NEVER = "0 0 1 1 *"  # once a year: no timer fires during a test


async def create(sup: Supervisor, name: str):
    return await sup.create_job(parse_job({"name": name, "schedule": NEVER, "webhook": {"url": "http://127.0.0.1:9/"}}))


def rows(sup: Supervisor, status: str | None = None) -> int:
    """Execution rows in the store (with ``status``, only those)."""
    where, params = (" WHERE status = :status", {"status": status}) if status else ("", {})
    with sup.store.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM executions" + where), params).scalar_one()


def execution(job, after: timedelta = timedelta(0)) -> Execution:
    return Execution(job_id=job.id, job_name=job.name, scheduled_at=utcnow() + after)


async def test_a_claim_for_a_deleted_job_is_refused(supervisor):
    gone, kept = await create(supervisor, "gone"), await create(supervisor, "kept")
    await supervisor.delete_job("gone")
    assert await supervisor.claim([execution(gone), execution(kept)]) == [False, True]
    assert rows(supervisor) == 1


async def test_claims_and_reports_racing_a_delete_leave_no_row(supervisor):
    job = await create(supervisor, "racing")
    claimed = execution(job)
    assert await supervisor.claim([claimed]) == [True]
    done = claimed.model_copy(update={"status": ExecutionStatus.success, "started_at": utcnow()})
    late = execution(job, after=timedelta(seconds=1))
    await asyncio.gather(supervisor.delete_job("racing"), supervisor.claim([late]), supervisor.report([done]))
    assert rows(supervisor) == 0
    assert await supervisor.claim([execution(job)]) == [False]


async def test_claims_of_many_hosts_at_once_share_transactions_and_each_slot_has_one_winner(supervisor, monkeypatch):
    """100 dedicated hosts claim the same second at once: their claims are written
    in a few transactions, not one each, and a slot claimed by two hosts (a job
    moving between hosts) is still won once."""
    jobs = [await create(supervisor, f"j{i:03d}") for i in range(100)]
    calls = []
    claim = supervisor.store.claim
    monkeypatch.setattr(supervisor.store, "claim", lambda batch: calls.append(len(batch)) or claim(batch))
    due = utcnow().replace(microsecond=0) + timedelta(seconds=5)
    first = [Execution(job_id=j.id, job_name=j.name, scheduled_at=due) for j in jobs]
    second = [Execution(job_id=j.id, job_name=j.name, scheduled_at=due) for j in jobs[:10]]  # the same slots again
    results = await asyncio.gather(*(supervisor.claim([e]) for e in first + second))
    assert [r for r, in results[:100]] == [True] * 100
    assert [r for r, in results[100:]] == [False] * 10
    assert rows(supervisor) == 100
    assert sum(calls) == 110 and len(calls) <= 3, calls


async def test_a_large_report_is_written_in_chunks_and_a_failed_chunk_is_kept(supervisor, monkeypatch):
    """A burst's reports go in FLUSH_CHUNK-sized transactions (a claim waits for
    one chunk, not the burst); when one fails, it and the rest stay pending and
    the next flush writes them: no final status is lost."""
    from chronos.supervisor import FLUSH_CHUNK

    job = await create(supervisor, "burst")
    claimed = [execution(job, after=timedelta(seconds=k)) for k in range(FLUSH_CHUNK + 300)]
    assert all(await supervisor.claim(claimed))
    now = utcnow()
    done = [e.model_copy(update={"status": ExecutionStatus.success, "started_at": now, "finished_at": now}) for e in claimed]
    chunks, save = [], supervisor.store.save_executions

    def failing_second(batch, runtime=()):
        chunks.append(len(batch))
        if len(chunks) == 2:
            raise OSError("disk full")
        return save(batch, runtime=runtime)

    monkeypatch.setattr(supervisor.store, "save_executions", failing_second)
    with pytest.raises(OSError):
        await supervisor.report(done)
    assert chunks == [FLUSH_CHUNK, 300]
    assert rows(supervisor, "success") == FLUSH_CHUNK
    await supervisor.flush()
    assert rows(supervisor, "success") == len(done) and chunks[2:] == [300]


async def test_get_job_shows_the_last_final_report(supervisor):
    job = await create(supervisor, "hook")
    assert (await supervisor.get_job("hook")).last_run is None
    claimed = execution(job)
    await supervisor.claim([claimed])
    started = claimed.scheduled_at + timedelta(milliseconds=5)
    running = claimed.model_copy(update={"status": ExecutionStatus.running, "started_at": started})
    await supervisor.report([running])
    assert (await supervisor.get_job("hook")).last_status is None  # not final yet
    await supervisor.report([running.model_copy(update={"status": ExecutionStatus.failed})])
    got = await supervisor.get_job(str(job.id))
    assert (got.last_run, got.last_status) == (started, ExecutionStatus.failed)
    stored = supervisor.store.get_job(job.id)
    assert (stored.last_run, stored.last_status) == (started, ExecutionStatus.failed)


async def test_get_job_finds_jobs_as_the_store_does(supervisor):
    first = await create(supervisor, "first")
    looks_like_an_id = await create(supervisor, str(uuid.uuid4()))
    named_after_first = await create(supervisor, str(first.id))  # an id wins over a name
    for ref in ("first", first.id, str(first.id), looks_like_an_id.name, named_after_first.id):
        assert (await supervisor.get_job(ref)).id == supervisor.store.get_job(ref).id
    for ref in ("nope", str(uuid.uuid4()), uuid.uuid4()):
        with pytest.raises(JobNotFound, match=f'job "{ref}" not found'):
            await supervisor.get_job(ref)


async def test_renames_and_deletes_update_the_names(supervisor):
    job = await create(supervisor, "before")
    await supervisor.patch_job("before", {"name": "after"})
    assert (await supervisor.get_job("after")).id == job.id
    with pytest.raises(JobNotFound):
        await supervisor.get_job("before")
    renamed_back = await create(supervisor, "before")  # the old name is free again
    await supervisor.delete_job(str(job.id))
    with pytest.raises(JobNotFound):
        await supervisor.get_job("after")
    assert [j.id for j in (await supervisor.list_jobs())[0]] == [renamed_back.id]


async def test_reads_answer_while_the_writer_is_busy(supervisor, monkeypatch):
    await create(supervisor, "hook")
    release = threading.Event()

    def slow_prune(**_) -> int:
        release.wait()
        return 0

    monkeypatch.setattr(supervisor.store, "prune", slow_prune)
    busy = asyncio.create_task(supervisor.prune())  # holds the one writer thread
    try:
        # Deadlock detectors, not timings: queued behind the writer these would never answer.
        assert (await asyncio.wait_for(supervisor.get_job("hook"), 10)).name == "hook"
        assert [j.name for j in (await asyncio.wait_for(supervisor.list_jobs(), 10))[0]] == ["hook"]
        await asyncio.wait_for(supervisor.ready(), 10)
    finally:
        release.set()
        await busy


class _FullRuntime(LocalRuntime):
    """No room for any host (as a cluster with no free job slots)."""

    async def host(self, key):
        if key not in self.hosts:
            raise CapacityExhausted("no free job slot")
        return await super().host(key)


async def test_a_job_without_a_host_is_not_kept(make_supervisor):
    sup = await make_supervisor(_FullRuntime)
    with pytest.raises(CapacityExhausted):
        await create(sup, "homeless")
    with pytest.raises(JobNotFound):
        await sup.get_job("homeless")
    assert count_jobs(sup.store) == (0, 0)


async def test_reconcile_refills_a_host_whose_jobs_differ_even_in_equal_number(supervisor):
    """A host that lost a job and runs one that is not its own (deleted while it
    was away, or placed elsewhere by a new pool size) gets its job back and
    stops the stranger, which would otherwise claim and fire with a stale spec."""
    a, b = await create(supervisor, "a"), await create(supervisor, "b")
    await asyncio.sleep(0)  # the background assigns
    await supervisor.reconcile()
    (host,) = supervisor.runtime.hosts.values()
    assert set(host.runners) == {a.id, b.id}
    status = await host.status()
    assert status == {"count": 2, "digest": a.id.int ^ b.id.int}

    # The host lost b and holds a stranger instead: same count, other jobs.
    await host.remove(b.id)
    stranger = parse_job({"name": "stranger", "schedule": NEVER, "webhook": {"url": "http://127.0.0.1:9/"}})
    await host.assign([(Job(**stranger.model_dump()), None, [])])
    assert (await host.status())["count"] == 2
    await supervisor.reconcile()
    assert set(host.runners) == {a.id, b.id}


async def test_reconcile_leaves_a_matching_host_alone(supervisor, monkeypatch):
    await create(supervisor, "a")
    await supervisor.reconcile()
    (host,) = supervisor.runtime.hosts.values()
    asked = []
    status = host.status
    monkeypatch.setattr(host, "status", lambda with_jobs=False: asked.append(with_jobs) or status(with_jobs))
    await supervisor.reconcile()
    assert asked == [False]  # the digest matched: no job list shipped


async def test_a_host_slow_to_answer_a_reconcile_holds_up_no_create(make_supervisor, monkeypatch):
    """A dedicated host whose process is still starting answers seconds later:
    creates and deletes go on meanwhile, and what the reconcile then repairs is
    decided on the jobs as they are by then (a deleted job is not given back)."""
    sup = await make_supervisor(lambda s: LocalRuntime(s, placement="dedicated"))
    await create(sup, "slow")
    doomed = await create(sup, "doomed")
    await asyncio.sleep(0)  # the background assigns
    slow, gone = sup.runtime.hosts["chronos:job:slow"], sup.runtime.hosts["chronos:job:doomed"]
    await gone.remove(doomed.id)  # a mismatch the reconcile will want to repair
    started = asyncio.Event()
    release = asyncio.Event()

    def held(status):
        async def status_when_released(with_jobs=False):
            started.set()
            await release.wait()
            return await status(with_jobs)
        return status_when_released

    monkeypatch.setattr(slow, "status", held(slow.status))
    monkeypatch.setattr(gone, "status", held(gone.status))
    reconcile = asyncio.create_task(sup.reconcile(every_host=True))
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(create(sup, "meanwhile"), 5)
    await asyncio.wait_for(sup.delete_job("doomed"), 5)
    release.set()
    await asyncio.wait_for(reconcile, 5)
    assert doomed.id not in gone.runners and "chronos:job:doomed" not in sup.runtime.hosts
    assert set(sup.runtime.hosts) == {"chronos:job:slow", "chronos:job:meanwhile"}


class _Hanging:
    """A host whose assign, update and remove take 10 s to answer (Ray's call timeout),
    as a dedicated host whose process is swapping or whose node is partitioned."""

    HANG = 10.0

    def __init__(self, host, started: asyncio.Event):
        self._host, self._started = host, started

    def __getattr__(self, name):
        return getattr(self._host, name)

    async def _slowly(self, call):
        self._started.set()
        await asyncio.sleep(self.HANG)
        return await call

    def assign(self, items):
        return self._slowly(self._host.assign(items))

    def update(self, job):
        return self._slowly(self._host.update(job))

    def remove(self, job_id):
        return self._slowly(self._host.remove(job_id))


class _OneHangingHost(LocalRuntime):
    """Dedicated hosts; the one of job ``stuck`` hangs once ``hang`` is set."""

    hang = False
    started: asyncio.Event

    def __init__(self, upstream):
        super().__init__(upstream, placement="dedicated")
        self.started = asyncio.Event()

    def _maybe_hanging(self, key, host):
        return _Hanging(host, self.started) if host is not None and self.hang and key == "chronos:job:stuck" else host

    async def host(self, key):
        return self._maybe_hanging(key, await super().host(key))

    async def find(self, key):
        return self._maybe_hanging(key, await super().find(key))


async def test_a_host_hanging_for_its_call_timeout_holds_up_no_other_job(make_supervisor):
    """One host takes 10 s to answer an edit of its job: meanwhile the API creates,
    edits, deletes and reads other jobs in their normal time (the lock is never held
    across a host call), and the hung edit completes on the host afterwards."""
    sup = await make_supervisor(_OneHangingHost)
    stuck, other = await create(sup, "stuck"), await create(sup, "other")
    await create(sup, "doomed")
    await asyncio.sleep(0)  # the background assigns
    sup.runtime.hang = True
    edit = asyncio.create_task(sup.patch_job("stuck", {"description": "edited"}))
    await asyncio.wait_for(sup.runtime.started.wait(), 5)
    began = asyncio.get_running_loop().time()

    async def quick(call):
        return await asyncio.wait_for(call, 1.0)

    fresh = await quick(create(sup, "fresh"))
    assert (await quick(sup.patch_job("other", {"description": "also edited"}))).description == "also edited"
    await quick(sup.set_enabled("fresh", False))
    await quick(sup.delete_job("doomed"))
    assert (await quick(sup.get_job("other"))).description == "also edited"
    assert [j.name for j in (await quick(sup.list_jobs()))[0]] == ["fresh", "other", "stuck"]
    assert (await quick(sup.list_executions("other")))[0] == []
    await quick(sup.metrics())
    assert not edit.done() and asyncio.get_running_loop().time() - began < _Hanging.HANG

    assert (await asyncio.wait_for(edit, 15)).description == "edited"
    assert sup.runtime.hosts["chronos:job:stuck"].runners[stuck.id].job.description == "edited"
    assert sup.runtime.hosts["chronos:job:other"].runners[other.id].job.description == "also edited"
    assert not sup.runtime.hosts["chronos:job:fresh"].runners[fresh.id].job.enabled
    assert "chronos:job:doomed" not in sup.runtime.hosts


async def test_edits_of_one_job_reach_its_host_in_order_while_its_calls_are_slow(make_supervisor, monkeypatch):
    """Edits are told to the host after the lock is released: the slow call of an earlier
    edit must not land after a later edit's quick one, leaving the host with a stale spec."""
    monkeypatch.setattr(_Hanging, "HANG", 0.3)
    sup = await make_supervisor(_OneHangingHost)
    job = await create(sup, "stuck")
    await asyncio.sleep(0)  # the background assign
    sup.runtime.hang = True
    first = asyncio.create_task(sup.patch_job("stuck", {"description": "first"}))
    await asyncio.wait_for(sup.runtime.started.wait(), 5)
    sup.runtime.hang = False  # the next call is quick
    await sup.patch_job("stuck", {"description": "second"})
    await first
    assert sup.runtime.hosts["chronos:job:stuck"].runners[job.id].job.description == "second"
    await sup.patch_job("stuck", {"name": "renamed"})
    assert set(sup.runtime.hosts) == {"chronos:job:renamed"}
    assert sup.runtime.hosts["chronos:job:renamed"].runners[job.id].job.description == "second"


async def test_an_edit_made_while_the_reconcile_refills_a_host_reaches_it(make_supervisor, monkeypatch):
    """The reconcile gives a host its missing job outside the lock: an edit that comes
    while that call is on its way finds the job not there yet, so the reconcile sends
    the edited spec after its own (a host's digest counts jobs, not their specs)."""
    monkeypatch.setattr(_Hanging, "HANG", 0.3)
    sup = await make_supervisor(_OneHangingHost)
    job = await create(sup, "stuck")
    await asyncio.sleep(0)  # the background assign
    host = sup.runtime.hosts["chronos:job:stuck"]
    await host.remove(job.id)  # as if it restarted empty
    sup.runtime.hang = True
    reconcile = asyncio.create_task(sup.reconcile(every_host=True))
    await asyncio.wait_for(sup.runtime.started.wait(), 5)
    sup.runtime.hang = False
    await sup.patch_job("stuck", {"description": "edited"})
    await reconcile
    assert host.runners[job.id].job.description == "edited"


async def test_a_spec_is_validated_where_it_enters_and_not_on_internal_rebuilds(supervisor, monkeypatch):
    """The edge (parse_job: the API's and the CLI's model) checks a job's schedule and zone;
    building the job, writing and reading it back, listing it, the store's load and the
    wire to a host do not check them again."""
    from chronos import models
    from chronos.actors.wire import pack_assignments, unpack_assignments

    spec = parse_job({"name": "once", "schedule": "@every 7s", "timezone": "Europe/Paris",
                      "webhook": {"url": "http://127.0.0.1:9/"}})
    checks = []
    trusted = models._trusted
    monkeypatch.setattr(models, "_trusted", lambda info: trusted(info) or checks.append(info.field_name) or False)
    job = await supervisor.create_job(spec)
    await supervisor.patch_job("once", {"enabled": False})  # the merged spec is an edge of its own
    assert sorted(checks) == ["schedule", "timezone"]
    checks.clear()
    await supervisor.get_job("once")
    await supervisor.list_jobs()
    stored = supervisor.store.get_job(job.id)
    assert unpack_assignments(pack_assignments([(stored, None, [])]))[0][0] == stored
    assert checks == []


async def test_reconcile_checks_many_hosts_in_turn(make_supervisor, monkeypatch):
    from chronos.supervisor import reconciler as module

    monkeypatch.setattr(module, "RECONCILE_HOSTS", 2)
    sup = await make_supervisor(lambda s: LocalRuntime(s, placement="dedicated"))
    for name in "abcde":
        await create(sup, name)
    checked = []
    original = sup.reconciler._reconcile_host
    monkeypatch.setattr(sup.reconciler, "_reconcile_host", lambda key, *rest: checked.append(key) or original(key, *rest))
    for _ in range(3):
        await sup.reconcile()
    assert len(checked) == 6 and set(checked) == {f"chronos:job:{n}" for n in "abcde"}
    checked.clear()
    await sup.reconcile(every_host=True)
    assert len(checked) == 5


async def test_hosts_running_jobs_no_stored_job_is_placed_on_are_stopped_at_start(make_supervisor):
    """Hosts outlive the supervisor on a cluster. After a crash between a rename's
    write and stopping the old host, or with a store older than a job, a host may
    run a job under a name, or a job, that the store does not place there: left
    alone it would claim and fire a spec no edit reaches."""
    first = await make_supervisor(lambda s: LocalRuntime(s, placement="dedicated"))
    renamed, unknown = await create(first, "old-name"), await create(first, "unknown")
    await asyncio.sleep(0)  # the background assigns
    survivors = crash(first)
    first.store.update_job(renamed.model_copy(update={"name": "new-name"}))  # the rename's write
    first.store.delete_job(unknown.id)  # as if the store were older than the job
    old_host = survivors["chronos:job:old-name"]

    sup = await make_supervisor(restarted(survivors, placement="dedicated"))
    assert set(sup.runtime.hosts) == {"chronos:job:new-name"}
    assert not old_host.runners
    assert set(sup.runtime.hosts["chronos:job:new-name"].runners) == {renamed.id}


async def test_a_pool_host_no_stored_job_is_placed_on_is_emptied_at_start(make_supervisor):
    """The reconcile checks the hosts that jobs are placed on; a pool host that
    holds only jobs the store does not (a store older than its jobs) is emptied."""
    first = await make_supervisor()
    unknown = await create(first, "unknown")
    await asyncio.sleep(0)  # the background assign
    survivors = crash(first)
    first.store.delete_job(unknown.id)

    sup = await make_supervisor(restarted(survivors))
    (host,) = sup.runtime.hosts.values()
    assert not host.runners


async def test_a_host_that_cannot_be_stopped_does_not_stop_the_start(make_supervisor):
    """A host that does not answer is logged: the supervisor starts and hosts its jobs."""
    first = await make_supervisor(lambda s: LocalRuntime(s, placement="dedicated"))
    job, unknown = await create(first, "kept"), await create(first, "unknown")
    await asyncio.sleep(0)  # the background assigns
    survivors = crash(first)
    first.store.delete_job(unknown.id)

    class Unreachable(LocalRuntime):
        refuse = True  # while the supervisor starts

        async def drop(self, key):
            if self.refuse:
                raise HostGone("no answer")
            await super().drop(key)

    sup = await make_supervisor(restarted(survivors, Unreachable, placement="dedicated"))
    sup.runtime.refuse = False
    assert set(sup.runtime.hosts["chronos:job:kept"].runners) == {job.id}
    assert (await sup.get_job("kept")).id == job.id


def crash(sup: Supervisor) -> dict:
    """The supervisor dies (its loops stop); its hosts live on: returned."""
    for task in sup._tasks:
        task.cancel()
    return dict(sup.runtime.hosts)


def restarted(survivors: dict, runtime_class=LocalRuntime, **options):
    """A runtime factory for a new supervisor that finds ``survivors`` running."""
    def make(sup):
        runtime = runtime_class(sup, **options)
        runtime.hosts.update(survivors)
        return runtime
    return make


async def test_slots_missed_while_the_supervisor_was_unreachable_are_recorded_without_a_restart(supervisor):
    """A host whose claims fail (the supervisor cannot be reached) records the slots
    it could not claim as missed as soon as claims work again: in the store, and in
    chronos_missed_runs_total."""
    real_claim, down = supervisor.claim, True

    async def claim(executions):
        if down:
            raise ConnectionError("supervisor unreachable")
        return await real_claim(executions)

    supervisor.claim = claim
    spec = {"name": "every-second", "schedule": "* * * * * *", "catchup_window": "0s", "missed_runs": "ignore",
            "webhook": {"url": "http://127.0.0.1:9/"}}
    await supervisor.create_job(parse_job(spec))
    await asyncio.sleep(3)
    assert rows(supervisor) == 0
    down = False
    await asyncio.sleep(2)
    await supervisor.flush()
    with supervisor.store.engine.connect() as conn:
        missed = conn.execute(text("SELECT sum(missed_slots) FROM executions")).scalar_one()
        slots = conn.execute(text("SELECT sum(coalesce(missed_slots, 1)) FROM executions")).scalar_one()
    assert missed >= 1  # the slot held up in its claim; the later ones were only a little late and ran
    assert slots >= 4  # every slot of the 5 s is accounted for
    exposition = (await supervisor.metrics()).decode()
    counted = [line for line in exposition.splitlines() if line.startswith("chronos_missed_runs_total")]
    assert counted and float(counted[0].split()[-1]) == missed


async def test_auto_placement_dedicates_the_oldest_jobs_and_promotes_one_when_a_slot_frees(make_supervisor):
    sup = await make_supervisor(lambda s: LocalRuntime(s, placement="auto", pool_size=2, slots=2))
    jobs = [await create(sup, name) for name in ("first", "second", "third")]
    await sup.reconcile()

    def hosts_of(job_id):
        return sorted(key for key, host in sup.runtime.hosts.items() if job_id in host.runners)

    assert hosts_of(jobs[0].id) == ["chronos:job:first"] and hosts_of(jobs[1].id) == ["chronos:job:second"]
    (pool,) = hosts_of(jobs[2].id)
    assert pool.startswith("chronos:pool:")
    await sup.delete_job("first")
    await sup.reconcile()
    assert "chronos:job:first" not in sup.runtime.hosts
    assert hosts_of(jobs[2].id) == ["chronos:job:third"]  # the oldest pooled job took the freed slot, and left its pool host
    assert hosts_of(jobs[1].id) == ["chronos:job:second"]
