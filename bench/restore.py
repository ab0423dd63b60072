"""Scale and restore: how long N jobs take to come up, what they cost in
memory, and how long they take to come back after a kill -9.

    python bench/restore.py                                          # smoke: 20 pooled jobs
    python bench/restore.py --placement dedicated --jobs 100 --every 1
    python bench/restore.py --placement pooled --jobs 10000 --every 10

Steps, one row per run: start ``chronos serve`` (``ready s``) and measure the
empty tree; create N jobs through the API with 16 clients (``create s``, or
``--seed`` to write them into the store before the start); wait until every
job has fired once (``up s``, from the first create); measure the tree again
(summed RSS peak, PSS, and per job over the empty server); then kill -9 the
whole process tree (driver, raylet, GCS, every worker), start again on the
same data, and time until /ready and until every job has fired again
(``restore s``: from the restart command, any request of the job after it;
``on-schedule s``: a slot scheduled after the restart). With ``--every 10`` a
job's next slot can be up to 10 s away, so restore times carry that
granularity.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from common import (
    ChronosServer,
    Nginx,
    TreeMeter,
    create_jobs,
    job_body,
    machine,
    memory_by_process,
    print_table,
    save_result,
    seed_store,
)


def wait_fired(nginx: Nginx, names: set[str], since: float, timeout: float, scheduled_after: float | None = None,
               alive=lambda: True) -> tuple[float, float]:
    """Seconds after ``since`` until every job had a request arrive after
    ``since`` (by nginx's arrival times, not by when this poll saw them); also
    until each had one *scheduled* after ``scheduled_after``."""
    first: dict[str, float] = {}
    first_sched: dict[str, float] = {}
    cutoff = since if scheduled_after is None else scheduled_after
    while len(first) < len(names) or len(first_sched) < len(names):
        if not alive():
            raise RuntimeError("chronos serve exited")
        for h in nginx.new_hits():
            if h.job not in names:
                continue
            if h.arrived >= since:
                first.setdefault(h.job, h.arrived)
            if h.scheduled >= cutoff:
                first_sched.setdefault(h.job, h.arrived)
        if time.time() - since > timeout:
            raise RuntimeError(f"{len(names) - len(first)} of {len(names)} jobs did not fire within {timeout}s")
        time.sleep(0.1)
    return max(first.values()) - since, max(first_sched.values()) - since


def run(args) -> dict:
    row = {"placement": args.placement, "jobs": args.jobs, "every s": args.every}
    names = [f"job-{i:05d}" for i in range(args.jobs)]
    with Nginx() as nginx:
        bodies = [job_body(n, f"*/{args.every} * * * * *", nginx.url) for n in names]
        server = ChronosServer(args.placement, pool_size=args.pool_size, job_slots=max(64, args.jobs + 8))
        try:
            alive = lambda: server.proc.poll() is None
            if args.seed:
                row["seed s"] = seed_store(server.dir / "data", bodies)
            started = time.time()
            row["ready s"] = server.start()
            empty = TreeMeter(server.tree).start().stop()
            meter = TreeMeter(server.tree).start()
            first = time.time()
            if not args.seed:
                asyncio.run(create_jobs(server.api, bodies))
                row["create s"] = time.time() - first
            else:
                first = started
            row["up s"], _ = wait_fired(nginx, set(names), first, args.timeout, alive=alive)
            meter.stop()
            row["RSS MiB"] = meter.peak_rss / 2**20
            row["PSS MiB"] = meter.pss / 2**20
            row["PSS KiB/job"] = (meter.pss - empty.pss) / 2**10 / args.jobs
            row["procs"] = meter.processes
            print(f"up: {row}", flush=True)
            print_table(memory_by_process(server.tree()), "memory by process, every job up")
            time.sleep(args.every + 1)  # every job has a claimed slot on record

            server.kill9()
            restart = time.time()
            row["restart ready s"] = server.start()
            row["restore s"], row["on-schedule s"] = wait_fired(nginx, set(names), restart, args.timeout, alive=alive)
        finally:
            server.cleanup()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--placement", choices=["pooled", "dedicated"], default="pooled")
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--every", type=int, default=1, help="seconds between fires of each job (divides 60)")
    parser.add_argument("--pool-size", type=int, help="CHRONOS_POOL_SIZE [default: the server's, one per core]")
    parser.add_argument("--seed", action="store_true", help="write the jobs into the store instead of the API")
    parser.add_argument("--timeout", type=float, default=400.0)
    args = parser.parse_args()

    row = run(args)
    print_table([row], f"come-up, memory and restore ({machine()})")
    label = f"restore-{args.jobs}-{args.placement}{'-seed' if args.seed else ''}"
    save_result(label, {"args": vars(args), "machine": machine(), "row": row})


if __name__ == "__main__":
    main()
