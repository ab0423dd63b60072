"""The web console's pages with N jobs stored (issue 19: the jobs page under 300 ms p99
with 10,000 jobs).

    python bench/console.py                              # smoke: 500 jobs, 50 requests per page
    python bench/console.py --stored 10000 --requests 200

The N jobs (yearly schedule: hosted, never firing during the run) and ``--history``
executions each are written into the SQLite file before the server starts (pooled
placement). Then each page is fetched ``--requests`` times by 1 client, and by
``--tabs`` clients at once (open tabs polling): the first jobs page, a page deep in
the cursor chain, a search, the live fragment the jobs page polls, the overview and
one job's page. One row per (page, clients): latency p50/p99/max and requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx

from api import YEARLY, run_case
from common import ChronosServer, job_body, machine, print_table, save_result, seed_store


def seed_history(data_dir: Path, per_job: int) -> float:
    """``per_job`` finished executions for every stored job (their strips fill up)."""
    from chronos.models import Execution, ExecutionStatus, Trigger, utcnow
    from chronos.store import Store

    started = time.monotonic()
    store = Store(f"sqlite:///{(data_dir / 'chronos.db').resolve()}")
    now = utcnow()
    batch: list[Execution] = []
    for job in store.all_jobs():
        for k in range(per_job):
            at = now - timedelta(minutes=k + 1)
            status = ExecutionStatus.failed if k % 7 == 3 else ExecutionStatus.success
            batch.append(Execution(
                id=uuid.uuid4(), job_id=job.id, job_name=job.name, trigger=Trigger.scheduled, status=status,
                scheduled_at=at, started_at=at, finished_at=at + timedelta(seconds=0.2), duration=0.2, status_code=200,
            ))
        if len(batch) >= 5000:
            store.claim(batch)
            batch = []
    store.claim(batch)
    store.close()
    return time.monotonic() - started


async def bench(url: str, requests: int, tabs: int) -> list[dict]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        deep = "/ui/jobs"
        for _ in range(20):  # follow the cursor 20 pages (1,000 jobs) in
            page = await client.get(deep)
            found = re.search(r'rel="next" href="([^"]+)"', page.text)
            if not found:
                break
            deep = found.group(1).replace("&amp;", "&")
        pages = {
            "jobs (first page)": "/ui/jobs",
            "jobs (page 21)": deep,
            "jobs (search)": "/ui/jobs?search=stored-0999",
            "jobs (live part)": "/ui/parts/jobs",
            "overview": "/ui",
            "a job": "/ui/jobs/stored-00042",
        }
        rows = []
        for clients in (1, tabs):
            for name, path in pages.items():
                await client.get(path)  # warm
                row = {"page": name, "clients": clients,
                       **await run_case(client, lambda i, p=path: client.get(p), requests, clients)}
                rows.append(row)
                print(row, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stored", type=int, default=500, help="jobs in the store before the run")
    parser.add_argument("--history", type=int, default=20, help="executions stored per job")
    parser.add_argument("--requests", type=int, default=50, help="requests per (page, clients) row")
    parser.add_argument("--tabs", type=int, default=10, help="concurrent clients in the second round")
    args = parser.parse_args()

    server = ChronosServer("pooled")
    try:
        names = [f"stored-{i:05d}" for i in range(args.stored)]
        seeded = seed_store(server.dir / "data", [job_body(n, YEARLY, "http://127.0.0.1:9/never") for n in names])
        history = seed_history(server.dir / "data", args.history)
        ready = server.start()
        print(f"{args.stored} jobs stored in {seeded:.1f}s, {args.history} executions each in {history:.1f}s; "
              f"server ready in {ready:.1f}s", flush=True)
        rows = asyncio.run(bench(server.url, args.requests, args.tabs))
    finally:
        server.cleanup()
    title = f"Console with {args.stored:,} jobs stored ({args.history} executions each), {args.requests} requests per row ({machine()})"
    print_table(rows, title)
    save_result(f"console-{args.stored}", {"args": vars(args), "machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
