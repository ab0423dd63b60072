"""Schedules: cron (5 fields, or 6 with a leading seconds field), macros and ``@every``.

    parse_schedule(expression, timezone="UTC", anchor=None) -> Schedule
    Schedule.next_after(after) -> datetime | None     first fire strictly after ``after``, in UTC
    Schedule.describe() -> str                          "At 09:00, Monday through Friday"
    next_runs(schedule, start, count) -> list[datetime]
    is_fixed_time(expression) -> bool

**Cron fields** follow Vixie/Debian cron for every expression (DESIGN §5): ranges, lists, steps
(``1-30/7``), month and day names, Sunday as 0 or 7, ``N-N`` meaning just N, and the day rule:
when day-of-month and day-of-week are both restricted and neither starts with ``*`` a day matches
if either matches, otherwise both must match. Extensions: ``L`` (last day of the month) in
day-of-month; ``5#3`` (third Friday) and ``5L`` (last Friday) in day-of-week; ``?`` as ``*`` in the
day fields; ``N/S`` meaning ``N-max/S``. Our own parser validates each field (so errors name the
field and the fix) and hands croniter a normalised expression of explicit value lists, which
sidesteps croniter 7's deviations (it reads ``N-N`` as ``*``, re-bases steps, wraps reversed
ranges); croniter does the matching. Its answers are memoised per (expression, zone, second):
the many jobs of a host that share a schedule pay for each slot once.

**Time zones.** Matching happens on the wall clock of the job's zone; results are UTC. The zone's
timeline is cut into segments of constant UTC offset (transitions found once per zone and year
and cached). A *wildcard* schedule (minute or hour field starts with ``*``) fires at every instant
whose wall time matches: nothing in a spring-forward gap, twice in a fall-back repeat. A
*fixed-time* schedule fires once per wall time it names: a time in a gap fires once at the end of
the gap (so several collapse into one run), a time in a repeat only at its first occurrence.

**@every** is fixed-rate: it fires at ``anchor + k * interval`` (the first such instant strictly
after the given time, ``k >= 0``), whatever the zone.
"""

from __future__ import annotations

import bisect
import calendar
import re
import threading
from abc import ABC, abstractmethod
from datetime import datetime, timedelta, timezone as _timezone
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

from chronos.durations import parse_duration
from chronos.errors import InvalidSchedule
from chronos.times import as_utc, utcnow
from chronos.zones import UnknownZone, zone

__all__ = [
    "CronSchedule",
    "EverySchedule",
    "Schedule",
    "compiled",
    "is_fixed_time",
    "next_runs",
    "parse_schedule",
]

UTC = _timezone.utc
_SECOND = timedelta(seconds=1)
_LAST_YEAR = 9998  # schedules stop at the end of this year (datetime ends at 9999)

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: No valid expression is shorter: the shortest macro (a cron expression has at least 9
#: characters, and so has "@every 1s").
MIN_LENGTH = min(len(m) for m in MACROS)

_FIELD_COUNT_HINT = (
    "use 5 fields (minute hour day-of-month month day-of-week), 6 with a leading seconds field, "
    "a macro like @daily, or @every <duration>"
)
_MACRO_HINT = "use @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>"

_MONTH_NAMES = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_DOW_NAMES = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
_MONTH_FULL = [calendar.month_name[i] for i in range(13)]
_DOW_FULL = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_ORDINALS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}
_MAX_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}


def _fail(expression: str, reason: str, *, kind: str = "cron expression", field: str = "schedule") -> InvalidSchedule:
    message = f'"{expression}" is not a valid {kind}: {reason}'
    return InvalidSchedule(message, [{"field": field, "message": message, "type": "invalid_schedule"}])


# --------------------------------------------------------------------------------------------
# Cron fields: our own validation and normalisation
# --------------------------------------------------------------------------------------------


