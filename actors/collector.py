"""Garbage collection between bursts, for host processes.

Python collects its young generation after a number of net new objects, so a
collection lands in the middle of a burst of fires, where hundreds of requests
in flight are live young objects: it pauses every request behind it (≈ 20 ms a
collection, about once a second per host at 1,000 fires/s, on the bench
machine). Almost nothing a host allocates is cyclic garbage (those collections
freed nothing), so a host turns automatic collection off and collects the same
generations itself when it is idle: after a burst, before the next. A host
that is never idle still collects, at a higher count, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Callable, Optional

#: CPython's rule with these thresholds: a collection is due after YOUNG net
#: new objects; every 20th young collection is a middle one, every 100th of
#: those a full one (objects frozen by ``gc.freeze()`` are never scanned).
THRESHOLDS = (20_000, 20, 100)
#: Net new objects after which a host collects even when it is never idle.
FORCED = 200_000
INTERVAL = 0.1  # seconds between checks


def due_generation(counts: tuple[int, int, int], idle: bool) -> Optional[int]:
    """The generation to collect now, if any (CPython's choice, held off while busy)."""
    if counts[0] < THRESHOLDS[0] or (counts[0] < FORCED and not idle):
        return None
    return next(gen for gen in (2, 1, 0) if gen == 0 or counts[gen] >= THRESHOLDS[gen])


async def collect_between_bursts(idle: Callable[[], bool], interval: float = INTERVAL) -> None:
    """Run for the life of the process: automatic collection off, ours on."""
    gc.disable()
    try:
        while True:
            await asyncio.sleep(interval)
            generation = due_generation(gc.get_count(), idle())
            if generation is not None:
                gc.collect(generation)
    finally:
        gc.enable()
