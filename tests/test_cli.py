"""chronosctl end to end: the real CLI (Typer's CliRunner, plus the installed console script
in a subprocess) against a real HTTP server on 127.0.0.1.

The server is the real REST app over the real in-process supervisor (SQLite file,
job hosts in the test process), served by uvicorn on 127.0.0.1; tests/test_e2e.py
runs the guide's commands against a real ``chronos serve`` on Ray as well.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from chronos.cli.main import app
from chronos.settings import Settings
import guide
from live_server import LiveServer
from receiver import ThreadedReceiver

VENV_BIN = Path(sys.executable).parent
CHRONOSCTL = VENV_BIN / "chronosctl"
TOKEN = "s3cret-token"

GUIDE_YAML = guide.heredoc("getting-started.md", "daily-report.yaml")  # the guide's own job file


# ====================================================================== the test server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = LiveServer(tmp_path_factory.mktemp("cli") / "chronos.db", Settings(api_tokens=[])).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    srv = LiveServer(tmp_path_factory.mktemp("cli-auth") / "chronos.db", Settings(api_tokens=[TOKEN])).start()
    yield srv
    srv.stop()


def stored_job(server, name: str):
    """The job as the server stores it (secrets included)."""
    return server.supervisor.store.get_job(name)


@pytest.fixture
def url(server) -> str:
    """The server's URL, emptied of jobs before each test."""
    with httpx.Client(base_url=server.url + "/api/v1", trust_env=False) as http:
        while True:
            items = http.get("/jobs", params={"limit": 100}).json()["items"]
            if not items:
                break
            for job in items:
                http.delete(f"/jobs/{job['name']}")
    return server.url


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ====================================================================== helpers


runner = CliRunner()


def cli(url: Optional[str], *args: str, input: Optional[str] = None, token: Optional[str] = None):
    env = {"CHRONOS_SERVER": url, "CHRONOS_TOKEN": token, "COLUMNS": "200", "NO_COLOR": "1"}
    result = runner.invoke(app, list(args), input=input, env=env)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def ok(url: Optional[str], *args: str, input: Optional[str] = None, token: Optional[str] = None):
    result = cli(url, *args, input=input, token=token)
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}"
    return result


def api(url: str, method: str, path: str, token: Optional[str] = None, **kw) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url + "/api/v1", trust_env=False, headers=headers) as http:
        return http.request(method, path, **kw)


def guide_yaml(url: str) -> str:
    return GUIDE_YAML.replace("https://reports.example.com/generate", f"{url}/generate")


def job_yaml(name: str, url: str, **extra: Any) -> dict[str, Any]:
    # Once a year: a schedule that fired mid-test would add executions the tests do not expect.
    doc = {"name": name, "schedule": "0 0 1 1 *", "webhook": {"url": f"{url}/generate"}}
    doc.update(extra)
    return doc


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ====================================================================== the guide, verbatim