class _Spec:
    __slots__ = ("name", "lo", "hi", "names", "allowed")

    def __init__(self, name: str, lo: int, hi: int, names: dict[str, int] | None, allowed: str):
        self.name, self.lo, self.hi, self.names, self.allowed = name, lo, hi, names, allowed


_SEC = _Spec("second", 0, 59, None, "0-59")
_MIN = _Spec("minute", 0, 59, None, "0-59")
_HOUR = _Spec("hour", 0, 23, None, "0-23")
_DOM = _Spec("day-of-month", 1, 31, None, "1-31 or L")
_MON = _Spec("month", 1, 12, _MONTH_NAMES, "1-12 or JAN-DEC")
_DOW = _Spec("day-of-week", 0, 7, _DOW_NAMES, "0-7 (0 and 7 are Sunday) or SUN-SAT")

_NUMBER = re.compile(r"\d{1,9}")
_NTH = re.compile(r"([0-9A-Z]+)#(\d+)")
_LAST_DOW = re.compile(r"([0-9A-Z]+)L")


class _Field:
    """One parsed field: the set of plain values it names, its special day-of-week/-month items,
    and two normalised spellings (for croniter, and for the describer)."""

    __slots__ = ("raw", "values", "last_dom", "nth", "last_dow", "star", "desc")

    def __init__(self, raw: str):
        self.raw = raw
        self.values: set[int] = set()
        self.last_dom = False  # "L" in day-of-month
        self.nth: list[tuple[int, int]] = []  # (weekday, n) for "5#3"
        self.last_dow: list[int] = []  # weekdays for "5L"
        self.star = raw.startswith("*") or raw == "?"  # Vixie's DOM_STAR / DOW_STAR
        self.desc = ""

    @property
    def special(self) -> bool:
        return bool(self.nth or self.last_dow)

    def cron_text(self, spec: _Spec) -> str:
        full = set(range(spec.lo, spec.hi + 1)) if spec is not _DOW else set(range(7))
        items: list[str] = []
        if self.values == full and not self.last_dom and not self.special:
            return "*"
        items += [str(v) for v in sorted(self.values)]
        if self.last_dom:
            items.append("L")
        items += [f"{d}#{n}" for d, n in self.nth]
        items += [f"L{d}" for d in self.last_dow]
        return ",".join(items)


def _value(token: str, spec: _Spec, expression: str) -> int:
    if _NUMBER.fullmatch(token):
        v = int(token)
    elif spec.names is not None and token in spec.names:
        v = spec.names[token]
    elif token.isalpha() and (token in _MONTH_NAMES or token in _DOW_NAMES):
        where = "month" if token in _MONTH_NAMES else "day-of-week"
        raise _fail(expression, f"{spec.name}: {token} is a {where} name; names are only allowed in the {where} field")
    elif token.startswith("-"):
        raise _fail(expression, f"{spec.name} must be {spec.allowed} (no negative numbers)")
    else:
        raise _fail(
            expression,
            f'{spec.name}: "{token}" is not a number{" or name" if spec.names else ""} '
            f"({spec.name} must be {spec.allowed})",
        )
    if not spec.lo <= v <= spec.hi:
        raise _fail(expression, f"{spec.name} must be {spec.allowed}")
    return v


def _parse_field(raw: str, spec: _Spec, expression: str) -> _Field:
    field = _Field(raw)
    text = raw
    if text == "?":
        if spec not in (_DOM, _DOW):
            raise _fail(expression, f"{spec.name}: ? is only allowed in the day-of-month and day-of-week fields")
        text = "*"
    desc_items: list[str] = []
    for item in text.split(","):
        if not item:
            raise _fail(expression, f'{spec.name}: "{raw}" has an empty list item; separate values with single commas, like 1,15')
        try:
            desc_items.append(_parse_item(item.upper(), spec, field, expression))
        except InvalidSchedule as e:
            if item == item.upper():
                raise
            # name the item as it was written, not upper-cased
            message = e.message.replace(f'"{item.upper()}"', f'"{item}"')
            raise InvalidSchedule(message, [{"field": "schedule", "message": message, "type": "invalid_schedule"}]) from None
    if spec is _DOW and field.special and field.values:
        raise _fail(
            expression,
            "day-of-week cannot mix N#n or NL with plain days; use separate jobs, "
            'or only "#"/"L" items like 1#1,5#3',
        )
    if spec is _DOW and 7 in field.values:
        field.values.discard(7)
        field.values.add(0)
    field.desc = ",".join(desc_items)
    return field


