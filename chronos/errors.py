"""The errors of Chronos, modelled once. Each carries a stable ``code``; the
REST layer maps them to RFC 9457 problems and the CLI prints them as
``Error: CODE: message``.

    ChronosError
    ├── ValidationError          VALIDATION_ERROR     bad input; ``errors`` names each field
    │   └── InvalidSchedule      INVALID_SCHEDULE
    ├── NotFound
    │   ├── JobNotFound          JOB_NOT_FOUND
    │   └── ExecutionNotFound    EXECUTION_NOT_FOUND
    ├── Conflict                 CONFLICT             e.g. cancelling a finished execution
    │   └── DuplicateJob         DUPLICATE_JOB
    ├── CapacityExhausted        CAPACITY_EXHAUSTED   no room for another job actor
    ├── Unauthorized             UNAUTHORIZED
    └── Unavailable              UNAVAILABLE          supervisor or store not reachable
"""

from __future__ import annotations

from typing import Any


class ChronosError(Exception):
    code = "INTERNAL_ERROR"

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None):
        # Both go to ``args`` so the error pickles across Ray unchanged.
        super().__init__(message, errors)
        self.message = message
        self.errors = errors or []

    def __str__(self) -> str:
        return self.message


class ValidationError(ChronosError):
    code = "VALIDATION_ERROR"


class InvalidSchedule(ValidationError):
    code = "INVALID_SCHEDULE"


class NotFound(ChronosError):
    code = "NOT_FOUND"


class JobNotFound(NotFound):
    code = "JOB_NOT_FOUND"


class ExecutionNotFound(NotFound):
    code = "EXECUTION_NOT_FOUND"


class Conflict(ChronosError):
    code = "CONFLICT"


class DuplicateJob(Conflict):
    code = "DUPLICATE_JOB"


class CapacityExhausted(ChronosError):
    code = "CAPACITY_EXHAUSTED"


class Unauthorized(ChronosError):
    code = "UNAUTHORIZED"


class Unavailable(ChronosError):
    code = "UNAVAILABLE"