def test_first_job_guide_commands_work_as_written(url, server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "daily-report.yaml").write_text(guide_yaml(url))

    r = ok(url, *"job create -f daily-report.yaml".split())
    assert 'job "daily-report" created' in r.output

    # chronosctl job list
    r = ok(url, "job", "list")
    row = next(line for line in r.stdout.splitlines() if "daily-report" in line)
    assert "0 9 * * 1-5" in row and "America/Los_Angeles" in row and "yes" in row
    if api(url, "GET", "/jobs/daily-report").json()["next_run"]:
        assert "in " in row and "UTC)" in row  # relative and absolute next run

    # chronosctl job get daily-report
    r = ok(url, "job", "get", "daily-report")
    for text in ("daily-report", "Generate and send daily report", "0 9 * * 1-5", f"POST {url}/generate",
                 "Content-Type: application/json", "3 attempts, first wait 30s", "10m"):
        assert text in r.stdout, text

    # chronosctl job update daily-report --schedule "0 10 * * 1-5"
    r = ok(url, "job", "update", "daily-report", "--schedule", "0 10 * * 1-5")
    assert 'job "daily-report" updated (schedule)' in r.output
    job = api(url, "GET", "/jobs/daily-report").json()
    assert job["schedule"] == "0 10 * * 1-5"
    assert job["timeout"] == "10m" and job["retry_policy"]["initial_interval"] == "30s"  # the rest is unchanged
    if job["next_run"]:
        next_run = datetime.fromisoformat(job["next_run"].replace("Z", "+00:00")).astimezone(ZoneInfo("America/Los_Angeles"))
        assert (next_run.hour, next_run.minute) == (10, 0) and next_run.weekday() < 5

    r = ok(url, "job", "disable", "daily-report")
    assert 'job "daily-report" disabled' in r.output
    assert api(url, "GET", "/jobs/daily-report").json()["enabled"] is False
    r = ok(url, "job", "enable", "daily-report")
    assert 'job "daily-report" enabled (' in r.output
    assert api(url, "GET", "/jobs/daily-report").json()["enabled"] is True

    # chronosctl job trigger daily-report
    r = ok(url, "job", "trigger", "daily-report")
    assert 'job "daily-report" triggered: execution ' in r.output
    execution_id = r.stdout.split("execution ", 1)[1].split()[0]
    uuid.UUID(execution_id)
    execution = api(url, "GET", f"/jobs/daily-report/executions/{execution_id}").json()
    assert execution["trigger"] == "manual"

    # chronosctl execution list daily-report --limit 10
    r = ok(url, *"execution list daily-report --limit 10".split())
    assert execution_id in r.stdout and "manual" in r.stdout
    r = ok(url, "execution", "get", "daily-report", execution_id)
    assert execution_id in r.stdout and "Trigger" in r.stdout and "manual" in r.stdout

    # chronosctl job delete daily-report  (a person answers "y")
    r = ok(url, "job", "delete", "daily-report", input="y\n")
    assert 'Delete job "daily-report"' in r.output and 'job "daily-report" deleted' in r.output
    assert api(url, "GET", "/jobs/daily-report").status_code == 404


def test_guide_job_lists_with_defaults_filled_in(url):
    ok(url, "job", "create", "-f", "-", input=guide_yaml(url))
    job = json.loads(ok(url, "job", "get", "daily-report", "-o", "json").stdout)
    assert job["concurrency"] == "forbid" and job["missed_runs"] == "execute_one"
    assert job["retry_policy"] == {"max_attempts": 3, "initial_interval": "30s", "max_interval": "1m", "multiplier": 2.0}
    for read_only in ("id", "created_at", "updated_at", "next_run", "last_run", "last_status"):
        assert read_only in job


# ====================================================================== output formats


def test_json_and_yaml_print_the_api_objects(url, tmp_path):
    for name in ("alpha", "beta"):
        api(url, "POST", "/jobs", json=job_yaml(name, url, tags={"team": name}))
    listed = json.loads(ok(url, "job", "list", "-o", "json").stdout)
    assert [j["name"] for j in listed] == ["alpha", "beta"]
    assert listed == api(url, "GET", "/jobs").json()["items"]

    # global -o works as well as the per-command one
    listed_yaml = yaml.safe_load(ok(url, "-o", "yaml", "job", "list").stdout)
    assert listed_yaml == listed

    got = yaml.safe_load(ok(url, "job", "get", "alpha", "-o", "yaml").stdout)
    assert got == api(url, "GET", "/jobs/alpha").json()

    # `job list` table: every column
    table = ok(url, "job", "list").stdout
    header = table.splitlines()[0]
    for column in ("NAME", "SCHEDULE", "TIMEZONE", "ENABLED", "NEXT RUN", "LAST STATUS"):
        assert column in header

    ex = json.loads(ok(url, "job", "trigger", "alpha", "-o", "json").stdout)
    assert ex["job_name"] == "alpha" and ex["trigger"] == "manual"
    executions = yaml.safe_load(ok(url, "-o", "yaml", "execution", "list", "alpha").stdout)
    assert [e["id"] for e in executions] == [ex["id"]]


def test_secrets_are_shown_as_the_server_gives_them(url):
    api(url, "POST", "/jobs", json=job_yaml("secretive", url, webhook={
        "url": f"{url}/generate", "method": "POST", "headers": {"Authorization": "Bearer hunter2", "X-Plain": "visible"},
        "auth": {"type": "basic", "username": "user", "password": "hunter2"}}))
    for args in (("job", "get", "secretive"), ("job", "get", "secretive", "-o", "yaml"), ("job", "list", "-o", "json")):
        out = ok(url, *args).stdout
        assert "hunter2" not in out and "***" in out and "visible" in out


