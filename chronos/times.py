"""UTC instants: the one rule for "now" and for datetimes of unknown zone.

Chronos stores, compares and reports instants in UTC; a naive datetime (SQLite's columns, an
ISO string without offset) is taken to be UTC already.
"""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["as_utc", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)