def _parse_item(item: str, spec: _Spec, field: _Field, expression: str) -> str:
    """Add one list item's values to ``field``; return its normalised spelling for descriptions."""
    if spec is _DOM and item == "L":
        field.last_dom = True
        return "L"
    if spec is _DOM and ("W" in item or (item.startswith("L") and item != "L")):
        raise _fail(expression, f'day-of-month: "{item}" is not supported; use a day 1-31, a range, a list, a step or L (last day)')
    if spec is _DOW and "#" in item:
        m = _NTH.fullmatch(item)
        if not m:
            raise _fail(expression, f'day-of-week: "{item}" is not valid; write the Nth weekday as DAY#N, like 5#3 or FRI#3 for the third Friday')
        day = _value(m.group(1), spec, expression) % 7
        n = int(m.group(2))
        if not 1 <= n <= 5:
            raise _fail(expression, f'day-of-week: "{item}": the week number after # must be 1-5')
        field.nth.append((day, n))
        return f"{day}#{n}"
    if spec is _DOW and "L" in item and item not in _MONTH_NAMES:
        m = _LAST_DOW.fullmatch(item)
        if not m or (m.group(1) not in _DOW_NAMES and not _NUMBER.fullmatch(m.group(1))):
            raise _fail(expression, f'day-of-week: "{item}" is not valid; write the last weekday of the month as DAYL, '
                        "like 5L or FRIL for the last Friday")
        day = _value(m.group(1), spec, expression) % 7
        field.last_dow.append(day)
        return f"{day}L"

    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not _NUMBER.fullmatch(step_text):
            raise _fail(expression, f'{spec.name}: the step in "{item}" must be a whole number, like */5 or 1-30/7')
        step = int(step_text)
        if step < 1:
            raise _fail(expression, f'{spec.name}: the step in "{item}" must be at least 1, like */5')
    hi_for_star = 6 if spec is _DOW else spec.hi
    if base == "*":
        lo, hi = spec.lo, hi_for_star
        desc = "*" if step == 1 else f"*/{step}"
    elif "-" in base.lstrip("-"):
        a, _, b = base.partition("-")
        if not a or not b:
            raise _fail(expression, f'{spec.name}: "{item}" is not a valid range; write it like 1-5')
        lo, hi = _value(a, spec, expression), _value(b, spec, expression)
        if lo > hi:
            hint = "; Sunday can also be written 7, e.g. 6-7 for Saturday through Sunday" if spec is _DOW else ""
            raise _fail(
                expression,
                f'{spec.name}: the range "{item}" runs backwards; write the lower value first, '
                f"or use a list like {hi},{lo}{hint}",
            )
        if lo == hi:  # Vixie: N-N is just N (croniter 7 would read it as *)
            desc = str(lo)
        else:
            desc = f"{lo}-{hi}" if step == 1 else f"{lo}-{hi}/{step}"
    else:
        lo = _value(base, spec, expression)
        if slash:  # "N/S": from N to the end of the field, every S
            hi = hi_for_star
            desc = f"{lo}-{hi}/{step}" if lo < hi else str(lo)
        else:
            hi = lo
            desc = str(lo)
    field.values.update(range(lo, hi + 1, step))
    return desc


