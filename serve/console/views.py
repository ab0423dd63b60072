"""What the templates show, computed from the model family (``chronos.models``) and
the schedule maths (``chronos.schedules``): no second copy of job semantics.

Templates get plain values from here, and a job only as its public view
(``Job.public()``, secrets as ``***``), so no secret can reach a page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Optional
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from chronos.manifests import dump_yaml, manifest_of
from chronos.models import Execution, Glance, Job, Trigger
from chronos.schedules import next_runs, parse_schedule
from chronos.times import utcnow

from chronos.serve.console.charts import BarChart, bar_chart

STRIP_LENGTH = 20


@lru_cache(maxsize=4096)
def describe(expression: str, zone: str) -> str:
    """The plain-language description of a schedule (cron-descriptor is slow: cached)."""
    try:
        return parse_schedule(expression, zone).describe()
    except Exception:  # noqa: BLE001 - a stored row that no longer parses still lists
        return "not a valid schedule any more: edit the job"


@dataclass(frozen=True)
class JobRow:
    name: str
    schedule: str
    description: str
    timezone: str
    enabled: bool
    next_run: Optional[datetime]
    last_status: Optional[str]
    strip: Markup  # the last executions as cells, oldest first (the newest on the right)


def job_row(job: Job, recent: list[Glance]) -> JobRow:
    return JobRow(
        name=job.name,
        schedule=job.schedule,
        description=describe(job.schedule, job.timezone),
        timezone=job.timezone,
        enabled=job.enabled,
        next_run=job.next_run,
        last_status=job.last_status.value if job.last_status else None,
        strip=strip_html(job.name, recent[:STRIP_LENGTH]),
    )


def strip_html(name: str, newest_first: list[Glance]) -> Markup:
    """A job's strip: one linked, coloured cell per execution. Built here, not in the
    template: a page of 50 jobs has 1,000 cells, and a template loop over them was most
    of the jobs page's time. The only text from outside is the job name, escaped once
    (statuses are enum values, ids UUIDs, times ISO 8601)."""
    base = f"/ui/jobs/{escape(name)}/executions/"
    cells = "".join(
        f'<a class="cell s-{g.status.value}" href="{base}{g.id}" title="{g.status.value} · '
        f'{g.scheduled_at.isoformat()}"><span class="sr">{g.status.value}</span></a>'
        for g in reversed(newest_first)
    ) or '<span class="none">no runs yet</span>'
    return Markup(f'<span class="strip" aria-label="last {len(newest_first)} executions">{cells}</span>')


@dataclass(frozen=True)
class Run:
    utc: datetime
    local: datetime
    note: str  # DST: the offset changed, the clock jumped, or an hour repeats


def upcoming(job: Job, count: int = 10, now: Optional[datetime] = None) -> list[Run]:
    """The next ``count`` runs in the job's zone and in UTC, with DST made visible."""
    if not job.enabled:
        return []
    zone = ZoneInfo(job.timezone)
    schedule = parse_schedule(job.schedule, job.timezone, anchor=job.anchor)
    runs = []
    previous_offset = None
    for at in next_runs(schedule, now or utcnow(), count):
        local = at.astimezone(zone)
        offset = local.utcoffset()
        runs.append(Run(utc=at, local=local, note=_dst_note(at, local, zone, previous_offset)))
        previous_offset = offset
    return runs


def _dst_note(at: datetime, local: datetime, zone: ZoneInfo, previous: Optional[timedelta]) -> str:
    offset = local.utcoffset()
    before = (at - timedelta(seconds=1)).astimezone(zone).utcoffset()
    if before is not None and offset is not None and offset > before:
        return f"at the spring-forward jump: clocks skipped from UTC{_hm(before)} to UTC{_hm(offset)}"
    if local.fold:
        return "in the repeated hour (second time this wall-clock time occurs)"
    if previous is not None and offset != previous:
        return f"after a DST change: UTC{_hm(previous)} → UTC{_hm(offset)}"
    return ""


def _hm(offset: Optional[timedelta]) -> str:
    minutes = int((offset or timedelta(0)).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def spec_yaml(job: Job) -> str:
    """The job as a manifest, secrets as ``***``: what the YAML editor starts from."""
    return dump_yaml(manifest_of(job.public()))


def public_spec(job: Job) -> dict[str, Any]:
    return manifest_of(job.public())


@dataclass(frozen=True)
class HistoryCharts:
    duration: BarChart
    lateness: BarChart


def history_charts(executions: list[Execution]) -> HistoryCharts:
    """Duration and lateness (start − scheduled, for scheduled runs) of ``executions``,
    oldest on the left."""
    ordered = list(reversed(executions))
    lateness: list[Optional[float]] = [
        (e.started_at - e.scheduled_at).total_seconds()
        if e.started_at is not None and e.trigger is not Trigger.manual
        else None
        for e in ordered
    ]
    return HistoryCharts(
        duration=bar_chart([e.duration for e in ordered], bar=4),
        lateness=bar_chart([max(0.0, v) if v is not None else None for v in lateness], bar=4),
    )
