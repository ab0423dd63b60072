"""A real, programmable HTTP receiver for tests: an aiohttp web server on 127.0.0.1.

Async use (pytest-asyncio)::

    async with Receiver() as r:
        r.route("/flaky", sequence=[503, 503, 200])          # one reply per request, last repeats
        r.route("/busy", status=429, headers={"Retry-After": "2"})
        r.route("/slow", delay=5)                            # answer after 5 s
        r.route("/hang", delay=math.inf)                     # never answer (until the receiver stops)
        r.route("/big", body_size=100 * 1024 * 1024)         # stream 100 MB of b"x"
        r.route("/drip", body_size=10_000, chunk_size=100, chunk_delay=0.1)  # a slow body
        r.route("/moved", location="/elsewhere")             # 302 with Location
        r.route("/reset", reset=True)                        # headers + part of the body, then RST
        r.route("/garbage", raw=b"NOT HTTP\\r\\n\\r\\n")     # raw bytes, then close
        ... send to r.url("/flaky") ...
        reqs = await r.wait_for(3, timeout=5, path="/flaky")
        assert reqs[0].headers["Idempotency-Key"] == ...

Sync use from a background thread with its own event loop (for code that is not async,
e.g. tests driving Ray actors or a subprocess server)::

    with ThreadedReceiver() as r:        # or r = ThreadedReceiver().start(); ...; r.stop()
        r.route("/hook", status=200)
        ... something else calls r.url("/hook") ...
        r.wait_for(1, timeout=10)

Every request is recorded in ``r.requests`` (a list of :class:`RecordedRequest`: arrival
``time`` from ``time.time()``, ``method``, ``path``, ``query``, ``headers`` (case-insensitive),
``body`` bytes, ``.text``, ``.json()``, client ``peer``) **before** any programmed delay. Paths
with no route answer ``200 ok``. ``r.route(...)`` returns a :class:`Route` whose ``hits``,
``disconnects`` (client went away before the reply was complete) and ``bytes_sent`` (streamed
body bytes) can be asserted on. The server listens on 127.0.0.1 by default, on a free port
(port 0); pass ``ssl=<server SSLContext>`` for HTTPS. :func:`closed_port` gives a port where
connections are refused.
"""

from __future__ import annotations

