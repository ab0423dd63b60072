#!/usr/bin/env python
"""Crash loop: beat a running `chronos serve` and check it lost nothing.

For K cycles, while N jobs fire every second (``*/1 * * * * *``) against
receivers on 127.0.0.1, kill (SIGKILL) at random moments: a job-host actor's
process, the supervisor's process, a Serve replica's process (Ray restarts or
replaces each), and finally every process of the server (its whole session:
driver, GCS, raylet, workers), then restart it on the same data dir. At the
end every job is disabled, executions settle, and the invariants are checked
from the store (REST API) and from what the receivers saw:

1. no (job, scheduled time) delivered under two different execution ids;
2. every delivery belongs to an execution the store knows;
3. every execution ends in a final status;
4. no job lost or changed;
5. every slot of every job is accounted for exactly once: run (scheduled or
   catch-up, any final status) or counted in a recorded missed-run summary,
   as its ``missed_runs`` policy says.

Usage: ``bench/chaos.py --cycles 3 --jobs 50`` (prints figures; exit 1 on a
violation). ``tests/test_chaos.py`` runs the same loop.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from receiver import ThreadedReceiver  # noqa: E402
from server import Server  # noqa: E402

POLICIES = ("execute_one", "execute_all", "ignore")
FAULTS = ("host", "supervisor", "replica", "server")
#: Process titles Ray gives the actors' worker processes.
ACTOR_TITLES = {"host": "ray::HostActor", "supervisor": "ray::SupervisorActor", "replica": "ray::ServeReplica"}
SECOND = timedelta(seconds=1)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---------------------------------------------------------------- the API


class Api:
    """The REST API, retried while the server is restarting (a Serve replica
    or the supervisor coming back answers 5xx or nothing for a moment)."""

    def __init__(self, base: str):
        self.base = f"{base}/api/v1"
        self.client = httpx.Client(timeout=30)

    def call(self, method: str, path: str, *, expect=(200,), wait: float = 60.0, **kwargs):
        deadline = time.monotonic() + wait
        while True:
            try:
                r = self.client.request(method, f"{self.base}{path}", **kwargs)
                if r.status_code in expect:
                    return r.json() if r.content else None
                if r.status_code < 500:
                    raise AssertionError(f"{method} {path}: {r.status_code} {r.text}")
                problem = f"{r.status_code} {r.text[:200]}"
            except httpx.HTTPError as e:
                problem = repr(e)
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path} kept failing: {problem}")
            time.sleep(0.5)

    def pages(self, path: str, **params) -> list[dict]:
        items, cursor = [], None
        while True:
            page = self.call("GET", path, params={**params, "limit": 500, **({"cursor": cursor} if cursor else {})})
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items


def job_spec(i: int, receiver) -> dict:
    """Every fourth job answers slowly, so kills catch executions in flight."""
    return {
        "name": f"chaos-{i:03d}",
        "schedule": "*/1 * * * * *",
        "webhook": {"url": receiver.url(f"/j/{i}"), "method": "POST", "body": '{"i": %d}' % i},
        "missed_runs": POLICIES[i % len(POLICIES)],
        "retry_policy": {"max_attempts": 2, "initial_interval": "1s"},
        "timeout": "10s",
        "tags": {"suite": "chaos"},
    }


STABLE_FIELDS = ("id", "name", "schedule", "timezone", "webhook", "retry_policy", "timeout", "concurrency",
                 "missed_runs", "catchup_window", "tags", "enabled", "created_at", "anchor")


# ---------------------------------------------------------------- the loop


def run(cycles: int, jobs: int, *, workdir: Path, seed: int | None = None, faults=FAULTS,
        gap=(2.0, 6.0), tail: float = 6.0, settle: float = 30.0, log=print) -> dict:
    """The crash loop; returns figures and the list of violations."""
    rng = random.Random(seed)
    server = Server(workdir / "data", env={"CHRONOS_PLACEMENT": "pooled"})
    api = Api(server.url)
    report: dict = {"faults": [], "starts": [], "violations": []}
    with ThreadedReceiver() as receiver:
        for i in range(jobs):
            if i % 4 == 0:
                receiver.route(f"/j/{i}", delay=0.4)
        try:
            report["starts"].append(server.start())
            created = {}
            for i in range(jobs):
                job = api.call("POST", "/jobs", json=job_spec(i, receiver), expect=(201,))
                created[job["name"]] = job
            log(f"server up in {report['starts'][0]:.1f}s; {jobs} jobs created")
            for cycle in range(cycles):
                kinds = [f for f in faults if f != "server"]
                rng.shuffle(kinds)
                for kind in kinds + (["server"] if "server" in faults else []):
                    time.sleep(rng.uniform(*gap))
                    report["faults"].append(inject(kind, server, rng, receiver, log))
            time.sleep(tail)
            report["violations"] += check_jobs(api, created)
            disabled_at = datetime.now(timezone.utc)
            for name in created:
                api.call("POST", f"/jobs/{name}/disable")
            report.update(settle_and_check(api, receiver, created, disabled_at, settle))
        finally:
            server.stop()
    return report


def inject(kind: str, server: Server, rng: random.Random, receiver, log) -> dict:
    """One fault; returns what was done and how long until a slot due after
    the fault (one that needed a fresh claim) was delivered."""
    at = time.time()
    fault = {"kind": kind}
    if kind == "server":
        server.kill9()
        fault["restart_s"] = round(server.start(), 1)
    else:
        pids = server.pids_titled(ACTOR_TITLES[kind])
        if not pids:
            raise RuntimeError(f"no {ACTOR_TITLES[kind]} process found to kill")
        os.kill(rng.choice(pids), signal.SIGKILL)
    fault["fresh_fire_s"] = first_fresh_fire(receiver, at)
    log(f"killed {kind}: {fault}")
    return fault


def first_fresh_fire(receiver, at: float, timeout: float = 60.0) -> float | None:
    """Seconds from ``at`` to the first delivery of a slot due more than 1 s after it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = [r.time for r in list(receiver.requests)
                 if parse_time(r.headers["X-Chronos-Scheduled-Time"]).timestamp() > at + 1]
        if fresh:
            return round(min(fresh) - at, 2)
        time.sleep(0.1)
    return None


