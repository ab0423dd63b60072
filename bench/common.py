"""Shared parts of the benchmarks: an nginx receiver that logs every request,
a real ``chronos serve`` subprocess (``tests/server.py``'s, with a workload's
settings), a process-tree CPU/RSS meter, the firing statistics and the table
printer.

Everything listens on 127.0.0.1 only. Every process started here is stopped by
its own pid (or its own session) in ``__exit__``/``stop``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Optional

import httpx
import psutil

from figures import percentile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from server import Server, free_port  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


# ---------------------------------------------------------------- receiver


NGINX_CONF = """\
{user}
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    client_body_temp_path {prefix}/tmp;
    proxy_temp_path {prefix}/tmp;
    fastcgi_temp_path {prefix}/tmp;
    uwsgi_temp_path {prefix}/tmp;
    scgi_temp_path {prefix}/tmp;
    log_format chronos '$msec|$http_x_chronos_job_name|$http_x_chronos_scheduled_time|$http_x_chronos_execution_id';
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        access_log {prefix}/access.log chronos;
        location / {{ return 200 "ok"; }}
    }}
}}
"""


@dataclass
class Hit:
    arrived: float  # epoch seconds (nginx $msec: millisecond resolution)
    job: str
    scheduled: float  # epoch seconds
    execution: str


class Nginx:
    """nginx in the foreground with a private prefix; the access log is the
    record of every request (arrival time, job, scheduled time, execution)."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="chronos-bench-nginx-"))
        (self.dir / "tmp").mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hit"
        self.log = self.dir / "access.log"
        self.proc: Optional[subprocess.Popen] = None
        self._offset = 0
        self._times: dict[str, float] = {}

    def __enter__(self) -> "Nginx":
        user = "user root;" if os.geteuid() == 0 else ""
        conf = self.dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, prefix=self.dir, port=self.port))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen([nginx, "-p", str(self.dir), "-c", str(conf)], stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: flushes the log
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _when(self, text: str) -> float:
        t = self._times.get(text)
        if t is None:
            t = self._times[text] = datetime.fromisoformat(text).timestamp()
        return t

    def new_hits(self) -> list[Hit]:
        """Requests logged since the last call (whole lines only)."""
        if not self.log.exists():
            return []
        with open(self.log, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        hits = []
        for line in data[:end].decode().splitlines():
            msec, job, scheduled, execution = line.split("|")
            if job == "-" or scheduled == "-":
                continue  # not a scheduler's request (e.g. the readiness probe)
            hits.append(Hit(float(msec), job, self._when(scheduled), execution))
        return hits


# ---------------------------------------------------------------- chronos serve


class ChronosServer(Server):
    """``chronos serve`` (see ``tests/server.py``) on a free port with a temp
    dir (data in ``dir/data``, the log beside it), the placement, pool size and
    job slots of a workload, and its process tree for :class:`TreeMeter`."""

    def __init__(self, placement: str, *, pool_size: int | None = None, job_slots: int = 64):
        self.dir = Path(tempfile.mkdtemp(prefix="chronos-bench-"))
        env = {"CHRONOS_PLACEMENT": placement, "CHRONOS_JOB_SLOTS_PER_NODE": str(job_slots)}
        if pool_size is not None:
            env["CHRONOS_POOL_SIZE"] = str(pool_size)
        super().__init__(self.dir / "data", env=env)
        self.api = f"{self.url}/api/v1"

    def start(self, timeout: float = 300.0) -> float:
        return super().start(timeout)

    def tree(self) -> list[psutil.Process]:
        return process_tree(self.proc.pid)

    def cleanup(self) -> None:
        self.stop()
        if self.proc is not None:  # keep the last server log for a post-mortem
            shutil.copy(self.log.name, Path(tempfile.gettempdir()) / "chronos-bench-last-server.log")
        shutil.rmtree(self.dir, ignore_errors=True)


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants, plus whatever still runs in its
    session (Ray daemons re-parented after their parent exits)."""
    try:
        root = psutil.Process(pid)
        procs = {p.pid: p for p in [root, *root.children(recursive=True)]}
    except psutil.NoSuchProcess:
        procs = {}
    try:
        sid = os.getsid(pid)
    except OSError:
        sid = None
    if sid == pid:  # a session leader (chronos serve): its session is its tree
        for p in psutil.process_iter():
            try:
                if p.pid not in procs and os.getsid(p.pid) == sid:
                    procs[p.pid] = p
            except (OSError, psutil.Error):
                pass
    return list(procs.values())


def memory_by_process(procs: list[psutil.Process]) -> list[dict]:
    """RSS and PSS of each process, largest first, by title (Ray titles its
    workers ``ray::Class``; its daemons by script or binary)."""
    rows = []
    for p in procs:
        try:
            mem, args = p.memory_full_info(), p.cmdline()
        except psutil.Error:
            continue
        if args and args[0].startswith("ray::"):
            title = args[0].split(".", 1)[0]  # without the method it runs now
        else:  # a script by its file (python3 .../chronos serve: chronos), else the binary
            scripts = [a for a in args[1:] if not a.startswith("-")] if "python" in Path(args[0]).name else args
            title = Path(scripts[0] if scripts else p.name()).name
        rows.append({"process": title,
                     "RSS MiB": mem.rss / 2**20, "PSS MiB": mem.pss / 2**20})
    return sorted(rows, key=lambda r: -r["RSS MiB"])


# ---------------------------------------------------------------- meter


class TreeMeter:
    """Samples a process tree: CPU seconds used between ``start`` and ``stop``
    (processes that exited meanwhile are lost), and peak summed RSS."""

    def __init__(self, tree, interval: float = 0.5):
        self._tree = tree  # a callable returning the processes to measure
        self._interval = interval
        self._cpu: dict[int, float] = {}
        self._cpu0: dict[int, float] = {}
        self.peak_rss = 0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        rss = 0
        procs = self._tree()
        for p in procs:
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    self._cpu[p.pid] = t.user + t.system
                    rss += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak_rss = max(self.peak_rss, rss)
        self.processes = max(self.processes, len(procs))

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def start(self) -> "TreeMeter":
        self._sample()
        self._cpu0 = dict(self._cpu)
        self._thread.start()
        return self

    def stop(self) -> "TreeMeter":
        self._stop.set()
        self._thread.join()
        self._sample()
        self.pss = 0  # RSS counts shared pages once per process; PSS splits them
        for p in self._tree():
            try:
                self.pss += p.memory_full_info().pss
            except (psutil.Error, AttributeError):
                pass
        return self

    @property
    def cpu_seconds(self) -> float:
        return sum(v - self._cpu0.get(pid, 0.0) for pid, v in self._cpu.items())


# ---------------------------------------------------------------- statistics


@dataclass
class FiringStats:
    expected: int
    received: int
    duplicates: int
    missing: int
    lateness_ms: list[float] = field(repr=False)
    seconds: float = 0.0
    slot_p99_ms: list[float] = field(default_factory=list)  # each slot's p99, in order: a transient shows

    @property
    def fires_per_s(self) -> float:
        return self.received / self.seconds if self.seconds else float("nan")

    def row(self) -> dict:
        lat = self.lateness_ms
        return {
            "expected": self.expected,
            "received": self.received,
            "duplicates": self.duplicates,
            "missing": self.missing,
            "p50 ms": percentile(lat, 50),
            "p95 ms": percentile(lat, 95),
            "p99 ms": percentile(lat, 99),
            "max ms": max(lat) if lat else float("nan"),
            "fires/s": self.fires_per_s,
        }


def firing_stats(hits: Iterable[Hit], jobs: list[str], slots: list[float], window: tuple[float, float]) -> FiringStats:
    """Compare the requests whose scheduled time falls in ``window`` with the
    slots every job should have fired (``slots``: the schedule's instants in
    the window, the same for every job)."""
    start, end = window
    seen: dict[tuple[str, float], int] = {}
    lateness = []
    by_slot: dict[float, list[float]] = {}
    for h in hits:
        if start <= h.scheduled < end:
            key = (h.job, h.scheduled)
            seen[key] = seen.get(key, 0) + 1
            if seen[key] == 1:
                lateness.append((h.arrived - h.scheduled) * 1000)
                by_slot.setdefault(h.scheduled, []).append(lateness[-1])
    expected = {(job, s) for job in jobs for s in slots}
    received = sum(seen.values())
    return FiringStats(
        expected=len(expected),
        received=received,
        duplicates=sum(n - 1 for n in seen.values()),
        missing=len(expected - seen.keys()),
        lateness_ms=lateness,
        seconds=end - start,
        slot_p99_ms=[percentile(by_slot[slot], 99) for slot in sorted(by_slot)],
    )


# ---------------------------------------------------------------- output


def fmt(value) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:,.1f}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(rows: list[dict], title: str = "") -> str:
    """A Markdown table (pastes straight into bench/README.md)."""
    if not rows:
        return ""
    cols = list(rows[0])
    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = [f"\n{title}\n"] if title else []
    lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        lines.append("| " + " | ".join(v.rjust(w) for v, w in zip(row, widths)) + " |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def save_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, default=str))
    return path


def machine() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, load {load[0]:.2f}/{load[1]:.2f}"


# ---------------------------------------------------------------- API client


async def create_jobs(api: str, bodies: list[dict], concurrency: int = 16) -> list[float]:
    """POST every body (``concurrency`` at a time); returns each latency in ms.
    A failed create raises: a benchmark on missing jobs would be meaningless."""
    queue = list(reversed(bodies))
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def worker():
            while queue:
                body = queue.pop()
                for attempt in range(5):
                    t = time.perf_counter()
                    try:
                        r = await client.post(f"{api}/jobs", json=body)
                    except httpx.TimeoutException:  # the server may still create it: a retry sees 409
                        print(f"create {body['name']}: timed out, retrying", flush=True)
                        continue
                    if r.status_code == 201:
                        latencies.append((time.perf_counter() - t) * 1000)
                        break
                    if r.status_code == 409:
                        # Only ever posted once (or a timed-out try went through): the
                        # job exists. On a first try this means the server ran one POST
                        # twice; say so, it is a finding.
                        if not attempt:
                            print(f"create {body['name']}: 409 on the first POST", flush=True)
                        break
                    if r.status_code < 500:
                        raise RuntimeError(f"create {body['name']}: {r.status_code} {r.text}")
                    await asyncio.sleep(0.5)
                else:
                    raise RuntimeError(f"create {body['name']} failed 5 times")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def job_body(name: str, schedule: str, url: str) -> dict:
    return {"name": name, "schedule": schedule, "webhook": {"url": url, "method": "GET"}, "timeout": "30s"}


def seed_store(data_dir: Path, bodies: list[dict]) -> float:
    """Store jobs straight into the server's SQLite file before it starts (as
    the supervisor's create_job would: parsed, anchored now); returns seconds.
    For large N this is how a server *with N jobs stored* is made quickly."""
    from chronos.models import Job, parse_job, utcnow
    from chronos.store import Store

    started = time.monotonic()
    data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{(data_dir / 'chronos.db').resolve()}")
    store.create_schema()
    now = utcnow()
    for body in bodies:
        spec = parse_job(body)
        store.insert_job(Job(**spec.model_dump(), created_at=now, updated_at=now, anchor=now))
    store.close()
    return time.monotonic() - started
