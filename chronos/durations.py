"""The one duration parser: ``500ms``, ``10s``, ``5m``, ``1h30m``, ``2h``, ``1d``
and plain numbers of seconds; and formatting back to that short form."""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")

HINT = 'use a number of seconds or a duration like "500ms", "10s", "5m", "1h30m", "1d"'


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse a duration; raise ``ValueError`` naming the accepted forms."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration: {HINT}")
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value.strip().lower())
    else:
        raise ValueError(f"{value!r} is not a duration: {HINT}")
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"{value!r} is not a duration: {HINT}")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative: durations must be zero or more")
    if seconds > 366 * 86400:
        raise ValueError(f"{value!r} is too long: durations are at most 366d")
    return timedelta(seconds=seconds)


@lru_cache(maxsize=256)  # a few distinct texts, parsed four times per job at every load
def _parse_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    if not text or not _WHOLE.fullmatch(text):
        raise ValueError(f"{text!r} is not a duration: {HINT}")
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))


def format_duration(value: timedelta | float) -> str:
    """Format as the short form: 90s -> "1m30s", 0.5s -> "500ms", 0 -> "0s"."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)
