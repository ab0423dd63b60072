"""Request models of the API that are not job models, the shapes its answers
take (for the OpenAPI document), and the guide's examples.

Job bodies are validated by ``chronos.models.parse_job`` (the same errors the
CLI and YAML files get); the classes here that describe answers are used only
to document them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from chronos.models import Execution, ExecutionStatus, JobCreate, ScheduleExpr, Strict, Timezone

# ------------------------------------------------------------ requests


class ValidateRequest(Strict):
    """Body of ``POST /api/v1/schedules/validate``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"schedule": "0 9 * * 1-5", "timezone": "America/Los_Angeles", "count": 5}]
        }
    )

    schedule: ScheduleExpr
    timezone: Timezone = Field(default="UTC", description="IANA zone the schedule is evaluated in.")
    from_: Optional[datetime] = Field(
        default=None,
        alias="from",
        description="Compute the runs strictly after this instant (default: now). "
        "Without an offset it is read as wall-clock time in `timezone`. "
        "`@every` schedules are anchored here.",
    )
    count: int = Field(default=5, ge=1, le=100, description="How many next runs to list.")

    @field_validator("from_", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        # pydantic would read a number as seconds since 1970; the API documents RFC 3339 text.
        if value is not None and not isinstance(value, (str, datetime)):
            raise PydanticCustomError("datetime", 'use an RFC 3339 date-time like "2026-01-01T09:00:00Z"')
        return value


# ------------------------------------------------------------ answers (documentation only)


class JobView(JobCreate):
    """A job as the API returns it. Secrets (auth token/password/api_key and
    Authorization, *-Key, *-Token header values) always read back as `***`;
    send `***` back in a PUT or PATCH to keep the stored value."""

    model_config = ConfigDict(json_schema_extra=None)

    id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    next_run: Optional[datetime] = None
    last_run: Optional[datetime] = None
    last_status: Optional[ExecutionStatus] = None


class JobList(BaseModel):
    items: list[JobView]
    next_cursor: Optional[str] = Field(description="Pass as `cursor` for the next page; null on the last page.")


class ExecutionList(BaseModel):
    items: list[Execution] = Field(description="Newest first.")
    next_cursor: Optional[str] = Field(description="Pass as `cursor` for the next page; null on the last page.")


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. `webhook.url`.")
    message: str


class ProblemDetails(BaseModel):
    """RFC 9457 problem (`application/problem+json`)."""

    type: str = Field(examples=["https://chronos.dev/problems/job-not-found"])
    title: str
    status: int
    detail: str
    code: str = Field(
        description="Stable machine-readable code: VALIDATION_ERROR, INVALID_SCHEDULE, MALFORMED_JSON, "
        "JOB_NOT_FOUND, EXECUTION_NOT_FOUND, NOT_FOUND, METHOD_NOT_ALLOWED, CONFLICT, DUPLICATE_JOB, "
        "PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, UNAUTHORIZED, CAPACITY_EXHAUSTED, UNAVAILABLE, INTERNAL_ERROR."
    )
    errors: list[FieldError] = Field(default_factory=list)
    instance: str = Field(description="The request path.")


class ValidateResponse(BaseModel):
    valid: Literal[True]
    schedule: str
    timezone: str
    description: str = Field(examples=["At 09:00 on Monday through Friday"])
    next_runs: list[str] = Field(description="UTC, RFC 3339 with `Z`. Empty when the schedule never fires again.")
    next_runs_local: list[str] = Field(description="The same instants with the zone's UTC offset.")


class SigningSecret(BaseModel):
    signing_secret: str = Field(
        pattern=r"^whsec_[A-Za-z0-9+/]+={0,2}$", description="A new Standard Webhooks secret, shown once: it is not stored."
    )


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]


# ------------------------------------------------------------ examples (the guide's own: docs/getting-started.md, docs/retries.md)

GUIDE_SIMPLE_JOB: dict[str, Any] = {
    "name": "hourly-health-check",
    "description": "Check API health every hour",
    "schedule": "0 * * * *",
    "webhook": {"url": "https://api.example.com/health", "method": "GET"},
    "enabled": True,
}

GUIDE_RETRY_JOB: dict[str, Any] = {
    "name": "critical-backup",
    "schedule": "0 2 * * *",
    "timezone": "America/New_York",
    "webhook": {
        "url": "https://backup.example.com/trigger",
        "method": "POST",
        "headers": {"Authorization": "Bearer your-api-key"},
        "body": '{"type": "full"}',
    },
    "retry_policy": {"max_attempts": 5, "initial_interval": "10s", "max_interval": "5m", "multiplier": 2.0},
    "timeout": "30m",
    "enabled": True,
}

JOB_EXAMPLES = {
    "simple": {"summary": "Call an API every hour", "value": GUIDE_SIMPLE_JOB},
    "retry": {"summary": "Nightly backup with a retry policy", "value": GUIDE_RETRY_JOB},
}

PATCH_EXAMPLES = {
    "reschedule": {"summary": "Change the schedule", "value": {"schedule": "0 10 * * 1-5"}},
    "disable": {"summary": "Disable", "value": {"enabled": False}},
    "untag": {"summary": "Remove a tag (null deletes)", "value": {"tags": {"priority": None}}},
}

VALIDATE_EXAMPLES = {
    "weekdays": {
        "summary": "Weekdays at 09:00 in Los Angeles",
        "value": {"schedule": "0 9 * * 1-5", "timezone": "America/Los_Angeles", "count": 5},
    },
    "every": {"summary": "Every 90 seconds", "value": {"schedule": "@every 1m30s", "count": 3}},
}
