"""Small raw-ASGI middlewares: the request body limit and the last-resort error net."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chronos.serve.problems import PayloadTooLarge, internal_error, send_problem


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value
    return None


class _Tracked:
    """A ``send`` that remembers whether the response has started: once it
    has, an error can no longer be answered with a problem body."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


class BodyLimitMiddleware:
    """Refuse bodies larger than ``max_bytes`` with 413 PAYLOAD_TOO_LARGE.

    A declared ``Content-Length`` over the limit is refused before the app runs;
    a body without one (chunked) is counted while it streams, and the read that
    crosses the limit raises :class:`PayloadTooLarge`, answered as a problem here
    if the app let it through."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None:
            text = declared.strip()
            if not text.isdigit():
                await send_problem(scope, send, 400, "BAD_REQUEST", "the Content-Length header is not a number")
                return
            if int(text) > self.max_bytes:
                await send_problem(scope, send, 413, "PAYLOAD_TOO_LARGE", PayloadTooLarge(self.max_bytes).detail)
                return

        received = 0
        limit = self.max_bytes

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(limit)
            return message

        tracked = _Tracked(send)
        try:
            await self.app(scope, limited_receive, tracked)
        except PayloadTooLarge as exc:
            if tracked.started:
                raise
            await send_problem(scope, send, 413, exc.code, str(exc.detail))


class LastResortMiddleware:
    """Any exception nothing else handled: logged with its traceback, answered
    500 INTERNAL_ERROR with a generic detail (never the traceback)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = _Tracked(send)
        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:  # noqa: BLE001 - this is the net
            status, code, detail = internal_error(scope, exc)
            if tracked.started:
                # Too late for a problem body: let the server drop the connection.
                raise
            await send_problem(scope, send, status, code, detail)


def route_path(scope: dict[str, Any]) -> str:
    """The path inside the app (without a ``root_path`` mount prefix)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "") or ""
    if root and (path == root or path.startswith(root.rstrip("/") + "/")):
        path = path[len(root.rstrip("/")):] or "/"
    return path
