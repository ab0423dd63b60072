"""The documentation is true to the code.

* The generated references (``docs/hooks/reference.py``) list every route, CLI command, option
  and exit code, setting and metric that exists: each is compared with the code, walked here
  independently of the generator (the metrics with a real server's ``/metrics``).
* Every ``bash`` block of ``docs/getting-started.md`` runs, in order, against one real
  ``chronos serve``, with the example URLs pointed at a receiver on 127.0.0.1.
* The worked schedule examples of ``docs/schedules.md`` are what the schedule code computes.
* ``mkdocs build --strict`` passes (CI also runs it in ``.ci/run``), and no page repeats the
  prose of the specification it replaced.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import typer.main
from prometheus_client.parser import text_string_to_metric_families

import guide
from receiver import ThreadedReceiver
from server import Server

BIN = Path(sys.executable).parent
REF = guide.reference()


# ---------------------------------------------------------------- the generated references


def section(markdown: str, heading_id: str) -> str:
    """The heading with ``{ #heading_id }`` and its text, up to the next heading."""
    at = markdown.index(f"{{ #{heading_id} }}")
    start, body = markdown.rindex("\n", 0, at) + 1, markdown.index("\n", at)
    following = re.search(r"^#{1,6} ", markdown[body:], re.M)
    return markdown[start : body + following.start()] if following else markdown[start:]


def test_the_api_reference_has_every_route_of_the_app():
    from fastapi.routing import APIRoute

    from chronos.serve.app import create_app
    from chronos.settings import Settings

    app = create_app(None, Settings(api_tokens=[]))  # type: ignore[arg-type]  # built, never called
    markdown = REF.api_markdown()
    routes = [(m, r.path) for r in app.routes if isinstance(r, APIRoute) and r.include_in_schema for m in r.methods]
    assert len(routes) >= 16
    for method, path in routes:
        assert f"### `{method}` `{path}`" in markdown, f"{method} {path} is missing from the API reference"
    for name in app.openapi()["components"]["schemas"]:
        assert f"### {name} {{ #" in markdown, f"schema {name} is missing from the API reference"


def _commands(name: str, command, parents: tuple[str, ...] = ()):
    path = (*parents, name)
    yield " ".join(path), command
    for sub_name, sub in (getattr(command, "commands", None) or {}).items():
        if not getattr(sub, "hidden", False):  # hidden commands are not for users, nor documented
            yield from _commands(sub_name, sub, path)


def test_the_cli_reference_has_every_command_option_and_exit_code():
    from chronos.cli import client
    from chronos.cli.main import app as ctl
    from chronos.serve.main import app as server

    markdown = REF.cli_markdown()
    seen = 0
    for program, app in (("chronosctl", ctl), ("chronos", server)):
        for path, command in _commands(program, typer.main.get_command(app)):
            text = section(markdown, REF.anchor(path))
            assert f"`{path}`" in text
            for param in (p for p in command.params if not getattr(p, "hidden", False)):
                names = [*param.opts, *getattr(param, "secondary_opts", [])]
                if param.param_type_name == "argument":
                    names = [getattr(param, "metavar", None) or param.name.upper()]
                for name in names:
                    assert f"`{name}`" in text, f"{path}: {name} is missing from the CLI reference"
                if getattr(param, "envvar", None):
                    assert f"`{param.envvar}`" in text, f"{path}: {param.envvar} is missing"
            seen += 1
    assert seen >= 17  # chronosctl, 3 groups, 13 commands; chronos serve and rotate-key

    codes = {name: value for name, value in vars(client).items() if name.startswith("EXIT_") and isinstance(value, int)}
    assert set(codes.values()) | {0} == set(client.EXIT_CODES), "every EXIT_* constant needs its meaning in EXIT_CODES"
    exit_table = markdown[markdown.index("## Exit codes") : markdown.index("{ #chronosctl }")]
    for value, meaning in client.EXIT_CODES.items():
        assert f"| `{value}` | {meaning} |" in exit_table


def test_the_settings_reference_has_every_setting_with_its_default_and_meaning():
    from chronos.settings import Settings

    markdown = REF.settings_markdown()
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} needs Field(description=...): the settings reference shows it"
        env = f"CHRONOS_{name.upper()}"
        (row,) = [line for line in markdown.splitlines() if line.startswith(f"| `{env}` |")]
        assert f"`{name}`" in row and " ".join(field.description.split()).replace("|", "\\|") in row
    assert "| `CHRONOS_PORT` | `port` | integer (≥ 1, ≤ 65535) | `8080` |" in markdown
    assert "| `CHRONOS_HISTORY_MAX_AGE` | `history_max_age` |" in markdown and "| `30d` |" in markdown


