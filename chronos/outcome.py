"""What one webhook attempt produced, as a plain value.

Its own module so that the code judging attempts (``chronos.retry``, the runner) needs no HTTP
client: only the modules that send requests import aiohttp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

__all__ = ["Outcome", "OutcomeKind"]

OutcomeKind = Literal["response", "timeout", "connection", "invalid", "denied"]


@dataclass(frozen=True)
class Outcome:
    """What one attempt produced; a value, never an exception.

    ``kind`` is ``"response"`` when a complete HTTP response (status line and headers) was
    received and is the final answer of the attempt; otherwise ``status_code`` is ``None`` and
    ``kind`` says why there is no answer: ``"timeout"``, ``"connection"`` (refused, reset,
    DNS failure), ``"invalid"`` (malformed HTTP, TLS failure, redirect loop, bad URL) or
    ``"denied"`` (the egress policy refused the target; nothing was sent).
    """

    status_code: Optional[int]
    duration: float  # seconds, this attempt
    body: Optional[str] = None  # at most RESPONSE_BODY_LIMIT bytes, utf-8 with errors="replace"
    truncated: bool = False
    error: Optional[str] = None
    kind: str = "response"  # OutcomeKind
    retry_after: Optional[float] = None  # seconds, from a Retry-After header

    @property
    def ok(self) -> bool:
        """A response the webhook counts as success (its ``success_codes``, default 2xx)."""
        return self.kind == "response" and self.error is None
