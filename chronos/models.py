"""The job and execution models: one family shared by the REST API, the CLI
and YAML files (FastAPI full-stack template style)::

    JobBase ── JobCreate        body of POST / PUT, and of a YAML file
           └── Job              stored: + id, timestamps, anchor, runtime fields
    JobUpdate                   body of PATCH: every field optional
    Job.public()                the Job with secrets read back as "***"

Durations accept ``500ms``/``10s``/``5m``/``1h30m``/``1d`` or seconds and
serialise back to that short form.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Annotated, Any, Collection, Iterable, Literal, Mapping, NamedTuple, Optional, Sequence, Union
from urllib.parse import urlsplit


from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError

from chronos.durations import MAX_SECONDS, POSITIVE_TEXT_PATTERN, TEXT_PATTERN, format_duration, parse_duration
from chronos.errors import Conflict, InvalidSchedule, ValidationError
from chronos.times import utcnow
from chronos.schedules import MIN_LENGTH as SCHEDULE_MIN_LENGTH, compiled
from chronos.signing import MAX_BYTES, MIN_BYTES, PREFIX, as_list, secret_problem
from chronos.zones import UnknownZone, check_zone, zone_names

REDACTED = "***"


def _duration(value: Any) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as e:
        raise PydanticCustomError("duration", str(e)) from None


#: The OpenAPI format of duration texts: what the pattern cannot say (at most 366 days).
DURATION_FORMAT = "chronos-duration"


def _duration_schema(text_pattern: str, minimum: int, what: str) -> dict[str, Any]:
    """What clients may send, for the OpenAPI document: the parser's own grammar
    (chronos.durations) and bounds (pydantic would advertise ISO 8601 "PT1H")."""
    return {
        "anyOf": [
            {
                "type": "string",
                "pattern": text_pattern,
                "format": DURATION_FORMAT,
                "examples": ["500ms", "10s", "5m", "1h30m", "1d"],
            },
            {"type": "integer", "minimum": minimum, "maximum": MAX_SECONDS},
        ],
        "description": f'{what} like "500ms", "10s", "1.5m", "1h30m" or "1d", or a whole number of seconds; '
        f"at most 366d, in milliseconds (at most three decimals). Format `{DURATION_FORMAT}`: a text "
        "matching the pattern whose total is at most 366d.",
    }


def _positive(v: timedelta) -> timedelta:
    if v <= timedelta(0):
        raise PydanticCustomError("duration", 'must be more than 0s, e.g. "30s" or "5m"')
    return v


_AS_TEXT = PlainSerializer(format_duration, return_type=str, when_used="always")

Duration = Annotated[
    timedelta, BeforeValidator(_duration), _AS_TEXT, WithJsonSchema(_duration_schema(TEXT_PATTERN, 0, "A duration"), mode="validation")
]


def duration_default(value: timedelta, description: Optional[str] = None) -> Any:
    """A duration field's default, documented in the form clients send (not ISO 8601)."""
    return Field(default=value, description=description, json_schema_extra={"default": format_duration(value)})


#: A duration of more than zero (a timeout).
PositiveDuration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    AfterValidator(_positive),
    _AS_TEXT,
    WithJsonSchema(_duration_schema(POSITIVE_TEXT_PATTERN, 1, "A duration of more than 0s"), mode="validation"),
]


class Lean(BaseModel):
    """A server holds thousands of jobs at once (the supervisor, each pool host)
    and as many executions in flight. Pydantic gives every instance its own set
    of the names of the fields it was given (``model_fields_set``), ≈ 3 KiB a
    job with its webhook and retry policy, most of a job's memory. An instance
    given every field (a job read from the store or the wire) shares its class's
    one set instead. Only the full set is shared: assigning a field adds a name
    that is already there, so no instance can change another's."""

    def model_post_init(self, context: Any, /) -> None:
        full = _ALL_FIELDS.get(type(self))
        if full is None:
            full = _ALL_FIELDS[type(self)] = set(type(self).model_fields)
        if self.__pydantic_fields_set__ == full:
            object.__setattr__(self, "__pydantic_fields_set__", full)


_ALL_FIELDS: dict[type, set[str]] = {}


