"""Clocks: the real one, and a fake one that runs hours of schedule in
milliseconds for tests of the per-job state machine."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import datetime, timedelta
from typing import Protocol

from chronos.times import utcnow


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, when: datetime) -> None: ...


SLICE = 60.0  # seconds: a long asyncio sleep drifts if the host is suspended


class SystemClock:
    """The wall clock. Sleepers until the same instant share one timer and so
    wake in the same turn of the event loop: the requests of every job due at
    one instant all leave before any response is handled. (One timer each, woken
    a millisecond apart, let responses of the first sends be handled between
    later sends: 500 jobs due at once, p50 lateness 39-50 -> 32-35 ms.)"""

    def __init__(self) -> None:
        self._instants: dict[float, list[asyncio.Future]] = {}

    def now(self) -> datetime:
        return utcnow()

    async def sleep_until(self, when: datetime) -> None:
        # Slices, not an event: the wall clock may jump, and each slice re-reads it.
        while (delay := (when - self.now()).total_seconds()) > SLICE:  # noqa: ASYNC110
            await asyncio.sleep(SLICE)
        if delay <= 0:
            return
        loop = asyncio.get_running_loop()
        # Keyed by the POSIX instant: aware datetimes of one zone compare by wall time
        # (the two 01:30s of a DST fold are "equal").
        instant = when.timestamp()
        sleepers = self._instants.get(instant)
        if sleepers is None:
            sleepers = self._instants[instant] = []
            loop.call_later(delay, self._wake, when)
        sleepers.append(future := loop.create_future())
        await future  # a cancelled sleeper cancels only its own future

    def _wake(self, when: datetime) -> None:
        # Loop timers round to the millisecond: never wake a sleeper early.
        if (delay := (when - self.now()).total_seconds()) > 0:
            asyncio.get_running_loop().call_later(min(delay, SLICE), self._wake, when)
            return
        for future in self._instants.pop(when.timestamp()):
            if not future.done():
                future.set_result(None)


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
