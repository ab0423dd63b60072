"""Signed webhooks, the Standard Webhooks way (https://www.standardwebhooks.com, v1).

A secret is ``whsec_`` followed by the base64 of 24 to 64 random bytes. An attempt carries

- ``webhook-id``: the execution id (the same on every retry and after restarts: receivers dedupe);
- ``webhook-timestamp``: the attempt's send time, Unix seconds;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` for each secret,
  space-separated. During a rotation a job lists several secrets, newest first, and all sign,
  so a receiver that knows either one verifies the request.

Pure functions: the dispatcher calls :func:`signature_headers` just before sending.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Iterable, Sequence, Union

PREFIX = "whsec_"
GENERATE = "generate"  # what a client sends to ask for a new secret
MIN_BYTES, MAX_BYTES = 24, 64
_NEW_BYTES = 32

SecretSpec = Union[str, Sequence[str], None]


def generate_secret() -> str:
    """A new ``whsec_`` secret (32 random bytes)."""
    return PREFIX + base64.b64encode(secrets.token_bytes(_NEW_BYTES)).decode("ascii")


def secret_problem(secret: str) -> "str | None":
    """Why ``secret`` is not a usable signing secret (never echoing it), or None."""
    if not secret.startswith(PREFIX):
        return f'must start with "{PREFIX}" (generate one with `chronosctl job update NAME --signing-secret generate`)'
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        return f'must be "{PREFIX}" followed by standard base64 (A-Z, a-z, 0-9, +, /, = padding)'
    if not MIN_BYTES <= len(key) <= MAX_BYTES:
        return f"must encode {MIN_BYTES} to {MAX_BYTES} bytes after {PREFIX} (this one has {len(key)})"
    return None


def as_list(spec: SecretSpec) -> list[str]:
    """A job's ``signing_secret`` (one secret, or several newest first) as a list."""
    if spec is None:
        return []
    return [spec] if isinstance(spec, str) else list(spec)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``msg_id.timestamp.body``."""
    key = base64.b64decode(secret[len(PREFIX):])
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode("ascii")


def signature_headers(secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers; empty when there is no secret (unsigned)."""
    signatures = [sign(s, msg_id, timestamp, body) for s in secrets_]
    if not signatures:
        return {}
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": " ".join(signatures)}
