"""The one duration parser: ``500ms``, ``10s``, ``5m``, ``1h30m``, ``2h``, ``1d``
and whole numbers of seconds; and formatting back to that short form.

Durations have millisecond resolution and are at most 366 days. The text forms are
exactly the strings :data:`TEXT_PATTERN` matches (the OpenAPI document publishes the
same pattern): parts like ``1h`` or ``1.5m`` (at most three decimals, so every value is a
whole number of milliseconds) or ``250ms``, one after another; or a number of seconds
like ``"90"`` or ``"0.5"``. A JSON number is a whole number of seconds."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}

MAX_SECONDS = 366 * 86400

# The grammar, in pieces shared by the parser and the published patterns (ECMA-262 and
# Python read them alike: ASCII digits only, no flags, no lookaround).
_NUMBER = r"[0-9]+(?:\.[0-9]{1,3})?"
_PART = rf"(?:[0-9]+ms|{_NUMBER}[dhms])"
_NONZERO_NUMBER = r"(?:0*[1-9][0-9]*(?:\.[0-9]{1,3})?|0+\.(?:[1-9][0-9]{0,2}|0[1-9][0-9]?|00[1-9]))"
_ZERO_PART = r"(?:0+ms|0+(?:\.0{1,3})?[dhms])"
_NONZERO_PART = rf"(?:0*[1-9][0-9]*ms|{_NONZERO_NUMBER}[dhms])"

#: Every duration text the parser reads (before the 366-day limit).
TEXT_PATTERN = rf"^(?:{_NUMBER}|{_PART}+)$"
#: The texts of durations of more than zero (a timeout).
POSITIVE_TEXT_PATTERN = rf"^(?:{_NONZERO_NUMBER}|{_ZERO_PART}*{_NONZERO_PART}{_PART}*)$"

_TEXT = re.compile(TEXT_PATTERN)
_PARTS = re.compile(r"([0-9]+)ms|([0-9.]+)([dhms])")

HINT = 'use a whole number of seconds or a duration like "500ms", "10s", "5m", "1h30m", "1d"'


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse a duration; raise ``ValueError`` naming the accepted forms."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration: {HINT}")
    elif isinstance(value, (int, float)):
        if isinstance(value, float) and not value.is_integer():
            # Also NaN and the infinities.
            raise ValueError(f"{value!r} is not a duration: a number is whole seconds; {HINT}")
        seconds = int(value)
    elif isinstance(value, str):
        return timedelta(milliseconds=_parse_text(value))
    else:
        raise ValueError(f"{value!r} is not a duration: {HINT}")
    return timedelta(seconds=_in_range(seconds, value))


def _in_range(seconds: float, value: object) -> float:
    if seconds < 0:
        raise ValueError(f"{value!r} is negative: durations must be zero or more")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{value!r} is too long: durations are at most 366d")
    return seconds


@lru_cache(maxsize=256)  # a few distinct texts, parsed four times per job at every load
def _parse_text(text: str) -> int:
    """Milliseconds, exactly (decimal arithmetic: "0.1s" is 100 ms, not 100.000001)."""
    if not _TEXT.fullmatch(text):
        raise ValueError(f"{text!r} is not a duration: {HINT}")
    if not text[-1].isalpha():  # a number of seconds
        millis = Decimal(text) * 1000
    else:
        millis = sum(
            (Decimal(ms) if ms else Decimal(number) * _UNIT_MS[unit] for ms, number, unit in _PARTS.findall(text)),
            Decimal(0),
        )
    _in_range(float(millis / 1000), text)
    return int(millis)


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