def check_jobs(api: Api, created: dict) -> list[str]:
    """No job lost or changed."""
    stored = {j["name"]: j for j in api.pages("/jobs", **{"tag.suite": "chaos"})}
    problems = [f"job {name} lost" for name in created if name not in stored]
    for name, job in created.items():
        for field in STABLE_FIELDS:
            if name in stored and field in job and stored[name].get(field) != job[field]:
                problems.append(f"job {name}: {field} changed from {job[field]!r} to {stored[name].get(field)!r}")
    return problems


def settle_and_check(api: Api, receiver, created: dict, disabled_at: datetime, settle: float) -> dict:
    deadline = time.monotonic() + settle
    while True:
        history = {name: api.pages(f"/jobs/{name}/executions") for name in created}
        unfinished = [e for items in history.values() for e in items if e["status"] in ("pending", "running")]
        if not unfinished or time.monotonic() > deadline:
            break
        time.sleep(1)
    violations = [f"execution {e['id']} of {e['job_name']} still {e['status']} after {settle:.0f}s" for e in unfinished]
    violations += check_deliveries(receiver, created, history)
    figures = {"executions": sum(len(v) for v in history.values()), "deliveries": len(receiver.requests),
               # the same execution delivered again (resumed after a crash, same Idempotency-Key)
               "redeliveries": len(receiver.requests) - len({r.headers["Idempotency-Key"] for r in receiver.requests})}
    for name, items in history.items():
        problems, counts = check_slots(created[name], items, disabled_at - 3 * SECOND)
        violations += problems
        for key, value in counts.items():
            figures[key] = figures.get(key, 0) + value
    figures["statuses"] = dict(Counter(e["status"] for items in history.values() for e in items))
    return {"figures": figures, "violations": violations}


