"""List cursors.

Cursors are opaque to clients: urlsafe base64 without padding of a position in the order
of the list. Every text the patterns below match is a position (so the OpenAPI document,
which publishes them, says exactly which cursors are accepted): a job cursor is the name the
next page starts after (at most 63 bytes); an execution cursor is 24 bytes, the scheduled
instant (microseconds since 1970, big-endian) and the id the next page starts before.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import datetime, timedelta, timezone

from chronos.errors import ValidationError
from chronos.times import as_utc

_B64 = "[A-Za-z0-9_-]"
#: Any base64url text without padding (a length of 4k+1 is no base64).
JOB_CURSOR_PATTERN = f"^(?:{_B64}{{4}})*(?:{_B64}{{2,3}})?$"
JOB_CURSOR_MAX_LENGTH = 84  # 63 bytes
#: 24 bytes, in 32 characters.
EXECUTION_CURSOR_PATTERN = f"^{_B64}{{32}}$"
EXECUTION_CURSOR_LENGTH = 32
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LAST_INSTANT = datetime.max.replace(tzinfo=timezone.utc)


def _encode_cursor(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _decode_cursor(cursor: str, pattern: str, max_length: int) -> bytes:
    if len(cursor) > max_length or not re.fullmatch(pattern, cursor):
        raise _bad_cursor(cursor)
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - the pattern admits base64 only
        raise _bad_cursor(cursor) from None


def _bad_cursor(cursor: str) -> ValidationError:
    message = "use the next_cursor value returned with the previous page"
    return ValidationError(f'cursor "{cursor}" is not valid: {message}', errors=[{"field": "cursor", "message": message}])


def encode_job_cursor(name: str) -> str:
    return _encode_cursor(name.encode())


def encode_execution_cursor(scheduled_at: datetime, execution_id: uuid.UUID) -> str:
    micros = (as_utc(scheduled_at) - _EPOCH) // timedelta(microseconds=1)
    return _encode_cursor(micros.to_bytes(8, "big") + execution_id.bytes)


def decode_job_cursor(cursor: str) -> str:
    """The name to start after. Any bytes are a position: read as Latin-1 (every byte is a
    character) without NUL (which PostgreSQL text cannot hold)."""
    return _decode_cursor(cursor, JOB_CURSOR_PATTERN, JOB_CURSOR_MAX_LENGTH).decode("latin-1").replace("\x00", "")


def decode_execution_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    data = _decode_cursor(cursor, EXECUTION_CURSOR_PATTERN, EXECUTION_CURSOR_LENGTH)
    micros = int.from_bytes(data[:8], "big")
    try:
        at = _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        at = _LAST_INSTANT  # past the calendar: before it is everything
    return at, uuid.UUID(bytes=data[8:])
