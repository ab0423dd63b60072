"""Schedules: cron fields with Vixie/Debian semantics, DST rules, seconds-first 6-field cron,
macros, fixed-rate @every, descriptions and error messages.

Every expected instant below was worked out from the calendar (weekday of the 1st of each month,
the zone's UTC offsets and transition instants), never by running the code under test. Handy
facts: 2026-01-01 is a Thursday; the 1st of each month in 2026 falls on Thu Jan, Sun Feb, Sun Mar,
Wed Apr, Fri May, Mon Jun, Wed Jul, Sat Aug, Tue Sep, Thu Oct, Sun Nov, Tue Dec.
New York 2026: EST (-5) -> EDT (-4) at 2026-03-08 07:00Z (02:00 wall becomes 03:00);
EDT -> EST at 2026-11-01 06:00Z (02:00 wall becomes 01:00 again).
London 2026: GMT -> BST (+1) at 2026-03-29 01:00Z (01:00 wall becomes 02:00);
BST -> GMT at 2026-10-25 01:00Z (02:00 wall becomes 01:00 again).
"""

from __future__ import annotations

import json
import pickle
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from chronos.errors import InvalidSchedule
from chronos.schedules import (
    CronSchedule,
    EverySchedule,
    Schedule,
    is_fixed_time,
    next_runs,
    parse_schedule,
)

UTC = timezone.utc


def _cases_file() -> Path:
    shared = Path(__file__).resolve().parents[2] / "shared/spec/cron-cases.json"
    return shared if shared.exists() else Path(__file__).resolve().parent / "data/cron-cases.json"


CASES = json.loads(_cases_file().read_text())