class _Cron:
    """A validated, normalised cron expression (5 fields, or 6 with seconds first)."""

    __slots__ = ("seconds", "fields", "fixed", "day_or", "cron_exprs", "use_day_or", "desc_text", "dom", "dow")

    def __init__(self, expression: str, text: str):
        parts = text.split()
        if len(parts) not in (5, 6):
            raise _fail(expression, _FIELD_COUNT_HINT)
        self.seconds = len(parts) == 6
        specs = (_SEC, _MIN, _HOUR, _DOM, _MON, _DOW) if self.seconds else (_MIN, _HOUR, _DOM, _MON, _DOW)
        fields = [_parse_field(p, s, expression) for p, s in zip(parts, specs)]
        if not self.seconds:
            sec = _Field("0")
            sec.values = {0}
            sec.desc = "0"
            fields.insert(0, sec)
        self.fields = fields
        sec, minute, hour, dom, month, dow = fields
        self.dom, self.dow = dom, dow
        self.fixed = not (minute.raw.startswith("*") or hour.raw.startswith("*"))
        # Vixie: both restricted (neither starts with * / is ?) -> either matches; else both.
        self.day_or = not dom.star and not dow.star

        def text_for(dom_text: str, dow_text: str) -> str:
            return " ".join([sec.cron_text(_SEC), minute.cron_text(_MIN), hour.cron_text(_HOUR), dom_text, month.cron_text(_MON), dow_text])

        dom_text, dow_text = dom.cron_text(_DOM), dow.cron_text(_DOW)
        dom_dead = self._dom_never(dom, month)
        if self.day_or and (dom_text == "*" or dow_text == "*"):
            # one side names every day: the union is every day
            sides = [text_for("*", "*")]
            self.use_day_or = False
        elif self.day_or:
            dom_side, dow_side = text_for(dom_text, "*"), text_for("*", dow_text)
            live = [s for s, dead in ((dom_side, dom_dead), (dow_side, False)) if not dead and _fires(s)]
            if not live:
                raise _fail(expression, "it never fires: no date matches its day-of-month, month and day-of-week fields")
            if len(live) == 2 and not dow.special:
                # croniter's own OR; it is only right when both sides can fire and no "#"/"L" weekday
                # is involved (it intersects those with day-of-month even under day_or=True)
                sides, self.use_day_or = [text_for(dom_text, dow_text)], True
            else:
                sides, self.use_day_or = live, False
        else:
            self.use_day_or = False
            sides = [text_for(dom_text, dow_text)]
            if dom_dead:
                raise _fail(expression, f"it never fires: {dom_dead}")
            if not _fires(sides[0]):
                raise _fail(expression, "it never fires: no date matches its day-of-month, month and day-of-week fields")
        self.cron_exprs = tuple(sides)
        dow_desc = "*" if dow.desc in ("*", "0-7") else dow.desc
        self.desc_text = " ".join([sec.desc, minute.desc, hour.desc, dom.desc, month.desc, dow_desc, "*"])

    @staticmethod
    def _dom_never(dom: _Field, month: _Field) -> str:
        """Why the day-of-month side can never match (e.g. the 30th of February), or ''."""
        if dom.last_dom or not dom.values or dom.cron_text(_DOM) == "*":
            return ""
        months = sorted(month.values)
        if any(d <= _MAX_DAYS[m] for d in dom.values for m in months):
            return ""
        names = [_MONTH_FULL[m] for m in months]
        who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        days = sorted(dom.values)
        day_text = str(days[0]) if len(days) == 1 else ", ".join(map(str, days[:-1])) + " or " + str(days[-1])
        return f"{who} {'has' if len(names) == 1 else 'have'} no day {day_text}"


def _fires(cron_text: str) -> bool:
    try:
        croniter(cron_text, datetime(2000, 1, 1), day_or=False, second_at_beginning=True,
                 max_years_between_matches=100).get_next(datetime)
        return True
    except CroniterBadDateError:
        return False


