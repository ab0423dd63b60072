"""The OpenAPI document says exactly what the server accepts.

* The document validates as OpenAPI 3.1.
* Its rules come from the server's own validators (name pattern, zone enum, URL, cursor and
  duration patterns); what no JSON Schema can say has a named format documented in the
  schema: ``cron`` (schedules), ``chronos-duration`` (at most 366d) and ``webhook-url`` (the
  egress policy). The formats are registered for Schemathesis here with generators of valid
  values; generators of invalid cron expressions check that the server refuses them.
* Schemathesis with every check (``--checks all``: every phase — examples, coverage,
  fuzzing, stateful) against the real REST app over the real in-process supervisor and a
  SQLite store, with and without API tokens: 0 failures of any kind.

No webhook or notification leaves the process: the hosts and the supervisor's outbox get a
dispatcher that records and never sends.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema

from chronos.cursors import EXECUTION_CURSOR_PATTERN, JOB_CURSOR_PATTERN
from chronos.durations import MAX_SECONDS, POSITIVE_TEXT_PATTERN, TEXT_PATTERN, parse_duration
from chronos.models import DURATION_FORMAT, SCHEDULE_FORMAT, URL_FORMAT, URL_PATTERN
from chronos.serve.app import create_app
from chronos.settings import Settings
from chronos.supervisor import Supervisor
from chronos.zones import zone_names
from live_server import LiveServer
from test_api import _NoNetworkDispatcher, assert_problem, client_for, settings

TOKEN = "fuzz-token-0123456789"

# ---------------------------------------------------------------- generators


def _numbers(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


def _field(low: int, high: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    """One valid cron field over [low, high]: *, N, a-b, lists, steps, names."""
    value = _numbers(low, high).map(str)
    if names:
        value = value | st.sampled_from(names)
    span = st.tuples(_numbers(low, high), _numbers(low, high)).map(sorted).map(lambda ab: f"{ab[0]}-{ab[1]}")
    step = _numbers(1, high - low + 1)
    return st.one_of(
        st.just("*"),
        value,
        span,
        st.lists(_numbers(low, high).map(str), min_size=2, max_size=4).map(",".join),
        st.tuples(st.sampled_from(["*"]) | span, step).map(lambda p: f"{p[0]}/{p[1]}"),
    )


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


@st.composite
def _cron(draw: Any) -> str:
    month = draw(_field(1, 12, _MONTHS))
    # Days 29-31 only with every month: "0 0 30 2 *" never fires (and is refused).
    dom = draw(_field(1, 31) if month == "*" else _field(1, 28) | st.just("L"))
    dow = draw(_field(0, 7, _DAYS) | st.sampled_from(["MON-FRI", "5#3", "1#1", "5L", "?"]))
    if dom == "L" and dow == "?":
        dow = "*"
    fields = [draw(_field(0, 59)), draw(_field(0, 23)), dom, month, dow]
    if draw(st.booleans()):
        fields.insert(0, draw(_field(0, 59)))  # a leading seconds field
    return " ".join(fields)


def durations(max_seconds: int = MAX_SECONDS, min_millis: int = 0) -> st.SearchStrategy[str]:
    """Duration texts of at most ``max_seconds``: plain seconds, one unit, or parts."""

    @st.composite
    def text(draw: Any) -> str:
        millis = draw(st.integers(min_millis, max_seconds * 1000))
        form = draw(st.sampled_from(["seconds", "unit", "parts"]))
        if form == "seconds":
            return f"{millis // 1000}" + (f".{millis % 1000:03d}" if millis % 1000 else "")
        if form == "unit":
            return f"{millis}ms" if millis % 1000 else f"{millis // 1000}s"
        out = []
        for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
            count, millis = divmod(millis, size)
            if count or (unit == "ms" and not out):
                out.append(f"{count}{unit}")
        return "".join(out)

    return text()


def valid_schedules() -> st.SearchStrategy[str]:
    """Valid expressions, often of the document's boundary lengths: the shortest ("@daily")
    and 256 characters (padded with spaces, which are ignored)."""
    expression = st.one_of(
        _cron(),
        st.sampled_from(MACROS),
        durations(min_millis=1000).map(lambda d: f"@every {d}"),  # at least 1s
    )
    padded = st.tuples(st.sampled_from(["", " "]), expression, st.sampled_from(["", " "])).map("".join)
    return st.one_of(padded, st.just("@daily"), expression.map(lambda e: e.ljust(256)))


@st.composite
def invalid_schedules(draw: Any) -> str:
    """A valid cron expression with one thing broken, or a bad macro or interval."""
    fields = draw(_cron()).split(" ")
    at = draw(st.integers(0, len(fields) - 1))
    kind = draw(st.sampled_from(["range", "backwards", "step0", "junk", "count", "macro", "every", "never", "blank"]))
    if kind == "range":
        # Past the top of the field: seconds/minutes 60, hours 24, day 32, month 13, weekday 8.
        tops = [60, 60, 24, 32, 13, 8] if len(fields) == 6 else [60, 24, 32, 13, 8]
        fields[at] = str(draw(st.integers(tops[at], 99)))
    elif kind == "backwards":
        fields[at] = "5-3"
    elif kind == "step0":
        fields[at] = "*/0"
    elif kind == "junk":
        fields[at] = draw(st.sampled_from(["W", "H", "x", "1--2", ",", "-", "1,", "L-2", "?*", "/5"]))
    elif kind == "count":
        return " ".join(fields[:3] if draw(st.booleans()) else fields + ["*"] * (7 - len(fields)))
    elif kind == "macro":
        return draw(st.sampled_from(["@fortnightly", "@", "@every", "@reboot", "@DAILYY"]))
    elif kind == "every":
        return "@every " + draw(st.sampled_from(["0s", "abc", "0.5", "-5s", "1.5ms", "400d", "1 h"]))
    elif kind == "never":
        return draw(st.sampled_from(["0 0 30 2 *", "0 0 31 4 *", "0 0 31 6,9,11 *", "0 0 0 30 2 *"]))
    else:
        return draw(st.sampled_from(["", " ", "   "]))
    return " ".join(fields)


@st.composite
def webhook_urls(draw: Any) -> str:
    """URLs the default egress policy lets through (loopback, names, private and public)."""
    label = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
    name = st.lists(label, min_size=1, max_size=3).map(".".join).map(lambda n: f"{n}.example")
    host = draw(st.sampled_from(["127.0.0.1", "localhost", "[::1]", "10.1.2.3", "192.0.2.10"]) | name)
    port = draw(st.none() | st.integers(1, 65535))
    path = draw(st.from_regex(r"(/[A-Za-z0-9._~-]{0,12}){0,3}(\?[a-z]{1,5}=[0-9]{1,4})?", fullmatch=True))
    return f"{draw(st.sampled_from(['http', 'https']))}://{host}{f':{port}' if port else ''}{path}"


schemathesis.openapi.format(SCHEDULE_FORMAT, valid_schedules())
schemathesis.openapi.format(DURATION_FORMAT, durations())
schemathesis.openapi.format(URL_FORMAT, webhook_urls())


# ---------------------------------------------------------------- the document


@pytest.fixture
async def client(supervisor: Supervisor):
    async with client_for(create_app(supervisor, settings())) as c:
        yield c


async def test_the_document_validates_as_openapi_3_1(client: httpx.AsyncClient, supervisor: Supervisor):
    from openapi_spec_validator import OpenAPIV31SpecValidator

    doc = (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    OpenAPIV31SpecValidator(doc).validate()
    secured = create_app(supervisor, settings(api_tokens=[TOKEN])).openapi()
    OpenAPIV31SpecValidator(secured).validate()


async def test_the_document_carries_the_servers_rules(client: httpx.AsyncClient):
    doc = (await client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    job = schemas["JobCreate"]["properties"]
    assert job["name"]["pattern"] == r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$" and job["name"]["maxLength"] == 63
    assert set(job["timezone"]["enum"]) == zone_names() and "localtime" not in job["timezone"]["enum"]
    assert job["schedule"]["format"] == "cron" and "`@every <duration>`" in job["schedule"]["description"]
    assert {s["$ref"].rsplit("/", 1)[1] for s in [job["concurrency"], job["missed_runs"]]} == {"Concurrency", "MissedRuns"}
    assert schemas["Concurrency"]["enum"] == ["allow", "forbid", "replace"]
    assert schemas["MissedRuns"]["enum"] == ["execute_one", "execute_all", "ignore"]
    text, number = job["timeout"]["anyOf"]
    assert text["pattern"] == POSITIVE_TEXT_PATTERN and text["format"] == "chronos-duration"
    assert number == {"type": "integer", "minimum": 1, "maximum": MAX_SECONDS} and job["timeout"]["default"] == "5m"
    assert job["catchup_window"]["anyOf"][0]["pattern"] == TEXT_PATTERN
    url = schemas["Webhook-Input"]["properties"]["url"]
    assert url["pattern"] == URL_PATTERN and url["maxLength"] == 2048 and url["format"] == "webhook-url"
    assert schemas["Webhook-Input"]["then"] == {"properties": {"body": {"type": "null"}}}  # no body with GET/HEAD
    params = {p["name"]: p["schema"] for p in doc["paths"]["/api/v1/jobs"]["get"]["parameters"]}
    cursor = params["cursor"]["anyOf"][0]
    assert cursor["pattern"] == JOB_CURSOR_PATTERN and cursor["maxLength"] == 84
    params = {p["name"]: p["schema"] for p in doc["paths"]["/api/v1/jobs/{ref}/executions"]["get"]["parameters"]}
    assert params["cursor"]["anyOf"][0]["pattern"] == EXECUTION_CURSOR_PATTERN
    assert "415" in doc["paths"]["/api/v1/jobs"]["post"]["responses"]
    patch = schemas["JobUpdate"]["properties"]
    assert patch["name"]["pattern"] and "null" not in str(patch["name"]) and "default" not in patch["timeout"]


# ---------------------------------------------------------------- the generators, against the server


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expression=valid_schedules())
async def test_valid_schedules_are_accepted(client: httpx.AsyncClient, expression: str):
    r = await client.post("/api/v1/schedules/validate", json={"schedule": expression, "count": 2})
    assert r.status_code == 200, (expression, r.text)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expression=invalid_schedules())
async def test_invalid_schedules_are_refused_naming_the_field(client: httpx.AsyncClient, expression: str):
    r = await client.post("/api/v1/schedules/validate", json={"schedule": expression})
    problem = assert_problem(r, 422, "INVALID_SCHEDULE" if expression else "VALIDATION_ERROR")
    assert [e["field"] for e in problem["errors"]] == ["schedule"], (expression, problem)


@hsettings(max_examples=120)
@given(text=st.from_regex(TEXT_PATTERN, fullmatch=True) | durations())
def test_duration_texts_match_the_published_patterns_exactly(text: str):
    """Every text of the pattern parses (up to the 366-day limit the format names), and it is
    more than zero exactly when it matches the timeout's pattern."""
    try:
        value = parse_duration(text)
    except ValueError as e:
        assert "at most 366d" in str(e), text
        return
    assert value <= timedelta(days=366)
    assert (value > timedelta(0)) == bool(re.fullmatch(POSITIVE_TEXT_PATTERN, text)), text
    assert value.microseconds % 1000 == 0  # millisecond resolution


