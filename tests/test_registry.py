"""The registry's placement, kept in place on creates and deletes, always equals the
placement worked out again from every job (chronos/supervisor/registry.py)."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from chronos.models import Job, parse_job
from chronos.placement import Placement
from chronos.supervisor.registry import Registry

SPEC = parse_job({"name": "x", "schedule": "* * * * *", "webhook": {"url": "http://127.0.0.1:9/"}})
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _job(n: int, at: datetime) -> Job:
    return Job.from_spec(SPEC, at).model_copy(update={"name": f"job-{n}", "id": uuid.uuid4()})


def _from_scratch(registry: Registry) -> dict:
    fresh = Registry(lambda keys: None)
    fresh.attach(registry.placement, registry.slots)
    for job in registry.jobs.values():
        fresh.remember(job)
    return fresh.hosts()


@pytest.mark.parametrize("mode", ["auto", "pooled", "dedicated"])
def test_in_place_updates_equal_a_fresh_placement(mode):
    rng = random.Random(7)
    moved: list[str] = []
    registry = Registry(moved.extend)
    registry.attach(Placement(mode, 3), 4)
    at, n = START, 0
    for step in range(400):
        registry.hosts()  # placed, as the supervisor's reconcile has it between edits
        if registry.jobs and rng.random() < 0.4:
            registry.forget(rng.choice(list(registry.jobs)))
        else:
            # Mostly new jobs; now and then one older than some (a store restored from elsewhere).
            at = at + timedelta(seconds=1) if rng.random() < 0.9 else START - timedelta(seconds=step)
            registry.remember(_job(n, at))
            n += 1
        assert registry.hosts() == _from_scratch(registry), f"step {step}"
        for job in registry.jobs.values():
            assert job.id in registry.placed(registry.key(job))


def test_a_freed_slot_moves_the_oldest_pooled_job_and_says_which_hosts_changed():
    moved: list[str] = []
    registry = Registry(moved.extend)
    registry.attach(Placement("auto", 2), 1)
    first, second = _job(1, START), _job(2, START + timedelta(seconds=1))
    registry.remember(first)
    registry.remember(second)
    assert registry.key(first) == "chronos:job:job-1" and registry.key(second).startswith("chronos:pool:")
    registry.forget(first.id)
    assert registry.key(second) == "chronos:job:job-2"
    assert "chronos:job:job-2" in moved and registry.take_retired()
