"""Clocks: the real one, and a fake one that runs hours of schedule in
milliseconds for tests of the per-job state machine."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, when: datetime) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    async def sleep_until(self, when: datetime) -> None:
        # Sleep in slices: a long asyncio sleep drifts if the host is suspended.
        while (delay := (when - self.now()).total_seconds()) > 0:
            await asyncio.sleep(min(delay, 60.0))


class FakeClock:
    """Time moves only when a test calls :meth:`advance`; sleepers wake in order."""

    def __init__(self, start: datetime):
        self._now = start
        self._sleepers: list[tuple[datetime, int, asyncio.Future]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._seq), future))
        await future

    async def advance(self, delta: timedelta | float) -> None:
        """Move time forward, waking each sleeper at its own instant."""
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=delta)
        target = self._now + delta
        await _settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, when)
            if not future.done():
                future.set_result(None)
            await _settle()
        self._now = target
        await _settle()


async def _settle(rounds: int = 20) -> None:
    """Let woken tasks run until they block again."""
    for _ in range(rounds):
        await asyncio.sleep(0)