@lru_cache(maxsize=4096)
def _compile(expression: str) -> _Cron:
    text = expression
    if expression.startswith("@"):
        macro = expression.lower()
        if macro not in MACROS:
            raise _fail(expression, f"unknown macro {expression.split()[0]}: {_MACRO_HINT}", kind="schedule")
        text = MACROS[macro]
    try:
        return _Cron(expression, text)
    except InvalidSchedule:
        raise
    except CroniterError as e:  # our validation should have caught it first; never show only croniter's text
        raise _fail(expression, f"{_FIELD_COUNT_HINT} (croniter: {e})") from None


class _Matcher:
    """Finds the first matching naive wall-clock time at or after a given one, with croniter."""

    __slots__ = ("_iters", "_lock")

    def __init__(self, cron: _Cron):
        self._iters = [
            croniter(text, datetime(2000, 1, 1), ret_type=datetime, day_or=cron.use_day_or,
                     second_at_beginning=True, max_years_between_matches=100)
            for text in cron.cron_exprs
        ]
        self._lock = threading.Lock()

    def first_at_or_after(self, wall: datetime) -> datetime | None:
        start = wall - _SECOND  # fire times are whole seconds: "> wall - 1s" is ">= wall"
        best = None
        with self._lock:
            for it in self._iters:
                try:
                    found = it.get_next(datetime, start_time=start)
                except CroniterBadDateError:
                    continue
                except (OverflowError, ValueError):
                    if wall.year >= _LAST_YEAR:
                        continue
                    raise
                if best is None or found < best:
                    best = found
        return best


@lru_cache(maxsize=4096)
def _matcher(cron: _Cron) -> _Matcher:
    return _Matcher(cron)


# --------------------------------------------------------------------------------------------
# Zone timelines: segments of constant UTC offset
# --------------------------------------------------------------------------------------------


class _Timeline:
    """Offset transitions of one zone, found by sampling every 6 hours and bisecting to the second,
    computed once per year and cached. Instants are naive UTC datetimes."""

    _STEP = timedelta(hours=6)

    def __init__(self, tz: ZoneInfo):
        self.tz = tz
        self._raw: dict[int, list[tuple[datetime, timedelta, timedelta]]] = {}
        self._years: dict[int, tuple] = {}

    def offset(self, u: datetime) -> timedelta:
        return self.tz.fromutc(u.replace(tzinfo=self.tz)).utcoffset()  # type: ignore[return-value]

    def _scan(self, year: int) -> list[tuple[datetime, timedelta, timedelta]]:
        got = self._raw.get(year)
        if got is not None:
            return got
        lo = datetime(year, 1, 1)
        hi = datetime(year + 1, 1, 1) - _SECOND if year < 9999 else datetime(9999, 12, 31, 23, 59, 59)
        prev_t = lo - _SECOND if year > 2 else lo
        prev_o = self.offset(prev_t)
        out = []
        t = lo
        while True:
            o = self.offset(t)
            while o != prev_o:  # a transition in (prev_t, t]
                a, b = prev_t, t
                while b - a > _SECOND:
                    mid = a + timedelta(seconds=int((b - a).total_seconds()) // 2)
                    if self.offset(mid) == prev_o:
                        a = mid
                    else:
                        b = mid
                new_o = self.offset(b)
                out.append((b, prev_o, new_o))
                prev_t, prev_o = b, new_o
            prev_t = t
            if t >= hi:
                break
            t = min(t + self._STEP, hi)
        self._raw[year] = out
        return out

    def _year(self, year: int) -> tuple:
        got = self._years.get(year)
        if got is None:
            trs = self._scan(year)
            before = self._scan(year - 1) if year > 2 else []
            got = ([t for t, _, _ in trs], trs, self.offset(datetime(year, 1, 1)), before[-1] if before else None)
            self._years[year] = got
        return got

    def segment(self, u: datetime) -> tuple[datetime, datetime, timedelta, datetime, tuple | None]:
        """(start, end, offset, high_water, gap) of the constant-offset segment holding ``u``.

        ``high_water``: the first wall time not yet seen before ``start`` (walls below it in this
        segment repeat earlier ones); ``gap``: the wall times skipped at ``start``, if any."""
        year = u.year
        times, trs, year_off, last_before = self._year(year)
        i = bisect.bisect_right(times, u)
        end = times[i] if i < len(times) else datetime(year + 1, 1, 1)
        gap = None
        if i:
            start, before, off = trs[i - 1]
            last = trs[i - 1]
            if off > before:
                gap = (start + before, start + off)
        else:
            start, off, last = datetime(year, 1, 1), year_off, last_before
        high_water = start + off
        if last is not None and last[0] + last[1] > high_water:
            high_water = last[0] + last[1]
        return start, end, off, high_water, gap


@lru_cache(maxsize=None)
def _timeline(zone: str) -> _Timeline:
    return _Timeline(ZoneInfo(zone))


def _zone(name: str) -> ZoneInfo:
    try:
        return zone(name)
    except UnknownZone as e:
        raise InvalidSchedule(str(e), [{"field": "timezone", "message": str(e), "type": "invalid_schedule"}]) from None


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------


class Schedule(ABC):
    """An immutable schedule. ``next_after`` takes any aware datetime (naive ones are read as UTC)
    and returns an aware UTC datetime, or None when the schedule never fires again."""

    __slots__ = ("expression", "timezone")
    expression: str
    timezone: str

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    @abstractmethod
    def next_after(self, after: datetime) -> datetime | None: ...

    @abstractmethod
    def describe(self) -> str: ...

    @property
    def is_fixed_time(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.expression!r}, timezone={self.timezone!r})"