class Strict(Lean):
    """Unknown fields are rejected, never silently ignored."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)


class Concurrency(str, Enum):
    allow = "allow"
    forbid = "forbid"
    replace = "replace"  # type: ignore[assignment]  # the policy's name, shadowing str.replace


class MissedRuns(str, Enum):
    execute_one = "execute_one"
    execute_all = "execute_all"
    ignore = "ignore"


class Method(str, Enum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"
    HEAD = "HEAD"


class ExecutionStatus(str, Enum):
    pending = "pending"
    running = "running"
    success = "success"
    failed = "failed"
    timeout = "timeout"
    skipped = "skipped"
    cancelled = "cancelled"

    @property
    def final(self) -> bool:
        return self not in (ExecutionStatus.pending, ExecutionStatus.running)

    def may_replace(self, recorded: "ExecutionStatus") -> bool:
        """Whether a report of this status may overwrite one of ``recorded``.
        Reports repeat and arrive late (a retried flush), so a state never goes
        back: a final status is final, and running never returns to pending."""
        return not recorded.final and _STATUS_ORDER[self] >= _STATUS_ORDER[recorded]


_STATUS_ORDER = {status: 0 if status is ExecutionStatus.pending else 1 if status is ExecutionStatus.running else 2
                 for status in ExecutionStatus}


class Trigger(str, Enum):
    scheduled = "scheduled"
    manual = "manual"
    catchup = "catchup"


# ---------------------------------------------------------------- webhook


#: An HTTP header name (RFC 9110 token).
HEADER_NAME_PATTERN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
#: A header value: no line breaks, no NUL.
HEADER_VALUE_PATTERN = r"^[^\r\n\x00]*$"
_HEADER_NAME = re.compile(HEADER_NAME_PATTERN)
_HEADER_VALUE = re.compile(HEADER_VALUE_PATTERN)


class BearerAuth(Strict):
    type: Literal["bearer"]
    token: str = Field(min_length=1, repr=False)


class BasicAuth(Strict):
    type: Literal["basic"]
    username: str
    password: str = Field(repr=False)


class ApiKeyAuth(Strict):
    type: Literal["api_key"]
    api_key: str = Field(min_length=1, repr=False)
    header: str = Field(default="X-API-Key", min_length=1, pattern=HEADER_NAME_PATTERN)


Auth = Annotated[Union[BearerAuth, BasicAuth, ApiKeyAuth], Field(discriminator="type")]

_SECRET_HEADER = re.compile(r"^(authorization|proxy-authorization|cookie)$|(-key|-token|-secret)$", re.I)


MAX_SIGNING_SECRETS = 5


def is_secret_header(name: str) -> bool:
    return bool(_SECRET_HEADER.search(name))


_H16 = "[0-9A-Fa-f]{1,4}"
_IPV4 = r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV6 = "|".join(
    [
        f"(?:{_H16}:){{7}}{_H16}",
        f"(?:{_H16}:){{1,7}}:",
        *(f"(?:{_H16}:){{1,{n}}}(?::{_H16}){{1,{7 - n}}}" for n in range(1, 7)),
        f":(?:(?::{_H16}){{1,7}}|:)",
        f"(?:{_H16}:){{6}}{_IPV4}",
        f"(?:{_H16}:){{1,5}}:{_IPV4}",
        f"::(?:{_H16}:){{0,5}}{_IPV4}",
    ]
)
_PORT = "(?:[0-9]{1,4}|[0-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
#: An absolute http(s) URL without credentials: a host (RFC 3986 reg-name or IPv4, or an
#: IPv6 literal in brackets), an optional port 0-65535, then path, query and fragment without
#: spaces or control characters. Non-ASCII host names are written in their xn-- (punycode) form.
URL_PATTERN = (
    "^[Hh][Tt][Tt][Pp][Ss]?://"
    rf"(?:[A-Za-z0-9._~!$&'()*+,;=%-]+|\[(?:{_IPV6})\])(?::{_PORT}?)?"
    r"(?:[/?#][^\x00-\x20\x7f]*)?$"
)
URL_MAX_LENGTH = 2048
#: The OpenAPI format of webhook URLs: what the pattern cannot say (the server's egress policy).
URL_FORMAT = "webhook-url"
_URL = re.compile(URL_PATTERN)
_URL_SCHEMA = {
    "pattern": URL_PATTERN,
    "format": URL_FORMAT,
    "description": "An absolute http:// or https:// URL, without credentials (use `auth`). "
    f"Format `{URL_FORMAT}`: the server's egress policy also refuses some targets, whatever the policy: "
    "link-local and cloud metadata addresses and names (169.254.0.0/16, fe80::/10, metadata.google.internal, "
    "...), 0.0.0.0/8, ::, multicast and 240.0.0.0/4, as literal addresses in any spelling the resolver reads "
    "(e.g. 0, 2852039166); and, as configured, private, loopback or public targets.",
    "examples": ["https://api.example.com/health"],
}


def _check_url(url: str, info: ValidationInfo) -> str:
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        valid = False
    if valid and (parts.username is not None or parts.password is not None):
        # Credentials in a URL are neither redacted nor kept secret (and the URL is shown
        # everywhere): say where they belong, without echoing them.
        raise PydanticCustomError(
            "url_credentials",
            "a webhook URL must not carry credentials (user:password@): remove them and use "
            'webhook.auth {"type": "basic", "username": ..., "password": ...} (or a bearer token) instead',
        )
    if not valid or not _URL.fullmatch(url):  # the published pattern, which also refuses spaces and control characters
        raise PydanticCustomError(
            "url", '"{url}" is not a valid webhook URL: use an absolute http:// or https:// URL', {"url": url}
        )
    # The server's egress policy, when the caller passes one (parse_job(egress=...)):
    # stored jobs are read back without it, so a tightened policy never makes them unreadable.
    context = info.context if isinstance(info.context, dict) else {}
    policy = context.get("egress")
    problem = policy.url_problem(url) if policy is not None else None
    if problem:
        raise PydanticCustomError("egress_denied", "{message}", {"message": problem})
    return url


def _check_headers(headers: dict[str, Any]) -> dict[str, Any]:
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise PydanticCustomError("header", f'header name "{name}" is not a valid HTTP header name')
        if value is not None and not _HEADER_VALUE.fullmatch(value):
            raise PydanticCustomError("header", f'header "{name}" must not contain line breaks or NUL characters')
    return headers


_HEADER_NAMES = {"propertyNames": {"pattern": HEADER_NAME_PATTERN}}
_HEADER_VALUE_SCHEMA = {"type": "string", "pattern": HEADER_VALUE_PATTERN}

Url = Annotated[str, Field(max_length=URL_MAX_LENGTH, json_schema_extra=_URL_SCHEMA), AfterValidator(_check_url)]
Headers = Annotated[
    dict[str, str],
    Field(json_schema_extra={**_HEADER_NAMES, "additionalProperties": _HEADER_VALUE_SCHEMA}),
    AfterValidator(_check_headers),
]
Body = Annotated[str, Field(max_length=1024 * 1024)]
SuccessCodes = Annotated[
    list[Annotated[int, Field(ge=100, le=599)]], Field(description="Status codes counted as success; default any 2xx.")
]
#: Methods that send no body.
NO_BODY_METHODS = (Method.GET, Method.HEAD)


def _check_body_method(method: Optional[Method], body: Optional[str]) -> None:
    if body is not None and method in NO_BODY_METHODS:
        raise PydanticCustomError(
            "body_not_allowed", f"body is not allowed with method {method.value}: use POST, PUT or PATCH, or remove body"
        )


def _no_body_rule(schema: dict[str, Any], *, method_given: bool) -> None:
    """The body/method rule in JSON Schema: with GET or HEAD (the default, unless only
    ``method_given``), ``body`` is null or absent."""
    condition: dict[str, Any] = {"properties": {"method": {"enum": [m.value for m in NO_BODY_METHODS]}}}
    if method_given:
        condition["required"] = ["method"]
    schema["if"] = condition
    schema["then"] = {"properties": {"body": {"type": "null"}}}


def _check_signing_secrets(value: Any) -> Any:
    listed = as_list(value)
    if isinstance(value, list) and not 1 <= len(listed) <= MAX_SIGNING_SECRETS:
        raise PydanticCustomError(
            "signing_secret", f"list 1 to {MAX_SIGNING_SECRETS} secrets, newest first (or give one as a string)"
        )
    for secret in listed:
        # "***" stands for a stored secret until the supervisor puts it back (unresolved()).
        problem = secret_problem(secret) if secret != REDACTED else None
        if problem:
            raise PydanticCustomError("signing_secret", problem)
    return value


def _base64_pattern(min_bytes: int, max_bytes: int) -> str:
    """Standard base64 (padded) of ``min_bytes`` to ``max_bytes`` bytes, as a regular expression."""
    tails = {0: "", 1: "[A-Za-z0-9+/]{2}==", 2: "[A-Za-z0-9+/]{3}="}
    branches = []
    for rem, tail in tails.items():
        counts = [n // 3 for n in range(min_bytes, max_bytes + 1) if n % 3 == rem]
        if counts:
            branches.append(f"(?:[A-Za-z0-9+/]{{4}}){{{min(counts)},{max(counts)}}}{tail}")
    return "(?:" + "|".join(branches) + ")"


#: A Standard Webhooks secret: "whsec_" and the base64 of 24 to 64 bytes (chronos.signing).
SIGNING_SECRET_PATTERN = f"^{PREFIX}{_base64_pattern(MIN_BYTES, MAX_BYTES)}$"
_SECRET_SCHEMA = {"type": "string", "pattern": SIGNING_SECRET_PATTERN}


def _secrets_schema(one: dict[str, Any]) -> dict[str, Any]:
    return {
        "anyOf": [one, {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_SIGNING_SECRETS}],
        "description": "Standard Webhooks secret (whsec_...), or several newest first during a rotation: all sign. "
        'Reads back as "***"; in a PUT or PATCH, "***" keeps the stored secret (the k-th "***" of a list the k-th).',
    }


SigningSecrets = Annotated[
    Union[str, list[str]],
    AfterValidator(_check_signing_secrets),
    WithJsonSchema(_secrets_schema(_SECRET_SCHEMA), mode="validation"),
    WithJsonSchema(_secrets_schema({"const": REDACTED}), mode="serialization"),
]


class Webhook(Strict):
    model_config = ConfigDict(json_schema_extra=lambda schema: _no_body_rule(schema, method_given=False))

    url: Url
    method: Method = Method.GET
    headers: Headers = Field(default_factory=dict)
    body: Optional[Body] = None
    auth: Optional[Auth] = None
    success_codes: Optional[SuccessCodes] = None
    signing_secret: Optional[SigningSecrets] = Field(default=None, repr=False)

    @property
    def signing_secrets(self) -> list[str]:
        return as_list(self.signing_secret)

    @model_validator(mode="after")
    def _body_needs_method(self) -> "Webhook":
        _check_body_method(self.method, self.body)
        return self

    def __repr_args__(self) -> Any:
        # repr() feeds logs, tracebacks and the Ray dashboard: secret header values never show.
        for name, value in super().__repr_args__():
            if name == "headers" and isinstance(value, dict):
                value = {k: (REDACTED if is_secret_header(k) else v) for k, v in value.items()}
            yield name, value

    def is_success(self, status: int) -> bool:
        if self.success_codes:
            return status in self.success_codes
        return 200 <= status < 300


class RetryPolicy(Strict):
    max_attempts: int = Field(default=3, ge=1, le=100, description="Total attempts, the first included.")
    initial_interval: Duration = duration_default(timedelta(seconds=1))
    max_interval: Duration = duration_default(timedelta(minutes=1))
    multiplier: float = Field(default=2.0, ge=1.0, le=100.0)


# ---------------------------------------------------------------- notifications


class NotifyEvent(str, Enum):
    failed = "failed"
    timeout = "timeout"
    missed = "missed"
    recovered = "recovered"
    succeeded = "succeeded"


class NotifyFormat(str, Enum):
    json = "json"
    slack = "slack"


class NotifyMode(str, Enum):
    change = "change"  # when the job's state changes (healthy <-> failing), and missed slots
    every = "every"  # every run with a listed outcome


DEFAULT_EVENTS = [NotifyEvent.failed, NotifyEvent.timeout, NotifyEvent.missed, NotifyEvent.recovered]
MAX_NOTIFY_TARGETS = 10


def mask_url(url: str) -> str:
    """A notification URL as shown: its origin and ``/***``. The path and query of a Slack (or
    any incoming-webhook) URL are its credential."""
    parts = urlsplit(url)
    if (parts.path in ("", "/")) and not parts.query:
        return url
    return f"{parts.scheme}://{parts.netloc}/{REDACTED}"


class NotifyTarget(Strict):
    url: Url
    events: list[NotifyEvent] = Field(
        default_factory=lambda: list(DEFAULT_EVENTS), min_length=1, description="What this target is told of."
    )
    format: NotifyFormat = NotifyFormat.json
    mode: NotifyMode = Field(
        default=NotifyMode.change,
        description="change: when the job starts failing or recovers (and missed slots); every: every listed outcome.",
    )

    @field_validator("events")
    @classmethod
    def _unique(cls, events: list[NotifyEvent]) -> list[NotifyEvent]:
        return list(dict.fromkeys(events))

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (mask_url(value) if name == "url" else value)


def _check_targets(targets: list[NotifyTarget]) -> list[NotifyTarget]:
    if len(targets) > MAX_NOTIFY_TARGETS:
        raise PydanticCustomError("notify", f"at most {MAX_NOTIFY_TARGETS} notification targets: remove some")
    return targets


NotifyTargets = Annotated[list[NotifyTarget], Field(json_schema_extra={"maxItems": MAX_NOTIFY_TARGETS}), AfterValidator(_check_targets)]


# ---------------------------------------------------------------- job

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_NAME = re.compile(NAME_PATTERN)


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        hint = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63].strip("-") or "my-job"
        raise PydanticCustomError(
            "name", f'"{name}" must be kebab-case like "{hint}" (lowercase letters, digits and dashes, 1-63 chars)'
        )
    return name


#: Validation context for specs the server already validated once, at the edge where they
#: entered (API, CLI, YAML): rebuilt from the store or the wire, they skip the schedule and
#: zone checks, so a row stored under an older, laxer rule still loads (see ``Job.problem``).
TRUSTED = {"trusted": True}


def _trusted(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("trusted"))


def skipped_checks_pass(job: "JobBase") -> bool:
    """Whether a spec rebuilt under TRUSTED passes the checks that skipped (each answered
    from a cache: a zone set, the compiled schedules)."""
    try:
        check_zone(job.timezone)
        compiled(job.schedule, "UTC", _CHECK_ANCHOR)
    except (UnknownZone, InvalidSchedule):
        return False
    return True


def _check_timezone(name: str, info: ValidationInfo) -> str:
    if _trusted(info):
        return name
    try:
        return check_zone(name)
    except UnknownZone as e:
        raise PydanticCustomError("timezone", str(e)) from None


#: Any fixed instant: checking an ``@every`` schedule does not depend on where it starts,
#: and a fixed anchor lets the check share the schedules' compile cache.
_CHECK_ANCHOR = datetime(2000, 1, 1, tzinfo=timezone.utc)


def _check_schedule(expression: str, info: ValidationInfo) -> str:
    if _trusted(info):
        return expression
    try:
        compiled(expression, "UTC", _CHECK_ANCHOR)
    except InvalidSchedule as e:
        raise PydanticCustomError("invalid_schedule", str(e)) from None
    return expression.strip()


MAX_TAGS = 64
_NO_NUL = r"^[^\x00]*$"


def _check_tags(tags: dict[str, Any], *, nul_ok: bool = True) -> dict[str, Any]:
    if len(tags) > MAX_TAGS:
        raise PydanticCustomError("tags", f"at most {MAX_TAGS} tags are allowed")
    for k, v in tags.items():
        if not k or len(k) > 63 or (v is not None and len(v) > 256):
            raise PydanticCustomError("tags", f'tag "{k[:63]}": keys are 1-63 chars, values at most 256')
        if not nul_ok and ("\x00" in k or "\x00" in (v or "")):
            # On input only (stored jobs stay readable): PostgreSQL cannot turn a JSON "\u0000"
            # into text, so one such tag would fail every tag-filtered query of every job.
            raise PydanticCustomError("tags", "tag keys and values must not contain NUL characters")
    return tags


def _check_input_tags(tags: dict[str, Any]) -> dict[str, Any]:
    return _check_tags(tags, nul_ok=False)


def _tags_schema(*, deletable: bool) -> dict[str, Any]:
    value: dict[str, Any] = {"type": "string", "maxLength": 256, "pattern": _NO_NUL}
    return {
        "maxProperties": MAX_TAGS,
        "propertyNames": {"minLength": 1, "maxLength": 63, "pattern": _NO_NUL},
        "additionalProperties": {"anyOf": [value, {"type": "null"}]} if deletable else value,
    }


Name = Annotated[str, Field(min_length=1, max_length=63, json_schema_extra={"pattern": NAME_PATTERN}), AfterValidator(_check_name)]
Timezone = Annotated[
    str,
    Field(json_schema_extra={"enum": sorted(zone_names()), "description": "An IANA time zone name."}),
    AfterValidator(_check_timezone),
]
#: The OpenAPI format of schedule expressions (no JSON Schema says which texts are cron).
SCHEDULE_FORMAT = "cron"
_SCHEDULE_SCHEMA = {
    "format": SCHEDULE_FORMAT,
    "description": "Format `cron`: a 5-field cron expression (minute hour day-of-month month day-of-week, as Debian's "
    "cron reads it), or 6 fields with a leading seconds field; month and day names (`JAN`, `MON-FRI`), `L` and `5L` "
    "(last day, last Friday), `5#3` (third Friday), `?` as `*` in the day fields; a macro (`@yearly`, `@annually`, "
    "`@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`); or `@every <duration>` (e.g. `@every 1h30m`). "
    "Surrounding spaces are ignored. An expression that can never fire (`0 0 30 2 *`) is refused.",
    "examples": ["0 * * * *", "*/10 * * * * *", "0 9 * * MON-FRI", "@daily", "@every 90s"],
    "minLength": SCHEDULE_MIN_LENGTH,  # what the field allows is 1, what can be valid starts here
}
ScheduleExpr = Annotated[
    str, Field(min_length=1, max_length=256, json_schema_extra=_SCHEDULE_SCHEMA), AfterValidator(_check_schedule)
]
Tags = Annotated[dict[str, str], AfterValidator(_check_tags)]
#: Tags as clients send them (no NUL characters).
InputTags = Annotated[dict[str, str], Field(json_schema_extra=_tags_schema(deletable=False)), AfterValidator(_check_input_tags)]


