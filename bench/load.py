#!/usr/bin/env python
"""Load: concurrent API clients against `chronos serve` while many pooled jobs
fire every second at a receiver on 127.0.0.1.

Checks: no API request failed (no 5xx, no transport error, no unexpected
status), and no slot of the measured window was missed: every job has a
``scheduled`` execution for every second of it (not a catch-up, not a
missed-run record), delivered to the receiver. Prints request and fire-lag
figures.

The receiver: nginx (``common.Nginx``, its access log is the record) from the
command line, so the fire lag is the scheduler's; the Python receiver of the
tests (in this process, beside the client threads, which adds its own
queueing at 1,000 requests/s) for ``tests/test_load.py``, which runs a
scaled-down version where nginx may not be installed.

Usage: ``bench/load.py --jobs 1000 --clients 16 --duration 60 [--receiver python]``.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos import Api, parse_time, print_report  # noqa: E402
from figures import percentile  # noqa: E402
from receiver import ThreadedReceiver  # noqa: E402
from server import Server  # noqa: E402

SECOND = timedelta(seconds=1)


class Client(threading.Thread):
    """One API client: a mix of the reads and writes an operator's tools make."""

    def __init__(self, base: str, names: list[str], stop: threading.Event, seed: int):
        super().__init__(daemon=True)
        self.api = f"{base}/api/v1"
        self.base, self.names, self.stop, self.rng = base, names, stop, random.Random(seed)
        self.latencies: list[float] = []
        self.failures: list[str] = []

    def run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self.stop.is_set():
                method, url, kwargs, ok = self.pick()
                began = time.perf_counter()
                try:
                    r = http.request(method, url, **kwargs)
                    if r.status_code not in ok:
                        self.failures.append(f"{method} {url}: {r.status_code} {r.text[:200]}")
                except httpx.HTTPError as e:
                    self.failures.append(f"{method} {url}: {e!r}")
                self.latencies.append(time.perf_counter() - began)

    def pick(self):
        name = self.rng.choice(self.names)
        roll = self.rng.random()
        if roll < 0.25:
            return "GET", f"{self.api}/jobs/{name}", {}, (200,)
        if roll < 0.45:
            return "GET", f"{self.api}/jobs/{name}/executions", {"params": {"limit": 20}}, (200,)
        if roll < 0.60:
            return "GET", f"{self.api}/jobs", {"params": {"limit": 100, "tag.suite": "load"}}, (200,)
        if roll < 0.70:
            return "GET", f"{self.base}/metrics", {}, (200,)
        if roll < 0.80:
            body = {"schedule": "*/5 9-17 * * 1-5", "timezone": "Europe/Paris"}
            return "POST", f"{self.api}/schedules/validate", {"json": body}, (200,)
        if roll < 0.95:  # a write that does not move the schedule
            body = {"description": f"load {time.time():.3f}"}
            return "PATCH", f"{self.api}/jobs/{name}", {"json": body}, (200,)
        return "GET", f"{self.api}/jobs/does-not-exist", {}, (404,)


class Delivered:
    """What a receiver took: (job, scheduled, arrived) per request, epoch seconds."""

    def __init__(self, kind: str):
        if kind == "nginx":
            from common import Nginx  # psutil and nginx: bench-only needs

            self.receiver = Nginx()
        else:
            self.receiver = ThreadedReceiver()
        self.kind = kind

    def url(self, name: str) -> str:
        # nginx logs the job's name from its header; the Python receiver keeps the path
        return self.receiver.url if self.kind == "nginx" else self.receiver.url(f"/{name}")

    def requests(self) -> list[tuple[str, float, float]]:
        if self.kind == "nginx":
            return [(h.job, h.scheduled, h.arrived) for h in self.receiver.new_hits()]
        return [(q.path[1:], parse_time(q.headers["X-Chronos-Scheduled-Time"]).timestamp(), q.time)
                for q in self.receiver.requests]


