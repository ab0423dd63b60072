"""Durable state: jobs, executions and their attempts, in SQLite or PostgreSQL.

The supervisor is the only writer (DESIGN §3.4); it writes from one worker
thread and batches its writes, so every write method takes a list and runs in
ONE transaction. It reads API pages from other threads: each thread has its own
pooled connection, and in WAL mode SQLite readers neither wait for nor block
the writer. The rest of Chronos only sees the pydantic models of
:mod:`chronos.models`; the SQLModel tables below are private.

Design points:

* **The slot claim is the unique key** ``(job_id, scheduled_at, trigger)`` on
  executions (DESIGN §3.5). :meth:`Store.claim` is ``INSERT ... ON CONFLICT DO
  NOTHING RETURNING id``: the database, not the caller, decides who fires.
  It does not look up the jobs first (the supervisor knows them): only when
  the foreign key refuses a row, of a job deleted meanwhile, is the batch
  claimed again without the executions of missing jobs.
* **Reports update only what a report can change** (status, times, outcome,
  where it ran); the slot's key columns stay as claimed.
* **Datetimes** go in as UTC and come out aware UTC. PostgreSQL stores
  ``timestamptz``; SQLite stores naive UTC text with a fixed-width microsecond
  field, so equal instants are equal keys and text order is time order.
* **Jobs** keep the whole spec as JSON (the source of truth for the model) and
  copy out the columns that are filtered, ordered or updated on their own
  (name, enabled, tags, description, timestamps, runtime fields). On read the
  columns win, so :meth:`Store.set_runtime` touches columns only.
* **Deletes cascade** in the database (``ON DELETE CASCADE``; SQLite runs with
  ``foreign_keys=ON``), so deleting a job or pruning history removes attempts.
* **SQLite** runs in WAL mode; SQLAlchemy emits BEGIN itself (the documented
  pysqlite recipe) so reads are one snapshot and writes use ``BEGIN IMMEDIATE``:
  a deferred transaction that reads and then writes can fail with SQLITE_BUSY
  at once when another connection wrote meanwhile, without waiting for
  ``busy_timeout``.
* **Batches write rows in key order**, so two writers racing over overlapping
  slots (a supervisor and its stale twin) wait for each other instead of
  deadlocking on PostgreSQL's unique-index locks.
* ``chronos_meta`` records ``schema_version`` so later releases can migrate.
* **Webhook secrets** in a job's spec are encrypted with ``secret_key``
  (``CHRONOS_SECRET_KEY``, :mod:`chronos.crypto`) when one is given; rows written
  without a key stay readable, and :meth:`Store.rotate_secret_key` re-encrypts them all.
"""