@pytest.mark.parametrize("text", ["1e3", " 10s", "10S", "1.5ms", "0.0001s", "١٠s", "10s\n", "inf", "nan", "1_000"])
def test_duration_texts_outside_the_pattern_are_refused(text: str):
    assert not re.fullmatch(TEXT_PATTERN, text)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@hsettings(max_examples=200)
@given(url=webhook_urls())
def test_webhook_urls_generated_match_the_pattern(url: str):
    assert re.fullmatch(URL_PATTERN, url), url


# ---------------------------------------------------------------- schemathesis


class Run:
    """What one Schemathesis run found: every failed check (one line per operation and
    check, with the request that failed it), errors, and how much it did."""

    def __init__(self) -> None:
        self.failures: dict[tuple[str, str], str] = {}
        self.errors: list[str] = []
        self.cases = 0
        self.phases: dict[str, str] = {}
        self.finished: events.EngineFinished | None = None
        self.left_out: set[str] = set()  # phases with failures left out (see _renamed_before)
        self.failed_in: set[str] = set()  # phases with failures reported

    def phase_passed(self, phase: str) -> bool:
        """Schemathesis marks a phase failed for failures left out here too."""
        status = self.phases.get(phase)
        return status == "success" or (status == "failure" and phase in self.left_out - self.failed_in)

    def report(self) -> str:
        return "\n".join([*self.failures.values(), *self.errors]) or "no failures"


