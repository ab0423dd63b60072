"""How many fires are due in each minute ahead: the console's forecast, so hot minutes
(the top of the hour, midnight in a popular zone) stand out before they happen.

Jobs that share a schedule are counted once and weighted: ten thousand jobs on
``0 * * * *`` cost one walk of that schedule. ``@every`` schedules are counted
arithmetically (a ``@every 1s`` job would otherwise be 86,400 steps a day).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Iterable

from chronos.models import Job
from chronos.schedules import EverySchedule, Schedule, compiled

MINUTE = timedelta(minutes=1)
#: A cron schedule is walked at most this many fires ahead (one a second for a day).
MAX_STEPS = 86_400


def fires_per_minute(jobs: Iterable[Job], start: datetime, minutes: int = 24 * 60) -> list[int]:
    """Fires due in each minute ``[start + i min, start + (i+1) min)`` of the enabled jobs,
    in their zones (DST applied by the schedules themselves)."""
    counts = [0] * minutes
    for schedule, weight in _distinct_schedules(jobs).items():
        for minute, fires in _minutes_of(schedule, start, minutes):
            counts[minute] += fires * weight
    return counts


def _distinct_schedules(jobs: Iterable[Job]) -> Counter[Schedule]:
    found: Counter[Schedule] = Counter()
    for job in jobs:
        if job.enabled:
            try:
                found[compiled(job.schedule, job.timezone, job.anchor)] += 1
            except Exception:  # noqa: BLE001 - a stored row that no longer parses fires nothing
                continue
    return found


def _minutes_of(schedule: Schedule, start: datetime, minutes: int) -> Iterable[tuple[int, int]]:
    if isinstance(schedule, EverySchedule):
        return _every_minutes(schedule, start, minutes)
    return _walk(schedule, start, minutes)


def _walk(schedule: Schedule, start: datetime, minutes: int) -> Iterable[tuple[int, int]]:
    end = start + minutes * MINUTE
    at = schedule.next_after(start - timedelta(microseconds=1))
    for _ in range(MAX_STEPS):
        if at is None or at >= end:
            return
        yield int((at - start) // MINUTE), 1
        at = schedule.next_after(at)


def _every_minutes(schedule: EverySchedule, start: datetime, minutes: int) -> Iterable[tuple[int, int]]:
    def fired_before(t: datetime) -> int:  # fires in [anchor, t)
        if t <= schedule.anchor:
            return 0
        return -((schedule.anchor - t) // schedule.interval)

    before = fired_before(start)
    for minute in range(minutes):
        upto = fired_before(start + (minute + 1) * MINUTE)
        if upto > before:
            yield minute, upto - before
        before = upto