import logging
import uuid
from collections import defaultdict
from contextlib import contextmanager
from functools import lru_cache
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from sqlalchemy import (
    JSON,
    DateTime,
    Index,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    exists,
    func,
    or_,
    text,
    select as sa_select,
    literal_column,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from pydantic import ValidationError as PydanticValidationError
from sqlmodel import Field, Session, SQLModel, select

from chronos.crypto import SecretBox, split_keys
from chronos.errors import DuplicateJob, ExecutionNotFound, JobNotFound, Unavailable, ValidationError
from chronos.times import as_utc
from chronos.cursors import decode_execution_cursor, decode_job_cursor, encode_execution_cursor, encode_job_cursor
from chronos.models import (
    TRUSTED,
    Attempt,
    Execution,
    ExecutionChange,
    ExecutionStatus,
    Glance,
    Job,
    Trigger,
    field_errors,
    joined,
    last_runs,
    skipped_checks_pass,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SQLITE_BUSY_TIMEOUT_MS = 10_000
_UNFINISHED = (ExecutionStatus.pending.value, ExecutionStatus.running.value)
_SLOT_TRIGGERS = (Trigger.scheduled.value, Trigger.catchup.value)
# next_run is not stored: it is worked out from the schedule when a job is read.
_RUNTIME_FIELDS = frozenset({"last_run", "last_status"})
_JOB_DATETIMES = ("created_at", "updated_at", "anchor", "last_run")


RECENT_CHUNK = 100


@lru_cache(maxsize=RECENT_CHUNK)
def _newest_per_job(jobs: int) -> Any:
    """``SELECT k, id, status, scheduled_at`` of the newest ``:per_job`` executions of each
    of ``:job_0`` … ``:job_<jobs-1>`` (k: which): built once per size, so a page costs one
    execution of a cached statement, not 50 select constructions."""
    E = _executions.c
    terms = [
        sa_select(literal_column(str(k)).label("k"), E.id, E.status, E.scheduled_at)
        .where(E.job_id == bindparam(f"job_{k}"))
        .order_by(E.scheduled_at.desc(), E.id.desc())
        .limit(bindparam("per_job"))
        .subquery()
        .select()
        for k in range(jobs)
    ]
    return union_all(*terms)


def _chunks(ids: list, size: int = 1000) -> Iterator[list]:
    """Bounded IN lists: SQLite caps bound parameters per statement."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


class _UTCDateTime(TypeDecorator):
    """``timestamptz`` on PostgreSQL, naive UTC on SQLite; always aware UTC out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Optional[datetime], dialect: Any) -> Optional[datetime]:
        if value is None:
            return None
        value = as_utc(value)
        # SQLite's DATETIME drops tzinfo without converting: hand it UTC wall time.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Optional[datetime], dialect: Any) -> Optional[datetime]:
        return None if value is None else as_utc(value)


# Names sort byte-wise on both backends: PostgreSQL's default collation would
# ignore dashes (so "ab" < "a-c") and give a different page order than SQLite.
_Name = String(63).with_variant(String(63, collation="C"), "postgresql")


# ---------------------------------------------------------------- tables


class _MetaRow(SQLModel, table=True):
    __tablename__ = "chronos_meta"

    key: str = Field(primary_key=True, sa_type=String(64))
    value: str = Field(sa_type=String(256))


class _JobRow(SQLModel, table=True):
    __tablename__ = "jobs"

    id: uuid.UUID = Field(primary_key=True)
    name: str = Field(sa_type=_Name, unique=True, index=True)
    description: Optional[str] = Field(default=None, sa_type=String(1024))
    enabled: bool = Field(index=True)
    created_at: datetime = Field(sa_type=_UTCDateTime)
    updated_at: datetime = Field(sa_type=_UTCDateTime)
    spec: dict[str, Any] = Field(sa_type=JSON)
    tags: dict[str, str] = Field(sa_type=JSON)
    last_run: Optional[datetime] = Field(default=None, sa_type=_UTCDateTime)
    last_status: Optional[str] = Field(default=None, sa_type=String(16))


class _ExecutionRow(SQLModel, table=True):
    __tablename__ = "executions"
    __table_args__ = (
        UniqueConstraint("job_id", "scheduled_at", "trigger", name="uq_executions_slot"),
        # A slot fires once whether a timer or a catch-up claims it: a scheduled
        # and a catch-up claim of one instant collide. Manual runs never do.
        Index(
            "uq_executions_fire",
            "job_id",
            "scheduled_at",
            unique=True,
            sqlite_where=text("\"trigger\" != 'manual'"),
            postgresql_where=text("\"trigger\" != 'manual'"),
        ),
        # Newest-first pages per job: (job_id, scheduled_at desc, id desc) is a backward scan.
        Index("ix_executions_job_newest", "job_id", "scheduled_at", "id"),
    )

    id: uuid.UUID = Field(primary_key=True)
    job_id: uuid.UUID = Field(foreign_key="jobs.id", ondelete="CASCADE")
    job_name: str = Field(sa_type=String(63))
    trigger: str = Field(sa_type=String(16))
    status: str = Field(sa_type=String(16), index=True)
    scheduled_at: datetime = Field(sa_type=_UTCDateTime)
    started_at: Optional[datetime] = Field(default=None, sa_type=_UTCDateTime)
    finished_at: Optional[datetime] = Field(default=None, sa_type=_UTCDateTime)
    duration: Optional[float] = None
    status_code: Optional[int] = None
    response_body: Optional[str] = Field(default=None, sa_type=Text)
    response_truncated: bool = False
    error: Optional[str] = Field(default=None, sa_type=Text)
    reason: Optional[str] = Field(default=None, sa_type=Text)
    missed_slots: Optional[int] = None
    node: Optional[str] = Field(default=None, sa_type=Text)
    actor: Optional[str] = Field(default=None, sa_type=Text)


class _AttemptRow(SQLModel, table=True):
    __tablename__ = "attempts"

    execution_id: uuid.UUID = Field(primary_key=True, foreign_key="executions.id", ondelete="CASCADE")
    number: int = Field(primary_key=True)
    started_at: datetime = Field(sa_type=_UTCDateTime)
    duration: Optional[float] = None
    status_code: Optional[int] = None
    error: Optional[str] = Field(default=None, sa_type=Text)


_TABLES = [_MetaRow.__table__, _JobRow.__table__, _ExecutionRow.__table__, _AttemptRow.__table__]
_jobs, _executions, _attempts = _JobRow.__table__, _ExecutionRow.__table__, _AttemptRow.__table__
_EXECUTION_COLUMNS = [c.name for c in _executions.columns]
_ATTEMPT_COLUMNS = [c.name for c in _attempts.columns]
#: What a glance at an execution needs (the console's strips and running list), small to read.
_SUMMARY_COLUMNS = ("id", "job_id", "job_name", "trigger", "status", "scheduled_at", "started_at", "finished_at", "duration")


# ---------------------------------------------------------------- conversions


def _text(value: Optional[str]) -> Optional[str]:
    """PostgreSQL text cannot hold NUL; one in a webhook's response must not fail a whole batch."""
    return value.replace("\x00", "\ufffd") if value and "\x00" in value else value


def _job_values(job: Job, box: SecretBox) -> dict[str, Any]:
    job = job.model_copy(update={f: as_utc(getattr(job, f)) for f in _JOB_DATETIMES if getattr(job, f)})
    return {
        "id": job.id,
        "name": job.name,
        "description": _text(job.description),
        "enabled": job.enabled,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "spec": box.seal(job.model_dump(mode="json", exclude={"problem", "next_run"})),
        "tags": dict(job.tags),
        "last_run": job.last_run,
        "last_status": job.last_status.value if job.last_status else None,
    }


def _to_job(row: _JobRow, box: SecretBox) -> Job:
    data = box.open(dict(row.spec), job=row.name)
    if isinstance(data.get("anchor"), str):  # else pydantic's own TzInfo(0) comes back, not timezone.utc
        data["anchor"] = as_utc(datetime.fromisoformat(data["anchor"]))
    for column in ("id", "name", "enabled", "tags", "created_at", "updated_at", *_RUNTIME_FIELDS):
        data[column] = getattr(row, column)
    # Validated where it entered (API, CLI, YAML): converted here, its schedule and zone
    # checked from caches, not compiled again.
    job = Job.model_validate(data, context=TRUSTED)
    if skipped_checks_pass(job):
        return job
    try:
        Job.model_validate(data)  # every check, to say what is wrong
    except PydanticValidationError as e:  # stored under an older, laxer rule: load it, with its problem
        problem = joined(field_errors(e))
        log.warning("job %s no longer validates (%s): it will not fire until it is fixed", row.name, problem)
        return job.model_copy(update={"problem": problem})
    return job


# Columns a report can change after the claim; the rest are fixed by it.
_EXECUTION_MUTABLE = [
    "status", "started_at", "finished_at", "duration", "status_code", "response_body", "response_truncated",
    "error", "reason", "missed_slots", "node", "actor",
]
# Per-column conversions to what the columns store; getattr instead of a model_dump per row (hot path).
# Datetimes are converted by _UTCDateTime; scheduled_at here too, as rows are sorted by it.
_EXECUTION_CONVERT = {
    "trigger": lambda v: v.value,
    "status": lambda v: v.value,
    "scheduled_at": as_utc,
    **{c: _text for c in ("job_name", "response_body", "error", "reason", "node", "actor")},
}


def _plan(columns: list[str], prefix: str = "") -> list[tuple[str, str, Any]]:
    return [(prefix + c, c, _EXECUTION_CONVERT.get(c)) for c in columns]


_INSERT_PLAN = _plan(_EXECUTION_COLUMNS)
_UPDATE_PLAN = _plan(_EXECUTION_MUTABLE, "b_")  # b_: a bindparam may not take a SET column's name


def _execution_values(e: Execution, plan: list[tuple[str, str, Any]] = _INSERT_PLAN) -> dict[str, Any]:
    values = {}
    for key, column, convert in plan:
        value = getattr(e, column)
        values[key] = value if convert is None or value is None else convert(value)
    return values


_UPDATE_EXECUTION = (
    update(_executions)
    .where(_executions.c.id == bindparam("b_id", type_=_executions.c.id.type))
    .values({c: bindparam(f"b_{c}", type_=_executions.c[c].type) for c in _EXECUTION_MUTABLE})
)


_LAST_RUN = bindparam("b_last_run", type_=_jobs.c.last_run.type)
_SET_LAST_RUN = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("b_id", type_=_jobs.c.id.type), or_(_jobs.c.last_run.is_(None), _jobs.c.last_run <= _LAST_RUN))
    .values(last_run=_LAST_RUN, last_status=bindparam("b_last_status", type_=_jobs.c.last_status.type))
)


