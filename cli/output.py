"""How chronosctl shows things: Rich tables and panels for people, the API's own
objects as JSON or YAML for scripts, and errors as ``Error: CODE: message``."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Iterable, Optional
from zoneinfo import ZoneInfo

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from chronos.times import utcnow

from chronos.cli.client import CliError
from chronos.cli.files import dump_json, dump_yaml


class Format(str, Enum):
    table = "table"
    json = "json"
    yaml = "yaml"


STATUS_STYLES = {
    "success": "green",
    "failed": "red",
    "timeout": "red",
    "skipped": "yellow",
    "cancelled": "yellow",
    "running": "cyan",
    "pending": "cyan",
}


def console(stderr: bool = False) -> Console:
    """A console on the *current* stdout/stderr (tests swap them). When not writing to a
    terminal, lines are not cut at 80 columns, so piped output stays greppable."""
    stream = sys.stderr if stderr else sys.stdout
    width = None
    is_tty = hasattr(stream, "isatty") and stream.isatty()
    if not is_tty and not os.environ.get("COLUMNS"):
        width = 200
    return Console(file=stream, width=width, soft_wrap=False, highlight=False)


def emit_data(value: Any, fmt: Format) -> None:
    """Print API objects exactly as the server gave them."""
    text = dump_json(value) + "\n" if fmt is Format.json else dump_yaml(value)
    sys.stdout.write(text)
    sys.stdout.flush()


def print_error(error: CliError) -> None:
    err = console(stderr=True)
    line = Text("Error: ", style="bold red")
    line.append(f"{error.code}: {error.message}")
    err.print(line, soft_wrap=True)
    for item in error.errors:
        field = item.get("field") or "body"
        err.print(Text(f"  {field}: {item.get('message', '')}"), soft_wrap=True)
    if error.hint:
        err.print(Text(f"Hint: {error.hint}", style="dim"), soft_wrap=True)


def success(message: str) -> None:
    console().print(Text(message), soft_wrap=True)


def notice(message: str) -> None:
    """Progress lines that must not pollute -o json|yaml output go to stderr."""
    console(stderr=True).print(Text(message), soft_wrap=True)


# ---------------------------------------------------------------- times


def parse_time(value: Any) -> Optional[datetime]:
    if not value:
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt


def humanize_seconds(seconds: float) -> str:
    """3 -> "3s", 300 -> "5m", 5400 -> "1h30m", 90000 -> "1d1h" (rounded to the largest
    unit but one: a relative time needs no more precision; the absolute one follows it)."""
    seconds = abs(float(seconds))
    if seconds < 60:
        return f"{int(seconds)}s"
    minutes = int(round(seconds / 60))
    if minutes < 60:
        return f"{minutes}m"
    hours, m = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h" + (f"{m}m" if m else "")
    hours = int(round(seconds / 3600))
    days, h = divmod(hours, 24)
    return f"{days}d" + (f"{h}h" if h else "")


def relative(dt: datetime, now: Optional[datetime] = None) -> str:
    now = now or utcnow()
    delta = (dt - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"in {humanize_seconds(delta)}" if delta > 0 else f"{humanize_seconds(delta)} ago"


def absolute(dt: datetime, zone: Optional[str] = None) -> str:
    if zone and zone != "UTC":
        try:
            local = dt.astimezone(ZoneInfo(zone))
            return local.strftime("%Y-%m-%d %H:%M:%S %Z")
        except Exception:
            pass
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def when(value: Any, zone: Optional[str] = None, empty: str = "-") -> str:
    """ "in 5m (2026-11-28 10:00:00 UTC)" / "3m ago (2026-11-28 09:52:00 UTC)"; with a
    zone other than UTC the local time is added: "(... UTC, 02:00 PST)"."""
    dt = parse_time(value)
    if dt is None:
        return empty
    text = f"{relative(dt)} ({absolute(dt)}"
    if zone and zone != "UTC":
        try:
            local = dt.astimezone(ZoneInfo(zone))
            text += f", {local.strftime('%H:%M %Z')}"
        except Exception:
            pass
    return text + ")"


def seconds_text(value: Any) -> str:
    if value is None:
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if v < 1:
        return f"{v * 1000:.0f}ms"
    if v < 60:
        return f"{v:.2f}s"
    return humanize_seconds(v)


def status_text(status: Any) -> Text:
    if not status:
        return Text("-", style="dim")
    return Text(str(status), style=STATUS_STYLES.get(str(status), ""))


def enabled_text(enabled: Any) -> Text:
    return Text("yes", style="green") if enabled else Text("no", style="yellow")


# ---------------------------------------------------------------- jobs


def jobs_table(jobs: Iterable[dict[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("NAME", style="bold", no_wrap=True)
    table.add_column("SCHEDULE", no_wrap=True)
    table.add_column("TIMEZONE", no_wrap=True)
    table.add_column("ENABLED", no_wrap=True)
    table.add_column("NEXT RUN", no_wrap=True)
    table.add_column("LAST STATUS", no_wrap=True)
    for job in jobs:
        table.add_row(
            Text(str(job.get("name", ""))),
            Text(str(job.get("schedule", ""))),
            Text(str(job.get("timezone") or "UTC")),
            enabled_text(job.get("enabled")),
            Text(when(job.get("next_run")) if job.get("enabled", True) else "- (disabled)"),
            status_text(job.get("last_status")),
        )
    return table


def print_jobs(jobs: list[dict[str, Any]]) -> None:
    out = console()
    if not jobs:
        out.print("No jobs found.")
        return
    out.print(jobs_table(jobs))
    out.print(Text(f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}", style="dim"))


def _kv_table() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    return table


def print_job(job: dict[str, Any]) -> None:
    zone = job.get("timezone") or "UTC"
    webhook = job.get("webhook") or {}
    retry = job.get("retry_policy") or {}
    grid = _kv_table()
    grid.add_row("ID", Text(str(job.get("id", "-"))))
    if job.get("description"):
        grid.add_row("Description", Text(str(job["description"])))
    grid.add_row("Schedule", Text(f"{job.get('schedule', '')}  ({zone})"))
    grid.add_row("Enabled", enabled_text(job.get("enabled")))
    grid.add_row("Next run", Text(when(job.get("next_run"), zone) if job.get("enabled", True) else "- (disabled)"))
    last = when(job.get("last_run"), zone)
    last_line = Text(last)
    if job.get("last_status"):
        last_line.append("  ")
        last_line.append_text(status_text(job.get("last_status")))
    grid.add_row("Last run", last_line)
    grid.add_row("Webhook", Text(f"{webhook.get('method', 'GET')} {webhook.get('url', '')}"))
    for name, value in (webhook.get("headers") or {}).items():
        grid.add_row("  header", Text(f"{name}: {value}"))
    auth = webhook.get("auth")
    if auth:
        shown = ", ".join(f"{k}={v}" for k, v in auth.items() if k != "type")
        grid.add_row("  auth", Text(f"{auth.get('type')} ({shown})" if shown else str(auth.get("type"))))
    if webhook.get("body") is not None:
        body = str(webhook["body"]).rstrip("\n")
        grid.add_row("  body", Text(body if len(body) <= 500 else body[:500] + " …"))
    if webhook.get("success_codes"):
        grid.add_row("  success codes", Text(", ".join(str(c) for c in webhook["success_codes"])))
    grid.add_row(
        "Retry policy",
        Text(
            f"{retry.get('max_attempts', '-')} attempts, first wait {retry.get('initial_interval', '-')}, "
            f"x{retry.get('multiplier', '-')}, at most {retry.get('max_interval', '-')}"
        ),
    )
    grid.add_row("Timeout", Text(str(job.get("timeout", "-"))))
    grid.add_row("Concurrency", Text(str(job.get("concurrency", "-"))))
    grid.add_row("Missed runs", Text(f"{job.get('missed_runs', '-')} (catch-up window {job.get('catchup_window', '-')})"))
    tags = job.get("tags") or {}
    grid.add_row("Tags", Text(", ".join(f"{k}={v}" for k, v in tags.items()) if tags else "-"))
    grid.add_row("Created", Text(when(job.get("created_at"))))
    grid.add_row("Updated", Text(when(job.get("updated_at"))))
    console().print(Panel(grid, title=Text(f"job {job.get('name', '')}", style="bold"), title_align="left", expand=False))


# ---------------------------------------------------------------- executions


def executions_table(executions: Iterable[dict[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("ID", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("TRIGGER", no_wrap=True)
    table.add_column("SCHEDULED", no_wrap=True)
    table.add_column("DURATION", no_wrap=True, justify="right")
    table.add_column("ATTEMPTS", no_wrap=True, justify="right")
    table.add_column("CODE", no_wrap=True, justify="right")
    table.add_column("ERROR / REASON", overflow="fold")
    for ex in executions:
        attempts = ex.get("attempts") or []
        table.add_row(
            Text(str(ex.get("id", ""))),
            status_text(ex.get("status")),
            Text(str(ex.get("trigger") or "-")),
            Text(when(ex.get("scheduled_at"))),
            Text(seconds_text(ex.get("duration"))),
            Text(str(len(attempts))),
            Text(str(ex.get("status_code") if ex.get("status_code") is not None else "-")),
            Text(str(ex.get("error") or ex.get("reason") or "")),
        )
    return table


def print_executions(job_name: str, executions: list[dict[str, Any]]) -> None:
    out = console()
    if not executions:
        out.print(Text(f'No executions of job "{job_name}" yet.'))
        return
    out.print(executions_table(executions))
    out.print(Text(f"{len(executions)} execution{'s' if len(executions) != 1 else ''}, newest first", style="dim"))


def print_execution(ex: dict[str, Any]) -> None:
    grid = _kv_table()
    grid.add_row("Job", Text(f"{ex.get('job_name', '-')} ({ex.get('job_id', '-')})"))
    grid.add_row("Status", status_text(ex.get("status")))
    grid.add_row("Trigger", Text(str(ex.get("trigger") or "-")))
    grid.add_row("Scheduled", Text(when(ex.get("scheduled_at"))))
    grid.add_row("Started", Text(when(ex.get("started_at"))))
    grid.add_row("Finished", Text(when(ex.get("finished_at"))))
    grid.add_row("Duration", Text(seconds_text(ex.get("duration"))))
    grid.add_row("Status code", Text(str(ex.get("status_code") if ex.get("status_code") is not None else "-")))
    if ex.get("error"):
        grid.add_row("Error", Text(str(ex["error"]), style="red"))
    if ex.get("reason"):
        grid.add_row("Reason", Text(str(ex["reason"])))
    where = " / ".join(str(v) for v in (ex.get("node"), ex.get("actor")) if v)
    grid.add_row("Ran on", Text(where or "-"))
    parts: list[Any] = [grid]
    attempts = ex.get("attempts") or []
    if attempts:
        table = Table(box=box.SIMPLE_HEAD, title="Attempts", title_justify="left", show_edge=False, pad_edge=False)
        for col in ("#", "STARTED", "DURATION", "CODE", "ERROR"):
            table.add_column(col, no_wrap=col != "ERROR", overflow="fold")
        for a in attempts:
            table.add_row(
                Text(str(a.get("number", ""))),
                Text(when(a.get("started_at"))),
                Text(seconds_text(a.get("duration"))),
                Text(str(a.get("status_code") if a.get("status_code") is not None else "-")),
                Text(str(a.get("error") or "")),
            )
        parts.append(table)
    if ex.get("response_body"):
        label = "Response body (first 64 KiB, truncated)" if ex.get("response_truncated") else "Response body"
        body = str(ex["response_body"])
        if len(body) > 2000:
            body = body[:2000] + "\n… (use -o json for all of it)"
        parts.append(Panel(Text(body), title=label, title_align="left", box=box.SQUARE))
    console().print(
        Panel(Group(*parts), title=Text(f"execution {ex.get('id', '')}", style="bold"), title_align="left", expand=False)
    )


# ---------------------------------------------------------------- schedules


def print_schedule(result: dict[str, Any]) -> None:
    out = console()
    zone = result.get("timezone") or "UTC"
    head = Text()
    head.append(str(result.get("schedule", "")), style="bold")
    head.append(f"  ({zone})")
    out.print(head)
    if result.get("description"):
        out.print(Text(str(result["description"])))
    runs = result.get("next_runs") or []
    local = result.get("next_runs_local") or []
    if not runs:
        out.print(Text("This schedule never fires again.", style="yellow"))
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column(f"LOCAL ({zone})", no_wrap=True)
    table.add_column("UTC", no_wrap=True)
    table.add_column("IN", no_wrap=True)
    for i, run in enumerate(runs):
        dt = parse_time(run)
        local_dt = None
        if dt is not None:
            try:
                local_dt = dt.astimezone(ZoneInfo(zone))
            except Exception:
                local_dt = None
        if local_dt is None and i < len(local):
            local_dt = parse_time(local[i])
        table.add_row(
            str(i + 1),
            Text(local_dt.strftime("%Y-%m-%d %H:%M:%S %Z (%a)") if local_dt else "-"),
            Text(dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if dt else str(run)),
            Text(relative(dt) if dt else "-"),
        )
    out.print(table)