def check_deliveries(receiver, created: dict, history: dict) -> list[str]:
    """Each (job, slot) delivered under one execution id, known to the store."""
    known = {e["id"] for items in history.values() for e in items}
    ids_by_slot = defaultdict(set)
    problems = []
    for r in receiver.requests:
        eid = r.headers["X-Chronos-Execution-ID"]
        ids_by_slot[(r.headers["X-Chronos-Job-Name"], r.headers["X-Chronos-Scheduled-Time"])].add(eid)
        if eid not in known:
            problems.append(f"delivery of {eid} ({r.headers['X-Chronos-Job-Name']}) has no execution in the store")
        if r.headers["Idempotency-Key"] != eid:
            problems.append(f"delivery of {eid} carries Idempotency-Key {r.headers['Idempotency-Key']}")
    problems += [f"slot {slot} delivered under {len(ids)} execution ids: {sorted(ids)}"
                 for slot, ids in ids_by_slot.items() if len(ids) > 1]
    return problems


def check_slots(job: dict, items: list[dict], until: datetime) -> tuple[list[str], dict]:
    """Every per-second slot from the job's creation to ``until`` is handled
    exactly once: run, skipped by concurrency, or inside a missed-run summary
    (a catch-up ``skipped`` execution counting ``missed_slots`` slots up to
    its scheduled time)."""
    name, policy = job["name"], job["missed_runs"]
    handled: Counter = Counter()
    summaries = [e for e in items if e["trigger"] == "catchup" and e.get("missed_slots")]
    runs = [e for e in items if e["trigger"] in ("scheduled", "catchup") and e not in summaries]
    for e in runs:
        handled[parse_time(e["scheduled_at"])] += 1
    for e in summaries:
        last = parse_time(e["scheduled_at"])
        for k in range(e["missed_slots"]):
            handled[last - k * SECOND] += 1
    first = parse_time(job["created_at"]).replace(microsecond=0) + SECOND
    expected = [first + k * SECOND for k in range(int((until - first) / SECOND) + 1)]
    problems = [f"{name}: slot {s.isoformat()} never handled (no run, no missed-run record)" for s in expected if not handled[s]]
    problems += [f"{name}: slot {s.isoformat()} handled {n} times" for s, n in handled.items() if n > 1]
    catchup_runs = [e for e in runs if e["trigger"] == "catchup"]
    if policy == "ignore" and catchup_runs:
        problems.append(f"{name}: missed_runs=ignore but {len(catchup_runs)} catch-up run(s)")
    if policy == "execute_all" and summaries:
        problems.append(f"{name}: missed_runs=execute_all but {len(summaries)} missed slot(s) not run")
    caught_up = {parse_time(e["scheduled_at"]) for e in catchup_runs}
    for e in summaries if policy == "execute_one" else ():  # the gap's newest slot is the one that ran
        if parse_time(e["scheduled_at"]) + SECOND not in caught_up:
            problems.append(f"{name}: missed_runs=execute_one but no catch-up run after the gap ending {e['scheduled_at']}")
    counts = {"catchup_runs": len(catchup_runs), "missed_summaries": len(summaries),
              "missed_slots": sum(e["missed_slots"] for e in summaries), "slots_checked": len(expected)}
    return problems, counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated subset of {','.join(FAULTS)}")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the data dir and server logs here")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="chronos-chaos-"))
    print(f"seed {seed}, workdir {workdir}")
    began = time.monotonic()
    report = run(args.cycles, args.jobs, workdir=workdir, seed=seed, faults=args.faults.split(","))
    report["wall_s"] = round(time.monotonic() - began, 1)
    return print_report(report)


def print_report(report: dict) -> int:
    """Print the figures and the first violations; the exit status (1 on any violation)."""
    print(json.dumps({k: v for k, v in report.items() if k != "violations"}, indent=2, default=str))
    for v in report["violations"][:50]:
        print("VIOLATION:", v)
    print(f"{len(report['violations'])} violation(s)")
    return 1 if report["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