def _renamed_before(recorder: Any, case_id: str) -> bool:
    """Whether the job the failing case names was renamed earlier in its scenario: a PUT or
    PATCH answered 200 with another name. ensure_resource_availability knows that a DELETE
    takes a created resource away, not that a rename moves it, so it reports the 404 that
    follows (seen: POST /jobs 201 "0", PUT /jobs/0 renaming it "b", then POST /jobs/0/enable
    404): right, not a fault. Stateful scenarios draw their steps at random, so it came and
    went between runs."""
    ref = (recorder.cases[case_id].value.path_parameters or {}).get("ref")
    for earlier, node in recorder.cases.items():
        if earlier == case_id:
            return False
        case, interaction = node.value, recorder.interactions.get(earlier)
        response = interaction.response if interaction else None
        if (case.method.upper() in ("PUT", "PATCH") and (case.path_parameters or {}).get("ref") == ref
                and response is not None and response.status_code == 200):
            try:
                job = json.loads(response.content)
            except ValueError:  # a recorded body may be cut short
                continue
            if ref not in (job.get("name"), job.get("id")):
                return True
    return False


def _egress_refusal(interaction) -> bool:
    """A 422 whose every error is the server's egress policy: what the ``webhook-url`` format
    documents and a pattern cannot say. The coverage phase builds URLs from the pattern alone
    (not from the format's generator registered above), e.g. ``HTTP://0``, an unspecified address."""
    response = interaction.response if interaction else None
    if response is None or response.status_code != 422:
        return False
    try:
        errors = json.loads(response.content)["errors"]
    except (ValueError, KeyError, TypeError):
        return False
    return bool(errors) and all("egress policy" in e.get("message", "") for e in errors)