def test_job_list_filters_and_follows_cursors(url, monkeypatch):
    # pages of 2 items: the CLI must follow next_cursor to list everything
    monkeypatch.setattr("chronos.cli.client.PAGE_SIZE", 2)
    for i in range(5):
        api(url, "POST", "/jobs", json=job_yaml(f"job-{i}", url, tags={"team": "a" if i % 2 else "b"}, enabled=i != 4,
                                                description="nightly" if i == 3 else None))
    listed = json.loads(ok(url, "job", "list", "-o", "json").stdout)
    assert [j["name"] for j in listed] == [f"job-{i}" for i in range(5)]
    assert len(json.loads(ok(url, "job", "list", "--limit", "3", "-o", "json").stdout)) == 3
    names = lambda *a: [j["name"] for j in json.loads(ok(url, "job", "list", "-o", "json", *a).stdout)]
    assert names("--tag", "team=a") == ["job-1", "job-3"]
    assert names("--disabled") == ["job-4"]
    assert names("--enabled", "--tag", "team=b") == ["job-0", "job-2"]
    assert names("--search", "nightly") == ["job-3"]
    assert "5 jobs" in ok(url, "job", "list").stdout
    r = cli(url, "job", "list", "--tag", "team")
    assert r.exit_code == 2 and "KEY=VALUE" in r.output


def test_empty_list(url):
    assert "No jobs found." in ok(url, "job", "list").stdout
    assert json.loads(ok(url, "job", "list", "-o", "json").stdout) == []


# ====================================================================== create and apply


def test_create_from_stdin_with_several_documents(url):
    docs = [job_yaml("one", url), job_yaml("two", url, schedule="@every 10m")]
    r = ok(url, "job", "create", "-f", "-", input=yaml.safe_dump_all(docs))
    assert 'job "one" created' in r.output and 'job "two" created' in r.output
    assert {j["name"] for j in api(url, "GET", "/jobs").json()["items"]} == {"one", "two"}

    # JSON files work too, and -o json prints what the API answered
    r = ok(url, "job", "create", "-f", "-", "-o", "json", input=json.dumps(job_yaml("three", url)))
    assert json.loads(r.stdout)["name"] == "three"


def test_create_existing_job_is_a_conflict(url):
    ok(url, "job", "create", "-f", "-", input=yaml.safe_dump(job_yaml("dup", url)))
    r = cli(url, "job", "create", "-f", "-", input=yaml.safe_dump(job_yaml("dup", url)))
    assert r.exit_code == 1
    assert "Error: DUPLICATE_JOB:" in r.stderr


def test_get_yaml_round_trips_into_apply_unchanged(url, server, tmp_path):
    job = job_yaml("with-secrets", url, webhook={
        "url": f"{url}/generate", "method": "POST", "body": "{\"a\": 1}\nline two\n",
        "headers": {"Authorization": "Bearer hunter2", "Content-Type": "application/json"},
        "auth": {"type": "bearer", "token": "tok-123"}}, tags={"team": "backend"}, timeout="90s")
    api(url, "POST", "/jobs", json=job)
    before = api(url, "GET", "/jobs/with-secrets").json()

    exported = ok(url, "job", "get", "with-secrets", "-o", "yaml").stdout
    path = write(tmp_path, "exported.yaml", exported)
    r = ok(url, "job", "apply", "-f", path)
    assert r.stdout.strip() == 'job "with-secrets" unchanged'
    assert api(url, "GET", "/jobs/with-secrets").json()["updated_at"] == before["updated_at"]

    # the same through a pipe
    r = ok(url, "job", "apply", "-f", "-", input=exported)
    assert 'job "with-secrets" unchanged' in r.stdout

    # an edit of the exported file updates the job, and the "***" secrets keep their values
    edited = yaml.safe_load(exported)
    edited["timeout"] = "2m"
    r = ok(url, "job", "apply", "-f", "-", input=yaml.safe_dump(edited))
    assert 'job "with-secrets" updated (timeout)' in r.stdout
    stored = stored_job(server, "with-secrets")
    if stored is not None:
        assert stored.webhook.headers["Authorization"] == "Bearer hunter2"
        assert stored.webhook.auth.token == "tok-123"


