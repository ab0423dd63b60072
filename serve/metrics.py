"""The API's own request metrics, and the ``/metrics`` exposition.

``/metrics`` = the cluster-wide exposition from the backend (the supervisor's
registry) followed by this app's registry. The API metrics live in a dedicated
``CollectorRegistry`` (never the global one), and every family whose name
starts with ``chronos_api_`` belongs to this layer: such lines are dropped from
the backend's text, so the joined exposition never repeats a family.

Labels are bounded: ``route`` is the route template (``/api/v1/jobs/{ref}``)
or ``unmatched``; ``method`` is one of the HTTP methods or ``OTHER``.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# As for the cluster-wide registry (chronos.metrics, which the API replica does not import): the
# *_created series only add noise to every scrape.
disable_created_metrics()

METRICS_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # text/plain; version=0.0.4; charset=utf-8
API_PREFIX = "chronos_api_"
UNMATCHED = "unmatched"

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ApiMetrics:
    def __init__(self, registry: Optional[CollectorRegistry] = None):
        self._own_registry = registry is None
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "chronos_api_requests_total",
            "HTTP requests answered by the REST API.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "chronos_api_request_duration_seconds",
            "Time to answer a REST API request.",
            ["method", "route"],
            registry=self.registry,
        )
        self.cluster_up = Gauge(
            "chronos_api_cluster_metrics_up",
            "1 if the cluster-wide metrics were read from the supervisor for this scrape, else 0.",
            registry=self.registry,
        )

    def __reduce__(self) -> tuple:
        # Ray Serve pickles the app it is given (``@serve.ingress(app)``); metric
        # objects hold locks. A replica starts counting afresh in its own registry.
        return (ApiMetrics, (None if self._own_registry else self.registry,))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "OTHER"
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route).observe(seconds)

    def render(self, cluster: bytes | str | None) -> bytes:
        """The backend's exposition (if any) followed by the API's."""
        self.cluster_up.set(0 if cluster is None else 1)
        own = generate_latest(self.registry)
        if not cluster:
            return own
        text = cluster.decode("utf-8") if isinstance(cluster, (bytes, bytearray)) else str(cluster)
        kept = [line for line in text.splitlines() if not _owned(line)]
        joined = "\n".join(kept).strip("\n")
        return (joined + "\n").encode("utf-8") + own if joined else own


def _owned(line: str) -> bool:
    """Lines of the backend text that must not appear: our families, and an OpenMetrics ``# EOF``."""
    stripped = line.strip()
    if stripped == "# EOF":
        return True
    if stripped.startswith("#"):
        parts = stripped.split(None, 3)
        name = parts[2] if len(parts) >= 3 and parts[1] in ("HELP", "TYPE", "UNIT") else ""
    else:
        name = stripped.split("{", 1)[0].split(None, 1)[0] if stripped else ""
    return name.startswith(API_PREFIX)


def route_template(scope: Scope, routes: Iterable[BaseRoute]) -> str:
    """The template of the route that handled (or would handle) this request."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    # Answered before routing (auth, body limit): find the route it was meant for.
    probe = {k: scope[k] for k in ("type", "path", "root_path", "method") if k in scope}
    partial = None
    for candidate in routes:
        try:
            match, _ = candidate.matches(probe)
        except Exception:  # pragma: no cover - a route that cannot match a bare scope
            continue
        if match is Match.FULL:
            return getattr(candidate, "path", UNMATCHED)
        if match is Match.PARTIAL and partial is None:
            partial = getattr(candidate, "path", None)
    return partial or UNMATCHED


class MetricsMiddleware:
    """Counts and times every HTTP request, labelled with its route template."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, routes: Callable[[], Iterable[BaseRoute]]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            self.metrics.observe(
                scope.get("method", "GET"),
                route_template(scope, self.routes()),
                status,
                time.perf_counter() - start,
            )
