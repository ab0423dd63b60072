"""The jobs as the supervisor knows them: by id and by name, the host each is placed on,
and their ``next_run``.

The one writer keeps them in memory, so an API read of a job never waits for the store.
Every method here is synchronous: what one reads and changes is consistent within one
step of the event loop. ``lock`` orders the changes that span an await (a decision, its
store write, then :meth:`Registry.remember`); nothing holds it while calling a host.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Callable, Iterable, Optional
from uuid import UUID

from chronos.errors import JobNotFound
from chronos.host import digest
from chronos.models import ExecutionChange, Job, last_runs
from chronos.placement import Placement
from chronos.schedules import compiled
from chronos.store import parse_uuid

#: Each host's job ids and their digest (what a host's status is compared with).
Hosts = dict[str, tuple[set[UUID], int]]


class Registry:
    def __init__(self, moved: Callable[[Iterable[str]], None]):
        """``moved``: told the hosts whose jobs changed when jobs moved between hosts
        (a dedicated slot freed or taken), so that they are checked first."""
        self.jobs: dict[UUID, Job] = {}
        self.lock = asyncio.Lock()
        self.placement = Placement("pooled", 1)  # the runtime's, from attach
        self.slots = 0  # dedicated slots the cluster offers (auto)
        self._names: dict[str, UUID] = {}
        self._moved = moved
        self._hosts: Optional[Hosts] = None  # see hosts
        self._previous: Hosts = {}
        self._dedicated: set[UUID] = set()  # jobs on hosts of their own (auto)
        self._retired: set[str] = set()  # hosts no job is placed on any more

    def attach(self, placement: Placement, slots: int) -> None:
        self.placement, self.slots, self._hosts = placement, slots, None

    def set_slots(self, slots: int) -> None:
        if slots != self.slots:
            self.slots, self._hosts = slots, None

    # ------------------------------------------------------------ jobs

    def remember(self, job: Job) -> None:
        old = self.jobs.get(job.id)
        if old is not None and old.name != job.name:
            del self._names[old.name]
            self._hosts = None  # a name places a dedicated job
        self.jobs[job.id] = job
        self._names[job.name] = job.id
        if old is None:
            self._add(job)

    def forget(self, job_id: UUID) -> None:
        job = self.jobs.pop(job_id, None)
        if job is not None:
            del self._names[job.name]
            self._remove(job)

    # A create or delete that moves no other job updates the placement in place: working
    # it out again sorts and hashes every job, a long step of the loop with 10,000 of them.

    def _add(self, job: Job) -> None:
        dedicated = self._takes_slot(job) if self._hosts is not None else None
        if self._hosts is None or dedicated is None:
            self._hosts = None
            return
        if dedicated:
            self._dedicated.add(job.id)
        key = self.placement.key(job, dedicated)
        ids, fingerprint = self._hosts.get(key, (set(), 0))
        ids.add(job.id)
        self._hosts[key] = (ids, fingerprint ^ job.id.int)  # digest() is an XOR

    def _remove(self, job: Job) -> None:
        """In place unless it frees a dedicated slot (auto: a pooled job moves) or empties a host."""
        hosts = self._hosts
        key = self.placement.key(job, job.id in self._dedicated)
        held = hosts.get(key) if hosts is not None else None
        frees_slot = self.placement.mode == "auto" and job.id in self._dedicated
        if hosts is None or held is None or frees_slot or held[0] == {job.id}:
            self._hosts = None
            return
        self._dedicated.discard(job.id)
        held[0].discard(job.id)
        hosts[key] = (held[0], held[1] ^ job.id.int)

    def _takes_slot(self, job: Job) -> Optional[bool]:
        """Whether a new job gets a host of its own; None if it would take an older job's."""
        if self.placement.mode != "auto":
            return self.placement.mode == "dedicated"
        if len(self._dedicated) < self.slots:
            return True  # every job has one already
        if not self._dedicated:
            return False  # no slot at all
        youngest = max((self.jobs[i].created_at, i) for i in self._dedicated)
        return None if (job.created_at, job.id) < youngest else False

    def find(self, ref: str | UUID) -> Job:
        """A job by id or by name, as :meth:`Store.get_job` finds it, from memory."""
        job_id = ref if isinstance(ref, UUID) else parse_uuid(ref)
        job = self.jobs.get(job_id) if job_id is not None else None
        if job is None and isinstance(ref, str) and ref in self._names:  # a name may look like a UUID
            job = self.jobs.get(self._names[ref])
        if job is None:
            raise JobNotFound(f'job "{ref}" not found')
        return job

    def remember_runs(self, changes: list[ExecutionChange]) -> None:
        """The jobs' last runs as the store just wrote them (get_job reads memory)."""
        for job_id, (at, status) in last_runs(changes).items():
            job = self.jobs.get(job_id)
            if job is not None and (job.last_run is None or job.last_run <= at):
                self.jobs[job_id] = job.model_copy(update={"last_run": at, "last_status": status})

    def with_next_run(self, job: Job) -> Job:
        if not job.enabled or job.problem:
            return job.model_copy(update={"next_run": None})
        schedule = compiled(job.schedule, job.timezone, job.anchor)
        return job.model_copy(update={"next_run": schedule.next_after(datetime.now(timezone.utc))})

    # ------------------------------------------------------------ placement

    def hosts(self) -> Hosts:
        """Each host's job ids and their digest, worked out again only after
        jobs come, go or are renamed, or the dedicated slots change. Hosts that
        no job is placed on any more (a job that moved between a pool host and
        one of its own) are retired: the next reconcile round stops them."""
        if self._hosts is None:
            self._dedicated = set(self.placement.dedicated(self.jobs.values(), self.slots))
            placed: dict[str, set[UUID]] = {}
            for job in self.jobs.values():
                placed.setdefault(self.placement.key(job, job.id in self._dedicated), set()).add(job.id)
            hosts = {key: (ids, digest(ids)) for key, ids in placed.items()}
            previous, self._hosts, self._previous = self._previous, hosts, hosts
            retired = previous.keys() - hosts.keys()
            if retired:  # jobs moved (a slot freed in auto placement): their hosts first, now
                self._retired |= retired
                self._moved([key for key, held in hosts.items() if previous.get(key) != held])
        return self._hosts

    def key(self, job: Job) -> str:
        """The host of a job known to the registry."""
        if self._hosts is None:
            self.hosts()
        return self.placement.key(job, job.id in self._dedicated)

    def placed(self, key: str) -> set[UUID]:
        """The ids of the jobs placed on host ``key`` now."""
        return self.hosts().get(key, (set(), 0))[0]

    def take_retired(self) -> list[str]:
        """The retired hosts still unplaced, each handed out once."""
        hosts = self.hosts()
        retired, self._retired = [key for key in self._retired if key not in hosts], set()
        return retired