class JobBase(Strict):
    name: Name
    description: Optional[str] = Field(default=None, max_length=1024)
    schedule: ScheduleExpr
    timezone: Timezone = "UTC"
    webhook: Webhook
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout: PositiveDuration = duration_default(timedelta(minutes=5))
    concurrency: Concurrency = Concurrency.forbid
    missed_runs: MissedRuns = MissedRuns.execute_one
    catchup_window: Duration = duration_default(
        timedelta(hours=1),
        description="How late a run may still start: missed slots and interrupted executions older than this are "
        "recorded, not run. 0 means on time only: a slot that cannot be claimed on time is recorded as missed.",
    )
    tags: Tags = Field(default_factory=dict)
    enabled: StrictBool = True  # 0, 1 or "yes" are not booleans in JSON: refused, as the document says
    notify: NotifyTargets = Field(default_factory=list, description="Who is told when the job fails, misses slots or recovers.")


class JobCreate(JobBase):
    tags: InputTags = Field(default_factory=dict)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "hourly-health-check",
                    "description": "Check API health every hour",
                    "schedule": "0 * * * *",
                    "webhook": {"url": "https://api.example.com/health", "method": "GET"},
                    "enabled": True,
                }
            ]
        }
    )


def _patch_schema(schema: dict[str, Any]) -> None:
    """A patch has no defaults: a field left out keeps its stored value."""
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)


