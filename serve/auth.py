"""Optional bearer-token auth (``settings.api_tokens``), as a raw ASGI middleware.

It runs before routing and before the body is read, so an unauthenticated
request learns nothing (not even whether a route exists) and costs no body
parsing. When no token is configured it is a no-op.
"""

from __future__ import annotations

import hmac
from typing import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from chronos.errors import Unauthorized

from chronos.serve.middleware import header, route_path
from chronos.serve.problems import WWW_AUTHENTICATE, send_error

#: Always open, token or not: the API description.
DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
#: Open when ``settings.open_metrics`` (the default): probes and the scrape.
OPS_PATHS = frozenset({"/health", "/ready", "/metrics"})

BEARER_SCHEME_NAME = "bearerAuth"


def open_paths(open_metrics: bool) -> frozenset[str]:
    return DOC_PATHS | OPS_PATHS if open_metrics else DOC_PATHS


class TokenChecker:
    def __init__(self, tokens: Iterable[str]):
        self._tokens = [t.encode("utf-8") for t in tokens if t]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    @property
    def tokens(self) -> list[bytes]:
        return list(self._tokens)

    def match(self, credentials: bytes) -> bytes | None:
        """The configured token equal to ``credentials``, or None. Every token is compared,
        in constant time, whatever the outcome, so timing tells neither which token nor
        how much matched."""
        found = None
        for token in self._tokens:
            if hmac.compare_digest(credentials, token):
                found = token
        return found if credentials else None

    def check(self, authorization: bytes | None) -> bool:
        """True when ``authorization`` is ``Bearer <one of the tokens>``."""
        if not authorization:
            return False
        scheme, _, credentials = authorization.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return self.match(credentials.strip()) is not None


class BearerAuthMiddleware:
    """``open_prefix``: a tree of paths with an auth of its own (the console's session)."""

    def __init__(
        self, app: ASGIApp, tokens: Iterable[str], open_paths: Iterable[str] = DOC_PATHS, open_prefix: str | None = None
    ) -> None:
        self.app = app
        self.checker = TokenChecker(tokens)
        self.open_paths = frozenset(open_paths)
        self.open_prefix = open_prefix

    def _open(self, path: str) -> bool:
        prefix = self.open_prefix
        return path in self.open_paths or bool(prefix and (path == prefix or path.startswith(prefix + "/")))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.checker.enabled or self._open(route_path(scope)):
            await self.app(scope, receive, send)
            return
        authorization = header(scope, b"authorization")
        if self.checker.check(authorization):
            await self.app(scope, receive, send)
            return
        if authorization:
            detail = "the bearer token is not valid"
            challenge = WWW_AUTHENTICATE + ', error="invalid_token"'
        else:
            detail = "this API needs a token: send the header Authorization: Bearer <token>"
            challenge = WWW_AUTHENTICATE
        await send_error(scope, send, Unauthorized(detail), headers={"WWW-Authenticate": challenge})
