"""What Chronos costs while nothing is due, side by side with APScheduler.

    python bench/idle.py                            # dedicated and auto, 30 jobs
    python bench/idle.py --placements auto --samples 5 --label after

For each placement: a real ``chronos serve`` with no job, then with ``--jobs``
jobs due once a year created through the API (as a new user would), measured
after a settling pause in ``--samples`` windows of ``--window`` seconds each:
CPU of the whole process tree (percent of one core; the median of the windows is
the figure, idle CPU here is noisy) and PSS. Then APScheduler 3 holding the same
jobs in one process. Run it on a quiet machine: nothing else may use the cores.
To measure an older commit, run this file with that checkout's venv python (the
server started is the one of the interpreter's venv).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from common import ChronosServer, TreeMeter, job_body, print_table, save_result

YEARLY = "0 0 1 1 *"


def windows(tree, samples: int, window: float) -> tuple[list[float], float]:
    """CPU percent of one core in each window, and the PSS (MiB) at the end."""
    cpu, pss = [], 0.0
    for _ in range(samples):
        meter = TreeMeter(tree, interval=1.0).start()
        time.sleep(window)
        meter.stop()
        cpu.append(100 * meter.cpu_seconds / window)
        pss = meter.pss / 2**20
    return cpu, pss


def row(what: str, cpu: list[float], pss: float, per_job: float | None = None, processes: int | None = None) -> dict:
    return {
        "what runs": what,
        "CPU % of a core (median)": statistics.median(cpu),
        "samples": " ".join(f"{c:.1f}" for c in cpu),
        "PSS MiB": pss,
        "PSS MiB a job": per_job,
        "processes": processes,
    }


def measure_chronos(placement: str, jobs: int, args) -> list[dict]:
    server = ChronosServer(placement, job_slots=args.job_slots)
    try:
        server.start()
        time.sleep(args.settle)
        empty_cpu, empty_pss = windows(server.tree, args.samples, args.window)
        rows = [row(f"{placement}: no job", empty_cpu, empty_pss, processes=len(server.tree()))]
        for i in range(jobs):
            body = job_body(f"idle-{i:03d}", YEARLY, "http://127.0.0.1:9/never")
            assert httpx.post(f"{server.api}/jobs", json=body, timeout=60).status_code == 201
        time.sleep(args.settle)
        cpu, pss = windows(server.tree, args.samples, args.window)
        rows.append(row(f"{placement}: {jobs} yearly jobs", cpu, pss, (pss - empty_pss) / jobs, len(server.tree())))
        return rows
    finally:
        server.cleanup()


def measure_apscheduler(jobs: int, args) -> dict:
    script = Path(__file__).with_name("apscheduler_baseline.py")
    proc = subprocess.Popen([sys.executable, script, "--jobs", str(jobs), "--cron", YEARLY, "--url", "http://127.0.0.1:9/"])
    try:
        time.sleep(5)
        cpu, pss = windows(lambda: [psutil.Process(proc.pid)], args.samples, args.window)
        return row(f"APScheduler 3: {jobs} yearly jobs", cpu, pss, processes=1)
    finally:
        proc.terminate()
        proc.wait(10)


def measure_ray_floor(jobs: int, args) -> dict:
    """What Ray alone asks of an actor that does nothing: ``jobs`` bare actors (no
    import of ours) in a local Ray of this process; only their worker processes count."""
    import ray

    @ray.remote(num_cpus=0)
    class Idle:
        def ping(self) -> int:
            return 1

    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        actors = [Idle.remote() for _ in range(jobs)]
        ray.get([a.ping.remote() for a in actors], timeout=300)
        time.sleep(args.settle)

        cpu, pss = windows(_titled("ray::Idle"), args.samples, args.window)
        return row(f"Ray alone: {jobs} bare actors", cpu, pss, pss / jobs, len(actors))
    finally:
        ray.shutdown()


def _titled(title: str):
    """The processes whose title (Ray names a worker after its actor) is ``title``."""
    def tree() -> list:
        found = []
        for p in psutil.process_iter():
            try:
                if p.cmdline()[:1] == [title]:
                    found.append(p)
            except psutil.Error:
                pass
        return found
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--placements", default="dedicated,auto")
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=30.0)
    parser.add_argument("--job-slots", type=int, default=64, help="CHRONOS_JOB_SLOTS_PER_NODE")
    parser.add_argument("--label", default="", help="names the run in the table (e.g. before / after)")
    parser.add_argument("--ray-floor", action="store_true", help="also measure as many bare Ray actors (Ray's own idle cost)")
    args = parser.parse_args()
    rows = []
    for placement in filter(None, args.placements.split(",")):
        rows += measure_chronos(placement, args.jobs, args)
    if args.ray_floor:
        rows.append(measure_ray_floor(args.jobs, args))
    rows.append(measure_apscheduler(args.jobs, args))
    for r in rows:
        r["what runs"] = f"{args.label} {r['what runs']}".strip()
    print(print_table(rows, f"Idle cost, {args.jobs} jobs due once a year ({args.samples} x {args.window:g} s)"))
    save_result(f"idle{'-' + args.label if args.label else ''}", {"rows": rows})


if __name__ == "__main__":
    main()
