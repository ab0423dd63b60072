"""The one rule for time-zone names, shared by the job model and the schedule code.

A zone is valid when it is an IANA name that ``zoneinfo`` knows. A few entries of
``available_timezones()`` are files of the tz database, not zones a job can be
planned in: ``localtime`` (the host's own zone, a different one on every node),
``posixrules`` (a template) and ``Factory`` (a zone whose abbreviation says
"local time zone must be set"). They are refused like any unknown name.
"""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


class UnknownZone(ValueError):
    """Raised for a name that is not a valid IANA time zone; its message says the fix."""


@lru_cache(maxsize=1)
def zone_names() -> frozenset[str]:
    """Every valid zone name (the tz database of this machine, or the ``tzdata`` package)."""
    return frozenset(available_timezones() - NOT_ZONES)


def check_zone(name: object) -> str:
    """``name`` if it is a valid zone, else :class:`UnknownZone`."""
    if not isinstance(name, str) or name not in zone_names():
        raise UnknownZone(f'"{name}" is not an IANA time zone: use a name like "UTC" or "America/New_York"')
    return name


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The :class:`ZoneInfo` of a valid zone name; :class:`UnknownZone` otherwise."""
    return ZoneInfo(check_zone(name))