def test_apply_creates_updates_and_leaves_unchanged(url, tmp_path):
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    (jobs_dir / "a.yaml").write_text(yaml.safe_dump(job_yaml("app-a", url)))
    (jobs_dir / "b.yml").write_text(yaml.safe_dump_all([job_yaml("app-b", url), job_yaml("app-c", url)]))
    (jobs_dir / "notes.txt").write_text("not a job")

    r = ok(url, "job", "apply", "-f", str(jobs_dir))
    for name in ("app-a", "app-b", "app-c"):
        assert f'job "{name}" created' in r.stdout
    assert "3 created, 0 updated, 0 unchanged" in r.stdout

    r = ok(url, "job", "apply", "-f", str(jobs_dir))
    assert "0 created, 0 updated, 3 unchanged" in r.stdout

    (jobs_dir / "a.yaml").write_text(yaml.safe_dump(job_yaml("app-a", url, schedule="0 * * * *", tags={"x": "y"})))
    r = ok(url, "job", "apply", "-f", str(jobs_dir))
    assert 'job "app-a" updated (schedule, tags)' in r.stdout
    assert 'job "app-b" unchanged' in r.stdout
    assert api(url, "GET", "/jobs/app-a").json()["schedule"] == "0 * * * *"

    # equal values written differently are not a change ("300s" is the default "5m")
    (jobs_dir / "a.yaml").write_text(yaml.safe_dump(job_yaml("app-a", url, schedule="0 * * * *", tags={"x": "y"}, timeout="300s")))
    assert 'job "app-a" unchanged' in ok(url, "job", "apply", "-f", str(jobs_dir / "a.yaml")).stdout

    # --dry-run sends nothing
    (jobs_dir / "a.yaml").write_text(yaml.safe_dump(job_yaml("app-a", url, schedule="15 * * * *")))
    r = ok(url, "job", "apply", "-f", str(jobs_dir), "--dry-run")
    assert 'job "app-a" updated (schedule, tags) (dry run)' in r.stdout
    assert api(url, "GET", "/jobs/app-a").json()["schedule"] == "0 * * * *"

    # --force sends even what looks unchanged (a secret the server cannot show may have changed)
    r = ok(url, "job", "apply", "-f", str(jobs_dir / "b.yml"), "--force")
    assert 'job "app-b" updated (forced)' in r.stdout and 'job "app-c" updated (forced)' in r.stdout

    # -o json prints the resulting API objects; progress goes to stderr
    r = ok(url, "job", "apply", "-f", str(jobs_dir), "-o", "json")
    assert [j["name"] for j in json.loads(r.stdout)] == ["app-a", "app-b", "app-c"]
    assert 'job "app-a" updated' in r.stderr


def test_apply_prune(url, tmp_path):
    for name in ("keep", "old-1", "old-2"):
        api(url, "POST", "/jobs", json=job_yaml(name, url))
    path = write(tmp_path, "keep.yaml", yaml.safe_dump(job_yaml("keep", url)))

    # no --yes and nobody to answer: refuse (usage error), delete nothing
    r = cli(url, "job", "apply", "-f", path, "--prune")
    assert r.exit_code == 2 and "--yes" in r.stderr
    assert len(api(url, "GET", "/jobs").json()["items"]) >= 2

    r = cli(url, "job", "apply", "-f", path, "--prune", input="n\n")
    assert r.exit_code == 0 and "Nothing pruned." in r.stdout

    # --prune-tag narrows what may be pruned
    api(url, "PATCH", "/jobs/old-2", json={"tags": {"owner": "ops"}})
    r = ok(url, "job", "apply", "-f", path, "--prune", "--prune-tag", "owner=ops", "--yes")
    assert 'job "old-2" deleted (pruned)' in r.stdout and "old-1" not in r.stdout
    api(url, "POST", "/jobs", json=job_yaml("old-2", url))

    r = ok(url, "job", "apply", "-f", path, "--prune", "--yes")
    assert 'job "keep" unchanged' in r.stdout
    assert 'job "old-1" deleted (pruned)' in r.stdout and 'job "old-2" deleted (pruned)' in r.stdout
    assert [j["name"] for j in json.loads(ok(url, "job", "list", "-o", "json").stdout)] == ["keep"]