class CronSchedule(Schedule):
    __slots__ = ("_cron", "_matcher", "_timeline")
    _cron: _Cron
    _matcher: _Matcher
    _timeline: _Timeline

    def __init__(self, expression: str, timezone: str = "UTC"):
        expression = expression.strip()
        zone = _zone(timezone)
        cron = _compile(expression)
        object.__setattr__(self, "expression", expression)
        object.__setattr__(self, "timezone", timezone)
        object.__setattr__(self, "_cron", cron)
        object.__setattr__(self, "_matcher", _matcher(cron))
        object.__setattr__(self, "_timeline", _timeline(zone.key))

    def __reduce__(self):
        return (CronSchedule, (self.expression, self.timezone))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CronSchedule) and (self.expression, self.timezone) == (other.expression, other.timezone)

    def __hash__(self) -> int:
        return hash((self.expression, self.timezone))

    @property
    def is_fixed_time(self) -> bool:
        return self._cron.fixed

    def next_after(self, after: datetime) -> datetime | None:
        # Fire times are whole seconds, so "strictly after" is ">= floor(after) + 1s".
        return self._first_fire(as_utc(after).replace(tzinfo=None, microsecond=0) + _SECOND)

    @lru_cache(maxsize=8192)  # noqa: B019 -- keyed by (schedule, threshold): equal schedules share entries
    def _first_fire(self, threshold: datetime) -> datetime | None:
        """The first fire at or after ``threshold`` (a naive UTC whole second)."""
        if threshold.year > _LAST_YEAR:
            return None
        if threshold.year < 2:  # local times in year 1 can fall off the start of datetime
            threshold = datetime(2, 1, 1)
        fixed = self._cron.fixed
        first = self._matcher.first_at_or_after
        timeline = self._timeline
        memo_lo = memo_hit = None  # no match in [memo_lo, memo_hit)

        def match(wall: datetime) -> datetime | None:
            nonlocal memo_lo, memo_hit
            if memo_hit is not None and memo_lo <= wall <= memo_hit:
                return memo_hit
            hit = first(wall)
            if hit is not None:
                memo_lo, memo_hit = wall, hit
            return hit

        u = threshold
        while u.year <= _LAST_YEAR:
            start, end, off, high_water, gap = timeline.segment(u)
            if fixed and gap is not None and start >= threshold:
                hit = match(gap[0])
                if hit is None:
                    return None
                if hit < gap[1]:  # a named wall time was skipped: fire once, as the gap ends
                    return start.replace(tzinfo=UTC)
            lower = max(threshold, start) + off
            if fixed and high_water > lower:
                lower = high_water  # repeated wall times fired at their first occurrence
            hit = match(lower)
            if hit is None:
                return None
            if hit < end + off:
                fire = hit - off
                return fire.replace(tzinfo=UTC) if fire.year <= _LAST_YEAR else None
            u = end
        return None

    def describe(self) -> str:
        return _describe_cron(self._cron)