def run(jobs: int, clients: int, duration: float, *, workdir: Path, pool_size: int | None = None, warmup: float = 5.0,
        receiver: str = "python", log=print) -> dict:
    env = {"CHRONOS_PLACEMENT": "pooled"} | ({} if pool_size is None else {"CHRONOS_POOL_SIZE": str(pool_size)})
    server = Server(workdir / "data", env=env)
    api = Api(server.url)
    report: dict = {"violations": [], "receiver": receiver}
    delivered = Delivered(receiver)
    with delivered.receiver:
        try:
            report["start_s"] = round(server.start(), 1)
            began = time.monotonic()
            names = [f"load-{i:04d}" for i in range(jobs)]

            def create(name):
                spec = {"name": name, "schedule": "*/1 * * * * *", "webhook": {"url": delivered.url(name)},
                        "tags": {"suite": "load"}}
                Api(server.url).call("POST", "/jobs", json=spec, expect=(201,))

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(create, names))
            report["create_s"] = round(time.monotonic() - began, 1)
            log(f"server up in {report['start_s']}s, {jobs} jobs created in {report['create_s']}s")
            time.sleep(warmup)  # let every host take its jobs
            stop = threading.Event()
            workers = [Client(server.url, names, stop, seed=i) for i in range(clients)]
            window_start = datetime.now(timezone.utc)
            for w in workers:
                w.start()
            time.sleep(duration)
            stop.set()
            for w in workers:
                w.join(60)
            window_end = datetime.now(timezone.utc)
            report.update(api_figures(workers, duration))
            report["violations"] += [f for w in workers for f in w.failures][:100]
            time.sleep(10)  # the window's last slots fire (late under load) and their reports reach the store
            report.update(slot_figures(api, delivered.requests(), names, window_start, window_end - 2 * SECOND,
                                       report["violations"]))
        finally:
            server.stop()
    return report


def api_figures(workers: list[Client], duration: float) -> dict:
    latencies = [x for w in workers for x in w.latencies]
    return {
        "requests": len(latencies),
        "failed_requests": sum(len(w.failures) for w in workers),
        "requests_per_s": round(len(latencies) / duration, 1),
        "api_p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "api_p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "api_max_ms": round(max(latencies, default=0) * 1000, 1),
    }


def slot_figures(api: Api, requests: list[tuple[str, float, float]], names: list[str], start: datetime, end: datetime,
                 violations: list) -> dict:
    """Every second of the window, for every job: a scheduled execution, delivered."""
    first = start.replace(microsecond=0) + SECOND
    slots = [first + k * SECOND for k in range(int((end - first) / SECOND))]
    delivered = {(job, scheduled) for job, scheduled, _ in requests}
    lags = [arrived - scheduled for _, scheduled, arrived in requests if start.timestamp() <= scheduled <= end.timestamp()]
    statuses: Counter = Counter()
    missed = 0
    for name in names:
        items = api.pages(f"/jobs/{name}/executions")
        scheduled = {parse_time(e["scheduled_at"]) for e in items if e["trigger"] == "scheduled" and e["status"] != "skipped"}
        statuses.update(e["status"] for e in items if start <= parse_time(e["scheduled_at"]) <= end)
        for slot in slots:
            stamp = slot.strftime("%Y-%m-%dT%H:%M:%SZ")
            sent = (name, slot.timestamp()) in delivered
            if slot not in scheduled or not sent:
                missed += 1
                if missed <= 50:
                    violations.append(f"{name}: slot {stamp} missed (stored: {slot in scheduled}, delivered: {sent})")
    return {
        "slots_expected": len(slots) * len(names),
        "slots_missed": missed,
        "fires_per_s": round(len(lags) / max(1.0, (end - start).total_seconds()), 1),
        "fire_lag_p50_ms": round(percentile(lags, 50) * 1000, 1),
        "fire_lag_p99_ms": round(percentile(lags, 99) * 1000, 1),
        "fire_lag_max_ms": round(max(lags, default=0) * 1000, 1),
        "statuses": dict(statuses),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--pool-size", type=int, help="CHRONOS_POOL_SIZE [default: the server's, one per core]")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--receiver", choices=("nginx", "python"), default="nginx",
                        help="nginx (apt-get install nginx-light) or the tests' Python receiver")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="chronos-load-"))
    print(f"workdir {workdir}")
    report = run(args.jobs, args.clients, args.duration, workdir=workdir, pool_size=args.pool_size,
                 receiver=args.receiver)
    return print_report(report)


if __name__ == "__main__":
    sys.exit(main())
