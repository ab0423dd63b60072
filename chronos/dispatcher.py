"""The webhook dispatcher: sends one attempt of an execution and describes what happened.

``Dispatcher.send`` never raises for anything the network or the receiver does: every
result, good or bad, is an :class:`Outcome` value that :func:`chronos.retry.judge` turns
into a verdict. The one exception that escapes is :class:`asyncio.CancelledError`, so a
cancelled execution aborts its in-flight request at once.

Rules (DESIGN.md §5):

- one pooled ``aiohttp.ClientSession`` per Dispatcher, created lazily in the running loop;
  no cookie jar (jobs never share cookies), no proxies from the environment, TLS verified;
- every attempt carries ``User-Agent: Chronos/<version>``, the ``X-Chronos-*`` headers and
  ``Idempotency-Key`` (the execution id, identical on every retry); these win over headers of
  the same name in the job, and the job's ``auth`` wins over a hand-written ``Authorization``;
- the per-attempt timeout covers connecting, sending, redirects and reading the body;
- at most ``RESPONSE_BODY_LIMIT`` (64 KiB) of the body is read; if there was more, the
  outcome is marked truncated and the connection is closed instead of drained;
- redirects are followed by hand, only within the same origin (scheme, host, port), at most
  ``MAX_REDIRECTS`` hops; a redirect elsewhere is returned as the 3xx response it is, with
  an error saying it was not followed;
- the egress policy (:mod:`chronos.egress`) is applied before every connection: a literal IP
  in the URL is checked as written, a name through a resolver that checks every address it
  resolves to, so aiohttp only ever connects to a checked address. A refused target is an
  outcome of kind ``"denied"``, which is never retried;
- an attempt may be built ahead of its due instant (``prepare``: headers, URL, body, the egress
  check of the URL's host), so that at the due instant ``send`` only makes the request;
- an attempt is signed (:mod:`chronos.signing`) at send time, with the job's
  ``webhook.signing_secret`` or else the server's default (``CHRONOS_SIGNING_SECRET``).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import json
import math
import ssl
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Optional

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict
from yarl import URL

import chronos
from chronos.durations import format_duration
from chronos.egress import DEFAULT_POLICY, EgressDenied, EgressPolicy
from chronos.outcome import Outcome, OutcomeKind
from chronos.signing import signature_headers
from chronos.times import as_utc
from chronos.models import (
    RESPONSE_BODY_LIMIT,
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    Execution,
    Job,
    Method,
)

__all__ = ["Dispatcher", "Outcome", "OutcomeKind", "Prepared", "MAX_REDIRECTS", "parse_retry_after", "format_scheduled_time"]

MAX_REDIRECTS = 5
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 16 * 1024
# A retry date further away than this is nonsense (or an attack); judge() caps by max_interval anyway.
_RETRY_AFTER_MAX = 366 * 86400.0


@dataclass
class Prepared:
    """One attempt's request, built by :meth:`Dispatcher.prepare` before the attempt is due so
    that sending it is only aiohttp's work. Used once: redirects edit its headers."""

    job: Job
    attempt: int
    method: str
    url: URL
    headers: CIMultiDict[str]
    data: Optional[bytes] = None
    failure: Optional[dict[str, Any]] = None  # the outcome's fields when it cannot be sent at all


# ---------------------------------------------------------------- helpers

if sys.version_info >= (3, 11):
    _timeout_scope = asyncio.timeout
else:  # pragma: no cover - aiohttp depends on async-timeout before 3.11
    from async_timeout import timeout as _timeout_scope


def _expired(scope: Any) -> bool:
    expired = scope.expired  # a method on asyncio.Timeout, a property on async_timeout's
    return bool(expired() if callable(expired) else expired)



