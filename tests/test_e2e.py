"""End to end: `chronos serve` as a subprocess on a free port (its own local
Ray, a SQLite file), driven with the guide's curl bodies and every chronosctl
command of the guide, against receivers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import guide
from receiver import ThreadedReceiver
from server import Server

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent



@pytest.fixture(scope="module")
def receiver():
    with ThreadedReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("e2e") / "data"
    process = Server(data)
    process.start()
    yield process
    process.stop()


def test_no_idle_ray_head_processes(server):
    """With --no-dashboard the embedded Ray runs no log monitor, autoscaler
    monitor or dashboard API server (serve/main.py, _lean_local_ray)."""
    cmdlines = []
    for pid in server.session_pids():
        try:
            cmdlines.append(Path(f"/proc/{pid}/cmdline").read_bytes())
        except OSError:
            pass  # gone meanwhile
    assert any(b"raylet" in c for c in cmdlines) and any(b"ray::HostActor" in c or b"ray::Supervisor" in c for c in cmdlines)
    for script in (b"log_monitor.py", b"autoscaler/_private/monitor.py", b"dashboard/dashboard.py"):
        assert not [c for c in cmdlines if script in c], script


def guide_bodies(receiver):
    """The guide's two curl bodies (docs/getting-started.md, docs/retries.md), verbatim but for the webhook URLs."""
    health = json.loads(guide.curl_body("getting-started.md", "hourly-health-check"))
    backup = json.loads(guide.curl_body("retries.md", "critical-backup"))
    assert health["webhook"]["url"] == "https://api.example.com/health"
    assert backup["webhook"]["url"] == "https://backup.example.com/trigger"
    health["webhook"]["url"] = receiver.url("/health")
    backup["webhook"]["url"] = receiver.url("/trigger")
    return health, backup


def test_the_guides_curl_requests(server, receiver):
    api = f"{server.url}/api/v1"
    health, backup = guide_bodies(receiver)
    for body in (health, backup):
        r = httpx.post(f"{api}/jobs", content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert r.status_code == 201, r.text
    stored = httpx.get(f"{api}/jobs/critical-backup").json()
    assert stored["webhook"]["headers"]["Authorization"] == "***"
    assert "your-api-key" not in httpx.get(f"{api}/jobs").text
    assert stored["next_run"].endswith("Z") and stored["retry_policy"]["initial_interval"] == "10s"

    for name in ("hourly-health-check", "critical-backup"):
        assert httpx.post(f"{api}/jobs/{name}/trigger").status_code == 202
    (hit,) = receiver.wait_for(1, timeout=30, path="/trigger")
    assert hit.headers["Authorization"] == "Bearer your-api-key" and hit.json() == {"type": "full"}
    assert hit.headers["User-Agent"].startswith("Chronos/")

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = httpx.get(f"{api}/jobs/critical-backup/executions?limit=10").json()["items"]
        if items and items[0]["status"] == "success":
            break
        time.sleep(0.3)
    assert items[0]["status"] == "success" and items[0]["attempts"][0]["status_code"] == 200
    assert items[0]["trigger"] == "manual" and items[0]["id"] == hit.headers["Idempotency-Key"]

    text = httpx.get(f"{server.url}/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("chronos_jobs_total", ())] == 2
    assert samples[("chronos_executions_total", (("status", "success"),))] >= 1
    assert samples[("chronos_execution_duration_seconds_count", ())] >= 1
    assert "your-api-key" not in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def chronosctl(server, *args, input=None):
    env = {**os.environ, "CHRONOS_SERVER": server.url}
    return subprocess.run([BIN / "chronosctl", *args], capture_output=True, text=True, env=env, input=input, timeout=60)


GUIDE_YAML = guide.heredoc("getting-started.md", "daily-report.yaml")  # the guide's own job file


def test_the_guides_cli_commands(server, receiver, tmp_path):
    os.chdir(tmp_path)
    Path("daily-report.yaml").write_text(GUIDE_YAML.replace("https://reports.example.com/generate", receiver.url("/generate")))
    steps = [
        ("job create -f daily-report.yaml", "daily-report"),
        ("job list", "daily-report"),
        ("job get daily-report", "0 9 * * 1-5"),
        ('job update daily-report --schedule "0 10 * * 1-5"', "updated"),
        ("job get daily-report -o json", '"schedule": "0 10 * * 1-5"'),
        ("job enable daily-report", "daily-report"),
        ("job disable daily-report", "daily-report"),
        ("job trigger daily-report", "daily-report"),
        ("execution list daily-report --limit 10", "manual"),
        ("job delete daily-report", "daily-report"),
    ]
    import shlex

    for command, expect in steps:
        result = chronosctl(server, *shlex.split(command), input="y\n")
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
        assert expect in result.stdout, f"{command}: {result.stdout}"
        assert "Traceback" not in result.stdout + result.stderr
        if command.startswith("job trigger"):
            receiver.wait_for(1, timeout=30, path="/generate")
    assert receiver.requests_for("/generate")[0].json() == {"report_type": "daily", "format": "pdf"}
    missing = chronosctl(server, "job", "get", "daily-report")
    assert missing.returncode == 3 and "JOB_NOT_FOUND" in missing.stderr


@pytest.fixture
def own_server(tmp_path):
    process = Server(tmp_path / "data")
    yield process
    if process.proc is not None:
        process.kill9()


def test_jobs_survive_a_restart_and_kill_9(own_server, receiver):
    process = own_server
    process.start()
    api = f"{process.url}/api/v1"
    body = {"name": "every-second", "schedule": "*/1 * * * * *", "webhook": {"url": receiver.url("/tick")}}
    assert httpx.post(f"{api}/jobs", json=body).status_code == 201
    receiver.wait_for(2, timeout=30, path="/tick")
    process.proc.send_signal(signal.SIGKILL)  # the driver only
    assert process.proc.wait(timeout=60) == -signal.SIGKILL
    # Ray's processes share the driver's fate within moments
    assert process.wait_port_closed(60), f"port {process.port} still answers 60s after the driver was killed"
    process.start()
    seen = len(receiver.requests_for("/tick"))
    receiver.wait_for(seen + 2, timeout=60, path="/tick")
    assert httpx.get(f"{api}/jobs/every-second").json()["enabled"] is True
    slots = {}
    for r in receiver.requests_for("/tick"):
        slots.setdefault(r.headers["X-Chronos-Scheduled-Time"], set()).add(r.headers["X-Chronos-Execution-ID"])
    assert all(len(ids) == 1 for ids in slots.values()), "a slot was fired under two execution ids"
    assert process.stop() == 0
    # The terminal shows Chronos's banner; Ray's chatter went to the data dir's log.
    terminal = process.read_log()
    assert terminal.count("Chronos 0.1.0 is up") == 2 and "Stopped." in terminal
    for chatter in ("Started a local Ray instance", "logging.cc", "(raylet)", "serve -- ", "token_setup"):
        assert chatter not in terminal, chatter
    assert "Started a local Ray instance" in (process.data_dir / "logs" / "serve.log").read_text()
