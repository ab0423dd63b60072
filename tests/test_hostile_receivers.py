"""Hostile receivers, through the real path: the supervisor, a job host with
its runners and the aiohttp dispatcher, a SQLite file (in-process hosts, one
pooled host for every job so they share a process and a connection pool).

Each hostile receiver ends in a correct, recorded final outcome; meanwhile a
job on the same host keeps firing every second on time, and the process's
memory stays flat (a 100 MB answer is not read past 64 KiB).
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
from datetime import datetime, timedelta

import pytest

from chronos.models import RESPONSE_BODY_LIMIT, ExecutionStatus, parse_job
from chronos.supervisor import Supervisor

from receiver import ThreadedReceiver

ONE_SHOT = "0 0 1 1 *"  # hostile jobs run when triggered, not on their own


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture(scope="module")
def receiver():
    with ThreadedReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def tls_receiver(tmp_path_factory):
    """An HTTPS receiver with a self-signed certificate (not trusted by the dispatcher)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", d / "key.pem", "-out", d / "cert.pem"],
        check=True, capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(d / "cert.pem", d / "key.pem")
    with ThreadedReceiver(ssl=context) as r:
        yield r


def job(name: str, url: str, *, attempts: int = 1, timeout: str = "10s", **fields):
    spec = {
        "name": name,
        "schedule": ONE_SHOT,
        "webhook": {"url": url, "method": "POST", "body": "{}"},
        "retry_policy": {"max_attempts": attempts, "initial_interval": "1s", "multiplier": 2, "max_interval": "1m"},
        "timeout": timeout,
        **fields,
    }
    return parse_job(spec)


async def finished(sup: Supervisor, name: str, execution_id, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        e = await sup.get_execution(name, execution_id)
        if e.status.final:
            return e
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name}: execution {execution_id} did not finish within {timeout}s ({e.status.value})")