class _Patch(Strict):
    model_config = ConfigDict(json_schema_extra=_patch_schema)


# Partial models for PATCH (RFC 7396): the same field types (and so the same rules) as the
# full models; every field optional; ``null`` removes a field that has a default (back to it),
# and is refused for a required one (name, schedule, webhook, webhook.url).


class AuthPatch(_Patch):
    """Any fields of the auth types; whether they make a valid auth with the stored ones
    is known after merging (a conflict otherwise)."""

    type: Optional[Literal["bearer", "basic", "api_key"]] = None
    token: Optional[str] = Field(default=None, min_length=1, repr=False)
    username: Optional[str] = None
    password: Optional[str] = Field(default=None, repr=False)
    api_key: Optional[str] = Field(default=None, min_length=1, repr=False)
    header: Optional[str] = Field(default=None, min_length=1, pattern=HEADER_NAME_PATTERN)


HeadersPatch = Annotated[
    dict[str, Optional[str]],
    Field(json_schema_extra={**_HEADER_NAMES, "additionalProperties": {"anyOf": [_HEADER_VALUE_SCHEMA, {"type": "null"}]}}),
    AfterValidator(_check_headers),
]


def _webhook_patch_schema(schema: dict[str, Any]) -> None:
    _patch_schema(schema)
    _no_body_rule(schema, method_given=True)