class EverySchedule(Schedule):
    __slots__ = ("interval", "anchor")
    interval: timedelta
    anchor: datetime

    def __init__(self, expression: str, interval: timedelta, anchor: datetime, timezone: str = "UTC"):
        if interval < _SECOND:
            raise _fail(expression.strip(), "the interval must be at least 1s", kind="schedule")
        object.__setattr__(self, "expression", expression.strip())
        object.__setattr__(self, "timezone", timezone)
        object.__setattr__(self, "interval", interval)
        object.__setattr__(self, "anchor", as_utc(anchor))

    def __reduce__(self):
        return (EverySchedule, (self.expression, self.interval, self.anchor, self.timezone))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EverySchedule) and (self.interval, self.anchor) == (other.interval, other.anchor)

    def __hash__(self) -> int:
        return hash((self.interval, self.anchor))

    def __repr__(self) -> str:
        return f"EverySchedule({self.expression!r}, anchor={self.anchor.isoformat()!r})"

    def next_after(self, after: datetime) -> datetime | None:
        after = as_utc(after)
        if self.anchor > after:
            return self.anchor
        k = (after - self.anchor) // self.interval + 1
        try:
            return self.anchor + k * self.interval
        except OverflowError:
            return None

    def describe(self) -> str:
        return _describe_interval(self.interval)


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------


def parse_schedule(expression: str, timezone: str = "UTC", anchor: datetime | None = None) -> Schedule:
    """Parse a schedule or raise :class:`InvalidSchedule` with a message that names the fix.

    ``anchor`` is where an ``@every`` schedule starts counting (default: now); cron ignores it."""
    if not isinstance(expression, str):
        raise _fail(str(expression), f"a schedule must be text; {_FIELD_COUNT_HINT}", kind="schedule")
    text = expression.strip()
    if not text:
        raise _fail(text, f"the schedule is empty; {_FIELD_COUNT_HINT}", kind="schedule")
    timezone = "UTC" if timezone is None else timezone
    _zone(timezone)
    head = text.split(None, 1)[0].lower()
    if head == "@every":
        return _parse_every(text, timezone, anchor)
    return CronSchedule(text, timezone)


@lru_cache(maxsize=65_536)
def compiled(expression: str, timezone: str, anchor: datetime) -> Schedule:
    """:func:`parse_schedule`, cached: the one compile cache of the runners, the
    supervisor's ``next_run``, the forecast and the job model's check, so a job's schedule
    is compiled once, not on every slot, read or load. Schedules are immutable, so equal
    keys share one. The anchor is required: a default of "now" must not be cached."""
    return parse_schedule(expression, timezone, anchor=anchor)


def _parse_every(text: str, timezone: str, anchor: datetime | None) -> EverySchedule:
    parts = text.split(None, 1)
    if len(parts) < 2:
        raise _fail(text, 'add a duration, like "@every 10s" or "@every 1h30m"', kind="schedule")
    try:
        interval = parse_duration(parts[1].strip())
    except ValueError as e:
        raise _fail(text, f'{e} (e.g. "@every 10s", "@every 1h30m")', kind="schedule") from None
    return EverySchedule(text, interval, anchor if anchor is not None else utcnow(), timezone)


