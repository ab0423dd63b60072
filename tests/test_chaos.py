"""Crash loops against a real `chronos serve` (its own local Ray, a SQLite
file) while jobs fire every second at receivers on 127.0.0.1: SIGKILL of a
job-host actor, the supervisor, a Serve replica and finally the whole server,
then the invariants of ``bench/chaos.py`` (no slot delivered under two
execution ids, every execution final, no job lost or changed, every missed
slot handled per ``missed_runs`` and recorded).

The short loop (one cycle, 10 jobs, about a minute) is marked ``slow`` (``pytest -m slow``;
.ci/run runs it after the suite); the long
one (3 cycles, 50 jobs) is marked ``chaos``: ``pytest -m chaos``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from chronos.runner import LATE_GRACE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import chaos  # noqa: E402


def _assert_survived(report: dict, cycles: int) -> None:
    assert not report["violations"], "\n".join(report["violations"][:30])
    kinds = [f["kind"] for f in report["faults"]]
    assert kinds.count("server") == cycles and len(kinds) == 4 * cycles
    assert all(f["fresh_fire_s"] is not None for f in report["faults"]), report["faults"]
    figures = report["figures"]
    # A restart slower than LATE_GRACE leaves slots too late to fire: missed, and recorded
    # as such (a quick restart, possible on an idle machine, fires them late instead).
    outage = max(f["fresh_fire_s"] for f in report["faults"] if f["kind"] == "server")
    if outage > LATE_GRACE.total_seconds() + 2:
        assert figures["missed_slots"] > 0 and figures["catchup_runs"] > 0, (outage, figures)
    assert figures["deliveries"] > 0 and figures["statuses"].get("success", 0) > 0, figures


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_short_crash_loop(tmp_path):
    report = chaos.run(1, 10, workdir=tmp_path, seed=7, gap=(1.5, 3.0), tail=4.0)
    print(report["faults"], report["figures"])
    _assert_survived(report, 1)


@pytest.mark.chaos
@pytest.mark.timeout(1200)
def test_crash_loop(tmp_path):
    report = chaos.run(3, 50, workdir=tmp_path)
    print(report["faults"], report["figures"])
    _assert_survived(report, 3)


# ---------------------------------------------------------------- crash windows of the supervisor


async def _one_shot_job(sup):
    from chronos.models import parse_job

    spec = {"name": "one-shot", "schedule": "0 0 1 1 *", "webhook": {"url": "http://127.0.0.1:9/never"}}
    return await sup.create_job(parse_job(spec))


async def test_a_report_is_acknowledged_only_once_it_is_written(supervisor, tmp_path):
    """A host forgets what the supervisor acknowledged: if the supervisor died
    (kill -9) right after the acknowledgement, the final status must already
    be in the store, or the execution would stay "running" forever."""
    from chronos.models import Execution, ExecutionStatus, Trigger, utcnow
    from chronos.store import Store

    job = await _one_shot_job(supervisor)
    execution = Execution(job_id=job.id, job_name=job.name, trigger=Trigger.manual, scheduled_at=utcnow())
    assert await supervisor.claim([execution]) == [True]
    execution.status, execution.finished_at = ExecutionStatus.success, utcnow()
    await supervisor.report([execution])
    other_connection = Store(f"sqlite:///{tmp_path / 'chronos.db'}")  # what a restarted supervisor would read
    assert other_connection.get_execution(job.id, execution.id).status is ExecutionStatus.success
    other_connection.close()


async def test_a_retried_claim_whose_reply_was_lost_is_still_granted(supervisor):
    """The supervisor wrote the claim and died before replying; the host claims
    again (same execution id) from the restarted supervisor: the slot is its
    own, so it must fire, not be dropped as "claimed by someone else"."""
    from chronos.models import Execution, Trigger, utcnow

    job = await _one_shot_job(supervisor)
    slot = utcnow().replace(microsecond=0)
    execution = Execution(job_id=job.id, job_name=job.name, trigger=Trigger.scheduled, scheduled_at=slot)
    assert await supervisor.claim([execution]) == [True]
    assert await supervisor.claim([execution]) == [True]
    twin = Execution(job_id=job.id, job_name=job.name, trigger=Trigger.scheduled, scheduled_at=slot)
    assert await supervisor.claim([twin, execution]) == [False, True]
