"""Schedules: cron (5 or 6 fields, seconds first), macros and ``@every``.

PLACEHOLDER: being written; interface only.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from chronos.errors import InvalidSchedule


class Schedule:
    expression: str

    def next_after(self, after: datetime) -> datetime | None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


def parse_schedule(expression: str, timezone: str = "UTC", anchor: datetime | None = None) -> Schedule:
    raise InvalidSchedule("not implemented")
