"""REST API latency and throughput through Ray Serve, with N jobs stored.

    python bench/api.py                          # smoke: 200 jobs stored, 50 requests per case
    python bench/api.py --stored 10000 --requests 500

The N stored jobs are written into the SQLite file before the server starts
(pooled placement; a yearly schedule, so they are hosted but never fire during
the run). Then create / get / list / trigger run with 1 and with 16 concurrent
clients; one row per (operation, clients): latency p50/p99 and requests/s.
Triggers fire into nginx on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import time

import httpx

from common import ChronosServer, Nginx, job_body, machine, percentile, print_table, save_result, seed_store

YEARLY = "0 0 1 1 *"


async def run_case(client: httpx.AsyncClient, make_request, requests: int, clients: int) -> dict:
    """``requests`` calls of ``make_request(i)``, ``clients`` at a time."""
    counter = itertools.count()
    latencies: list[float] = []
    errors = 0

    async def worker():
        nonlocal errors
        while (i := next(counter)) < requests:
            t = time.perf_counter()
            r = await make_request(i)
            latencies.append((time.perf_counter() - t) * 1000)
            errors += r.status_code >= 400

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return {"p50 ms": percentile(latencies, 50), "p99 ms": percentile(latencies, 99),
            "max ms": max(latencies), "req/s": requests / elapsed, "errors": errors}


async def bench(api: str, url: str, stored: list[str], requests: int) -> list[dict]:
    rows = []
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await client.get(f"{api}/jobs?limit=1")  # warm the connection and the route
        for clients in (1, 16):
            cases = {
                "create": lambda i: client.post(f"{api}/jobs", json=job_body(f"api-{clients}-{i:05d}", YEARLY, url)),
                "get": lambda i: client.get(f"{api}/jobs/{random.choice(stored)}"),
                "list (100)": lambda i: client.get(f"{api}/jobs?limit=100"),
                "trigger": lambda i: client.post(f"{api}/jobs/{random.choice(stored)}/trigger"),
            }
            for op, make in cases.items():
                row = {"operation": op, "clients": clients, **await run_case(client, make, requests, clients)}
                rows.append(row)
                print(row, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stored", type=int, default=200, help="jobs in the store before the run")
    parser.add_argument("--requests", type=int, default=50, help="requests per (operation, clients) case")
    parser.add_argument("--pool-size", type=int, help="CHRONOS_POOL_SIZE [default: the server's, one per core]")
    args = parser.parse_args()

    with Nginx() as nginx:
        server = ChronosServer("pooled", pool_size=args.pool_size)
        try:
            names = [f"stored-{i:05d}" for i in range(args.stored)]
            seeded = seed_store(server.dir / "data", [job_body(n, YEARLY, nginx.url) for n in names])
            ready = server.start()
            print(f"{args.stored} jobs stored in {seeded:.1f}s; server ready (jobs restored) in {ready:.1f}s", flush=True)
            rows = asyncio.run(bench(server.api, nginx.url, names, args.requests))
        finally:
            server.cleanup()
    title = f"API with {args.stored:,} jobs stored, {args.requests} requests per row ({machine()})"
    print_table(rows, title)
    save_result(f"api-{args.stored}", {"args": vars(args), "machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
