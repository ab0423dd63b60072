"""The shipped alert rules and dashboard (deploy/): promtool's unit tests of every rule, every
dashboard expression parsed by promtool, and a real Prometheus server scraping a real
``chronos serve`` on 127.0.0.1 that sees the failing alert go pending or firing."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import yaml

from prometheus_server import PrometheusServer
from receiver import ThreadedReceiver
from server import Server

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RULES = DEPLOY / "prometheus" / "chronos.rules.yml"
DASHBOARD = DEPLOY / "grafana" / "chronos-dashboard.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed")


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


@needs_promtool
def test_the_rules_pass_their_promtool_unit_tests():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(RULES.with_name("chronos.rules.test.yml")))
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    config = promtool("check", "config", str(RULES.with_name("prometheus.yml")))
    assert config.returncode == 0, config.stdout + config.stderr


def test_the_issues_alerts_are_all_there_and_every_one_is_unit_tested():
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert {"ChronosDown", "ChronosNotReady", "ChronosExecutionsFailing", "ChronosMissedRuns",
            "ChronosScheduleLagHigh", "ChronosSupervisorRestarted"} <= alerts
    tests = yaml.safe_load(RULES.with_name("chronos.rules.test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case.get("exp_alerts")}
    assert tested == alerts, f"alerts never seen firing in a unit test: {alerts - tested}"


def _exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)


def _check_as_rules(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    # Grafana's interval variable is not PromQL: give it the value Grafana would.
    rules = [{"record": f"dashboard:expr_{i}", "expr": e.replace("$__rate_interval", "5m")} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return promtool("check", "rules", str(path))


@needs_promtool
def test_every_dashboard_expression_parses(tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = list(_exprs(dashboard["panels"]))
    assert len(exprs) >= 15 and all(p.get("targets") for p in dashboard["panels"])
    shown = " ".join(exprs)
    for metric in ("chronos_executions_total", "chronos_schedule_lag_seconds_bucket", "chronos_execution_duration_seconds_bucket",
                   "chronos_missed_runs_total", "chronos_executions_running", "chronos_api_request_duration_seconds_bucket"):
        assert metric in shown, metric
    result = _check_as_rules(exprs, tmp_path)
    assert result.returncode == 0 and f"SUCCESS: {len(exprs)} rules found" in result.stdout, result.stdout + result.stderr
    # The check can fail: one broken expression is caught.
    broken = _check_as_rules(exprs + ["sum by (le (rate(chronos_executions_total[5m]))"], tmp_path)
    assert broken.returncode != 0


# ---------------------------------------------------------------- a real Prometheus


def _alerts(prometheus: PrometheusServer) -> dict[str, str]:
    data = httpx.get(f"{prometheus.url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return {a["labels"]["alertname"]: a["state"] for a in data}


@pytest.mark.e2e
def test_a_real_prometheus_sees_the_failing_alert(tmp_path):
    """The shipped rules file, loaded by a real Prometheus scraping a real server every second."""
    with ThreadedReceiver() as receiver:
        receiver.route("/broken", status=500)
        server = Server(tmp_path / "data", env={"CHRONOS_CONFIG": "/nonexistent.yaml"})
        try:
            server.start()
            job = {"name": "always-failing", "schedule": "*/1 * * * * *", "retry_policy": {"max_attempts": 1},
                   "webhook": {"url": receiver.url("/broken")}}
            assert httpx.post(f"{server.url}/api/v1/jobs", json=job, timeout=60).status_code == 201
            with PrometheusServer(tmp_path / "prometheus", [f"127.0.0.1:{server.port}"], rule_files=[RULES]) as prom:
                states, deadline = {}, time.monotonic() + 120
                while time.monotonic() < deadline:
                    states = _alerts(prom)
                    if states.get("ChronosExecutionsFailing") in ("pending", "firing"):
                        break
                    time.sleep(1)
                assert states.get("ChronosExecutionsFailing") in ("pending", "firing"), states
                assert "ChronosDown" not in states and "ChronosNotReady" not in states  # only what is true
                assert prom.query('up{job="chronos"}')[0]["value"][1] == "1"
        finally:
            server.stop()