def test_apply_refuses_redacted_secret_for_a_new_job(url):
    doc = job_yaml("fresh", url, webhook={"url": f"{url}/generate", "auth": {"type": "bearer", "token": "***"}})
    r = cli(url, "job", "apply", "-f", "-", input=yaml.safe_dump(doc))
    assert r.exit_code == 6
    assert "webhook.auth.token" in r.stderr
    assert api(url, "GET", "/jobs/fresh").status_code == 404


# ====================================================================== update


def test_update_options_and_set_make_one_patch(url):
    api(url, "POST", "/jobs", json=job_yaml("upd", url, tags={"team": "a", "drop": "me"}))
    r = ok(url, "job", "update", "upd", "--timezone", "Europe/Berlin", "--timeout", "90s", "--method", "post",
           "--url", f"{url}/generate?x=1", "--concurrency", "allow", "--description", "changed", "--disable",
           "--set", "retry_policy.max_attempts=5", "--set", "tags.team=b", "--set", "tags.drop=null",
           "--set", "webhook.headers.X-Trace=on-call")
    assert 'job "upd" updated' in r.stdout
    job = api(url, "GET", "/jobs/upd").json()
    assert job["timezone"] == "Europe/Berlin" and job["timeout"] == "1m30s" and job["concurrency"] == "allow"
    assert job["webhook"]["method"] == "POST" and job["webhook"]["url"].endswith("/generate?x=1")
    assert job["webhook"]["headers"] == {"X-Trace": "on-call"}
    assert job["enabled"] is False and job["description"] == "changed"
    assert job["retry_policy"]["max_attempts"] == 5 and job["tags"] == {"team": "b"}

    r = ok(url, "job", "update", "upd", "--enable", "-o", "json")
    assert json.loads(r.stdout)["enabled"] is True


def test_update_is_validated_locally(url):
    api(url, "POST", "/jobs", json=job_yaml("val", url))
    before = api(url, "GET", "/jobs/val").json()
    r = cli(url, "job", "update", "val", "--timeout", "soon", "--set", "retry_policy.max_attempts=0")
    assert r.exit_code == 6
    assert "Error: VALIDATION_ERROR:" in r.stderr
    assert "  timeout: " in r.stderr and "  retry_policy.max_attempts: " in r.stderr
    assert api(url, "GET", "/jobs/val").json() == before

    r = cli(url, "job", "update", "val")
    assert r.exit_code == 2 and "nothing to update" in r.stderr
    r = cli(url, "job", "update", "val", "--set", "no-equals-sign")
    assert r.exit_code == 2


