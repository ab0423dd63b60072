"""The fires-per-minute forecast (chronos.forecast): weights, @every arithmetic, DST."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from chronos.forecast import fires_per_minute
from chronos.models import Job

START = datetime(2026, 3, 8, 0, 0, tzinfo=timezone.utc)


def job(name: str, schedule: str, zone: str = "UTC", enabled: bool = True, anchor: datetime = START) -> Job:
    return Job(name=name, schedule=schedule, timezone=zone, enabled=enabled, anchor=anchor,
               webhook={"url": "http://127.0.0.1:9/hook"})


def test_jobs_sharing_a_schedule_add_up_at_the_top_of_the_hour():
    jobs = [job(f"h{i}", "0 * * * *") for i in range(3)] + [job("off", "0 * * * *", enabled=False)]
    counts = fires_per_minute(jobs, START)
    assert len(counts) == 1440
    assert [i for i, n in enumerate(counts) if n] == list(range(0, 1440, 60))
    assert set(n for n in counts if n) == {3}


def test_every_is_counted_per_minute_arithmetically():
    counts = fires_per_minute([job("fast", "@every 25s", anchor=START + timedelta(seconds=10))], START, minutes=3)
    # fires at 10s, 35s | 60s, 85s, 110s | 135s, 160s
    assert counts == [2, 3, 2]
    assert fires_per_minute([job("late", "@every 1m", anchor=START + timedelta(hours=1))], START, minutes=61)[-1] == 1
    assert sum(fires_per_minute([job("late", "@every 1m", anchor=START + timedelta(hours=1))], START, minutes=60)) == 0


def test_zones_and_dst_apply():
    # 2026-03-08 is the spring-forward day in New York: 02:30 local does not exist and
    # fires once at 03:00 EDT = 07:00 UTC; 09:00 local is 13:00 UTC.
    counts = fires_per_minute([job("ny", "30 2 * * *", "America/New_York"), job("nine", "0 9 * * *", "America/New_York")], START)
    assert [i for i, n in enumerate(counts) if n] == [7 * 60, 13 * 60]


def test_seconds_schedules_fill_their_minutes():
    counts = fires_per_minute([job("secs", "*/10 * * * * *")], START, minutes=2)
    assert counts == [6, 6]
