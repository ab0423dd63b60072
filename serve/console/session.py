"""Console sessions and CSRF protection, without server-side state.

A session cookie is ``<issued>.<nonce>.<mac>`` where ``mac`` is an HMAC of
``issued.nonce`` keyed by the API token the user logged in with: the token itself
never travels again, any replica verifies it, and removing a token from
``CHRONOS_API_TOKENS`` ends its sessions. Sessions expire after SESSION_MAX_AGE.

CSRF is the double-submit pattern: a random ``chronos_csrf`` cookie (SameSite=Strict,
so another site's form never carries it) whose value every state-changing form
repeats in a hidden field; a POST whose field does not match, or whose ``Origin``
is another origin, is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Iterable, Mapping, Optional

from starlette.requests import Request
from starlette.responses import Response

from chronos.serve.auth import TokenChecker

SESSION_COOKIE = "chronos_session"
CSRF_COOKIE = "chronos_csrf"
CSRF_FIELD = "csrf"
SESSION_MAX_AGE = 12 * 3600
COOKIE_PATH = "/ui"


class ConsoleAuth:
    def __init__(self, tokens: Iterable[str]):
        self._checker = TokenChecker(tokens)

    @property
    def enabled(self) -> bool:
        return self._checker.enabled

    def login(self, token: str) -> Optional[str]:
        """A new session value if ``token`` is one of the API tokens, else None."""
        key = self._checker.match(token.strip().encode("utf-8"))
        if key is None:
            return None
        payload = f"{int(time.time())}.{secrets.token_urlsafe(16)}"
        return f"{payload}.{_mac(key, payload)}"

    def signed_in(self, request: Request) -> bool:
        if not self.enabled:
            return True
        value = request.cookies.get(SESSION_COOKIE, "")
        issued, _, rest = value.partition(".")
        nonce, _, mac = rest.partition(".")
        if not (issued.isdigit() and nonce and mac) or time.time() - int(issued) > SESSION_MAX_AGE:
            return False
        payload = f"{issued}.{nonce}"
        matched = False
        for key in self._checker.tokens:  # every token, in constant time
            matched |= hmac.compare_digest(mac, _mac(key, payload))
        return matched


def _mac(key: bytes, payload: str) -> str:
    return hmac.new(key, payload.encode("ascii"), hashlib.sha256).hexdigest()


# ------------------------------------------------------------ cookies


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: Optional[int] = None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request)
    )


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request))


def csrf_token(request: Request) -> tuple[str, bool]:
    """The request's CSRF token, and whether it is new (then it must be set as a cookie)."""
    current = request.cookies.get(CSRF_COOKIE, "")
    if len(current) >= 32:
        return current, False
    return secrets.token_urlsafe(32), True


def csrf_problem(request: Request, form: Mapping[str, str]) -> Optional[str]:
    """Why a state-changing request must be refused, or None when it may proceed."""
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
    if origin is not None and origin != own:
        return f"the request comes from another site ({origin}): use the console's own forms"
    cookie = request.cookies.get(CSRF_COOKIE, "")
    field = form.get(CSRF_FIELD, "")
    if not cookie or not field or not hmac.compare_digest(cookie, field):
        return "the form's security token is missing or out of date: reload the page and try again"
    return None