import asyncio
import json as _json
import math
import socket
import ssl as ssl_
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Mapping, Optional, Union

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["Receiver", "ThreadedReceiver", "Reply", "Route", "RecordedRequest", "closed_port"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Hangup(asyncio.CancelledError):
    """Raised by a handler to end the connection without a (complete) response: aiohttp treats
    a cancelled handler as a premature disconnection and logs nothing above debug."""


@dataclass
class Reply:
    """One programmed answer.

    - ``status``: the status code (default 200; 302 when only ``location`` is given).
    - ``body``: a fixed body (str is sent as utf-8); default ``"ok"`` for 2xx, empty otherwise.
    - ``body_size``: instead of ``body``, stream this many bytes of ``b"x"`` in ``chunk_size``
      chunks with a Content-Length (or chunked, if ``chunked=True``); never held in memory.
    - ``headers``: extra response headers (e.g. ``{"Retry-After": "2"}``).
    - ``chunk_delay``: with ``body_size``, seconds to pause before each chunk (a slow body).
    - ``delay``: seconds to wait before answering; ``math.inf`` hangs until the client goes
      away or the receiver stops.
    - ``location``: a ``Location`` header (absolute or relative).
    - ``reset``: ``True`` or ``"body"``: send the headers and half the body, then reset the
      connection (TCP RST); ``"before"``: reset without sending anything.
    - ``raw``: write these bytes as the whole response, then close (for malformed HTTP).
    """

    status: Optional[int] = None
    body: Union[bytes, str, None] = None
    body_size: Optional[int] = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    location: Optional[str] = None
    reset: Union[bool, str] = False
    raw: Optional[bytes] = None
    chunk_size: int = 64 * 1024
    chunked: bool = False
    chunk_delay: float = 0.0

    @property
    def code(self) -> int:
        if self.status is not None:
            return self.status
        return 302 if self.location is not None else 200


ReplyLike = Union[Reply, int, Mapping[str, Any]]


def _as_reply(item: ReplyLike) -> Reply:
    if isinstance(item, Reply):
        return item
    if isinstance(item, int):
        return Reply(status=item)
    return Reply(**dict(item))


class Route:
    """The programmed behaviour of one path, plus what happened on it."""

    def __init__(self, path: str, replies: list[Reply], handler: Optional[Handler] = None) -> None:
        self.path = path
        self._replies = list(replies) or [Reply()]
        self.handler = handler
        self.hits = 0  # requests answered (or started) on this path
        self.bytes_sent = 0  # body bytes handed to the transport by body_size streaming
        self.disconnects = 0  # times the client went away before the reply was complete
        self._lock = threading.Lock()

    def next_reply(self) -> Reply:
        """The next reply of the sequence; the last one repeats forever."""
        with self._lock:
            self.hits += 1
            if len(self._replies) > 1:
                return self._replies.pop(0)
            return self._replies[0]


@dataclass
class RecordedRequest:
    time: float  # time.time() at arrival
    method: str
    path: str
    query: str
    headers: CIMultiDictProxy[str]
    body: bytes
    peer: Optional[tuple] = None  # (host, port) of the client socket: same port = reused connection

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return _json.loads(self.body)


def closed_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` with (almost certainly) nothing listening: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Receiver:
    """An aiohttp server on 127.0.0.1 that records requests and answers as programmed."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, default: ReplyLike = 200, ssl: Optional[ssl_.SSLContext] = None
    ) -> None:
        """``default`` answers paths without a route; ``ssl`` (a server context) serves HTTPS."""
        self.host = host
        self.port = port
        self.ssl = ssl
        self.requests: list[RecordedRequest] = []
        self.routes: dict[str, Route] = {}
        self.default = _as_reply(default)
        self._runner: Optional[web.AppRunner] = None
        self._arrived: Optional[asyncio.Event] = None
        self._stopping: Optional[asyncio.Event] = None

    # ------------------------------------------------------------ programming

    def route(
        self,
        path: str,
        reply: Optional[ReplyLike] = None,
        *,
        sequence: Optional[Iterable[ReplyLike]] = None,
        handler: Optional[Handler] = None,
        **reply_fields: Any,
    ) -> Route:
        """Program ``path`` (exact match, query ignored). Give one of: a ``reply``
        (``Reply``, status int or dict), a ``sequence`` of them consumed one per request (the
        last repeats), an aiohttp ``handler`` coroutine, or :class:`Reply` fields as keywords
        (``status=503, headers={...}, delay=1``). Replaces any earlier programming of the path."""
        if handler is not None:
            replies: list[Reply] = []
        elif sequence is not None:
            replies = [_as_reply(x) for x in sequence]
            if not replies:
                raise ValueError("sequence must not be empty")
        elif reply is not None:
            replies = [_as_reply(reply)]
        else:
            replies = [Reply(**reply_fields)]
        r = Route(path, replies, handler)
        self.routes[path] = r
        return r

    def url(self, path: str = "/") -> str:
        if self._runner is None:
            raise RuntimeError("the receiver is not started")
        if not path.startswith("/"):
            path = "/" + path
        scheme = "https" if self.ssl is not None else "http"
        return f"{scheme}://{self.host}:{self.port}{path}"

    @property
    def base_url(self) -> str:
        return self.url("")

    def requests_for(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def clear(self) -> None:
        self.requests.clear()

    async def wait_for(self, n: int, timeout: float = 5.0, *, path: Optional[str] = None) -> list[RecordedRequest]:
        """Wait until at least ``n`` requests (to ``path``, if given) arrived; return them.
        Raises ``TimeoutError`` saying how many came."""
        assert self._arrived is not None, "the receiver is not started"
        deadline = time.monotonic() + timeout
        while True:
            got = self.requests_for(path) if path is not None else list(self.requests)
            if len(got) >= n:
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                where = f" to {path}" if path is not None else ""
                raise TimeoutError(f"expected {n} requests{where} within {timeout}s, got {len(got)}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> "Receiver":
        self._arrived = asyncio.Event()
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is None:
            return
        assert self._stopping is not None
        self._stopping.set()  # wakes delayed / hanging handlers
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> "Receiver":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # ------------------------------------------------------------ serving

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.time()
        body = await request.read()
        self.requests.append(
            RecordedRequest(
                time=arrived,
                method=request.method,
                path=request.path,
                query=request.query_string,
                headers=CIMultiDictProxy(CIMultiDict(request.headers)),
                body=body,
                peer=request.transport.get_extra_info("peername") if request.transport else None,
            )
        )
        assert self._arrived is not None
        self._arrived.set()

        route = self.routes.get(request.path)
        if route is not None and route.handler is not None:
            route.hits += 1
            return await route.handler(request)
        reply = route.next_reply() if route is not None else self.default
        try:
            return await self._answer(request, reply, route)
        except _Hangup:
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            # The client went away (its timeout, a cancel, a truncated read): with
            # handler_cancellation on, aiohttp cancels this handler; a write may also fail.
            if route is not None:
                route.disconnects += 1
            raise _Hangup() from None

    async def _sleep(self, delay: float) -> None:
        if delay <= 0:
            return
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), None if math.isinf(delay) else delay)
        except asyncio.TimeoutError:
            pass

    async def _answer(self, request: web.Request, reply: Reply, route: Optional[Route]) -> web.StreamResponse:
        await self._sleep(reply.delay)
        transport = request.transport
        if transport is None:  # the client left while we were waiting
            raise ConnectionResetError("client disconnected")

        if reply.raw is not None:
            transport.write(reply.raw)
            transport.close()
            raise _Hangup()  # nothing more to send: aiohttp just drops the connection

        if reply.reset == "before":
            _reset(transport)
            raise _Hangup()

        headers = CIMultiDict(reply.headers)
        if reply.location is not None:
            headers["Location"] = reply.location

        if reply.body_size is not None or reply.reset:
            size = reply.body_size if reply.body_size is not None else 1000
            resp = web.StreamResponse(status=reply.code, headers=headers)
            if reply.chunked:
                resp.enable_chunked_encoding()
            else:
                resp.content_length = size
            await resp.prepare(request)
            if reply.reset:
                await resp.write(b"x" * (size // 2))
                await asyncio.sleep(0.05)  # let the partial body reach the client first
                _reset(transport)
                raise _Hangup()
            chunk = b"x" * max(1, reply.chunk_size)
            sent = 0
            while sent < size:
                await self._sleep(reply.chunk_delay)
                piece = chunk if size - sent >= len(chunk) else chunk[: size - sent]
                await resp.write(piece)  # waits for the socket to drain: memory stays flat
                sent += len(piece)
                if route is not None:
                    route.bytes_sent += len(piece)
            await resp.write_eof()
            return resp

        if reply.body is None:
            body: bytes = b"ok" if 200 <= reply.code < 300 and request.method != "HEAD" else b""
        else:
            body = reply.body.encode("utf-8") if isinstance(reply.body, str) else reply.body
        return web.Response(status=reply.code, body=body, headers=headers)


def _reset(transport: asyncio.BaseTransport) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), as a crashing server would."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()  # type: ignore[attr-defined]


class ThreadedReceiver:
    """A :class:`Receiver` running in a background thread with its own event loop, for sync
    code. ``start()`` returns once it listens; ``stop()`` shuts it down; also a context
    manager. ``route``, ``url``, ``requests``, ``requests_for``, ``clear`` behave as on
    :class:`Receiver`; ``wait_for`` blocks."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, default: ReplyLike = 200, ssl: Optional[ssl_.SSLContext] = None
    ) -> None:
        self.receiver = Receiver(host, port, default=default, ssl=ssl)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    def start(self, timeout: float = 10.0) -> "ThreadedReceiver":
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="test-receiver", daemon=True)
        self._thread.start()
        ready.wait(timeout)
        asyncio.run_coroutine_threadsafe(self.receiver.start(), loop).result(timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.receiver.stop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> "ThreadedReceiver":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # delegation
    def route(self, path: str, reply: Optional[ReplyLike] = None, **kwargs: Any) -> Route:
        return self.receiver.route(path, reply, **kwargs)

    def url(self, path: str = "/") -> str:
        return self.receiver.url(path)

    @property
    def base_url(self) -> str:
        return self.receiver.base_url

    @property
    def port(self) -> int:
        return self.receiver.port

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.receiver.requests

    def requests_for(self, path: str) -> list[RecordedRequest]:
        return self.receiver.requests_for(path)

    def clear(self) -> None:
        self.receiver.clear()

    def wait_for(self, n: int, timeout: float = 5.0, *, path: Optional[str] = None) -> list[RecordedRequest]:
        """Block until at least ``n`` requests (to ``path``, if given) arrived; return them."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.requests_for(path) if path is not None else list(self.requests)
            if len(got) >= n:
                return got
            if time.monotonic() >= deadline:
                where = f" to {path}" if path is not None else ""
                raise TimeoutError(f"expected {n} requests{where} within {timeout}s, got {len(got)}")
            time.sleep(0.01)