class WebhookPatch(_Patch):
    model_config = ConfigDict(json_schema_extra=_webhook_patch_schema)

    url: Url = None  # type: ignore[assignment]  # absent: kept; null: refused (required)
    method: Optional[Method] = None
    headers: Optional[HeadersPatch] = None
    body: Optional[Body] = None
    auth: Optional[AuthPatch] = None
    success_codes: Optional[SuccessCodes] = None
    signing_secret: Optional[SigningSecrets] = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _body_needs_method(self) -> "WebhookPatch":
        _check_body_method(self.method, self.body)
        return self


class RetryPolicyPatch(_Patch):
    max_attempts: Optional[int] = Field(default=None, ge=1, le=100)
    initial_interval: Optional[Duration] = None
    max_interval: Optional[Duration] = None
    multiplier: Optional[float] = Field(default=None, ge=1.0, le=100.0)


TagsPatch = Annotated[
    dict[str, Optional[str]], Field(json_schema_extra=_tags_schema(deletable=True)), AfterValidator(_check_input_tags)
]


class JobUpdate(_Patch):
    """PATCH body: a JSON merge patch (RFC 7396) over the stored job. Each field follows
    the rules of the job's own field; whether the merged job holds together (a body with a
    GET, an auth missing its secret, more than 64 tags) is answered 409 CONFLICT."""

    name: Name = None  # type: ignore[assignment]  # absent: kept; null: refused (required)
    description: Optional[str] = Field(default=None, max_length=1024)
    schedule: ScheduleExpr = None  # type: ignore[assignment]
    timezone: Optional[Timezone] = None
    webhook: WebhookPatch = None  # type: ignore[assignment]
    retry_policy: Optional[RetryPolicyPatch] = None
    timeout: Optional[PositiveDuration] = None
    concurrency: Optional[Concurrency] = None
    missed_runs: Optional[MissedRuns] = None
    catchup_window: Optional[Duration] = None
    tags: Optional[TagsPatch] = None
    enabled: Optional[StrictBool] = None
    notify: Optional[NotifyTargets] = Field(default=None, description="Replaces the list (RFC 7396: arrays are not merged).")