def run_schemathesis(url: str, *, phases: list[str], max_examples: int, headers: dict[str, str] | None = None) -> Run:
    """The equivalent of ``schemathesis run {url}/openapi.json --checks all`` (the Python API)."""
    config = SchemathesisConfig.from_dict(
        {
            "seed": 8,
            "suppress-health-check": ["too_slow", "filter_too_much"],
            "generation": {"max-examples": max_examples, "database": "none"},
            # --checks all; of ensure_resource_availability's failures those after a rename are
            # left out (see _renamed_before).
            "checks": {"enabled": True},
            "phases": {name: {"enabled": name in phases} for name in ("examples", "coverage", "fuzzing", "stateful")},
            "headers": headers or {},
            "request-timeout": 30,
        }
    )
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)
    run = Run()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            run.cases += len(event.recorder.cases)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    key = (event.recorder.label, check.name)
                    if check.status != "success" and key not in run.failures:
                        if (check.name == "ensure_resource_availability" and _renamed_before(event.recorder, case_id)) or (
                                check.name == "positive_data_acceptance" and _egress_refusal(event.recorder.interactions.get(case_id))):
                            run.left_out.add(str(event.phase))
                            continue
                        run.failed_in.add(str(event.phase))
                        case = event.recorder.cases[case_id].value
                        interaction = event.recorder.interactions.get(case_id)
                        answer = interaction.response.content[:400] if interaction and interaction.response else b""
                        run.failures[key] = (
                            f"{event.phase} {event.recorder.label}: {check.name}: "
                            f"{str(check.failure_info.failure if check.failure_info else '')[:400]}\n"
                            f"    path={case.path_parameters} query={case.query} body={str(case.body)[:2000]}\n"
                            f"    answered: {answer!r}"
                        )
        elif isinstance(event, events.PhaseFinished):
            run.phases[str(event.phase.name)] = str(event.status)
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            run.errors.append(f"{type(event).__name__}: {getattr(event, 'info', None) or getattr(event, 'exception', '')}")
        elif isinstance(event, events.EngineFinished):
            run.finished = event
            run.errors += [f"after-run: {f}" for f in event.failures]
    return run


@pytest.mark.parametrize("auth", [False, True], ids=["open", "tokens"])
def test_schemathesis_all_checks_find_nothing(tmp_path, auth):
    # Default egress policy: no webhook is ever sent (the dispatcher records), so the
    # document's URLs (any host but link-local/metadata/...) are all accepted.
    server_settings = Settings(api_tokens=[TOKEN] if auth else [], max_body_bytes=256 * 1024, open_metrics=True)
    # The coverage phase runs on its own, marked slow (test_schemathesis_coverage_phase_finds_nothing):
    # minutes inside Schemathesis 4.32's generation for POST /schedules/validate.
    phases = ["examples", "fuzzing", "stateful"]
    if auth:
        # Every check again behind the token; ignored_auth probes without it.
        kwargs: dict[str, Any] = dict(phases=phases, max_examples=3, headers={"Authorization": f"Bearer {TOKEN}"})
    else:
        kwargs = dict(phases=phases, max_examples=8)
    # No webhook or notification is sent: the fuzzed jobs name targets anywhere (DNS names included).
    with LiveServer(tmp_path / "chronos.db", server_settings, _NoNetworkDispatcher()) as server:
        run = run_schemathesis(server.url, **kwargs)
        jobs = server.supervisor.store.all_jobs()
    assert not run.failures and not run.errors, run.report()
    assert run.finished is not None and run.finished.stop_reason == "completed"
    assert run.cases > (80 if auth else 150), run.cases
    assert all(run.phase_passed(p) for p in phases), run.phases
    assert jobs  # the stateful phase really made jobs (and sent no webhook anywhere)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_schemathesis_coverage_phase_finds_nothing(tmp_path):
    """The coverage phase (boundary and just-outside values of every rule the document
    states), left out above for its time: minutes in Schemathesis's generation for
    POST /schedules/validate. Marked slow: .ci/run runs it after the suite."""
    settings = Settings(api_tokens=[], max_body_bytes=256 * 1024, open_metrics=True)
    with LiveServer(tmp_path / "chronos.db", settings, _NoNetworkDispatcher()) as server:
        run = run_schemathesis(server.url, phases=["coverage"], max_examples=8)
    assert not run.failures and not run.errors, run.report()
    assert run.finished is not None and run.finished.stop_reason == "completed"
    assert run.phase_passed("coverage"), run.phases