def z(text: str) -> datetime:
    """'2026-03-08T07:00:00Z' or '2026-03-08T07:00Z' -> aware UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso(values: list[datetime]) -> list[str]:
    return [v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for v in values]


def runs(expression: str, start: str, count: int = 4, tz: str = "UTC") -> list[str]:
    return iso(next_runs(parse_schedule(expression, tz), z(start), count))


def Z(*texts: str) -> list[str]:
    """Expected instants, written short ('2026-03-08T07:00Z'), normalised to full form."""
    return iso([z(t) for t in texts])


# ---------------------------------------------------------------------------------------------
# The shared worked examples (DESIGN §5): every one is pinned.
# ---------------------------------------------------------------------------------------------


def test_the_cases_file_is_complete():
    assert len(CASES) >= 26
    local = json.loads((Path(__file__).resolve().parent / "data/cron-cases.json").read_text())
    assert local == CASES, "tests/data/cron-cases.json is out of date: copy shared/spec/cron-cases.json again"


@pytest.mark.parametrize("case", CASES, ids=[f"{c['schedule']} {c['timezone']} ({c['rule']})" for c in CASES])
def test_shared_case(case):
    schedule = parse_schedule(case["schedule"], case["timezone"])
    got = next_runs(schedule, z(case["from"]), 4)
    assert iso(got) == case["next_runs"], case["rule"]
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in got)


# ---------------------------------------------------------------------------------------------
# Field rules (UTC)
# ---------------------------------------------------------------------------------------------


def test_range():
    assert runs("0 9-11 * * *", "2026-01-01T00:00Z") == Z(
        "2026-01-01T09:00Z", "2026-01-01T10:00Z", "2026-01-01T11:00Z", "2026-01-02T09:00Z"
    )


def test_list():
    assert runs("5,10,50 * * * *", "2026-01-01T00:07Z") == Z(
        "2026-01-01T00:10Z", "2026-01-01T00:50Z", "2026-01-01T01:05Z", "2026-01-01T01:10Z"
    )


def test_step_over_a_range():
    # 1-30/7 = 1, 8, 15, 22, 29
    assert runs("1-30/7 * * * *", "2026-01-01T00:00Z", 6) == Z(
        "2026-01-01T00:01Z", "2026-01-01T00:08Z", "2026-01-01T00:15Z",
        "2026-01-01T00:22Z", "2026-01-01T00:29Z", "2026-01-01T01:01Z",
    )


def test_step_over_star_restarts_each_hour():
    # */7 = 0, 7, ..., 56; then 0 of the next hour (not 63 mod 60)
    assert runs("*/7 * * * *", "2026-01-01T00:50Z", 3) == Z(
        "2026-01-01T00:56Z", "2026-01-01T01:00Z", "2026-01-01T01:07Z"
    )


def test_start_with_step_runs_to_the_end_of_the_field():
    # 10/20 = 10-59/20 = 10, 30, 50
    assert runs("10/20 * * * *", "2026-01-01T00:00Z") == Z(
        "2026-01-01T00:10Z", "2026-01-01T00:30Z", "2026-01-01T00:50Z", "2026-01-01T01:10Z"
    )


def test_list_of_ranges_and_steps():
    # 0-5/5 = 0,5 ; 20 ; 40-42 = 40,41,42
    assert runs("0-5/5,20,40-42 3 * * *", "2026-01-01T00:00Z", 7) == Z(
        "2026-01-01T03:00Z", "2026-01-01T03:05Z", "2026-01-01T03:20Z", "2026-01-01T03:40Z",
        "2026-01-01T03:41Z", "2026-01-01T03:42Z", "2026-01-02T03:00Z",
    )


def test_month_names_any_case():
    assert runs("0 0 1 JAN,jul *", "2026-02-01T00:00Z", 3) == Z(
        "2026-07-01T00:00Z", "2027-01-01T00:00Z", "2027-07-01T00:00Z"
    )


def test_month_name_range():
    assert runs("0 0 1 OCT-DEC *", "2026-01-01T00:00Z", 4) == Z(
        "2026-10-01T00:00Z", "2026-11-01T00:00Z", "2026-12-01T00:00Z", "2027-10-01T00:00Z"
    )


def test_weekday_names_range():
    # 2026-01-03 is a Saturday
    assert runs("0 8 * * MON-FRI", "2026-01-03T00:00Z", 6) == Z(
        "2026-01-05T08:00Z", "2026-01-06T08:00Z", "2026-01-07T08:00Z",
        "2026-01-08T08:00Z", "2026-01-09T08:00Z", "2026-01-12T08:00Z",
    )


@pytest.mark.parametrize("dow", ["0", "7", "SUN", "sun"])
def test_sunday_is_0_and_7(dow):
    assert runs(f"0 6 * * {dow}", "2026-01-01T00:00Z", 3) == Z(
        "2026-01-04T06:00Z", "2026-01-11T06:00Z", "2026-01-18T06:00Z"
    )


def test_range_ending_in_7_reaches_sunday():
    # 5-7 = Friday, Saturday, Sunday; 2026-01-02 is a Friday
    assert runs("0 6 * * 5-7", "2026-01-01T12:00Z", 4) == Z(
        "2026-01-02T06:00Z", "2026-01-03T06:00Z", "2026-01-04T06:00Z", "2026-01-09T06:00Z"
    )


def test_degenerate_ranges_mean_one_value():
    # croniter 7 reads N-N as "*"; Vixie reads it as N
    assert runs("5-5 * * * *", "2026-01-01T00:00Z", 2) == Z("2026-01-01T00:05Z", "2026-01-01T01:05Z")
    assert runs("5-5/10 * * * *", "2026-01-01T00:00Z", 2) == Z("2026-01-01T00:05Z", "2026-01-01T01:05Z")
    assert runs("0 6 * * 3-3", "2026-01-01T00:00Z", 2) == Z("2026-01-07T06:00Z", "2026-01-14T06:00Z")
    assert runs("0 6 * * MON-MON", "2026-01-01T00:00Z", 2) == Z("2026-01-05T06:00Z", "2026-01-12T06:00Z")
    assert runs("0 6 * * 7-7", "2026-01-01T00:00Z", 2) == Z("2026-01-04T06:00Z", "2026-01-11T06:00Z")
    assert runs("0 0 1 MAR-MAR *", "2026-01-01T00:00Z", 2) == Z("2026-03-01T00:00Z", "2027-03-01T00:00Z")
    assert runs("0 0 15-15 * *", "2026-01-20T00:00Z", 2) == Z("2026-02-15T00:00Z", "2026-03-15T00:00Z")


def test_last_day_of_month_including_leap_february():
    assert runs("0 0 L 2 *", "2026-01-01T00:00Z", 4) == Z(
        "2026-02-28T00:00Z", "2027-02-28T00:00Z", "2028-02-29T00:00Z", "2029-02-28T00:00Z"
    )


def test_last_day_in_a_list():
    assert runs("0 0 1,L * *", "2026-04-01T12:00Z", 3) == Z(
        "2026-04-30T00:00Z", "2026-05-01T00:00Z", "2026-05-31T00:00Z"
    )


def test_nth_weekday():
    # first Mondays of 2026: Jan 5, Feb 2, Mar 2, Apr 6
    assert runs("0 10 * * MON#1", "2026-01-01T00:00Z") == Z(
        "2026-01-05T10:00Z", "2026-02-02T10:00Z", "2026-03-02T10:00Z", "2026-04-06T10:00Z"
    )


def test_fifth_weekday_skips_months_without_one():
    # Fridays 29th-31st in 2026: Jan 30, May 29, Jul 31, Oct 30
    assert runs("0 10 * * 5#5", "2026-01-01T00:00Z") == Z(
        "2026-01-30T10:00Z", "2026-05-29T10:00Z", "2026-07-31T10:00Z", "2026-10-30T10:00Z"
    )


def test_list_of_nth_weekdays():
    # first Monday or third Friday: Jun 1 (Mon), Jun 19, Jul 6, Jul 17
    assert runs("0 12 * * 1#1,5#3", "2026-05-31T00:00Z") == Z(
        "2026-06-01T12:00Z", "2026-06-19T12:00Z", "2026-07-06T12:00Z", "2026-07-17T12:00Z"
    )


def test_last_weekday_of_month():
    # last Fridays: Jan 30, Feb 27, Mar 27, Apr 24
    assert runs("0 0 * * 5L", "2026-01-01T00:00Z") == Z(
        "2026-01-30T00:00Z", "2026-02-27T00:00Z", "2026-03-27T00:00Z", "2026-04-24T00:00Z"
    )
    assert runs("0 0 * * FRIL", "2026-01-01T00:00Z", 1) == Z("2026-01-30T00:00Z")


# ---- the day-of-month / day-of-week rule ----------------------------------------------------


def test_both_restricted_is_or_with_nth_weekday():
    # day 1 OR third Friday (croniter alone intersects these and finds nothing)
    assert runs("0 12 1 * 5#3", "2026-06-01T13:00Z", 5) == Z(
        "2026-06-19T12:00Z", "2026-07-01T12:00Z", "2026-07-17T12:00Z", "2026-08-01T12:00Z", "2026-08-21T12:00Z"
    )


def test_both_restricted_is_or_even_when_one_side_never_matches():
    # the 31st of February never comes, but Mondays of February do (2027-02-01 is a Monday;
    # 2028-02-01 is a Tuesday)
    assert runs("0 0 31 2 MON", "2026-03-01T00:00Z", 5) == Z(
        "2027-02-01T00:00Z", "2027-02-08T00:00Z", "2027-02-15T00:00Z", "2027-02-22T00:00Z", "2028-02-07T00:00Z"
    )


def test_or_with_a_full_day_of_month_range_is_every_day():
    # 1-31 does not start with "*": OR with Monday -> every day
    assert runs("0 0 1-31 * MON", "2026-01-01T01:00Z", 3) == Z(
        "2026-01-02T00:00Z", "2026-01-03T00:00Z", "2026-01-04T00:00Z"
    )


def test_or_with_a_list():
    # the 1st and 15th of the month, or any Wednesday; July 2026: Wed 1, 8, 15, 22, 29
    assert runs("0 0 1,15 * 3", "2026-06-30T00:00Z", 6) == Z(
        "2026-07-01T00:00Z", "2026-07-08T00:00Z", "2026-07-15T00:00Z",
        "2026-07-22T00:00Z", "2026-07-29T00:00Z", "2026-08-01T00:00Z",
    )


def test_dow_step_narrows_day_of_month():
    # */2 in day-of-week = Sun, Tue, Thu, Sat: AND with 10-12 ; Jan 2026: 10 Sat, 11 Sun, 12 Mon
    assert runs("0 0 10-12 * */2", "2026-01-01T00:00Z", 3) == Z(
        "2026-01-10T00:00Z", "2026-01-11T00:00Z", "2026-02-10T00:00Z"  # Feb 10 is a Tuesday
    )


def test_question_mark_is_a_star():
    # Quartz style: "?" in day-of-month -> only the day-of-week restricts
    assert runs("0 0 12 ? * MON", "2026-01-01T00:00Z", 3) == Z(
        "2026-01-05T12:00Z", "2026-01-12T12:00Z", "2026-01-19T12:00Z"
    )


def test_leap_day_on_a_sunday_is_found_decades_ahead():
    # Feb 29 AND Sunday (*/7 = Sunday): 2032 and 2060 (28-year cycle from 2004)
    assert runs("0 0 29 2 */7", "2026-01-01T00:00Z", 2) == Z("2032-02-29T00:00Z", "2060-02-29T00:00Z")


def test_leap_day():
    assert runs("0 0 29 2 *", "2026-01-01T00:00Z", 2) == Z("2028-02-29T00:00Z", "2032-02-29T00:00Z")


# ---------------------------------------------------------------------------------------------
# Six fields: the first is seconds
# ---------------------------------------------------------------------------------------------


def test_six_fields_seconds_list():
    assert runs("15,45 * * * * *", "2026-01-01T00:00:00Z", 3) == Z(
        "2026-01-01T00:00:15Z", "2026-01-01T00:00:45Z", "2026-01-01T00:01:15Z"
    )


def test_six_fields_second_zero_every_15_minutes():
    assert runs("0 */15 * * * *", "2026-01-01T00:00:01Z", 3) == Z(
        "2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z", "2026-01-01T00:45:00Z"
    )


def test_six_fields_weekdays():
    # 09:30:10 on weekdays; 2026-01-02 is a Friday
    assert runs("10 30 9 * * MON-FRI", "2026-01-02T10:00Z", 2) == Z("2026-01-05T09:30:10Z", "2026-01-06T09:30:10Z")


def test_six_fields_fixed_time_in_the_new_york_gap():
    assert runs("30 30 2 * * *", "2026-03-07T12:00Z", 2, "America/New_York") == Z(
        "2026-03-08T07:00:00Z", "2026-03-09T06:30:30Z"
    )


def test_sub_second_after_is_strict():
    s = parse_schedule("*/20 * * * * *")
    assert s.next_after(z("2026-01-01T00:00:19.999999Z")) == z("2026-01-01T00:00:20Z")
    assert s.next_after(z("2026-01-01T00:00:20Z")) == z("2026-01-01T00:00:40Z")
    assert s.next_after(z("2026-01-01T00:00:20.000001Z")) == z("2026-01-01T00:00:40Z")


# ---------------------------------------------------------------------------------------------
# Macros
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "macro, expected",
    [
        ("@yearly", ["2027-01-01T00:00Z", "2028-01-01T00:00Z"]),
        ("@annually", ["2027-01-01T00:00Z", "2028-01-01T00:00Z"]),
        ("@monthly", ["2026-02-01T00:00Z", "2026-03-01T00:00Z"]),
        ("@weekly", ["2026-01-04T00:00Z", "2026-01-11T00:00Z"]),  # Sundays
        ("@daily", ["2026-01-02T00:00Z", "2026-01-03T00:00Z"]),
        ("@midnight", ["2026-01-02T00:00Z", "2026-01-03T00:00Z"]),
        ("@hourly", ["2026-01-01T01:00Z", "2026-01-01T02:00Z"]),
        ("@DAILY", ["2026-01-02T00:00Z", "2026-01-03T00:00Z"]),
    ],
)
def test_macros(macro, expected):
    assert runs(macro, "2026-01-01T00:00Z", 2) == Z(*expected)


def test_macro_keeps_its_expression_and_follows_the_zone():
    s = parse_schedule("  @daily ", "America/New_York")
    assert s.expression == "@daily"
    assert iso(next_runs(s, z("2026-01-01T00:00Z"), 2)) == Z("2026-01-01T05:00Z", "2026-01-02T05:00Z")


def test_hourly_is_wildcard_across_the_gap():
    # 01:00 EST = 06:00Z, 02:00 does not exist, 03:00 EDT = 07:00Z
    assert runs("@hourly", "2026-03-08T05:30Z", 3, "America/New_York") == Z(
        "2026-03-08T06:00Z", "2026-03-08T07:00Z", "2026-03-08T08:00Z"
    )


def test_hourly_fires_twice_in_the_repeated_hour():
    # 01:00 EDT = 05:00Z, 01:00 EST = 06:00Z, 02:00 EST = 07:00Z
    assert runs("@hourly", "2026-11-01T04:30Z", 3, "America/New_York") == Z(
        "2026-11-01T05:00Z", "2026-11-01T06:00Z", "2026-11-01T07:00Z"
    )


# ---------------------------------------------------------------------------------------------
# DST: New York
# ---------------------------------------------------------------------------------------------

NY = "America/New_York"
LONDON = "Europe/London"


def test_ny_spring_fixed_at_the_start_of_the_gap():
    assert runs("0 2 * * *", "2026-03-07T12:00Z", 3, NY) == Z(
        "2026-03-08T07:00Z", "2026-03-09T06:00Z", "2026-03-10T06:00Z"
    )


def test_ny_spring_fixed_at_the_end_of_the_gap():
    assert runs("59 2 * * *", "2026-03-07T12:00Z", 2, NY) == Z("2026-03-08T07:00Z", "2026-03-09T06:59Z")


def test_ny_spring_gap_time_and_gap_end_time_collapse():
    # 02:00 (in the gap) fires at 07:00Z, and so does 03:00 EDT: one run
    assert runs("0 2,3 * * *", "2026-03-08T05:00Z", 3, NY) == Z(
        "2026-03-08T07:00Z", "2026-03-09T06:00Z", "2026-03-09T07:00Z"
    )


def test_ny_spring_after_just_before_the_gap_end():
    s = parse_schedule("30 2 * * *", NY)
    assert s.next_after(z("2026-03-08T06:59:59Z")) == z("2026-03-08T07:00Z")
    assert s.next_after(z("2026-03-08T07:00:00Z")) == z("2026-03-09T06:30Z")


def test_ny_spring_wildcard_follows_the_clock():
    # 01:30 EST = 06:30Z, 02:00/02:30 do not exist, 03:00 EDT = 07:00Z
    assert runs("*/30 * * * *", "2026-03-08T06:00Z", 3, NY) == Z(
        "2026-03-08T06:30Z", "2026-03-08T07:00Z", "2026-03-08T07:30Z"
    )


def test_ny_fall_fixed_first_occurrence_only():
    assert runs("0 1 * * *", "2026-10-31T12:00Z", 2, NY) == Z("2026-11-01T05:00Z", "2026-11-02T06:00Z")


def test_ny_fall_fixed_from_inside_the_second_pass():
    # 06:10Z is 01:10 EST, the second pass: 01:45 must not fire again that day
    assert runs("45 1 * * *", "2026-11-01T06:10Z", 1, NY) == Z("2026-11-02T06:45Z")


def test_ny_fall_fixed_from_inside_the_first_pass():
    # 05:10Z is 01:10 EDT: 01:45 EDT = 05:45Z is still to come
    assert runs("45 1 * * *", "2026-11-01T05:10Z", 2, NY) == Z("2026-11-01T05:45Z", "2026-11-02T06:45Z")


def test_ny_fall_wildcard_hour_fires_in_both_passes():
    # 00:45 EDT, 01:45 EDT, 01:45 EST, 02:45 EST
    assert runs("45 * * * *", "2026-11-01T04:00Z", 4, NY) == Z(
        "2026-11-01T04:45Z", "2026-11-01T05:45Z", "2026-11-01T06:45Z", "2026-11-01T07:45Z"
    )


def test_ny_fall_wildcard_from_inside_the_second_pass():
    assert runs("*/20 1 * * *", "2026-11-01T06:10Z", 3, NY) == Z(
        "2026-11-01T06:20Z", "2026-11-01T06:40Z", "2026-11-02T06:00Z"
    )


# ---------------------------------------------------------------------------------------------
# DST: London
# ---------------------------------------------------------------------------------------------


def test_london_spring_fixed_times_in_the_gap_collapse():
    # 01:15 and 01:45 do not exist on Mar 29: one run at 01:00Z (02:00 BST); then BST
    assert runs("15,45 1 * * *", "2026-03-28T12:00Z", 3, LONDON) == Z(
        "2026-03-29T01:00Z", "2026-03-30T00:15Z", "2026-03-30T00:45Z"
    )


def test_london_spring_fixed_at_gap_start():
    assert runs("0 1 * * *", "2026-03-28T12:00Z", 2, LONDON) == Z("2026-03-29T01:00Z", "2026-03-30T00:00Z")


def test_london_spring_wildcard_in_the_gap_hour_skips_the_day():
    assert runs("*/30 1 * * *", "2026-03-28T12:00Z", 3, LONDON) == Z(
        "2026-03-30T00:00Z", "2026-03-30T00:30Z", "2026-03-31T00:00Z"
    )


def test_london_spring_wildcard_follows_the_clock():
    # 00:30 GMT = 00:30Z; 01:00 and 01:30 do not exist; 02:00 BST = 01:00Z
    assert runs("*/30 * * * *", "2026-03-29T00:15Z", 3, LONDON) == Z(
        "2026-03-29T00:30Z", "2026-03-29T01:00Z", "2026-03-29T01:30Z"
    )


def test_london_fall_fixed_first_occurrence():
    assert runs("0 1 * * *", "2026-10-24T12:00Z", 2, LONDON) == Z("2026-10-25T00:00Z", "2026-10-26T01:00Z")


def test_london_fall_wildcard_minute_in_the_repeated_hour():
    # 01:00 BST, 01:30 BST, 01:00 GMT, 01:30 GMT
    assert runs("*/30 1 * * *", "2026-10-24T12:00Z", 4, LONDON) == Z(
        "2026-10-25T00:00Z", "2026-10-25T00:30Z", "2026-10-25T01:00Z", "2026-10-25T01:30Z"
    )


def test_london_fall_wildcard_hour():
    assert runs("0 * * * *", "2026-10-24T23:30Z", 3, LONDON) == Z(
        "2026-10-25T00:00Z", "2026-10-25T01:00Z", "2026-10-25T02:00Z"
    )


def test_london_summer_is_utc_plus_one():
    assert runs("0 9 * * 1-5", "2026-06-01T00:00Z", 2, LONDON) == Z("2026-06-01T08:00Z", "2026-06-02T08:00Z")


# ---------------------------------------------------------------------------------------------
# @every: fixed rate from the anchor
# ---------------------------------------------------------------------------------------------

ANCHOR = z("2026-01-01T00:00:00Z")


def test_every_lands_on_the_anchor_grid_from_any_instant():
    s = parse_schedule("@every 90s", anchor=ANCHOR)
    assert isinstance(s, EverySchedule)
    # 600s after the anchor: 600/90 = 6.67 -> k = 7 -> 630s
    assert iso(next_runs(s, z("2026-01-01T00:10:00Z"), 3)) == Z(
        "2026-01-01T00:10:30Z", "2026-01-01T00:12:00Z", "2026-01-01T00:13:30Z"
    )
    assert iso(next_runs(s, z("2026-01-01T00:01:29.999Z"), 1)) == Z("2026-01-01T00:01:30Z")
    # a run instant itself is not "after" itself
    assert iso(next_runs(s, z("2026-01-01T00:01:30Z"), 1)) == Z("2026-01-01T00:03:00Z")
    # a day later, still on the grid: 86400/90 = 960 exactly -> next is 961 * 90s
    assert iso(next_runs(s, z("2026-01-02T00:00:00Z"), 1)) == Z("2026-01-02T00:01:30Z")


def test_every_anchor_in_the_future_fires_at_the_anchor():
    s = parse_schedule("@every 1h", anchor=ANCHOR)
    assert iso(next_runs(s, z("2025-12-31T12:34:56Z"), 2)) == Z("2026-01-01T00:00Z", "2026-01-01T01:00Z")
    assert s.next_after(ANCHOR) == z("2026-01-01T01:00Z")


def test_every_combined_duration_and_aware_inputs_in_other_zones():
    plus_0530 = timezone(timedelta(hours=5, minutes=30))
    anchor = datetime(2026, 1, 1, 5, 30, tzinfo=plus_0530)  # = 2026-01-01T00:00Z
    s = parse_schedule("@every 1h30m", "Asia/Kolkata", anchor=anchor)
    got = s.next_after(datetime(2026, 1, 1, 7, 0, tzinfo=plus_0530))  # 01:30Z: on the grid
    assert got == z("2026-01-01T03:00Z") and got.tzinfo == UTC


def test_every_ignores_dst():
    s = parse_schedule("@every 1h", NY, anchor=z("2026-03-08T05:00Z"))
    assert iso(next_runs(s, z("2026-03-08T05:00Z"), 3)) == Z(
        "2026-03-08T06:00Z", "2026-03-08T07:00Z", "2026-03-08T08:00Z"
    )


def test_every_default_anchor_is_now():
    before = datetime.now(UTC)
    s = parse_schedule("@every 10s")
    after = datetime.now(UTC)
    assert before <= s.anchor <= after
    nxt = s.next_after(after)
    assert after < nxt <= after + timedelta(seconds=10)


def test_every_fractional_interval():
    s = parse_schedule("@every 1.5s", anchor=ANCHOR)
    assert s.next_after(z("2026-01-01T00:00:02Z")) == z("2026-01-01T00:00:03Z")
    assert s.next_after(z("2026-01-01T00:00:03Z")) == datetime(2026, 1, 1, 0, 0, 4, 500000, tzinfo=UTC)


def test_every_minimum_is_one_second():
    assert parse_schedule("@every 1s", anchor=ANCHOR).interval == timedelta(seconds=1)
    for bad in ("@every 0s", "@every 500ms", "@every 0"):
        with pytest.raises(InvalidSchedule) as e:
            parse_schedule(bad)
        assert str(e.value) == f'"{bad}" is not a valid schedule: the interval must be at least 1s'


# ---------------------------------------------------------------------------------------------
# Interface
# ---------------------------------------------------------------------------------------------


def test_types_and_attributes():
    s = parse_schedule("  0 9 * * 1-5  ", NY)
    assert isinstance(s, CronSchedule) and isinstance(s, Schedule)
    assert s.expression == "0 9 * * 1-5"
    assert s.timezone == NY
    e = parse_schedule("@every 10s", anchor=ANCHOR)
    assert isinstance(e, Schedule) and e.expression == "@every 10s" and e.timezone == "UTC"


def test_next_after_accepts_any_zone_and_returns_utc():
    s = parse_schedule("0 9 * * *", NY)
    tokyo = datetime(2026, 1, 16, 9, 0, tzinfo=timezone(timedelta(hours=9)))  # = 2026-01-16T00:00Z
    got = s.next_after(tokyo)
    assert got == z("2026-01-16T14:00Z")
    assert got.tzinfo == UTC


def test_naive_after_is_taken_as_utc():
    s = parse_schedule("0 9 * * *", NY)
    assert s.next_after(datetime(2026, 1, 16, 0, 0)) == z("2026-01-16T14:00Z")


def test_schedules_are_immutable():
    s = parse_schedule("0 9 * * *")
    with pytest.raises(AttributeError):
        s.expression = "0 10 * * *"
    e = parse_schedule("@every 5s", anchor=ANCHOR)
    with pytest.raises(AttributeError):
        e.anchor = datetime.now(UTC)


def test_schedules_pickle():
    for s in (parse_schedule("0 9 * * 1-5", NY), parse_schedule("@every 90s", anchor=ANCHOR)):
        copy = pickle.loads(pickle.dumps(s))
        assert copy == s
        assert copy.next_after(z("2026-01-16T00:00Z")) == s.next_after(z("2026-01-16T00:00Z"))


def test_next_runs_count():
    s = parse_schedule("@hourly")
    assert next_runs(s, z("2026-01-01T00:00Z"), 0) == []
    assert len(next_runs(s, z("2026-01-01T00:00Z"), 100)) == 100


def test_the_end_of_time_is_none_not_a_crash():
    s = parse_schedule("0 0 1 1 *")
    assert s.next_after(z("9998-06-01T00:00Z")) is None
    assert next_runs(s, z("9997-06-01T00:00Z"), 3) == [z("9998-01-01T00:00Z")]


@pytest.mark.parametrize(
    "expression, fixed",
    [
        ("30 2 * * *", True),
        ("0,30 2 * * *", True),
        ("15 1-3 * * *", True),
        ("0 9 * * 1-5", True),
        ("*/15 * * * *", False),
        ("30 * * * *", False),
        ("*/10 2 * * *", False),
        ("* * * * *", False),
        ("@daily", True),
        ("@midnight", True),
        ("@weekly", True),
        ("@monthly", True),
        ("@yearly", True),
        ("@hourly", False),
        ("30 15 10 * * *", True),
        ("*/20 * * * * *", False),
        ("0 */5 * * * *", False),
        ("@every 10s", False),
    ],
)
def test_is_fixed_time(expression, fixed):
    assert is_fixed_time(expression) is fixed
    if not expression.startswith("@every"):
        assert parse_schedule(expression).is_fixed_time is fixed


def test_is_fixed_time_rejects_nonsense():
    with pytest.raises(InvalidSchedule):
        is_fixed_time("* * *")


# ---------------------------------------------------------------------------------------------
# Descriptions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression, text",
    [
        ("0 9 * * 1-5", "At 09:00, Monday through Friday"),
        ("0 9 * * MON-FRI", "At 09:00, Monday through Friday"),
        ("*/15 * * * *", "Every 15 minutes"),
        ("* * * * *", "Every minute"),
        ("@hourly", "Every hour"),
        ("@daily", "At 00:00"),
        ("@weekly", "At 00:00, only on Sunday"),
        ("0,30 2 * * *", "At 02:00 and 02:30"),
        ("30 15 10 * * *", "At 10:15:30"),  # seconds first: 10:15:30, not 15:10 or 30:15
        ("*/20 * * * * *", "Every 20 seconds"),
        ("0 0 12 ? * MON", "At 12:00, only on Monday"),  # a "?" does not flip the field order
        ("0 0 L * *", "At 00:00, on the last day of the month"),
        ("0 10 * * 5#3", "At 10:00, on the third Friday of the month"),
        ("0 12 1 * MON", "At 12:00, on day 1 of the month, or on Monday"),
        ("0 12 1 * 5#3", "At 12:00, on day 1 of the month, or on the third Friday of the month"),
        ("58-58 3 * * *", "At 03:58"),
        ("@every 10s", "Every 10 seconds"),
        ("@every 30s", "Every 30 seconds"),
        ("@every 1m", "Every minute"),
        ("@every 1h30m", "Every 1 hour and 30 minutes"),
        ("@every 1d", "Every day"),
    ],
)
def test_describe(expression, text):
    assert parse_schedule(expression, anchor=ANCHOR).describe() == text


def test_describe_and_is_not_or_when_a_day_field_starts_with_star():
    text = parse_schedule("0 12 */10 * 1").describe()
    assert " or " not in text and "Monday" in text


# ---------------------------------------------------------------------------------------------
# Errors: clear, and naming the fix
# ---------------------------------------------------------------------------------------------

FIELDS_HINT = (
    "use 5 fields (minute hour day-of-month month day-of-week), 6 with a leading seconds field, "
    "a macro like @daily, or @every <duration>"
)


@pytest.mark.parametrize(
    "expression, message",
    [
        ("61 * * * *", '"61 * * * *" is not a valid cron expression: minute must be 0-59'),
        ("* * *", f'"* * *" is not a valid cron expression: {FIELDS_HINT}'),
        ("* * * * * * *", f'"* * * * * * *" is not a valid cron expression: {FIELDS_HINT}'),
        ("0 24 * * *", '"0 24 * * *" is not a valid cron expression: hour must be 0-23'),
        ("0 0 0 * *", '"0 0 0 * *" is not a valid cron expression: day-of-month must be 1-31 or L'),
        ("0 0 * 13 *", '"0 0 * 13 *" is not a valid cron expression: month must be 1-12 or JAN-DEC'),
        ("0 0 * * 8", '"0 0 * * 8" is not a valid cron expression: day-of-week must be 0-7 (0 and 7 are Sunday) or SUN-SAT'),
        ("60 * * * * *", '"60 * * * * *" is not a valid cron expression: second must be 0-59'),
        ("0 0 31 2 *", '"0 0 31 2 *" is not a valid cron expression: it never fires: February has no day 31'),
        ("0 0 30 2 *", '"0 0 30 2 *" is not a valid cron expression: it never fires: February has no day 30'),
        ("0 0 31 4,6 *", '"0 0 31 4,6 *" is not a valid cron expression: it never fires: April and June have no day 31'),
        ("@every 0s", '"@every 0s" is not a valid schedule: the interval must be at least 1s'),
        ("@reboot", '"@reboot" is not a valid schedule: unknown macro @reboot: use @yearly, @annually, @monthly, '
                    "@weekly, @daily, @midnight, @hourly or @every <duration>"),
    ],
)
def test_error_messages(expression, message):
    with pytest.raises(InvalidSchedule) as e:
        parse_schedule(expression)
    assert str(e.value) == message
    assert e.value.code == "INVALID_SCHEDULE"
    assert e.value.errors and e.value.errors[0]["field"] == "schedule"


@pytest.mark.parametrize(
    "expression, fragment",
    [
        ("* * */20 * 1#5", "it never fires"),  # days 1, 11, 21, 31 are never a fifth Monday
        ("MON * * * *", "names are only allowed in the day-of-week field"),
        ("0 0 * * JAN", "names are only allowed in the month field"),
        ("0 0 * * FOO", '"FOO" is not a number or name'),
        ("5-1 * * * *", 'the range "5-1" runs backwards'),
        ("0 0 * * SAT-SUN", "6-7 for Saturday through Sunday"),
        ("*/0 * * * *", "must be at least 1"),
        ("*/x * * * *", 'the step in "*/x" must be a whole number'),
        ("1,,2 * * * *", "empty list item"),
        ("0 0 15W * *", '"15W" is not supported'),
        ("0 0 * * 1,5#3", "cannot mix"),
        ("0 0 * * 5#6", "must be 1-5"),
        ("0 0 * * L5", "like 5L or FRIL"),
        ("? * * * *", "? is only allowed in the day-of-month and day-of-week fields"),
        ("-5 * * * *", "minute must be 0-59"),
        ("H * * * *", '"H" is not a number'),
        ("@every", '"@every 10s"'),
        ("@every soon", "is not a duration"),
        ("@every 400d", "too long"),
        ("", "the schedule is empty"),
        ("   ", "the schedule is empty"),
    ],
)
def test_error_fragments(expression, fragment):
    with pytest.raises(InvalidSchedule) as e:
        parse_schedule(expression)
    assert fragment in str(e.value)
    assert "Croniter" not in str(e.value)


@pytest.mark.parametrize("zone", ["Mars/Base", "", "localtime", "not a zone"])
def test_bad_time_zone(zone):
    with pytest.raises(InvalidSchedule) as e:
        parse_schedule("0 9 * * *", zone)
    assert str(e.value) == f'"{zone}" is not an IANA time zone: use a name like "UTC" or "America/New_York"'
    assert e.value.errors[0]["field"] == "timezone"


def test_errors_are_quick_and_never_hang():
    started = time.perf_counter()
    for bad in ("0 0 30 2 *", "0 0 31 2,4,6,9,11 *", "* * */20 * 1#5", "0 0 31 2 */2"):
        with pytest.raises(InvalidSchedule):
            parse_schedule(bad)
    assert time.perf_counter() - started < 2


# ---------------------------------------------------------------------------------------------
# Hot path
# ---------------------------------------------------------------------------------------------


def test_next_after_is_fast():
    schedules = [
        parse_schedule("*/5 * * * *"),
        parse_schedule("0 9 * * 1-5", NY),
        parse_schedule("30 2 * * *", NY),
        parse_schedule("*/20 * * * * *", LONDON),
        parse_schedule("0 0 31 2 MON"),  # one OR side never matches: must not search for it each call
        parse_schedule("0 12 1 * 5#3"),
    ]
    t = z("2026-03-01T00:00Z")
    for s in schedules:  # warm the per-zone caches
        s.next_after(t)
    started = time.perf_counter()
    for i in range(300):
        for s in schedules:
            s.next_after(t + timedelta(minutes=7 * i))
    per_call = (time.perf_counter() - started) / 1800
    assert per_call < 0.003, f"{per_call * 1e6:.0f} µs per next_after"


def test_equal_schedules_share_answers_per_second_and_zone():
    CronSchedule._first_fire.cache_clear()
    a, b = parse_schedule("*/1 * * * * *"), parse_schedule("*/1 * * * * *")
    assert a is not b
    t = z("2026-03-08T06:59:59Z")
    assert a.next_after(t) == b.next_after(t + timedelta(milliseconds=400)) == z("2026-03-08T07:00:00Z")
    info = CronSchedule._first_fire.cache_info()
    assert (info.misses, info.hits) == (1, 1)  # croniter ran once for both
    # The same expression in another zone is another schedule (2026-03-08 02:30 does not exist in New York).
    assert parse_schedule("30 2 * * *", NY).next_after(t) == z("2026-03-08T07:00Z")
    assert parse_schedule("30 2 * * *").next_after(t) == z("2026-03-09T02:30Z")


def test_threads_share_a_schedule_safely():
    s = parse_schedule("*/5 * * * *", NY)
    starts = [z("2026-03-08T00:00Z") + timedelta(minutes=i) for i in range(200)]
    expected = [s.next_after(t) for t in starts]
    CronSchedule._first_fire.cache_clear()  # the threads must compute, not read the answers above
    results: dict[int, list] = {}

    def work(n: int) -> None:
        results[n] = [s.next_after(t) for t in starts]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(r == expected for r in results.values())