def test_notify_and_signing_options_on_create_and_update(url, server, tmp_path):
    """--notify/--notify-on/--notify-format set the targets; --signing-secret generate shows the
    secret once (and the server signs with it); --keep-old-secrets rotates."""
    from chronos.signing import secret_problem

    slack = "https://hooks.slack.com/services/T1/B1/cli-S3CRET"
    path = write(tmp_path, "told.yaml", yaml.safe_dump(job_yaml("told", url)))
    r = ok(url, "job", "create", "-f", path, "--notify", slack, "--notify-format", "slack",
           "--notify-on", "failed,recovered", "--signing-secret", "generate")
    (line,) = [x for x in r.stdout.splitlines() if "signing secret" in x]
    first = line.rsplit(" ", 1)[1]
    assert secret_problem(first) is None and "shown once" in line
    stored = stored_job(server, "told")
    assert stored.webhook.signing_secret == first
    assert [(t.url, [e.value for e in t.events], t.format.value) for t in stored.notify] == [
        (slack, ["failed", "recovered"], "slack")]
    shown = ok(url, "job", "get", "told", "-o", "json").stdout
    assert "cli-S3CRET" not in shown and first not in shown
    assert json.loads(shown)["notify"][0]["url"] == "https://hooks.slack.com/***"

    # --notify-on alone changes the current targets; the masked URL keeps the stored one.
    ok(url, "job", "update", "told", "--notify-on", "failed,timeout,missed")
    stored = stored_job(server, "told")
    assert stored.notify[0].url == slack and [e.value for e in stored.notify[0].events] == ["failed", "timeout", "missed"]

    # A rotation: the new secret first, the old one still signs; -o json keeps stdout parseable.
    r = ok(url, "job", "update", "told", "--signing-secret", "generate", "--keep-old-secrets", "-o", "json")
    assert json.loads(r.stdout)["webhook"]["signing_secret"] == ["***", "***"]
    second = r.stderr.strip().rsplit(" ", 1)[1]
    assert stored_job(server, "told").webhook.signing_secret == [second, first]

    ok(url, "job", "update", "told", "--notify", f"{url}/ops", "--signing-secret", second)
    stored = stored_job(server, "told")
    assert [t.url for t in stored.notify] == [f"{url}/ops"] and stored.webhook.signing_secret == second

    r = cli(url, "job", "update", "told", "--notify-on", "exploded")
    assert r.exit_code == 6 and "notify.0.events.0" in r.stderr
    r = cli(url, "job", "update", "told", "--signing-secret", "not-a-secret")
    assert r.exit_code == 6 and "webhook.signing_secret" in r.stderr and "not-a-secret" not in r.stderr
    r = cli(url, "job", "update", "told", "--keep-old-secrets")
    assert r.exit_code == 2 and "--signing-secret" in r.stderr
    api(url, "POST", "/jobs", json=job_yaml("quiet", url))
    r = cli(url, "job", "update", "quiet", "--notify-on", "failed")
    assert r.exit_code == 2 and "need --notify URL" in r.stderr


# ====================================================================== executions and schedules


def test_execution_get_and_cancel(url):
    with ThreadedReceiver() as hook:
        hook.route("/hang", delay=60)  # keeps the execution running until cancelled
        api(url, "POST", "/jobs", json=job_yaml("runs", url, webhook={"url": hook.url("/hang"), "method": "POST"}))
        ex = api(url, "POST", "/jobs/runs/trigger").json()
        hook.wait_for(1, timeout=10)
        deadline = time.monotonic() + 10  # the host reports "running" within a few tens of ms
        while ex["id"] not in (r := ok(url, "execution", "list", "runs", "--status", "running")).stdout:
            assert time.monotonic() < deadline, r.stdout
            time.sleep(0.1)
        assert "running" in r.stdout
        assert "No executions" in ok(url, "execution", "list", "runs", "--status", "timeout").stdout
        got = json.loads(ok(url, "execution", "get", "runs", ex["id"], "-o", "json").stdout)
        assert got["id"] == ex["id"] and got["status"] == "running"
        r = ok(url, "execution", "cancel", "runs", ex["id"])
        assert f"execution {ex['id']} of job \"runs\": cancelled" in r.stdout
    # a finished execution cannot be cancelled: a conflict, exit 1
    r = cli(url, "execution", "cancel", "runs", ex["id"])
    assert r.exit_code == 1 and "Error: CONFLICT:" in r.stderr
    r = cli(url, "execution", "get", "runs", str(uuid.uuid4()))
    assert r.exit_code == 3 and "EXECUTION_NOT_FOUND" in r.stderr
    r = cli(url, "execution", "list", "runs", "--status", "bogus")
    assert r.exit_code == 2


def test_schedule_validate(url):
    r = ok(url, "schedule", "validate", "0 9 * * 1-5", "--timezone", "America/Los_Angeles", "--count", "3")
    assert "LOCAL (America/Los_Angeles)" in r.stdout and "UTC" in r.stdout
    rows = [line for line in r.stdout.splitlines() if re.match(r"\s*\d+\s+\d{4}-\d\d-\d\d ", line)]
    assert len(rows) == 3 and all("09:00:00" in row for row in rows)
    data = json.loads(ok(url, "schedule", "validate", "@every 10m", "-n", "2", "-o", "json").stdout)
    assert data["valid"] is True and len(data["next_runs"]) == 2 and data["description"]

    r = cli(url, "schedule", "validate", "61 * * * *")
    assert r.exit_code == 6 and "Error: INVALID_SCHEDULE:" in r.stderr
    r = cli(url, "schedule", "validate", "0 9 * * *", "--timezone", "Mars/Base")
    assert r.exit_code == 6 and "timezone" in r.stderr


