"""The baseline: the same webhooks fired by APScheduler 3 in one process
(AsyncIOScheduler + one aiohttp session) — the "what I'd write myself"
scheduler, in memory, persisting nothing.

    python bench/apscheduler_baseline.py --jobs 1000 --every 1 --url http://127.0.0.1:PORT/hit

Runs until SIGTERM/SIGINT. ``bench/firing.py`` starts it as a subprocess (so
its CPU and memory are measured on their own) and reads the requests from the
same nginx log as Chronos's. The only change to stock APScheduler is an
executor that hands the job its scheduled run time, so the request can carry
``X-Chronos-Scheduled-Time`` like Chronos's do.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import uuid

import aiohttp
from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger


class ScheduledTimeExecutor(AsyncIOExecutor):
    """AsyncIOExecutor, but the coroutine gets each scheduled run time."""

    def _do_submit_job(self, job, run_times):
        async def run():
            for run_time in run_times:
                await job.func(*job.args, run_time)

        task = self._eventloop.create_task(run())
        task.add_done_callback(lambda _: self._run_job_success(job.id, []))


async def main(jobs: int, every: int, url: str, prefix: str, cron: str | None = None) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000), timeout=aiohttp.ClientTimeout(total=30))

    async def fire(name: str, scheduled=None) -> None:
        headers = {
            "X-Chronos-Job-Name": name,
            "X-Chronos-Scheduled-Time": scheduled.isoformat(),
            "X-Chronos-Execution-ID": str(uuid.uuid4()),
        }
        try:
            async with session.get(url, headers=headers) as resp:
                await resp.read()
        except Exception:
            pass  # a lost request shows up as a missing slot in the log

    scheduler = AsyncIOScheduler(
        executors={"default": ScheduledTimeExecutor()},
        job_defaults={"coalesce": False, "misfire_grace_time": 60, "max_instances": 100},
        timezone="UTC",
    )
    trigger = CronTrigger.from_crontab(cron, timezone="UTC") if cron else CronTrigger(second=f"*/{every}", timezone="UTC")
    for i in range(jobs):
        name = f"{prefix}{i:05d}"
        scheduler.add_job(fire, trigger, args=[name], id=name)
    scheduler.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    scheduler.shutdown(wait=False)
    await session.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--every", type=int, default=1, help="seconds between fires (divides 60)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", default="aps-")
    parser.add_argument("--cron", help="a 5-field crontab instead of --every (e.g. '0 0 1 1 *': idle jobs)")
    a = parser.parse_args()
    asyncio.run(main(a.jobs, a.every, a.url, a.prefix, a.cron))
