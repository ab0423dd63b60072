"""Host processes collect garbage between bursts (chronos.actors.collector)."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from chronos.actors.collector import FORCED, THRESHOLDS, collect_between_bursts, due_generation

YOUNG = THRESHOLDS[0]


def test_nothing_is_due_below_the_young_threshold():
    assert due_generation((YOUNG - 1, 0, 0), idle=True) is None


def test_a_busy_host_waits_until_the_forced_count():
    assert due_generation((YOUNG, 0, 0), idle=False) is None
    assert due_generation((FORCED, 0, 0), idle=False) == 0


def test_older_generations_follow_cpythons_rule():
    assert due_generation((YOUNG, 0, 0), idle=True) == 0
    assert due_generation((YOUNG, THRESHOLDS[1], 0), idle=True) == 1
    assert due_generation((YOUNG, THRESHOLDS[1], THRESHOLDS[2]), idle=True) == 2


class Cycle:
    def __init__(self):
        self.me = self


async def test_garbage_waits_for_an_idle_moment_then_is_collected():
    idle = False
    task = asyncio.create_task(collect_between_bursts(lambda: idle, interval=0.01))
    try:
        await asyncio.sleep(0.02)
        assert not gc.isenabled()
        probe = Cycle()
        alive = weakref.ref(probe)
        del probe
        junk = [[i] for i in range(YOUNG + 1000)]  # young objects over the threshold, busy host
        await asyncio.sleep(0.1)
        assert alive() is not None, "collected while the host was busy"
        idle = True
        await asyncio.sleep(0.1)
        assert alive() is None, "not collected once the host was idle"
        del junk
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert gc.isenabled()
