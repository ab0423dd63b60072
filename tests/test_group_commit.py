"""chronos.group_commit: calls that arrive while one runs are made as one."""

from __future__ import annotations

import asyncio

import pytest

from chronos.group_commit import GroupCommit


class Recorder:
    """A ``run`` that records its batches and takes a moment, like a store transaction."""

    def __init__(self, fail_first: bool = False):
        self.batches: list[list[int]] = []
        self.fail_first = fail_first

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await asyncio.sleep(0.05)
        if self.fail_first and len(self.batches) == 1:
            raise RuntimeError("database is locked")
        return [i * 10 for i in items]


async def test_calls_waiting_for_a_run_are_made_together_and_each_gets_its_own_results():
    run = Recorder()
    group = GroupCommit(run)
    first = asyncio.ensure_future(group([1]))
    await asyncio.sleep(0.01)  # the first run is under way: these three wait for it
    rest = [asyncio.ensure_future(group(items)) for items in ([2, 3], [], [4])]
    assert await first == [10]
    assert [await r for r in rest] == [[20, 30], [], [40]]
    assert run.batches == [[1], [2, 3, 4]]


async def test_a_failed_run_fails_its_group_only():
    run = Recorder(fail_first=True)
    group = GroupCommit(run)
    first = asyncio.ensure_future(group([1]))
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(group([2]))
    with pytest.raises(RuntimeError, match="locked"):
        await first
    assert await second == [20]
    assert await group([3]) == [30]  # and it keeps working


async def test_a_cancelled_caller_leaves_the_others_their_results():
    run = Recorder()
    group = GroupCommit(run)
    first = asyncio.ensure_future(group([1]))
    await asyncio.sleep(0.01)
    gone, kept = asyncio.ensure_future(group([2])), asyncio.ensure_future(group([3]))
    await asyncio.sleep(0)
    gone.cancel()
    assert await first == [10] and await kept == [30]
    assert run.batches == [[1], [2, 3]]