# ====================================================================== errors and exit codes


def test_local_validation_error_exit_6_sends_nothing(url):
    bad = job_yaml("my_job", url)
    r = cli(url, "job", "create", "-f", "-", input=yaml.safe_dump(bad))
    assert r.exit_code == 6
    assert "Error: VALIDATION_ERROR:" in r.stderr
    assert '  name: "my_job" must be kebab-case like "my-job"' in r.stderr
    assert api(url, "GET", "/jobs").json()["items"] == []

    # several problems, several documents: every field named, nothing sent
    docs = [job_yaml("good", url), {"name": "x", "schedule": "* * * * *", "webhook": {"url": "ftp://nope", "method": "GET", "body": "b"}, "colour": "red"}]
    r = cli(url, "job", "apply", "-f", "-", input=yaml.safe_dump_all(docs))
    assert r.exit_code == 6
    assert "(document 2): webhook.url:" in r.stderr and "(document 2): colour: is not a known field" in r.stderr
    assert api(url, "GET", "/jobs").json()["items"] == []

    r = cli(url, "job", "create", "-f", "-", input="name: [unclosed\n")
    assert r.exit_code == 6 and "not valid YAML" in r.stderr


def test_missing_file_is_a_usage_error(url, tmp_path):
    r = cli(url, "job", "create", "-f", str(tmp_path / "nope.yaml"))
    assert r.exit_code == 2 and "no such file" in r.stderr


def test_unknown_job_exit_3(url):
    for args in (("job", "get", "ghost"), ("job", "delete", "ghost", "--yes"), ("job", "delete", "ghost"),
                 ("job", "trigger", "ghost"), ("job", "enable", "ghost"), ("execution", "list", "ghost"),
                 ("job", "update", "ghost", "--schedule", "@daily")):
        r = cli(url, *args)
        assert r.exit_code == 3, (args, r.output)
        assert "Error: JOB_NOT_FOUND:" in r.stderr or "Error: NOT_FOUND:" in r.stderr


def test_server_unreachable_exit_4_names_the_url():
    target = f"http://127.0.0.1:{closed_port()}"
    r = cli(target, "job", "list")
    assert r.exit_code == 4
    assert f"{target}/api/v1/jobs" in r.stderr and "Error: UNREACHABLE:" in r.stderr
    r = cli(None, "--server", target, "job", "get", "x")
    assert r.exit_code == 4


def test_bad_server_url_is_a_usage_error():
    r = cli("not-a-url", "job", "list")
    assert r.exit_code == 2 and "--server" in r.stderr


def test_bad_token_exit_5(token_server):
    url = token_server.url
    r = cli(url, "job", "list")
    assert r.exit_code == 5 and "Error: UNAUTHORIZED:" in r.stderr and "--token" in r.stderr
    r = cli(url, "--token", "wrong", "job", "list")
    assert r.exit_code == 5
    assert ok(url, "--token", TOKEN, "job", "list").exit_code == 0
    assert ok(url, "job", "list", token=TOKEN).exit_code == 0  # from CHRONOS_TOKEN


def test_delete_asks_and_no_means_no(url):
    api(url, "POST", "/jobs", json=job_yaml("precious", url))
    r = cli(url, "job", "delete", "precious", input="n\n")
    assert r.exit_code == 1 and "Not deleted." in r.stdout
    r = cli(url, "job", "delete", "precious")  # no answer at all: refuse rather than hang
    assert r.exit_code == 2 and "--yes" in r.stderr
    assert api(url, "GET", "/jobs/precious").status_code == 200
    ok(url, "job", "delete", "precious", "--yes")
    assert api(url, "GET", "/jobs/precious").status_code == 404


def test_usage_errors_exit_2(url):
    assert cli(url, "job", "frobnicate").exit_code == 2
    assert cli(url, "job", "get").exit_code == 2
    assert cli(url, "-o", "xml", "job", "list").exit_code == 2


