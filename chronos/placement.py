"""Where each job runs: the one place that knows host keys and placement modes.

- ``dedicated``: every job in a host of its own, named after it (``chronos:job:<name>``).
- ``pooled``: jobs spread over ``pool_size`` hosts by a stable hash of their id.
- ``auto`` (the default): the oldest jobs, up to the dedicated slots the cluster
  offers (``CHRONOS_JOB_SLOTS_PER_NODE`` on each node), get hosts of their own;
  the rest are pooled. A small installation keeps one actor per job; a large one
  never refuses a job and never starts more processes than it has slots. When a
  dedicated job is deleted, the oldest pooled job takes its slot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from chronos.models import Job

Mode = Literal["auto", "dedicated", "pooled"]
JOB_PREFIX, POOL_PREFIX = "chronos:job:", "chronos:pool:"


def job_key(name: str) -> str:
    return f"{JOB_PREFIX}{name}"


def pool_key(n: int) -> str:
    return f"{POOL_PREFIX}{n}"


def is_dedicated_key(key: str) -> bool:
    return key.startswith(JOB_PREFIX)


@dataclass(frozen=True)
class Placement:
    mode: Mode
    pool_size: int

    def key(self, job: Job, dedicated: bool) -> str:
        """The host of ``job``; ``dedicated``: whether it holds one of the slots (auto)."""
        if self.mode == "dedicated" or (self.mode == "auto" and dedicated):
            return job_key(job.name)
        digest = hashlib.blake2b(job.id.bytes, digest_size=8).digest()
        return pool_key(int.from_bytes(digest, "big") % self.pool_size)

    def dedicated(self, jobs: Iterable[Job], slots: int) -> frozenset[UUID]:
        """The jobs that get a host of their own, given ``slots`` dedicated slots."""
        if self.mode == "pooled":
            return frozenset()
        if self.mode == "dedicated":
            return frozenset(job.id for job in jobs)
        oldest = sorted(jobs, key=lambda job: (job.created_at, job.id))[: max(slots, 0)]
        return frozenset(job.id for job in oldest)

    def is_stray(self, key: str) -> bool:
        """A host these settings never place a job on (left by other settings)."""
        if is_dedicated_key(key):
            return self.mode == "pooled"
        if not key.startswith(POOL_PREFIX):
            return False
        if self.mode == "dedicated":
            return True
        suffix = key[len(POOL_PREFIX):]
        return not (suffix.isdigit() and int(suffix) < self.pool_size)