def exposition_families(text: str) -> dict[str, tuple[str, set[str]]]:
    """name as exposed (counters with ``_total``) -> (type, label names) of a /metrics text."""
    out = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {k for s in family.samples for k in s.labels if k not in ("le", "quantile")}
        out[name] = (family.type, labels)
    return out


def check_metrics_reference(exposition: str) -> None:
    """Every family a real server exposes is in the metrics reference, with its type and labels, and
    the reference lists nothing else."""
    markdown = REF.metrics_markdown()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(chronos_\w+)` \| (.*)$", markdown, re.M)}
    real = exposition_families(exposition)
    assert set(real) == set(rows), f"exposed but not documented: {set(real) - set(rows)}; documented only: {set(rows) - set(real)}"
    for name, (kind, labels) in real.items():
        cells = [c.strip() for c in rows[name].split(" | ")]
        assert cells[0] == kind, name
        documented = set(re.findall(r"`(\w+)`", cells[1]))
        assert labels <= documented, f"{name}: labels {labels - documented} not documented"


# ---------------------------------------------------------------- the schedule examples


_EXAMPLE = re.compile(r"^\| `([^`]+)` \| ([\w/]+) \| (\d{4}-\d\d-\d\dT\d\d:\d\dZ) \| ([^|]+) \| ([^|]+) \|$", re.M)


def test_the_worked_schedule_examples_are_what_the_code_computes():
    from chronos.schedules import next_runs, parse_schedule

    rows = _EXAMPLE.findall(guide.page("schedules.md"))
    assert len(rows) >= 15 and any(zone == "America/New_York" for _, zone, *_ in rows)
    for expression, zone, after, utc_cell, local_cell in rows:
        utc = [datetime.fromisoformat(t.strip().replace("Z", "+00:00")) for t in utc_cell.split("<br>")]
        start = datetime.fromisoformat(after.replace("Z", "+00:00"))
        runs = next_runs(parse_schedule(expression, zone), start, len(utc))
        assert runs == utc, f"{expression} in {zone} after {after}: the code says {[r.isoformat() for r in runs]}"
        fmt = "%a %d %b %H:%M:%S %Z" if any(r.second for r in runs) else "%a %d %b %H:%M %Z"
        local = [r.astimezone(ZoneInfo(zone)).strftime(fmt) for r in runs]
        assert local == [t.strip() for t in local_cell.split("<br>")], f"{expression} in {zone}: local times"


def test_the_every_example_is_what_the_code_computes():
    from chronos.schedules import next_runs, parse_schedule

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    runs = next_runs(parse_schedule("@every 1h30m", "UTC", anchor=start), start, 3)
    text = guide.page("schedules.md")
    assert '{"schedule": "@every 1h30m", "from": "2026-01-01T00:00:00Z", "count": 3}' in text
    assert ", ".join(f"`{r.strftime('%Y-%m-%dT%H:%M:%SZ')}`" for r in runs) in text


def test_the_retry_table_is_what_the_backoff_computes():
    from chronos.models import RetryPolicy
    from chronos.retry import backoff

    body = json.loads(guide.curl_body("retries.md", "critical-backup"))
    policy = RetryPolicy.model_validate(body["retry_policy"])
    waits = [int(backoff(policy, k).total_seconds()) for k in range(1, policy.max_attempts)]
    assert waits == [10, 20, 40, 80]
    for k, wait in enumerate(waits, start=1):
        assert f"| {k} fails | {wait} s |" in guide.page("retries.md")


# ---------------------------------------------------------------- the site


def test_mkdocs_builds_strictly(tmp_path):
    result = subprocess.run(
        [BIN / "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=guide.ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for page in ("reference/api", "reference/cli", "reference/settings", "reference/metrics", "getting-started"):
        assert (tmp_path / "site" / page / "index.html").exists(), page


def test_generating_the_references_starts_nothing():
    """The hook runs in every `mkdocs build`: no Ray (not even imported), no server, no thread."""
    script = (
        "import sys, threading; sys.path.insert(0, 'tests'); import guide; ref = guide.reference()\n"
        "pages = [getattr(ref, builder)() for builder in ref.PAGES.values()]\n"
        "assert all(p.startswith('# ') for p in pages)\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')), threading.active_count())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=guide.ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "1"]


def _prose(text: str) -> set[str]:
    """Lines of running text outside code blocks, normalised: what a copy would share."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return {" ".join(line.split()) for line in text.splitlines() if len(line.split()) >= 6}


def test_no_page_repeats_the_prose_of_the_specification():
    spec = guide.ROOT.parent / "shared" / "spec" / "first-job.md"
    if not spec.exists():
        pytest.skip(f"{spec} is not beside this checkout")
    theirs = _prose(spec.read_text())
    assert not (guide.DOCS / "first-job.md").exists()
    for page in sorted(guide.DOCS.rglob("*.md")):
        shared = _prose(page.read_text()) & theirs
        assert not shared, f"{page.name} repeats the specification's words: {sorted(shared)[:3]}"


# ---------------------------------------------------------------- the getting-started page, run


def readme_commands() -> list[str]:
    """The README's two front-door commands (start the server; run the tests)."""
    blocks = re.findall(r"^```bash\n(.*?)^```", (guide.ROOT / "README.md").read_text(), re.S | re.M)
    return [b.strip() for b in blocks[:2]]


# curl fails on an HTTP error status in the test, so a request the server refuses fails the block.
CURL = 'curl() { command curl --fail-with-body --silent --show-error "$@"; }\n'
EXAMPLE_HOST = re.compile(r"https://[a-z0-9.-]+\.example\.com(?=/)")


@pytest.fixture(scope="module")
def receiver():
    with ThreadedReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = Server(tmp_path_factory.mktemp("docs") / "data")
    process.start()
    yield process
    process.stop()


@pytest.mark.e2e
def test_every_command_of_the_getting_started_page_works(server, receiver, tmp_path):
    blocks = guide.code_blocks("getting-started.md", "bash")
    front_door = readme_commands()
    assert [b.strip() for b in blocks if b.strip() in front_door] == front_door, (
        "the guide shows the README's two commands, verbatim and in order"
    )
    # Those two are the commands CI itself runs (.ci/run): the server below is the same `chronos serve`.
    runnable = [b for b in blocks if b.strip() not in front_door]
    assert len(runnable) >= 8

    receiver_base = receiver.url("/").rstrip("/")
    env = {**os.environ, "CHRONOS_SERVER": server.url, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("CHRONOS_TOKEN", None)
    outputs: dict[str, str] = {}
    for block in runnable:
        script = EXAMPLE_HOST.sub(receiver_base, block).replace("http://localhost:8080", server.url)
        assert "example.com" not in script and "localhost" not in script, script
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", CURL + script],
            cwd=tmp_path, env=env, input="y\n", capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, f"this block of the guide failed:\n{block}\n{result.stdout}{result.stderr}"
        assert "Traceback" not in result.stdout + result.stderr
        outputs[block] = result.stdout

    def output_of(command: str) -> str:
        (found,) = [out for block, out in outputs.items() if command in block]
        return found

    # What the guide says happened, happened.
    # (A slot of either job may also fire meanwhile, if the test runs across its time.)
    created = json.loads(output_of('"name": "hourly-health-check"'))
    assert created["timezone"] == "UTC" and created["timeout"] == "5m" and created["concurrency"] == "forbid"
    assert created["retry_policy"]["max_attempts"] == 3 and created["next_run"].endswith("Z")
    listed = json.loads(output_of("/executions?limit=10"))["items"]
    (manual,) = [e for e in listed if e["trigger"] == "manual"]
    health = receiver.wait_for(1, timeout=30, path="/health")
    assert manual["id"] in {h.headers["Idempotency-Key"] for h in health}
    assert all(h.method == "GET" and h.headers["X-Chronos-Job-Name"] == "hourly-health-check" for h in health)
    report = receiver.wait_for(1, timeout=30, path="/generate")[0]
    assert report.method == "POST" and report.json() == {"report_type": "daily", "format": "pdf"}
    assert report.headers["Idempotency-Key"] == report.headers["X-Chronos-Execution-ID"]
    assert "manual" in output_of("chronosctl execution list daily-report --limit 10")
    assert "At 09:00" in output_of("chronosctl schedule validate")
    assert "chronos_executions_total" in output_of("/metrics | grep chronos_")
    assert httpx.get(f"{server.url}/api/v1/jobs/daily-report").status_code == 404  # deleted by the last step
    assert httpx.get(f"{server.url}/api/v1/jobs/hourly-health-check").status_code == 200

    # The metrics reference lists exactly what this real server exposes.
    check_metrics_reference(httpx.get(f"{server.url}/metrics").text)
