"""The real clock, on the loop the hosts run (uvloop)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import uvloop

from chronos.clock import SystemClock


def test_sleepers_until_one_instant_wake_together_never_early():
    """Jobs due at the same instant must all send before any response is handled:
    their sleeps, started while the loop is busy, end in one turn of the loop."""
    events: list[str] = []

    async def main():
        clock = SystemClock()
        when = clock.now() + timedelta(seconds=0.3)
        woke = []

        async def sleeper(n):
            if n % 5 == 0:
                time.sleep(0.0013)  # a busy loop: the later sleepers start in the same turn, later
            await clock.sleep_until(when)
            woke.append(clock.now())
            events.append(f"sleeper {n}")

        async def ticker():  # marks every turn of the loop
            while True:
                events.append("tick")
                await asyncio.sleep(0)

        tick = asyncio.create_task(ticker())
        sleepers = [asyncio.create_task(sleeper(n)) for n in range(100)]
        await asyncio.sleep(0.01)
        sleepers[7].cancel()  # one cancelled sleeper wakes nobody else early, loses nobody
        await asyncio.gather(*sleepers, return_exceptions=True)
        tick.cancel()
        assert min(woke) >= when
        return len(woke)

    assert uvloop.run(main()) == 99
    woken = [i for i, e in enumerate(events) if e.startswith("sleeper")]
    assert len(woken) == 99 and woken[-1] - woken[0] == 98  # no turn of the loop in between


def test_a_sleep_until_the_past_returns_at_once():
    async def main():
        clock = SystemClock()
        await asyncio.wait_for(clock.sleep_until(clock.now() - timedelta(seconds=1)), 0.1)

    uvloop.run(main())