def test_help_everywhere():
    commands = [(), ("job",), ("execution",), ("schedule",)]
    commands += [("job", c) for c in ("list", "get", "create", "apply", "update", "delete", "enable", "disable", "trigger")]
    commands += [("execution", c) for c in ("list", "get", "cancel")] + [("schedule", "validate")]
    for cmd in commands:
        r = ok(None, *cmd, "--help")
        assert "Usage:" in r.stdout
        if len(cmd) == 2:
            assert "chronosctl " + " ".join(cmd) in r.stdout, cmd  # an example
    assert "--install-completion" in ok(None, "--help").stdout
    assert ok(None, "--version").stdout.strip().startswith("chronosctl ")


# ====================================================================== the installed console script


def run_script(*args: str, env: Optional[dict[str, str]] = None, input: Optional[str] = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONOS_")}
    full_env.update(env or {})
    proc = subprocess.run([str(CHRONOSCTL), *args], input=input, stdin=None if input is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, env=full_env, timeout=60)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def test_console_script_is_installed_and_exits_with_the_right_codes(url, tmp_path):
    assert CHRONOSCTL.exists(), "pip install -e . puts chronosctl in the venv"
    assert run_script("--version").returncode == 0
    env = {"CHRONOS_SERVER": url}

    path = write(tmp_path, "daily-report.yaml", guide_yaml(url))
    p = run_script("job", "create", "-f", path, env=env)
    assert p.returncode == 0, p.stderr
    p = run_script("job", "get", "daily-report", "-o", "json", env=env)
    assert p.returncode == 0 and json.loads(p.stdout)["name"] == "daily-report"

    assert run_script("job", "get", "nope", env=env).returncode == 3
    p = run_script("job", "list", env={"CHRONOS_SERVER": f"http://127.0.0.1:{closed_port()}"})
    assert p.returncode == 4 and "http://127.0.0.1:" in p.stderr
    p = run_script("job", "create", "-f", "-", input=yaml.safe_dump(job_yaml("my_job", url)), env=env)
    assert p.returncode == 6 and "name:" in p.stderr
    assert run_script("job", "nonsense", env=env).returncode == 2

    # stdin is not a terminal and says nothing: refuse instead of hanging
    p = run_script("job", "delete", "daily-report", env=env)
    assert p.returncode == 2 and "--yes" in p.stderr
    p = run_script("job", "delete", "daily-report", input="y\n", env=env)
    assert p.returncode == 0, p.stderr


def test_console_script_auth_failure(token_server):
    p = run_script("job", "list", env={"CHRONOS_SERVER": token_server.url, "CHRONOS_TOKEN": "wrong"})
    assert p.returncode == 5 and "UNAUTHORIZED" in p.stderr
    p = run_script("job", "list", env={"CHRONOS_SERVER": token_server.url, "CHRONOS_TOKEN": TOKEN})
    assert p.returncode == 0, p.stderr


# ====================================================================== small pieces


def test_unexpected_errors_print_no_traceback(url, monkeypatch):
    def boom(self, *a, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr("chronos.cli.client.ChronosClient.list_jobs", boom)
    r = cli(url, "job", "list")
    assert r.exit_code == 1
    assert "Error: INTERNAL_ERROR: RuntimeError: boom" in r.stderr


def test_times_read_relative_and_absolute():
    from chronos.cli.output import humanize_seconds, when

    now = datetime.now(timezone.utc).replace(microsecond=0)
    soon = now + timedelta(minutes=5, seconds=1)
    assert when(soon.isoformat().replace("+00:00", "Z")) == f"in 5m ({soon:%Y-%m-%d %H:%M:%S} UTC)"
    past = now - timedelta(minutes=3)
    assert when(past.isoformat()) == f"3m ago ({past:%Y-%m-%d %H:%M:%S} UTC)"
    la = when("2026-07-01T16:00:00Z", "America/Los_Angeles")
    assert la.endswith("(2026-07-01 16:00:00 UTC, 09:00 PDT)")
    assert when(None) == "-"
    assert [humanize_seconds(s) for s in (3, 300, 5400, 90000)] == ["3s", "5m", "1h30m", "1d1h"]
