"""One job host alone: the floor of the firing path, without Ray or the store.

    python bench/host_burst.py --jobs 500 --seconds 12           # our JobHost
    python bench/host_burst.py --jobs 500 --seconds 12 --bare    # aiohttp alone

A :class:`chronos.host.JobHost` in this process (real runners, the real
Dispatcher, uvloop, the hosts' garbage-collection policy) with N per-second
jobs against nginx on 127.0.0.1, and an upstream that accepts every claim.
``--bare``: the same N requests, prepared ahead, sent with one aiohttp session
at each whole second. Prints lateness (nginx arrival - scheduled) over the
window, and each second's slowest request. Compare with ``firing.py``: what
one host costs by itself vs. what the whole server costs on the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import datetime, timezone

import aiohttp
import uvloop

from chronos.actors.collector import collect_between_bursts
from chronos.dispatcher import Dispatcher
from chronos.host import JobHost
from chronos.models import Execution, Job, parse_job
from common import Nginx, machine, print_table
from figures import percentile


class AcceptAll:
    """The supervisor, as a host sees it, saying yes to every claim."""

    async def claim(self, executions):
        return [True] * len(executions)

    async def report(self, executions):
        pass


def make_jobs(n: int, url: str) -> list[Job]:
    spec = {"schedule": "* * * * * *", "webhook": {"url": url, "method": "GET"}, "timeout": "30s"}
    return [Job(**parse_job({"name": f"burst-{i:05d}", **spec}).model_dump()) for i in range(n)]


async def run_host(jobs: list[Job], seconds: float) -> None:
    host = JobHost(AcceptAll(), node="bench", actor="bench")
    collector = asyncio.create_task(collect_between_bursts(lambda: host.idle))
    await host.assign([(job, None, []) for job in jobs])
    await asyncio.sleep(seconds)
    await host.shutdown()
    collector.cancel()


async def run_bare(jobs: list[Job], seconds: float) -> None:
    dispatcher = Dispatcher()
    connector = aiohttp.TCPConnector(limit=len(jobs), limit_per_host=len(jobs))
    async with aiohttp.ClientSession(connector=connector) as session:
        collector = asyncio.create_task(collect_between_bursts(lambda: True))
        end = time.time() + seconds
        while time.time() < end:
            due = int(time.time()) + 1
            at = datetime.fromtimestamp(due, timezone.utc)
            prepared = [dispatcher.prepare(job, Execution(job_id=job.id, job_name=job.name, scheduled_at=at), 1)
                        for job in jobs]

            async def one(p):
                await asyncio.sleep(due - time.time())
                async with session.get(p.url, headers=p.headers) as resp:
                    await resp.read()

            await asyncio.gather(*(one(p) for p in prepared))
        collector.cancel()
    await dispatcher.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--bare", action="store_true", help="aiohttp alone, no JobHost")
    args = parser.parse_args()
    with Nginx() as nginx:
        jobs = make_jobs(args.jobs, nginx.url)
        uvloop.run((run_bare if args.bare else run_host)(jobs, args.seconds))
        time.sleep(0.5)
        by_slot: dict[float, list[float]] = {}
        for hit in nginx.new_hits():
            by_slot.setdefault(hit.scheduled, []).append((hit.arrived - hit.scheduled) * 1000)
    slots = sorted(by_slot)[2:-1]  # the first seconds open connections; the last may be cut short
    late = [ms for slot in slots for ms in by_slot[slot]]
    row = {"sender": "aiohttp alone" if args.bare else "JobHost", "jobs": args.jobs, "seconds": len(slots),
           "requests": len(late), "p50 ms": percentile(late, 50), "p95 ms": percentile(late, 95),
           "p99 ms": percentile(late, 99), "max ms": max(late, default=float("nan"))}
    print_table([row], f"one host, {args.jobs} jobs due each second ({machine()})")
    print("slowest of each second (ms):", " ".join(f"{max(by_slot[s]):.0f}" for s in slots))


if __name__ == "__main__":
    main()
