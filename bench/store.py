"""The supervisor's store path on its own, without Ray: how fast claims and
state reports are written.

    python bench/store.py                       # 1,000 jobs, 20 rounds
    python bench/store.py --jobs 1000 --rounds 50

SQLite runs on a temporary file; PostgreSQL too when CHRONOS_TEST_POSTGRES_URL
is set (in a private database ``chronos_bench_<hex>``, dropped at the end).
Each round is what 1,000 pooled jobs firing every second cost the store
thread: one claim of a slot per job (one batch), then one save of them all as
running, then one as finished with one attempt each (the supervisor's flushes).
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from common import machine, print_table

from chronos.models import Attempt, Execution, ExecutionStatus, Job
from chronos.store import Store

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@contextmanager
def postgres_database(base: str) -> Iterator[str]:
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    admin = make_url(base).set(drivername="postgresql")
    name = f"chronos_bench_{secrets.token_hex(6)}"
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def run(backend: str, url: str, jobs: int, rounds: int) -> dict:
    store = Store(url)
    try:
        store.create_schema()
        stored = [
            store.insert_job(Job(name=f"job-{i:05d}", schedule="@every 1s", webhook={"url": "http://127.0.0.1:9/"}))
            for i in range(jobs)
        ]
        claim_s = save_s = 0.0
        for r in range(rounds):
            at = T0 + timedelta(seconds=r)
            batch = [Execution(job_id=j.id, job_name=j.name, scheduled_at=at) for j in stored]
            t = time.perf_counter()
            assert all(store.claim(batch))
            claim_s += time.perf_counter() - t
            started = at + timedelta(milliseconds=5)
            running = [e.model_copy(update={"status": ExecutionStatus.running, "started_at": started,
                                            "node": "127.0.0.1", "actor": "chronos:pool:0"}) for e in batch]
            attempt = [Attempt(number=1, started_at=started, duration=0.002, status_code=200)]
            final = {"status": ExecutionStatus.success, "finished_at": started + timedelta(milliseconds=2),
                     "duration": 0.002, "status_code": 200, "response_body": "ok", "attempts": attempt}
            done = [e.model_copy(update=final) for e in running]
            t = time.perf_counter()
            store.save_executions(running)
            store.save_executions(done)
            save_s += time.perf_counter() - t
        rows = jobs * rounds
        return {
            "backend": backend,
            "jobs": jobs,
            "rounds": rounds,
            "claim rows/s": round(rows / claim_s),
            "claim ms/1000": round(claim_s / rows * 1000 * 1000, 1),
            "save rows/s": round(2 * rows / save_s),
            "save ms/1000": round(save_s / (2 * rows) * 1000 * 1000, 1),
        }
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run("sqlite", f"sqlite:///{Path(tmp) / 'chronos.db'}", args.jobs, args.rounds))
    base = os.environ.get("CHRONOS_TEST_POSTGRES_URL")
    if base:
        with postgres_database(base) as url:
            results.append(run("postgresql", url, args.jobs, args.rounds))
    print_table(results, f"Store path ({machine()}); save = one running and one final save per claim")


if __name__ == "__main__":
    main()