async def test_hostile_receivers_end_in_recorded_outcomes_without_blocking_the_host(supervisor, receiver, tls_receiver):
    sup, r = supervisor, receiver
    r.route("/slow", delay=3)
    r.route("/hang", delay=float("inf"))
    r.route("/reset", reset=True)
    r.route("/storm", status=503)
    r.route("/busy", sequence=[{"status": 429, "headers": {"Retry-After": "2"}}, 200])
    big = r.route("/big", body_size=100 * 1024 * 1024)
    r.route("/garbage", raw=b"NOT HTTP AT ALL\r\n\r\n")
    r.route("/loop", location="/loop")
    r.route("/ping-pong", location="/pong")
    r.route("/pong", location="/ping-pong")

    # The steady neighbour: same host, every second, for the whole test.
    await sup.create_job(parse_job({"name": "steady", "schedule": "*/1 * * * * *", "webhook": {"url": r.url("/ok")}}))
    await asyncio.to_thread(r.wait_for, 2, 15, path="/ok")
    rss_before = rss_mib()
    began = datetime.now().astimezone()

    cases = {
        "slow": job("slow", r.url("/slow"), attempts=2, timeout="1s"),
        "hang": job("hang", r.url("/hang"), timeout="4s"),
        "reset": job("reset", r.url("/reset"), attempts=2),
        "storm": job("storm", r.url("/storm"), attempts=3),
        "busy": job("busy", r.url("/busy"), attempts=2),
        "big": job("big", r.url("/big")),
        "garbage": job("garbage", r.url("/garbage")),
        "loop": job("loop", r.url("/loop")),
        "ping-pong": job("ping-pong", r.url("/ping-pong")),
        "tls-plain": job("tls-plain", r.url("/ok").replace("http://", "https://")),
        "tls-self-signed": job("tls-self-signed", tls_receiver.url("/ok")),
    }
    runs = {}
    for name, spec in cases.items():
        await sup.create_job(spec)
        runs[name] = await sup.trigger(name)
    more_big = [await sup.trigger("big") for _ in range(4)]  # five 100 MB answers at once
    results = {name: await finished(sup, name, e.id) for name, e in runs.items()}
    bigs = [results["big"]] + [await finished(sup, "big", e.id) for e in more_big]
    ended = datetime.now().astimezone()

    def attempts(name):
        return [(a.status_code, a.error) for a in results[name].attempts]

    slow = results["slow"]
    assert slow.status is ExecutionStatus.timeout and len(slow.attempts) == 2
    assert all(0.9 <= a.duration < 2.0 and "timed out after 1s" in a.error for a in slow.attempts), attempts("slow")

    hang = results["hang"]
    assert hang.status is ExecutionStatus.timeout and 3.9 <= hang.attempts[0].duration < 5.0, attempts("hang")

    reset = results["reset"]
    assert reset.status is ExecutionStatus.failed and len(reset.attempts) == 2, attempts("reset")
    assert all(a.status_code is None and "connection" in a.error for a in reset.attempts), attempts("reset")

    storm = results["storm"]
    assert storm.status is ExecutionStatus.failed and [a.status_code for a in storm.attempts] == [503, 503, 503]
    assert storm.error == "HTTP 503" and storm.status_code == 503

    busy = results["busy"]
    assert busy.status is ExecutionStatus.success and [a.status_code for a in busy.attempts] == [429, 200]
    gap = (busy.attempts[1].started_at - busy.attempts[0].started_at).total_seconds()
    assert 1.9 <= gap < 3.5, f"Retry-After: 2 should replace the 1 s backoff, waited {gap:.2f}s"

    for big_run in bigs:
        assert big_run.status is ExecutionStatus.success and big_run.response_truncated
        assert len(big_run.response_body) == RESPONSE_BODY_LIMIT
    print(f"\n5 x 100 MB answers: the receiver sent {big.bytes_sent / 2**20:.1f} MiB in all before the dispatcher hung up")
    assert big.bytes_sent < 5 * 20 * 2**20, "the dispatcher must not drain a 100 MB body"

    garbage = results["garbage"]
    assert garbage.status is ExecutionStatus.failed and garbage.attempts[0].status_code is None
    assert "invalid HTTP response" in garbage.error or "server closed" in garbage.error, garbage.error

    for name in ("loop", "ping-pong"):
        assert results[name].status is ExecutionStatus.failed and "redirect loop" in results[name].error, attempts(name)

    for name in ("tls-plain", "tls-self-signed"):
        e = results[name]
        assert e.status is ExecutionStatus.failed and e.attempts[0].status_code is None, attempts(name)
        assert "TLS" in e.error or "SSL" in e.error, (name, e.error)
    assert not tls_receiver.requests, "no request may be sent over an untrusted TLS connection"

    # Every outcome is recorded in the store with its attempts, as read back by the API.
    for name, e in results.items():
        assert e.finished_at and e.attempts and (e.error or e.status is ExecutionStatus.success), name

    # The neighbour on the same host fired every slot, on time, all along.
    ticks = [q for q in r.requests_for("/ok") if began <= _slot(q) <= ended - timedelta(seconds=1)]
    slots = sorted(_slot(q) for q in ticks)
    first = began.replace(microsecond=0) + timedelta(seconds=1)
    expected = [first + timedelta(seconds=k) for k in range(int((ended - first).total_seconds()))]
    assert slots == expected, "the steady job missed (or doubled) slots"
    lags = [q.time - _slot(q).timestamp() for q in ticks]
    print(f"steady job during the hostile run: {len(slots)} slots, max lag {max(lags) * 1000:.0f} ms")
    assert max(lags) < 1.0, f"the steady job was held up: lag {max(lags):.2f}s"

    growth = rss_mib() - rss_before
    print(f"RSS {rss_before:.0f} MiB before, grew {growth:+.1f} MiB over the hostile run")
    assert growth < 64, f"memory grew by {growth:.0f} MiB"


def _slot(request) -> datetime:
    return datetime.fromisoformat(request.headers["X-Chronos-Scheduled-Time"].replace("Z", "+00:00"))