def _attempt_values(execution_id: uuid.UUID, a: Attempt) -> dict[str, Any]:
    return {
        "execution_id": execution_id,
        "number": a.number,
        "started_at": a.started_at,  # made UTC by _UTCDateTime
        "duration": a.duration,
        "status_code": a.status_code,
        "error": _text(a.error),
    }


def _to_execution(row: _ExecutionRow, attempts: list[_AttemptRow]) -> Execution:
    data = {name: getattr(row, name) for name in _EXECUTION_COLUMNS}
    data["attempts"] = [
        {name: getattr(a, name) for name in _ATTEMPT_COLUMNS if name != "execution_id"} for a in attempts
    ]
    return Execution.model_validate(data)


def _check_limit(limit: int) -> None:
    if limit < 1:
        message = "limit must be at least 1"
        raise ValidationError(message, errors=[{"field": "limit", "message": message}])


def _runtime_groups(updates: Iterable[tuple[uuid.UUID, dict[str, Any]]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """set_runtime's rows, checked and grouped by the fields they set."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for job_id, fields in updates:
        unknown = set(fields) - _RUNTIME_FIELDS
        if unknown:
            raise ValueError(f"set_runtime cannot set {sorted(unknown)}: only {sorted(_RUNTIME_FIELDS)}")
        if fields.get("last_status") is not None:  # a bad status would make the job unreadable
            fields = {**fields, "last_status": ExecutionStatus(fields["last_status"]).value}
        params = {f"b_{k}": v for k, v in fields.items()}
        groups[tuple(sorted(fields))].append({"b_id": job_id, **params})
    return groups


def _unnest_insert(table: Any, columns: list[str]) -> Any:
    """PostgreSQL's ``INSERT ... SELECT * FROM unnest(:a_col1, :a_col2, ...)``: one array per column."""
    arrays = func.unnest(*[bindparam(f"a_{c}", type_=ARRAY(table.c[c].type)) for c in columns])
    return pg_insert(table).from_select(columns, select(*arrays.table_valued(*columns).render_derived().c))


# ---------------------------------------------------------------- engine


def _make_engine(url: str, echo: bool) -> Engine:
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, echo=echo, connect_args={"check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    if backend in ("postgresql", "postgres"):
        # Plain postgresql:// would pick psycopg2; Chronos ships psycopg 3.
        if u.drivername in ("postgresql", "postgres"):
            u = u.set(drivername="postgresql+psycopg")
        return create_engine(u, echo=echo, pool_pre_ping=True)
    raise ValueError(f'unsupported database URL "{u.render_as_string()}": use sqlite:/// or postgresql://')


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We emit BEGIN ourselves (see _on_begin), so pysqlite must not.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # With WAL, NORMAL loses no committed data on a process crash (only,
        # at worst, the last transactions on a power loss) and skips an fsync
        # per commit, which dominated the supervisor's store thread.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front so busy_timeout applies.
        write = conn.get_execution_options().get("chronos_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


# ---------------------------------------------------------------- store


class Store:
    """Jobs and execution history in SQLite (``sqlite:///path``) or PostgreSQL."""

    def __init__(self, url: str, *, echo: bool = False, secret_key: Any = None):
        """``secret_key``: ``CHRONOS_SECRET_KEY`` (str or SecretStr; ``NEW,OLD`` accepted):
        webhook secrets are encrypted in the jobs table when it is set (chronos.crypto)."""
        if hasattr(secret_key, "get_secret_value"):
            secret_key = secret_key.get_secret_value()
        self._box = SecretBox(secret_key)
        self._engine = _make_engine(url, echo)
        self._write_engine = self._engine.execution_options(chronos_write=True)
        self._dialect = self._engine.dialect.name
        self._insert = pg_insert if self._dialect == "postgresql" else sqlite_insert

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for diagnostics (readiness pings) and tests."""
        return self._engine

    @contextmanager
    def _tx(self, *, write: bool = False) -> Iterator[Session]:
        engine = self._write_engine if write else self._engine
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session

    # ------------------------------------------------------------ schema

    def create_schema(self) -> None:
        """Create missing tables and record (or check) the schema version."""
        SQLModel.metadata.create_all(self._engine, tables=_TABLES)
        with self._tx(write=True) as s:
            stmt = self._insert(_MetaRow.__table__).values(key="schema_version", value=str(SCHEMA_VERSION))
            s.execute(stmt.on_conflict_do_nothing())
        found = self.schema_version()
        if found != SCHEMA_VERSION:
            raise Unavailable(
                f"the database has schema version {found}, this Chronos uses {SCHEMA_VERSION}: "
                "run the Chronos release that matches the database, or migrate it"
            )

    def schema_version(self) -> Optional[int]:
        with self._tx() as s:
            row = s.get(_MetaRow, "schema_version")
            return int(row.value) if row else None

    def close(self) -> None:
        self._engine.dispose()

    def rotate_secret_key(self, new_key: Optional[str], old_keys: "str | None" = None) -> int:
        """Re-encrypt the secrets of every stored job with ``new_key`` (None: store them in
        plain text), reading them with ``old_keys`` (comma-separated; None: they were written
        without a key). One transaction: a wrong old key changes nothing. Returns the jobs
        rewritten. Run it with the server stopped, or with the server on ``NEW,OLD`` keys."""
        reader = SecretBox(",".join(split_keys(old_keys) + split_keys(new_key)))
        writer = SecretBox(new_key)
        with self._tx(write=True) as s:
            rows = s.exec(select(_JobRow.id, _JobRow.name, _JobRow.spec)).all()
            for job_id, name, spec in rows:
                sealed = writer.seal(reader.open(dict(spec), job=name))
                s.execute(update(_jobs).where(_jobs.c.id == job_id).values(spec=sealed))
        return len(rows)

    # ------------------------------------------------------------ jobs

    def insert_job(self, job: Job) -> Job:
        row = _JobRow(**_job_values(job, self._box))
        try:
            with self._tx(write=True) as s:
                s.add(row)
        except IntegrityError:
            raise self._duplicate(job) from None
        return _to_job(row, self._box)

    def update_job(self, job: Job) -> Job:
        """Replace the job's spec. Its run state (next/last run, last status)
        stays as the store has it: reports own it, and one written while this
        update was queued must not be overwritten with the caller's older copy."""
        try:
            with self._tx(write=True) as s:
                row = s.get(_JobRow, job.id)
                if row is None:
                    raise JobNotFound(f'job "{job.id}" not found')
                for key, value in _job_values(job, self._box).items():
                    if key not in _RUNTIME_FIELDS:
                        setattr(row, key, value)
        except IntegrityError:
            raise self._duplicate(job) from None
        return _to_job(row, self._box)

    def _duplicate(self, job: Job) -> DuplicateJob:
        with self._tx() as s:
            name_taken = s.exec(select(_JobRow.id).where(_JobRow.name == job.name)).first() is not None
        if name_taken:
            message = f'a job named "{job.name}" already exists'
            return DuplicateJob(message, errors=[{"field": "name", "message": message}])
        return DuplicateJob(f'a job with id "{job.id}" already exists')

    def delete_job(self, job_id: uuid.UUID) -> None:
        """Delete a job; its executions and attempts go with it (ON DELETE CASCADE)."""
        with self._tx(write=True) as s:
            deleted = s.execute(delete(_jobs).where(_jobs.c.id == job_id)).rowcount
        if not deleted:
            raise JobNotFound(f'job "{job_id}" not found')

    def get_job(self, ref: "str | uuid.UUID") -> Job:
        """A job by id or by name. A name may look like a UUID, so an id miss falls back to the name."""
        with self._tx() as s:
            row = None
            job_id = ref if isinstance(ref, uuid.UUID) else parse_uuid(ref)
            if job_id is not None:
                row = s.get(_JobRow, job_id)
            if row is None and isinstance(ref, str):
                row = s.exec(select(_JobRow).where(_JobRow.name == ref)).first()
        if row is None:
            raise JobNotFound(f'job "{ref}" not found')
        return _to_job(row, self._box)

    def list_jobs(
        self,
        *,
        enabled: Optional[bool] = None,
        tags: Optional[dict[str, str]] = None,
        search: Optional[str] = None,
        limit: int = 100,
        cursor: Optional[str] = None,
    ) -> tuple[list[Job], Optional[str]]:
        """A page of jobs ordered by name, and the cursor of the next page (None at the end)."""
        _check_limit(limit)
        query = select(_JobRow).order_by(_JobRow.name)
        if enabled is not None:
            query = query.where(_JobRow.enabled == enabled)
        for key, value in (tags or {}).items():
            query = query.where(self._tag_is(key, value))
        if search:
            query = query.where(
                or_(_JobRow.name.icontains(search, autoescape=True), _JobRow.description.icontains(search, autoescape=True))
            )
        if cursor is not None:
            query = query.where(_JobRow.name > decode_job_cursor(cursor))
        with self._tx() as s:
            rows = s.exec(query.limit(limit + 1)).all()
        page = [_to_job(r, self._box) for r in rows[:limit]]
        return page, (encode_job_cursor(page[-1].name) if len(rows) > limit else None)

    def _tag_is(self, key: str, value: str) -> Any:
        if self._dialect == "postgresql":
            return _JobRow.tags[key].as_string() == value  # tags ->> :key; any key is a plain bind
        # SQLite's JSON path syntax cannot quote every key (e.g. one with a '"'); json_each can.
        each = func.json_each(_JobRow.tags).table_valued("key", "value")
        return exists().select_from(each).where(each.c.key == key, each.c.value == value)

    def all_jobs(self) -> list[Job]:
        # Rows are read and turned into jobs in batches: a server's start holds
        # every job once, not every row and every job at the same time.
        with self._tx() as s:
            rows = s.exec(select(_JobRow).order_by(_JobRow.name).execution_options(yield_per=500))
            return [_to_job(r, self._box) for r in rows]

    def set_runtime(self, updates: list[tuple[uuid.UUID, dict[str, Any]]]) -> None:
        """Batch-update last_run / last_status; unknown job ids are ignored."""
        groups = _runtime_groups(updates)
        with self._tx(write=True) as s:
            self._set_runtime(s, groups)

    def _set_runtime(self, s: Session, groups: dict[tuple[str, ...], list[dict[str, Any]]]) -> None:
        # One executemany per set of keys: every row of an executemany binds the same columns.
        for keys, params in groups.items():
            if not keys:
                continue
            stmt = (
                update(_jobs)
                .where(_jobs.c.id == bindparam("b_id", type_=_jobs.c.id.type))
                .values({k: bindparam(f"b_{k}", type_=_jobs.c[k].type) for k in keys})
            )
            s.execute(stmt, sorted(params, key=lambda p: p["b_id"].int))  # lock order, as in _insert_new

    # ------------------------------------------------------------ executions

    def claim(self, executions: list[Execution]) -> list[bool]:
        """Insert each execution unless its slot (job, scheduled_at, trigger) is taken.

        ``result[i]`` is True when this call inserted ``executions[i]``; False when
        the slot (or the id) was already there, or the job no longer exists.
        """
        if not executions:
            return []
        try:
            inserted = self._claim(executions)
        except IntegrityError:
            # The foreign key to jobs: a job was deleted meanwhile. The supervisor drops
            # executions of jobs it deleted itself, so only another writer gets here.
            with self._tx() as s:
                live = self._live_job_ids(s, executions)
            inserted = self._claim([e for e in executions if e.job_id in live])
        result = []
        for e in executions:
            result.append(e.id in inserted)
            inserted.discard(e.id)  # the same object twice in a batch: only the first one won
        return result

    def _claim(self, executions: list[Execution]) -> set[uuid.UUID]:
        with self._tx(write=True) as s:
            inserted = self._insert_new(s, [_execution_values(e) for e in executions])
            self._upsert_attempts(s, [_attempt_values(e.id, a) for e in executions if e.id in inserted for a in e.attempts])
        return inserted

    def save_executions(
        self, executions: list[Execution], runtime: Iterable[tuple[uuid.UUID, dict[str, Any]]] = ()
    ) -> list[ExecutionChange]:
        """Upsert executions by id and their attempts by (execution_id, number), and
        :meth:`set_runtime` the ``runtime`` updates, in one transaction; returns
        the executions whose row this call inserted or changed.

        A report never takes a row back (:meth:`ExecutionStatus.may_replace`): a
        row with a final status is never written again, and a running one never
        returns to pending; such reports, and older entries for the same id in
        the batch, are dropped. The rows are read locked, so another writer
        cannot slip a change in between. Executions of deleted jobs are dropped.
        A new execution whose slot another execution holds is dropped with a
        warning instead of failing the whole batch.
        """
        groups = _runtime_groups(runtime)
        if not executions and not groups:
            return []
        with self._tx(write=True) as s:
            changes = self._save_executions(s, executions) if executions else []
            self._set_runtime(s, groups)
        return changes

    def _save_executions(self, s: Session, executions: list[Execution]) -> list[ExecutionChange]:
        latest: dict[uuid.UUID, Execution] = {}
        for e in executions:  # in report order: a later entry wins unless it would go back
            if e.id not in latest or e.status.may_replace(latest[e.id].status):
                latest[e.id] = e
        # A deleted job's executions are gone (ON DELETE CASCADE): they are not
        # found here, so only new ones need their job checked.
        recorded = self._recorded(s, list(latest))
        new = [e for i, e in latest.items() if i not in recorded]
        if new:
            live = self._live_job_ids(s, new)
            new = [e for e in new if e.job_id in live]
        inserted = self._insert_new(s, [_execution_values(e) for e in new])
        for e in new:
            if e.id not in inserted:
                log.warning("execution %s not saved: slot %s of job %s is held by another execution",
                            e.id, e.scheduled_at.isoformat(), e.job_id)
        changes = [ExecutionChange(e) for e in new if e.id in inserted]
        changes += [
            ExecutionChange(e, *recorded[i]) for i, e in latest.items() if i in recorded and e.status.may_replace(recorded[i][0])
        ]
        self._update_existing(s, [c.execution for c in changes if c.before is not None])
        self._upsert_attempts(s, [_attempt_values(c.execution.id, a) for c in changes for a in c.execution.attempts])
        self._set_last_runs(s, last_runs(changes))
        return changes

    def _set_last_runs(self, s: Session, runs: dict[uuid.UUID, tuple[datetime, ExecutionStatus]]) -> None:
        """A job's last run follows the runs written, never going back to an older one
        (a run that ended late, a report of an older run retried)."""
        params = [{"b_id": job_id, "b_last_run": at, "b_last_status": status.value} for job_id, (at, status) in runs.items()]
        if params:
            s.execute(_SET_LAST_RUN, sorted(params, key=lambda p: p["b_id"].int))  # lock order, as in _insert_new

    def _recorded(self, s: Session, ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[ExecutionStatus, bool, int]]:
        """Each stored row's (status, whether it has its start, highest attempt
        number), locked until the transaction ends (PostgreSQL: FOR UPDATE, in id
        order as every writer locks; SQLite: a writer holds the database lock)."""
        E = _executions.c
        last_attempt = (
            select(func.coalesce(func.max(_attempts.c.number), 0)).where(_attempts.c.execution_id == E.id).scalar_subquery()
        )
        found = {}
        for chunk in _chunks(sorted(ids, key=lambda i: i.int)):
            query = (
                sa_select(E.id, E.status, E.started_at.is_not(None), last_attempt)
                .where(E.id.in_(chunk))
                .order_by(E.id)
                .with_for_update(of=_executions)
            )
            for eid, status, started, attempts in s.execute(query):
                found[eid] = (ExecutionStatus(status), bool(started), int(attempts))
        return found

    def _live_job_ids(self, s: Session, executions: Iterable[Execution]) -> set[uuid.UUID]:
        ids = list({e.job_id for e in executions})
        return set(s.exec(select(_JobRow.id).where(_JobRow.id.in_(ids))).all())

    def _insert_new(self, s: Session, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
        """INSERT ... ON CONFLICT DO NOTHING RETURNING id: the ids actually inserted."""
        if not rows:
            return set()
        # Same order in every transaction: two claimers racing over overlapping
        # slots then wait for each other instead of deadlocking (PostgreSQL).
        # (UUID.int: the same order as the UUIDs, compared in C.)
        rows = sorted(rows, key=lambda r: (r["job_id"].int, r["scheduled_at"], r["trigger"]))
        stmt, params = self._insert_many(_executions, rows)
        return set(s.execute(stmt.on_conflict_do_nothing().returning(_executions.c.id), params).scalars())

    def _insert_many(self, table: Any, rows: list[dict[str, Any]]) -> tuple[Any, Any]:
        """An INSERT of ``rows`` (in their order) and its parameters.

        On PostgreSQL the rows go as one array per column: psycopg converts every
        placeholder of a statement on each call, and a multi-row VALUES has one per
        value (18,000 for 1,000 executions), which cost more than the insert itself."""
        if self._dialect != "postgresql":
            return self._insert(table), rows
        columns = list(rows[0])
        return _unnest_insert(table, columns), {f"a_{c}": [r[c] for r in rows] for c in columns}

    def _update_existing(self, s: Session, executions: list[Execution]) -> None:
        """UPDATE only the columns a report can change, one executemany."""
        if not executions:
            return
        rows = [_execution_values(e, _UPDATE_PLAN) | {"b_id": e.id} for e in executions]
        rows.sort(key=lambda r: r["b_id"].int)  # lock order, as in _insert_new
        s.execute(_UPDATE_EXECUTION, rows)

    def _upsert_attempts(self, s: Session, rows: list[dict[str, Any]]) -> None:
        # One row per key, the last one winning: PostgreSQL refuses an ON CONFLICT DO
        # UPDATE that touches a row twice. Sorted for lock order, as in _insert_new.
        latest = {(r["execution_id"], r["number"]): r for r in rows}
        rows = [latest[k] for k in sorted(latest, key=lambda k: (k[0].int, k[1]))]
        if not rows:
            return
        stmt, params = self._insert_many(_attempts, rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=["execution_id", "number"],
            set_={c: stmt.excluded[c] for c in ("started_at", "duration", "status_code", "error")},
        )
        s.execute(stmt, params)

    def get_execution(self, job_id: uuid.UUID, execution_id: "uuid.UUID | str") -> Execution:
        eid = execution_id if isinstance(execution_id, uuid.UUID) else parse_uuid(execution_id)
        with self._tx() as s:
            row = s.get(_ExecutionRow, eid) if eid is not None else None
            if row is None or row.job_id != job_id:
                raise ExecutionNotFound(f'execution "{execution_id}" of job "{job_id}" not found')
            return self._with_attempts(s, [row])[0]

    def list_executions(
        self,
        job_id: uuid.UUID,
        *,
        status: Optional[ExecutionStatus] = None,
        limit: int = 50,
        cursor: Optional[str] = None,
    ) -> tuple[list[Execution], Optional[str]]:
        """Newest first by (scheduled_at, id), keyset-paged; two queries per page."""
        _check_limit(limit)
        E = _ExecutionRow
        query = select(E).where(E.job_id == job_id).order_by(E.scheduled_at.desc(), E.id.desc())
        if status is not None:
            query = query.where(E.status == ExecutionStatus(status).value)
        if cursor is not None:
            at, eid = decode_execution_cursor(cursor)
            query = query.where(or_(E.scheduled_at < at, and_(E.scheduled_at == at, E.id < eid)))
        with self._tx() as s:
            rows = s.exec(query.limit(limit + 1)).all()
            page = self._with_attempts(s, rows[:limit])
        if len(rows) <= limit:
            return page, None
        last = page[-1]
        return page, encode_execution_cursor(last.scheduled_at, last.id)

    def unfinished_executions(self, job_ids: Optional[list[uuid.UUID]] = None) -> list[Execution]:
        """Executions left pending or running (of these jobs, or of every job), oldest slot first."""
        E = _ExecutionRow
        query = select(E).where(E.status.in_(_UNFINISHED))
        found: list[Execution] = []
        with self._tx() as s:
            for chunk in [None] if job_ids is None else _chunks(job_ids):
                rows = s.exec(query if chunk is None else query.where(E.job_id.in_(chunk))).all()
                found += self._with_attempts(s, rows)
        return sorted(found, key=lambda e: (e.scheduled_at, e.id))

    def count_running(self) -> int:
        """Executions in flight (status running), as durable: the gauge a
        restarted supervisor reports without having seen them start."""
        with self._tx() as s:
            return int(s.exec(select(func.count()).where(_ExecutionRow.status == ExecutionStatus.running.value)).one())

    def _with_attempts(self, s: Session, rows: list[_ExecutionRow]) -> list[Execution]:
        """Attach attempts to a page of rows with ONE query (no N+1)."""
        by_execution: dict[uuid.UUID, list[_AttemptRow]] = defaultdict(list)
        if rows:
            A = _AttemptRow
            query = select(A).where(A.execution_id.in_([r.id for r in rows])).order_by(A.execution_id, A.number)
            for a in s.exec(query):
                by_execution[a.execution_id].append(a)
        return [_to_execution(r, by_execution[r.id]) for r in rows]

    def recent_executions(self, job_ids: list[uuid.UUID], per_job: int) -> dict[uuid.UUID, list[Glance]]:
        """Each job's newest ``per_job`` executions, newest first, at a glance: one
        statement per 100 jobs, a UNION ALL of one indexed backward scan per job."""
        _check_limit(per_job)
        found: dict[uuid.UUID, list[Glance]] = {job_id: [] for job_id in job_ids}
        with self._tx() as s:
            for chunk in _chunks(job_ids, RECENT_CHUNK):  # SQLite caps a compound select at 500 terms
                params: dict[str, Any] = {f"job_{i}": job_id for i, job_id in enumerate(chunk)}
                for k, eid, status, at in s.connection().execute(_newest_per_job(len(chunk)), {**params, "per_job": per_job}):
                    found[chunk[k]].append(Glance(eid, ExecutionStatus(status), at))
        for glances in found.values():
            glances.sort(key=lambda g: (g.scheduled_at, g.id), reverse=True)
        return found

    def status_counts(self, since: datetime) -> tuple[dict[str, int], int]:
        """Executions per status scheduled at or after ``since``, and the slots missed then."""
        E = _ExecutionRow
        query = (
            select(E.status, func.count(), func.coalesce(func.sum(E.missed_slots), 0))
            .where(E.scheduled_at >= since)
            .group_by(E.status)
        )
        with self._tx() as s:
            rows = s.exec(query).all()
        return {status: int(n) for status, n, _ in rows}, sum(int(missed) for *_, missed in rows)

    def running_executions(self, limit: int) -> list[Execution]:
        """Up to ``limit`` executions pending or running now, newest slot first (summaries)."""
        _check_limit(limit)
        E = _ExecutionRow
        columns = [getattr(E, name) for name in _SUMMARY_COLUMNS]
        query = select(*columns).where(E.status.in_(_UNFINISHED)).order_by(E.scheduled_at.desc()).limit(limit)
        with self._tx() as s:
            return [Execution.model_validate(dict(zip(_SUMMARY_COLUMNS, row, strict=True))) for row in s.exec(query).all()]

    def last_slots(self, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, datetime]:
        """Each job's latest scheduled/catch-up slot on record (manual runs are not slots)."""
        E = _ExecutionRow
        found: dict[uuid.UUID, datetime] = {}
        with self._tx() as s:
            for chunk in _chunks(job_ids):
                query = (
                    select(E.job_id, func.max(E.scheduled_at))
                    .where(E.job_id.in_(chunk), E.trigger.in_(_SLOT_TRIGGERS))
                    .group_by(E.job_id)
                )
                found.update({job_id: as_utc(at) for job_id, at in s.exec(query).all() if at is not None})
        return found

    def prune(self, *, keep: int, max_age: timedelta, now: datetime) -> int:
        """Per job keep the newest ``keep`` executions and none older than ``now - max_age``.

        Age is measured from finished_at (scheduled_at while unset). Pending and
        running executions are never pruned, but do count towards ``keep``.
        Returns the number of executions deleted; attempts go with them.
        """
        cutoff = as_utc(now) - max_age
        E = _executions.c
        rank = func.row_number().over(partition_by=E.job_id, order_by=(E.scheduled_at.desc(), E.id.desc()))
        ranked = (
            select(E.id, E.status, E.scheduled_at, E.finished_at, rank.label("rn"))
            .subquery("ranked")
        )
        doomed = select(ranked.c.id).where(
            ranked.c.status.not_in(_UNFINISHED),
            or_(ranked.c.rn > keep, func.coalesce(ranked.c.finished_at, ranked.c.scheduled_at) < cutoff),
        )
        with self._tx(write=True) as s:
            return s.execute(delete(_executions).where(E.id.in_(doomed))).rowcount


def parse_uuid(text: str) -> Optional[uuid.UUID]:
    """The UUID ``text`` spells, or None (job refs are an id or a name)."""
    try:
        return uuid.UUID(text)
    except (ValueError, AttributeError, TypeError):
        return None


