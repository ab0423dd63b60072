"""HTML rendering for the console: Jinja2 templates with autoescaping, a few
filters for times and durations, and the security headers of every page.

The Jinja environment is built on first use and left out of pickles: Ray Serve
pickles the app, and an environment holds locks.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

from chronos.times import utcnow

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

#: No inline script or style, nothing from elsewhere, no framing, forms post only here.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make browsers send "Origin: null"
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def utc_text(value: Optional[datetime]) -> str:
    if value is None:
        return "—"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def relative(value: Optional[datetime], now: Optional[datetime] = None) -> str:
    """"in 5m", "3h ago": the coarse distance a person reads at a glance."""
    if value is None:
        return "—"
    seconds = (value - (now or utcnow())).total_seconds()
    span = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if span >= size:
            amount = f"{int(span // size)}{unit}"
            break
    else:
        amount = f"{int(span)}s"
    return f"in {amount}" if seconds >= 0 else f"{amount} ago"


def seconds_text(value: Optional[float]) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s" if value < 60 else f"{value / 60:.1f} min"


class Renderer:
    def __init__(self) -> None:
        self._env: Optional[Environment] = None

    def __getstate__(self) -> dict[str, Any]:
        return {"_env": None}

    @property
    def env(self) -> Environment:
        if self._env is None:
            env = Environment(
                loader=FileSystemLoader(str(TEMPLATES)),
                autoescape=select_autoescape(["html", "svg"]),
                undefined=StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
            )
            env.filters.update(utc=utc_text, ago=relative, seconds=seconds_text)
            env.globals.update(timedelta=timedelta)
            self._env = env
        return self._env

    def page(self, template: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