class Job(JobBase):
    """A stored job: the spec plus what the server assigns and observes."""

    model_config = ConfigDict(extra="ignore")

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    anchor: datetime = Field(default_factory=utcnow, description="Start of @every schedules: creation or last enable.")
    next_run: Optional[datetime] = None
    last_run: Optional[datetime] = None
    last_status: Optional[ExecutionStatus] = None
    problem: Optional[str] = Field(
        default=None,
        description="Set when the stored spec no longer validates (stored under an older rule): what is wrong. "
        "The job does not fire until it is fixed; it can still be read, edited and deleted.",
    )

    @classmethod
    def from_spec(cls, spec: "JobCreate", at: datetime) -> "Job":
        """A new job of a spec validated where it entered (API, CLI, YAML): built, not
        validated again."""
        return cls.model_construct(**dict(spec), created_at=at, updated_at=at, anchor=at)

    def spec_data(self) -> dict[str, Any]:
        """The spec part as JSON-ready data, not validated again (it may be a ``problem``)."""
        return self.model_dump(mode="json", include=set(JobCreate.model_fields))

    def spec(self) -> JobCreate:
        return JobCreate.model_validate(self.spec_data())

    def public(self) -> dict[str, Any]:
        """JSON-ready view with every secret read back as ``***``."""
        data = self.model_dump(mode="json")
        data.pop("anchor", None)
        if data.get("problem") is None:
            data.pop("problem", None)
        return redact_spec(data)


