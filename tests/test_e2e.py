"""End to end: `chronos serve` as a subprocess on a free port (its own local
Ray, a SQLite file), driven with the guide's curl bodies and every chronosctl
command of the guide, against receivers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from receiver import ThreadedReceiver

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, data_dir: Path, port: int, env: dict | None = None):
        self.data_dir, self.port = data_dir, port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, **(env or {})}
        self.proc = None
        self.output = ""

    def start(self, timeout: float = 180.0) -> "ServerProcess":
        self.log = open(self.data_dir.parent / f"server-{self.port}.log", "a+")
        self.proc = subprocess.Popen(
            [BIN / "chronos", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir), "--no-dashboard"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"chronos serve exited:\n{self.read_log()}"
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"chronos serve did not become ready:\n{self.read_log()}")

    def wait_gone(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.5)
        raise AssertionError(f"port {self.port} still answers {timeout}s after the server was killed")

    def read_log(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self, sig=signal.SIGINT) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def receiver():
    with ThreadedReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("e2e") / "data"
    process = ServerProcess(data, free_port()).start()
    yield process
    process.stop()


def guide_bodies(receiver):
    """The guide's two curl bodies, verbatim but for the webhook URLs."""
    health = {
        "name": "hourly-health-check",
        "description": "Check API health every hour",
        "schedule": "0 * * * *",
        "webhook": {"url": receiver.url("/health"), "method": "GET"},
        "enabled": True,
    }
    backup = {
        "name": "critical-backup",
        "schedule": "0 2 * * *",
        "timezone": "America/New_York",
        "webhook": {
            "url": receiver.url("/trigger"),
            "method": "POST",
            "headers": {"Authorization": "Bearer your-api-key"},
            "body": '{"type": "full"}',
        },
        "retry_policy": {"max_attempts": 5, "initial_interval": "10s", "max_interval": "5m", "multiplier": 2.0},
        "timeout": "30m",
        "enabled": True,
    }
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


GUIDE_YAML = """\
name: daily-report
description: Generate and send daily report
schedule: "0 9 * * 1-5"
timezone: America/Los_Angeles
webhook:
  url: {url}
  method: POST
  headers:
    Content-Type: application/json
  body: |
    {{"report_type": "daily", "format": "pdf"}}
retry_policy:
  max_attempts: 3
  initial_interval: 30s
timeout: 10m
enabled: true
"""


def test_the_guides_cli_commands(server, receiver, tmp_path):
    os.chdir(tmp_path)
    Path("daily-report.yaml").write_text(GUIDE_YAML.format(url=receiver.url("/generate")))
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
    process = ServerProcess(tmp_path / "data", free_port())
    yield process
    if process.proc is not None and process.proc.poll() is None:
        os.killpg(process.proc.pid, signal.SIGKILL)


def test_jobs_survive_a_restart_and_kill_9(own_server, receiver):
    process = own_server.start()
    api = f"{process.url}/api/v1"
    body = {"name": "every-second", "schedule": "*/1 * * * * *", "webhook": {"url": receiver.url("/tick")}}
    assert httpx.post(f"{api}/jobs", json=body).status_code == 201
    receiver.wait_for(2, timeout=30, path="/tick")
    assert process.stop(signal.SIGKILL) == -signal.SIGKILL
    process.wait_gone()  # Ray's processes share the driver's fate within moments
    process.start()
    seen = len(receiver.requests_for("/tick"))
    receiver.wait_for(seen + 2, timeout=60, path="/tick")
    assert httpx.get(f"{api}/jobs/every-second").json()["enabled"] is True
    slots = {}
    for r in receiver.requests_for("/tick"):
        slots.setdefault(r.headers["X-Chronos-Scheduled-Time"], set()).add(r.headers["X-Chronos-Execution-ID"])
    assert all(len(ids) == 1 for ids in slots.values()), "a slot was fired under two execution ids"
    assert process.stop() == 0
