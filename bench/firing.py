"""Firing precision and throughput: N jobs fire for T seconds into nginx, on
Chronos (a real ``chronos serve``) and then on APScheduler 3 (same machine,
same receiver, one after the other), and one table compares them.

    python bench/firing.py                                    # smoke: 20 pooled jobs, 10 s
    python bench/firing.py --placement dedicated --jobs 100 --every 1 --seconds 60
    python bench/firing.py --placement pooled    --jobs 100 --every 1 --seconds 60
    python bench/firing.py --placement pooled    --jobs 1000 --every 1 --seconds 60
    python bench/firing.py --placement pooled    --jobs 10000 --every 10 --seconds 60

Per scheduler: fires expected vs received in the measured window, duplicates
(same job + scheduled time twice), missing slots, lateness (nginx arrival −
scheduled time) p50/p95/p99/max, fires/s, CPU seconds and peak RSS of the
whole process tree (Ray's raylet, GCS and workers included) over the window,
and the ratio Chronos/APScheduler. The window starts once every job has fired
at least once (start-up is bench/restore.py's subject). Lateness samples are
saved under bench/results/ for bench/plot.py.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import subprocess
import sys
import time
from pathlib import Path

import psutil

from common import (
    ChronosServer,
    Nginx,
    TreeMeter,
    create_jobs,
    firing_stats,
    job_body,
    machine,
    print_table,
    process_tree,
    save_result,
    seed_store,
)

HERE = Path(__file__).parent


def wait_all_fired(nginx: Nginx, names: set[str], hits: list, timeout: float, alive) -> float:
    """Collect hits until every job has fired once; returns the seconds it took."""
    started = time.monotonic()
    pending = set(names)
    while pending:
        if not alive():
            raise RuntimeError("the scheduler under test exited")
        new = nginx.new_hits()
        hits.extend(new)
        pending -= {h.job for h in new}
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{len(pending)} of {len(names)} jobs never fired within {timeout}s")
        time.sleep(0.2)
    return time.monotonic() - started


def measure(nginx: Nginx, names: list[str], every: int, seconds: int, tree, warmup_timeout: float, alive,
            profile_dir: Path | None = None) -> dict:
    """Wait for every job to fire once, then measure a window of whole slots."""
    hits: list = []
    up = wait_all_fired(nginx, set(names), hits, warmup_timeout, alive)
    start = math.ceil((time.time() + 1) / every) * every  # the next slot boundary at least 1 s away
    end = start + max(1, seconds // every) * every
    time.sleep(max(0.0, start - time.time() - 0.5))
    meter = TreeMeter(tree).start()
    spies = profile(tree, profile_dir, end - start) if profile_dir else []
    time.sleep(max(0.0, end - time.time()))
    meter.stop()
    for spy in spies:
        spy.wait()
    time.sleep(5)  # slots due just before the end are still on their way
    hits.extend(nginx.new_hits())
    mine = set(names)
    stats = firing_stats([h for h in hits if h.job in mine], names, list(range(start, end, every)), (start, end))
    row = stats.row()
    row.update({"CPU s": meter.cpu_seconds, "CPU %": 100 * meter.cpu_seconds / (end - start),
                "peak RSS MiB": meter.peak_rss / 2**20, "PSS MiB": meter.pss / 2**20, "procs": meter.processes, "warm-up s": up})
    return {"row": row, "lateness_ms": stats.lateness_ms, "slot_p99_ms": stats.slot_p99_ms}


PROFILED = ("SupervisorActor", "HostActor", "ServeReplica", "ProxyActor")


def profile(tree, folder: Path, seconds: float) -> list[subprocess.Popen]:
    """py-spy (collapsed stacks, 100 Hz) on Chronos's own actor processes for the window."""
    folder.mkdir(parents=True, exist_ok=True)
    spies = []
    for p in tree():
        try:
            title = " ".join(p.cmdline())
        except psutil.Error:
            continue
        kind = next((k for k in PROFILED if k in title), None)
        if kind:
            out = folder / f"{kind}-{p.pid}.txt"
            spies.append(subprocess.Popen(
                [Path(sys.executable).parent / "py-spy", "record", "--pid", str(p.pid), "--duration", str(int(seconds)),
                 "--rate", "100", "--format", "raw", "--output", str(out), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return spies


def run_chronos(args, nginx: Nginx) -> dict:
    server = ChronosServer(args.placement, pool_size=args.pool_size, job_slots=max(64, args.jobs + 8))
    try:
        names = [f"chronos-{i:05d}" for i in range(args.jobs)]
        bodies = [job_body(n, f"*/{args.every} * * * * *", nginx.url) for n in names]
        if args.seed:  # stored before the start: restored, not created
            print(f"chronos: {args.jobs} jobs stored in {seed_store(server.dir / 'data', bodies):.1f}s", flush=True)
        ready = server.start()
        t = time.monotonic()
        if not args.seed:
            asyncio.run(create_jobs(server.api, bodies))
        print(f"chronos: ready in {ready:.1f}s, {args.jobs} jobs created in {time.monotonic() - t:.1f}s", flush=True)
        alive = lambda: server.proc.poll() is None
        return measure(nginx, names, args.every, args.seconds, server.tree, args.warmup_timeout, alive, args.profile)
    finally:
        server.cleanup()


def run_apscheduler(args, nginx: Nginx) -> dict:
    prefix = "aps-"
    proc = subprocess.Popen(
        [sys.executable, HERE / "apscheduler_baseline.py", "--jobs", str(args.jobs), "--every", str(args.every),
         "--url", nginx.url, "--prefix", prefix],
    )
    try:
        names = [f"{prefix}{i:05d}" for i in range(args.jobs)]
        return measure(nginx, names, args.every, args.seconds, lambda: process_tree(proc.pid), args.warmup_timeout,
                       lambda: proc.poll() is None)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ratio_row(a: dict, b: dict) -> dict:
    out = {"scheduler": "Chronos / APScheduler"}
    for key, value in a.items():
        if key == "scheduler":
            continue
        other = b.get(key)
        if isinstance(value, (int, float)) and isinstance(other, (int, float)) and other:
            out[key] = value / other
        else:
            out[key] = float("nan")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--placement", choices=["pooled", "dedicated"], default="pooled")
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--every", type=int, default=1, help="seconds between fires of each job (divides 60)")
    parser.add_argument("--seconds", type=int, default=10, help="measured window")
    parser.add_argument("--pool-size", type=int, help="CHRONOS_POOL_SIZE (pooled placement) [default: the server's, one per core]")
    parser.add_argument("--warmup-timeout", type=float, default=300.0)
    parser.add_argument("--profile", type=Path, help="py-spy the supervisor and host actors into this folder")
    parser.add_argument("--seed", action="store_true", help="write the jobs into the store before the start (fast for large N)")
    parser.add_argument("--no-baseline", action="store_true", help="skip APScheduler")
    args = parser.parse_args()

    label = f"{args.jobs}x{args.every}s-{args.placement}"
    print(f"workload {label}: {args.jobs} jobs every {args.every}s, {args.seconds}s window; {machine()}", flush=True)
    with Nginx() as nginx:
        results = {"chronos": run_chronos(args, nginx)}
        if not args.no_baseline:
            results["apscheduler"] = run_apscheduler(args, nginx)
    rows = [{"scheduler": f"Chronos ({args.placement})", **results["chronos"]["row"]}]
    if "apscheduler" in results:
        rows.append({"scheduler": "APScheduler 3", **results["apscheduler"]["row"]})
        rows.append(ratio_row(rows[0], rows[1]))
    print_table(rows, f"{label} (load after run: {machine()})")
    for name, result in results.items():
        print(f"{name}, p99 of each slot (ms):", " ".join(f"{v:.0f}" for v in result["slot_p99_ms"]))
    save_result(f"firing-{label}", {"label": label, "args": vars(args), "machine": machine(), "results": results})


if __name__ == "__main__":
    main()