def redact_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A job spec (a JSON dict) with its secrets as shown: ``***``, notification URLs masked."""
    if isinstance(spec.get("webhook"), dict):
        redact_webhook(spec["webhook"])
    for target in spec.get("notify") or []:
        if isinstance(target, dict) and isinstance(target.get("url"), str):
            target["url"] = mask_url(target["url"])
    return spec


def redact_webhook(webhook: dict[str, Any]) -> dict[str, Any]:
    signing = webhook.get("signing_secret")
    if signing is not None:
        webhook["signing_secret"] = [REDACTED] * len(signing) if isinstance(signing, list) else REDACTED
    for name in webhook.get("headers") or {}:
        if is_secret_header(name):
            webhook["headers"][name] = REDACTED
    auth = webhook.get("auth")
    if auth:
        for key in ("token", "password", "api_key"):
            if key in auth:
                auth[key] = REDACTED
    return webhook


def keep_secrets(new: dict[str, Any], old: Job) -> dict[str, Any]:
    """Where ``new`` (a raw job dict) says ``***``, put back the stored secret."""
    _keep_target_urls(new, old)
    webhook = new.get("webhook")
    if not isinstance(webhook, dict):
        return new
    old_headers = {k.lower(): v for k, v in old.webhook.headers.items()}
    headers = webhook.get("headers")
    if isinstance(headers, dict):
        for name, value in headers.items():
            if value == REDACTED and name.lower() in old_headers:
                headers[name] = old_headers[name.lower()]
    auth = webhook.get("auth")
    if isinstance(auth, dict) and old.webhook.auth is not None:
        stored = old.webhook.auth.model_dump()
        for key in ("token", "password", "api_key"):
            if auth.get(key) == REDACTED and key in stored:
                auth[key] = stored[key]
    webhook["signing_secret"] = keep_listed(webhook.get("signing_secret"), old.webhook.signing_secrets)
    if webhook["signing_secret"] is None:
        del webhook["signing_secret"]
    return new


def _keep_target_urls(new: dict[str, Any], old: Job) -> None:
    """A notification URL read back masked (``https://hooks.slack.com/***``) keeps the stored
    URL it masks (the first not yet taken, in order)."""
    targets = new.get("notify")
    if not isinstance(targets, list):
        return
    stored = [t.url for t in old.notify]
    for target in targets:
        url = target.get("url") if isinstance(target, dict) else None
        if not isinstance(url, str) or not url.endswith(f"/{REDACTED}"):
            continue
        match = next((s for s in stored if mask_url(s) == url), None)
        if match is not None:
            target["url"] = match
            stored.remove(match)


def keep_listed(new: Any, stored: list[str]) -> Any:
    """``"***"`` keeps every stored secret; in a list, the k-th ``"***"`` keeps the k-th
    stored one, so ``["whsec_new", "***"]`` rotates (new first, the old still signs) and
    ``["***"]`` then drops the old."""
    if new == REDACTED and stored:
        return stored[0] if len(stored) == 1 else list(stored)
    if not isinstance(new, list):
        return new
    kept = iter(stored)
    return [next(kept, item) if item == REDACTED else item for item in new]


def check_resolved(spec: JobCreate) -> JobCreate:
    """A spec about to be stored must hold no ``***`` placeholder that had no stored secret to keep."""
    problems = []
    if REDACTED in spec.webhook.signing_secrets:
        problems.append(("webhook.signing_secret",
                         '"***" keeps a stored secret, and there is none to keep here: give a whsec_ secret'))
    for i, target in enumerate(spec.notify):
        if target.url.endswith(f"/{REDACTED}"):
            problems.append((f"notify.{i}.url", "a masked URL keeps the stored URL it masks, and none does: give the full URL"))
    if problems:
        raise ValidationError("; ".join(f"{field}: {message}" for field, message in problems),
                              [{"field": field, "message": message, "type": "unresolved_secret"} for field, message in problems])
    return spec


def changed_spec(old: Job, data: dict[str, Any]) -> JobCreate:
    """The spec a change (PATCH, enable, disable) makes of a stored job: ``data`` is the
    stored spec with the change applied. The change itself was valid; when the whole is
    not (a body left with a GET, an auth missing its secret, a "***" with no stored secret
    to keep, 65 tags, a stored spec that no longer validates), it conflicts with the job as stored: :class:`chronos.errors.Conflict`
    naming each field."""
    try:
        return check_resolved(parse_job(keep_secrets(data, old)))
    except ValidationError as e:
        raise Conflict(f"the job would not be valid after this change: {e.message}", e.errors) from None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: ``null`` deletes, objects merge, the rest replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------- executions

RESPONSE_BODY_LIMIT = 64 * 1024


class Attempt(Lean):
    number: int
    started_at: datetime
    duration: Optional[float] = Field(default=None, description="Seconds.")
    status_code: Optional[int] = None
    error: Optional[str] = None


class Execution(Lean):
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    job_id: uuid.UUID
    job_name: str
    trigger: Trigger = Trigger.scheduled
    status: ExecutionStatus = ExecutionStatus.pending
    scheduled_at: datetime
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    duration: Optional[float] = Field(default=None, description="Seconds from first request to final outcome.")
    attempts: list[Attempt] = Field(default_factory=list)
    status_code: Optional[int] = None
    response_body: Optional[str] = None
    response_truncated: bool = False
    error: Optional[str] = None
    reason: Optional[str] = Field(default=None, description="Why it was skipped or cancelled.")
    missed_slots: Optional[int] = Field(default=None, description="Slots this record stands for (missed runs).")
    node: Optional[str] = None
    actor: Optional[str] = None


@dataclass(frozen=True)
class ExecutionChange:
    """One execution row a write actually changed, with what the row held
    before: what became durable, which metrics are derived from (so a late or
    repeated report, refused by the store, is never counted)."""

    execution: Execution
    before: Optional[ExecutionStatus] = None  # None: the write inserted the row
    started_before: bool = False  # the row already had its start
    attempts_before: int = 0  # the highest attempt number the row already had

    @property
    def started(self) -> bool:
        """This write is the first to carry the execution's start."""
        return self.execution.started_at is not None and not self.started_before

    @property
    def finished(self) -> bool:
        """This write gave the execution its final status (a written row was never final before)."""
        return self.execution.status.final

    @property
    def new_attempts(self) -> list[Attempt]:
        return [a for a in self.execution.attempts if a.number > self.attempts_before]


def last_runs(changes: Iterable[ExecutionChange]) -> dict[uuid.UUID, tuple[datetime, ExecutionStatus]]:
    """Each job's newest run that these writes ended, as (its start, its status):
    a job's ``last_run``/``last_status``. A skipped slot is not a run."""
    runs: dict[uuid.UUID, tuple[datetime, ExecutionStatus]] = {}
    for change in changes:
        e = change.execution
        if change.finished and e.status is not ExecutionStatus.skipped:
            run = (e.started_at or e.scheduled_at, e.status)
            if e.job_id not in runs or runs[e.job_id][0] <= run[0]:
                runs[e.job_id] = run
    return runs


class Glance(NamedTuple):
    """One execution at a glance (a cell of the console's strips). A tuple, not a model:
    a page of 50 jobs carries 1,000 of them from the supervisor, and pickling models
    would cost more than the query."""

    id: uuid.UUID
    status: ExecutionStatus
    scheduled_at: datetime


class Overview(Lean):
    """What is happening now, at a glance (the console's first page)."""

    generated_at: datetime
    last_hour: dict[str, int] = Field(description="Executions per status scheduled in the last hour.")
    last_day: dict[str, int] = Field(description="Executions per status scheduled in the last 24 hours.")
    missed_last_day: int = Field(description="Slots recorded as missed in the last 24 hours.")
    failing: list[str] = Field(description="Names of the jobs whose last execution failed or timed out.")
    running: list[Execution] = Field(description="Executions pending or running now (summaries).")
    forecast_start: datetime = Field(description="The first minute of ``forecast``.")
    forecast: list[int] = Field(description="Fires due per minute from forecast_start, over 24 hours.")


# ---------------------------------------------------------------- validation at the boundary


def field_errors(error: PydanticValidationError | Sequence[Mapping[str, Any]], *, drop: Collection[str] = ()) -> list[dict[str, Any]]:
    """Pydantic errors (an exception or its ``errors()`` list, e.g. FastAPI's) as
    ``[{field, message, type}]``, fields dotted (``webhook.url``): the one wording of field
    errors for the API, the CLI and YAML files. ``drop``: a first location part to leave out
    (FastAPI's ``body``, ``query``...)."""
    entries = error.errors(include_url=False) if isinstance(error, PydanticValidationError) else error
    out = []
    for e in entries:
        loc = list(e.get("loc") or ())
        if loc and loc[0] in drop:
            loc = loc[1:]
        parts = [str(p) for p in loc if not (isinstance(p, str) and p in _UNION_TAGS)]
        kind = str(e.get("type", ""))
        message = _FRIENDLY.get(kind, str(e.get("msg", "is not valid")).removeprefix("Value error, "))
        out.append({"field": ".".join(parts) or "body", "message": message, "type": kind})
    return out


def validation_error(error: PydanticValidationError) -> ValidationError:
    """The domain error for a failed validation: ``InvalidSchedule`` when the schedule (or zone)
    is the only problem, else ``ValidationError``; its message names each field and its fix."""
    errors = field_errors(error)
    kind = InvalidSchedule if all(err["type"] == "invalid_schedule" for err in errors) else ValidationError
    return kind(joined(errors), errors)


def joined(errors: Iterable[Mapping[str, Any]]) -> str:
    """Field errors in one line: ``webhook.url: is required; timeout: ...``."""
    return "; ".join(f"{err['field']}: {err['message']}" for err in errors)


_FRIENDLY = {
    "extra_forbidden": "is not a known field: remove it or check its spelling",
    "missing": "is required",
}
_UNION_TAGS = {"bearer", "basic", "api_key", "function-after[_check_url(), str]"}


def parse_job(data: Any, *, egress: Any = None) -> JobCreate:
    """Validate a job spec (POST/PUT body, YAML document, merged PATCH) or raise
    :class:`chronos.errors.ValidationError` (``InvalidSchedule`` when the schedule is the
    only problem) whose message names each field and its fix. With ``egress`` (a
    :class:`chronos.egress.EgressPolicy`) a webhook URL the policy refuses is an error too."""
    try:
        return JobCreate.model_validate(data, context={"egress": egress} if egress is not None else None)
    except PydanticValidationError as e:
        raise validation_error(e) from None
