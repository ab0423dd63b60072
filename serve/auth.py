"""Optional bearer-token auth (``settings.api_tokens``), as a raw ASGI middleware.

It runs before routing and before the body is read, so an unauthenticated
request learns nothing (not even whether a route exists) and costs no body
parsing. When no token is configured it is a no-op.
"""

from __future__ import annotations

import hmac
from typing import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from chronos.serve.middleware import header, route_path
from chronos.serve.problems import WWW_AUTHENTICATE, send_problem

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

    def check(self, authorization: bytes | None) -> bool:
        """True when ``authorization`` is ``Bearer <one of the tokens>``.

        Every configured token is compared, in constant time, whatever the
        outcome, so timing tells neither which token nor how much matched."""
        if not authorization:
            return False
        scheme, _, credentials = authorization.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        credentials = credentials.strip()
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(credentials, token)
        return matched and bool(credentials)


class BearerAuthMiddleware:
    def __init__(self, app: ASGIApp, tokens: Iterable[str], open_paths: Iterable[str] = DOC_PATHS) -> None:
        self.app = app
        self.checker = TokenChecker(tokens)
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.checker.enabled or route_path(scope) in self.open_paths:
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
        await send_problem(scope, send, 401, "UNAUTHORIZED", detail, headers={"WWW-Authenticate": challenge})
