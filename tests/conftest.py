"""Shared fixtures.

PostgreSQL is used when ``CHRONOS_TEST_POSTGRES_URL`` is set (e.g.
``postgresql://postgres@127.0.0.1:5432/test``). Several people and CI runs
share that server, so each test session creates its own database
``chronos_test_<hex>`` and drops it at the end; the URL's own database is only
used to issue CREATE/DROP DATABASE.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from chronos.store import Store


def _libpq_url(url: str) -> str:
    """psycopg wants postgresql://; accept SQLAlchemy's postgresql+psycopg:// too."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL database private to this test session (skips without the env var)."""
    base = os.environ.get("CHRONOS_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("CHRONOS_TEST_POSTGRES_URL is not set")
    import psycopg
    from psycopg import sql

    admin = _libpq_url(base)
    name = f"chronos_test_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            # FORCE: a leaked connection must not leave the database behind.
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def reset_postgres(url: str) -> None:
    """Empty the per-session database: every test starts from no tables at all."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh, empty database URL: a SQLite file under tmp_path, or the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chronos.db'}"
    url = request.getfixturevalue("postgres_url")
    reset_postgres(url)
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A Store with its schema created, on each backend."""
    s = Store(store_url)
    s.create_schema()
    yield s
    s.close()


@pytest.fixture
async def make_supervisor(tmp_path):
    """Start an in-process supervisor over a SQLite file, stopped after the test.
    ``runtime``: builds its Runtime from it (default: hosts in this process);
    other keywords go to the Supervisor."""
    from chronos.local_runtime import LocalRuntime
    from chronos.supervisor import Supervisor

    started = []

    async def make(runtime=LocalRuntime, **options):
        sup = Supervisor(Store(f"sqlite:///{tmp_path / 'chronos.db'}"), **options)
        await sup.start(runtime(sup))
        started.append(sup)
        return sup

    yield make
    for sup in started:
        await sup.stop()
        sup.store.close()


@pytest.fixture
async def supervisor(make_supervisor):
    """A started in-process supervisor (hosts in this process) over a SQLite file."""
    return await make_supervisor()


@pytest.fixture(scope="session")
def ray_session():
    """One real local Ray for the whole test session (small: 2 CPUs)."""
    import ray

    from chronos.actors.runtime import SLOT_RESOURCE

    ray.init(
        num_cpus=2,
        resources={SLOT_RESOURCE: 32},
        include_dashboard=False,
        log_to_driver=False,
        namespace="chronos-tests",
    )
    yield
    ray.shutdown()