def format_scheduled_time(when: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``: ``2026-01-01T10:15:30Z``, or with milliseconds
    (``2026-01-01T10:15:30.250Z``) when they are not zero. Naive datetimes are taken as UTC."""
    when = as_utc(when)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    millis = when.microsecond // 1000
    if millis:
        text += f".{millis:03d}"
    return text + "Z"


def parse_retry_after(value: Optional[str], *, date: Optional[str] = None, now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds (``"120"``) or an HTTP-date
    (``"Wed, 21 Oct 2026 07:28:00 GMT"``). A date is measured against the response's ``Date``
    header when there is one (immune to clock skew between us and the receiver), else against
    our clock. Dates in the past give 0. Anything unparseable gives ``None``."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds < 0:  # NaN or negative
            return None
        return min(seconds, _RETRY_AFTER_MAX)
    target = _http_date(value)
    if target is None:
        return None
    reference = _http_date(date) if date else None
    base = reference if reference is not None else (time.time() if now is None else now)
    return min(max(0.0, target - base), _RETRY_AFTER_MAX)


def _http_date(value: str) -> Optional[float]:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:  # "-0000" or an obsolete form: HTTP dates are always GMT
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def _origin(url: URL) -> tuple[str, str, Optional[int]]:
    return (url.scheme.lower(), (url.host or "").lower(), url.port)


def _default_content_type(body: str) -> str:
    try:
        json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"


def _describe_os_error(exc: BaseException) -> str:
    err = getattr(exc, "os_error", None) or exc
    strerror = getattr(err, "strerror", None)
    return strerror or str(err) or type(err).__name__


class CheckedResolver(AbstractResolver):
    """Wraps aiohttp's resolver: every address a name resolves to must pass the egress
    policy, else :class:`EgressDenied` is raised before aiohttp opens any socket."""

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver):
        self.policy = policy
        self.inner = inner

    async def resolve(self, host: str, port: int = 0, family: Any = 0) -> list[ResolveResult]:
        self.policy.check_host(host)  # denied names (metadata.google.internal) are never looked up
        results = await self.inner.resolve(host, port, family=family)
        self.policy.check_resolved(host, [r["host"] for r in results])
        return results

    async def close(self) -> None:
        await self.inner.close()


# ---------------------------------------------------------------- dispatcher


class Dispatcher:
    """Sends webhook attempts over one shared, pooled HTTP client session.

    Create one per process; call :meth:`close` on shutdown. Safe to use from many tasks of the
    same event loop at once.
    """

    def __init__(
        self,
        *,
        version: str = chronos.__version__,
        connections: int = 1000,
        verify_tls: bool = True,
        egress: EgressPolicy = DEFAULT_POLICY,
        resolver: Optional[Any] = None,
        signing_secrets: tuple[str, ...] = (),
    ) -> None:
        """``egress``: where webhooks may go (``settings.egress_policy``). ``resolver``: a
        factory of the aiohttp resolver to wrap (default aiohttp's own; tests pass a fake).
        ``signing_secrets``: the server's default (``settings.signing_secrets``), newest first,
        for jobs without their own."""
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self.egress = egress
        self._signing_secrets = tuple(signing_secrets)
        self._resolver_factory = resolver or aiohttp.DefaultResolver
        self._resolver: Optional[CheckedResolver] = None
        self.version = version
        self.connections = connections
        self.verify_tls = verify_tls
        self.user_agent = f"Chronos/{version}"
        self._session: Optional[aiohttp.ClientSession] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    # ------------------------------------------------------------ session

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._resolver = CheckedResolver(self.egress, self._resolver_factory())
            connector = aiohttp.TCPConnector(
                resolver=self._resolver,
                limit=self.connections,
                # One slow host may hold half the pool, never all of it. Half, not less:
                # many jobs often share one receiver, and a burst beyond this limit
                # waits for earlier responses (a quarter cost 1,000 jobs due at one
                # instant a third more lateness on the 2-core bench).
                limit_per_host=max(1, min(self.connections, max(100, self.connections // 2))),
                use_dns_cache=True,
                ttl_dns_cache=60,
                ssl=True if self.verify_tls else False,  # True = default context, certificates verified
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # We time attempts ourselves (the job's timeout may be far above aiohttp's 5m default).
                timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_connect=None, sock_read=None),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=True,
                raise_for_status=False,
                headers={"User-Agent": self.user_agent},
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        session, self._session, self._loop = self._session, None, None
        resolver, self._resolver = self._resolver, None
        if session is not None and not session.closed:
            await session.close()
        if resolver is not None:  # we own it: the connector does not close a resolver it was given
            await resolver.close()

    def __repr__(self) -> str:  # never the signing secrets
        return f"Dispatcher(connections={self.connections}, signed_by_default={bool(self._signing_secrets)})"

    async def __aenter__(self) -> "Dispatcher":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ------------------------------------------------------------ request

    def headers_for(self, job: Job, execution: Execution, attempt: int) -> CIMultiDict[str]:
        """The request headers of one attempt (job headers, then auth, then Chronos's own)."""
        webhook = job.webhook
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in webhook.headers.items():
            headers[name] = value  # case-insensitive: a later duplicate replaces
        if webhook.body is not None and "Content-Type" not in headers:
            headers["Content-Type"] = _default_content_type(webhook.body)
        auth = webhook.auth
        if isinstance(auth, BearerAuth):
            headers["Authorization"] = f"Bearer {auth.token}"
        elif isinstance(auth, BasicAuth):
            # RFC 7617 with charset UTF-8 (aiohttp 3.14 deprecates its BasicAuth helper).
            token = base64.b64encode(f"{auth.username}:{auth.password}".encode("utf-8")).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        elif isinstance(auth, ApiKeyAuth):
            headers[auth.header] = auth.api_key
        headers["User-Agent"] = self.user_agent
        headers["X-Chronos-Job-ID"] = str(job.id)
        headers["X-Chronos-Job-Name"] = job.name
        headers["X-Chronos-Execution-ID"] = str(execution.id)
        headers["X-Chronos-Scheduled-Time"] = format_scheduled_time(execution.scheduled_at)
        headers["X-Chronos-Attempt"] = str(attempt)
        headers["Idempotency-Key"] = str(execution.id)
        return headers

    def prepare(self, job: Job, execution: Execution, attempt: int) -> Prepared:
        """Build attempt ``attempt`` of ``execution`` ahead of time: headers, URL, body, and the
        egress check of the URL's host. Never raises: a request that cannot be sent carries its
        failure, which :meth:`send` returns as the outcome."""
        webhook = job.webhook
        method = webhook.method.value if isinstance(webhook.method, Method) else str(webhook.method).upper()
        prepared = Prepared(job, attempt, method, URL(), CIMultiDict())
        try:
            prepared.headers = self.headers_for(job, execution, attempt)
        except Exception as exc:
            prepared.failure = _result(None, kind="invalid", error=f"invalid request: {exc}")
            return prepared
        try:
            prepared.data = webhook.body.encode("utf-8") if webhook.body is not None else None
            prepared.url = URL(webhook.url)
            # aiohttp skips the resolver for a literal IP, so that case is checked here.
            self.egress.check_host(prepared.url.host or "")
        except Exception as exc:
            prepared.failure = _error_result(exc)
        return prepared

    async def send(
        self, job: Job, execution: Execution, attempt: int, timeout: float, prepared: Optional[Prepared] = None
    ) -> Outcome:
        """Send attempt ``attempt`` (1-based) of ``execution``; ``timeout`` in seconds covers the
        whole attempt. ``prepared``: this attempt from :meth:`prepare` (built again if it was
        made for another attempt or another version of the job). Returns an :class:`Outcome`;
        raises only ``asyncio.CancelledError``."""
        if hasattr(timeout, "total_seconds"):
            timeout = timeout.total_seconds()
        timeout = float(timeout)
        limit = None if math.isinf(timeout) else max(0.0, timeout)
        started = time.monotonic()
        if prepared is None or prepared.job is not job or prepared.attempt != attempt:
            prepared = self.prepare(job, execution, attempt)
        if prepared.failure is not None:
            return Outcome(duration=time.monotonic() - started, **prepared.failure)
        self._sign(prepared, execution)
        try:
            session = self._get_session()
        except Exception as exc:
            return Outcome(None, time.monotonic() - started, error=f"invalid request: {exc}", kind="invalid")

        scope = _timeout_scope(limit)
        try:
            async with scope:
                result = await self._attempt(session, prepared)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if _expired(scope):
                # Some libraries turn the cancellation our timeout injects into their own error.
                result = _timeout_result(timeout)
            else:
                result = _error_result(exc)
        return Outcome(duration=time.monotonic() - started, **result)

    def _sign(self, prepared: Prepared, execution: Execution) -> None:
        """Standard Webhooks headers, stamped now (an attempt may be prepared ahead of time)."""
        secrets = prepared.job.webhook.signing_secrets or self._signing_secrets
        prepared.headers.update(signature_headers(secrets, str(execution.id), int(time.time()), prepared.data or b""))

    async def _attempt(self, session: aiohttp.ClientSession, prepared: Prepared) -> dict[str, Any]:
        webhook = prepared.job.webhook
        method, url, headers, data = prepared.method, prepared.url, prepared.headers, prepared.data
        seen = [(method, str(url))]
        for hop in range(MAX_REDIRECTS + 1):
            if hop:  # a redirect target, checked as prepare() checked the URL
                self.egress.check_host(url.host or "")
            async with session.request(
                method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
            ) as resp:
                location = resp.headers.get("Location") if resp.status in _REDIRECT_CODES else None
                if location is None:
                    result = await _read_response(resp, method)
                    if not webhook.is_success(resp.status):
                        result["error"] = f"HTTP {resp.status}"
                    return result

                try:
                    target = url.join(URL(location.strip()))
                except (ValueError, TypeError) as exc:
                    resp.close()
                    return _result(None, kind="invalid", error=f"invalid redirect Location {location!r}: {exc}")
                if target.scheme not in ("http", "https") or not target.host or _origin(target) != _origin(url):
                    result = await _read_response(resp, method)
                    if not webhook.is_success(resp.status):  # listed in success_codes: the user accepts it
                        result["error"] = f"redirect to another host not followed: {target}"
                    return result

                # Same origin: follow. 303 (and 301/302 after a POST) become GET, as browsers do.
                if (resp.status == 303 and method != "HEAD") or (resp.status in (301, 302) and method == "POST"):
                    method, data = "GET", None
                    for name in ("Content-Type", "Content-Length"):
                        headers.popall(name, None)
                resp.close()  # do not drain a redirect body we will not record

            key = (method, str(target))
            if key in seen:
                chain = " -> ".join(u for _, u in seen + [key])
                return _result(None, kind="invalid", error=f"redirect loop: {chain}")
            seen.append(key)
            url = target
        chain = " -> ".join(u for _, u in seen)
        return _result(None, kind="invalid", error=f"too many redirects (more than {MAX_REDIRECTS}): {chain}")


# ---------------------------------------------------------------- results


def _result(
    status_code: Optional[int],
    *,
    kind: str = "response",
    error: Optional[str] = None,
    body: Optional[str] = None,
    truncated: bool = False,
    retry_after: Optional[float] = None,
) -> dict[str, Any]:
    return dict(status_code=status_code, kind=kind, error=error, body=body, truncated=truncated, retry_after=retry_after)


def _timeout_result(timeout: float) -> dict[str, Any]:
    return _result(None, kind="timeout", error=f"timed out after {format_duration(timeout)}")


async def _read_response(resp: aiohttp.ClientResponse, method: str) -> dict[str, Any]:
    """Read at most RESPONSE_BODY_LIMIT bytes of the body; close the connection if there is more."""
    body: Optional[str] = None
    truncated = False
    if method != "HEAD":
        buf = bytearray()
        while len(buf) <= RESPONSE_BODY_LIMIT:
            # Ask for one byte past the limit: getting it proves the body is longer.
            chunk = await resp.content.read(min(_CHUNK, RESPONSE_BODY_LIMIT + 1 - len(buf)))
            if not chunk:
                break
            buf += chunk
        if len(buf) > RESPONSE_BODY_LIMIT:
            truncated = True
            del buf[RESPONSE_BODY_LIMIT:]
            resp.close()  # drop the connection rather than drain a body we do not want
        body = buf.decode("utf-8", errors="replace")
    retry_after = parse_retry_after(resp.headers.get("Retry-After"), date=resp.headers.get("Date"))
    return _result(resp.status, body=body, truncated=truncated, retry_after=retry_after, error=None)


def _error_result(exc: Exception) -> dict[str, Any]:
    """Map what aiohttp (or the OS) raised to an outcome with a readable error."""
    if isinstance(exc, EgressDenied):
        return _result(None, kind="denied", error=str(exc))
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) and not isinstance(exc, aiohttp.ClientError):
        return _result(None, kind="timeout", error="timed out")
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return _result(None, kind="timeout", error=f"timed out: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return _result(None, kind="invalid", error=f"TLS certificate error for {exc.host}:{exc.port}: {exc.certificate_error}")
    if isinstance(exc, aiohttp.ClientSSLError) or isinstance(exc, ssl.SSLError):
        return _result(None, kind="invalid", error=f"TLS error: {_describe_os_error(exc)}")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return _result(None, kind="connection", error=f"DNS lookup failed for {exc.host}: {_describe_os_error(exc)}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        where = f"{exc.host}:{exc.port}"
        if isinstance(os_error, ConnectionRefusedError) or getattr(os_error, "errno", None) == errno.ECONNREFUSED:
            return _result(None, kind="connection", error=f"connection refused: {where}")
        return _result(None, kind="connection", error=f"cannot connect to {where}: {_describe_os_error(exc)}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return _result(None, kind="connection", error="server closed the connection without a complete response")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return _result(None, kind="connection", error=f"connection broken while reading the response body: {_payload_detail(exc)}")
    if isinstance(exc, ConnectionResetError) or getattr(exc, "errno", None) == errno.ECONNRESET:
        return _result(None, kind="connection", error="connection reset by the server")
    if isinstance(exc, aiohttp.ClientOSError) or isinstance(exc, OSError):
        return _result(None, kind="connection", error=f"connection error: {_describe_os_error(exc)}")
    if isinstance(exc, aiohttp.InvalidURL):
        return _result(None, kind="invalid", error=f"invalid URL: {exc}")
    if isinstance(exc, ValueError) and not isinstance(exc, aiohttp.ClientError):
        # aiohttp refusing to send something, e.g. a line break in a header value
        return _result(None, kind="invalid", error=f"invalid request: {exc}")
    if isinstance(exc, aiohttp.ClientResponseError):
        # aiohttp reports unparseable responses (bad status line, bad headers...) this way.
        return _result(None, kind="invalid", error=f"invalid HTTP response: {exc.message or exc}")
    if isinstance(exc, aiohttp.ClientConnectionError):
        return _result(None, kind="connection", error=f"connection error: {exc or type(exc).__name__}")
    return _result(None, kind="invalid", error=f"{type(exc).__name__}: {exc}")


def _payload_detail(exc: BaseException) -> str:
    """A short reason for a broken response body from aiohttp's nested payload errors."""
    parts: list[str] = []
    seen: set[int] = set()
    node: Optional[BaseException] = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, OSError) and node.strerror:
            parts.append(node.strerror.lower())
        else:
            message = getattr(node, "message", None)
            if isinstance(message, str) and message and node is not exc:
                parts.append(message.strip().rstrip("."))
        node = node.__cause__ or node.__context__
    if "reset by peer" in str(exc).lower() and not any("reset by peer" in p for p in parts):
        parts.append("connection reset by peer")
    return "; ".join(dict.fromkeys(parts)) or "the response ended early"
