"""Reading what a store holds, for assertions (the server itself never counts rows)."""

from __future__ import annotations

from chronos.store import Store


def count_jobs(store: Store) -> tuple[int, int]:
    """(total, enabled), every page of ``list_jobs`` read."""
    jobs, cursor = store.list_jobs(limit=1000)
    while cursor:
        page, cursor = store.list_jobs(limit=1000, cursor=cursor)
        jobs += page
    return len(jobs), sum(job.enabled for job in jobs)