def next_runs(schedule: Schedule, start: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times strictly after ``start`` (fewer if the schedule ends)."""
    out: list[datetime] = []
    t = start
    while len(out) < count:
        nxt = schedule.next_after(t)
        if nxt is None:
            break
        out.append(nxt)
        t = nxt
    return out


def is_fixed_time(expression: str | Schedule) -> bool:
    """True for a fixed-time cron schedule: neither the minute nor the hour field starts with
    ``*`` (macros by their expansion: @daily is fixed, @hourly is not). ``@every`` is not."""
    if isinstance(expression, Schedule):
        return expression.is_fixed_time
    text = expression.strip()
    if text.split(None, 1)[:1] and text.split(None, 1)[0].lower() == "@every":
        return False
    if not text:
        raise _fail(text, f"the schedule is empty; {_FIELD_COUNT_HINT}", kind="schedule")
    return _compile(text).fixed


# --------------------------------------------------------------------------------------------
# Descriptions
# --------------------------------------------------------------------------------------------


def _describe_interval(interval: timedelta) -> str:
    total = interval.total_seconds()
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = []
    for n, unit in ((days, "day"), (hours, "hour"), (minutes, "minute"), (seconds, "second")):
        if n:
            n = round(n, 3)
            text = f"{n:g}"
            parts.append((text, unit if text == "1" else unit + "s"))
    if len(parts) == 1 and parts[0][0] == "1":
        return f"Every {parts[0][1]}"
    words = [f"{n} {u}" for n, u in parts]
    if len(words) == 1:
        return f"Every {words[0]}"
    return "Every " + ", ".join(words[:-1]) + " and " + words[-1]


@lru_cache(maxsize=4096)
def _describe_cron(cron: _Cron) -> str:
    dow = cron.dow
    text = cron.desc_text
    special = ""
    if dow.special:  # cron-descriptor garbles lists of "#"/"L" weekdays: say those ourselves
        items = [f"the {_ORDINALS[n]} {_DOW_FULL[d]}" for d, n in dow.nth] + [f"the last {_DOW_FULL[d]}" for d in dow.last_dow]
        joined = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
        if cron.day_or:
            joined = joined.replace(" and ", " or ")
        special = (", or on " if cron.day_or else ", on ") + joined + " of the month"
        fields = text.split()
        fields[5] = "*"
        text = " ".join(fields)
    sec, minute, hour = cron.fields[:3]
    times = []
    if all(f.desc.replace(",", "").isdigit() for f in (sec, minute, hour)):
        times = [(h, m, x) for h in sorted(hour.values) for m in sorted(minute.values) for x in sorted(sec.values)]
    try:
        if 1 < len(times) <= 6:  # "At 02:00 and 02:30" reads better than "At 0 and 30 minutes past the hour, at 02:00"
            spelled = [f"{h:02d}:{m:02d}:{x:02d}" if cron.seconds and any(t[2] for t in times) else f"{h:02d}:{m:02d}" for h, m, x in times]
            days = _descriptor(" ".join(["0", "0", "0"] + text.split()[3:]))
            out = "At " + ", ".join(spelled[:-1]) + " and " + spelled[-1] + days.removeprefix("At 00:00")
        else:
            out = _descriptor(text)
    except Exception:  # cron-descriptor missing or confused: fall back to the fields
        out = "Cron " + " ".join(cron.desc_text.split()[0 if cron.seconds else 1 : 6])
    if not cron.day_or:
        out = out.replace(", or on ", ", only on ")
    return out + special


def _descriptor(text: str) -> str:
    from cron_descriptor import ExpressionDescriptor, Options

    return ExpressionDescriptor(text, Options(locale_code="en_US", use_24hour_time_format=True)).get_description()
