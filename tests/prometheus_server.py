"""A real Prometheus server (Debian package ``prometheus``) for tests: its own
config and data dir under a temp dir, listening on a free 127.0.0.1 port,
scraping the given targets on 127.0.0.1 with a short interval.

    with PrometheusServer(tmp_path, targets=["127.0.0.1:8080"]) as prom:
        prom.wait_for_scrape()
        prom.query("up")          # the HTTP API's result list
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from server import free_port


class PrometheusServer:
    def __init__(self, workdir: Path, targets: list[str], interval: str = "1s", rule_files: list[Path] | None = None):
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip("prometheus (Debian package prometheus) is not installed")
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(p) for p in rule_files or []],
            "scrape_configs": [{"job_name": "chronos", "static_configs": [{"targets": targets}]}],
        }))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "PrometheusServer":
        log = open(self.workdir / "prometheus.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}: see {self.workdir / 'prometheus.log'}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready after {timeout}s")

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success", body
        return body["data"]["result"]

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll ``expr`` until it has a result whose value is a number (not NaN)."""
        deadline, result = time.monotonic() + timeout, []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result and all(r["value"][1] not in ("NaN", "+Inf", "-Inf") for r in result):
                return result
            time.sleep(0.5)
        raise AssertionError(f"{expr} gave no number within {timeout}s: {result}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "PrometheusServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
