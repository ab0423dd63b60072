"""Webhook secrets (bearer token, basic password, API key, secret headers) never leave
the server in the clear, and are encrypted at rest when ``CHRONOS_SECRET_KEY`` is set.

* the store: encrypted rows, plain rows still readable, rotation, wrong keys (SQLite and PostgreSQL);
* Python reprs (what logs, tracebacks and the Ray dashboard show);
* a real supervisor on Ray: the actors' repr as Ray's GCS records it for the dashboard;
* ``chronos serve`` end to end (marked e2e): every API endpoint, chronosctl in every output
  format, the server's stdout/stderr, every file under its data dir and its Ray session logs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text
from typer.testing import CliRunner

from chronos.crypto import SecretKeyError
from chronos.models import Job, parse_job
from chronos.store import Store

TOKEN, PASSWORD, API_KEY = "bearer-S3CRET-tok", "basic-S3CRET-pw", "apikey-S3CRET-val"
HEADER_AUTH, HEADER_TOKEN = "hdr-S3CRET-auth", "xtok-S3CRET-hdr"
BASIC_B64 = base64.b64encode(f"ops:{PASSWORD}".encode()).decode()  # as it travels in the header
SIGNING = "whsec_" + base64.b64encode(b"signing-S3CRET-of-the-job-0123").decode()
DEFAULT_SIGNING = "whsec_" + base64.b64encode(b"signing-S3CRET-server-default-9").decode()  # CHRONOS_SIGNING_SECRET
NOTIFY_PATH = "/services/T0/B0/notify-S3CRET-path"  # a Slack incoming webhook's path is its credential
SECRETS = (TOKEN, PASSWORD, API_KEY, HEADER_AUTH, HEADER_TOKEN, BASIC_B64, SIGNING, DEFAULT_SIGNING, NOTIFY_PATH[1:])


def secret_jobs(url: str) -> list[dict[str, Any]]:
    """One job per kind of secret, all aimed at ``url`` (a receiver on 127.0.0.1)."""
    url = url.rstrip("/")  # a receiver's base_url ends with "/": paths below start with one
    hook = lambda path, **extra: {"url": f"{url}{path}", "method": "POST", "body": "{}", **extra}  # noqa: E731
    return [
        {"name": "with-bearer", "schedule": "0 0 1 1 *", "webhook": hook("/bearer", auth={"type": "bearer", "token": TOKEN})},
        {"name": "with-basic", "schedule": "0 0 1 1 *",
         "webhook": hook("/basic", auth={"type": "basic", "username": "ops", "password": PASSWORD})},
        {"name": "with-api-key", "schedule": "0 0 1 1 *",
         "webhook": hook("/apikey", auth={"type": "api_key", "api_key": API_KEY, "header": "X-Api-Key"})},
        {"name": "with-headers", "schedule": "0 0 1 1 *",
         "webhook": hook("/headers", headers={"Authorization": f"Bearer {HEADER_AUTH}", "X-Upstream-Token": HEADER_TOKEN})},
        {"name": "with-signing", "schedule": "0 0 1 1 *", "webhook": hook("/signing", signing_secret=[SIGNING])},
        # Its webhook fails, so its Slack target (down: 503) is told, 5 times: the failure is logged.
        {"name": "with-notify", "schedule": "0 0 1 1 *", "retry_policy": {"max_attempts": 1}, "webhook": hook("/failing"),
         "notify": [{"url": f"{url}{NOTIFY_PATH}", "format": "slack"}]},
    ]


N_JOBS = len(secret_jobs("http://127.0.0.1:9"))


def assert_no_secret(text: "str | bytes", where: str) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"{where} shows {leaked}"


def new_key() -> str:
    return Fernet.generate_key().decode()


# ---------------------------------------------------------------- reprs


def test_reprs_never_show_secrets():
    for spec in secret_jobs("http://127.0.0.1:9"):
        job = Job(**parse_job(spec).model_dump())
        for shown in (repr(job), str(job), repr(job.webhook), repr(job.webhook.auth), f"{job!r}", repr([job])):
            assert_no_secret(shown, f"repr of {spec['name']}")
        if job.webhook.headers:
            assert "'Authorization': '***'" in repr(job.webhook)


def test_validation_errors_never_echo_secrets():
    """An invalid job carrying secrets: the error names fields, never values."""
    for spec in secret_jobs("http://127.0.0.1:9"):
        bad = {**spec, "schedule": "61 * * * *", "timeout": "-1s", "webhook": {**spec["webhook"], "method": "GET", "extra": TOKEN}}
        with pytest.raises(Exception) as info:
            parse_job(bad)
        assert_no_secret(str(info.value) + repr(info.value) + json.dumps(info.value.errors), "a validation error")


def test_credentials_in_the_url_are_refused_with_the_fix():
    with pytest.raises(Exception) as info:
        parse_job({"name": "x", "schedule": "@every 1m", "webhook": {"url": f"https://ops:{PASSWORD}@example.com/"}})
    assert "webhook.auth" in str(info.value)
    assert_no_secret(str(info.value), "the URL error")


# ---------------------------------------------------------------- encryption at rest


def _raw_specs(store: Store) -> str:
    with store.engine.connect() as conn:
        # Every column of every row, in full (a Row's own str() abbreviates long values).
        return json.dumps([[str(value) for value in row] for row in conn.execute(text("SELECT * FROM jobs"))])


def _insert_all(store: Store) -> None:
    for spec in secret_jobs("http://127.0.0.1:9"):
        store.insert_job(Job(**parse_job(spec).model_dump()))


def _secrets_of(store: Store) -> set[str]:
    found = set()
    for job in store.all_jobs():
        auth = job.webhook.auth
        found |= {getattr(auth, k) for k in ("token", "password", "api_key") if auth is not None and hasattr(auth, k)}
        found |= set(job.webhook.headers.values()) | set(job.webhook.signing_secrets)
        found |= {urlsplit(target.url).path[1:] for target in job.notify}
    return found


EXPECTED = {TOKEN, PASSWORD, API_KEY, f"Bearer {HEADER_AUTH}", HEADER_TOKEN, SIGNING, NOTIFY_PATH[1:]}


def test_secrets_are_encrypted_at_rest_and_read_back(store_url):
    key = new_key()
    store = Store(store_url, secret_key=key)
    store.create_schema()
    try:
        _insert_all(store)
        job = store.get_job("with-headers")
        store.update_job(job.model_copy(update={"description": "touched"}))  # the update path seals too
        raw = _raw_specs(store)
        assert_no_secret(raw, "the raw jobs table")
        assert "fernet" in raw and "ops" in raw  # encrypted values are marked; the user name is not secret
        assert _secrets_of(store) == EXPECTED
        assert store.list_jobs()[0][0].webhook.auth is not None
    finally:
        store.close()

    for wrong in (None, new_key()):
        other = Store(store_url, secret_key=wrong)
        try:
            with pytest.raises(SecretKeyError, match="CHRONOS_SECRET_KEY") as info:
                other.get_job("with-bearer")
            assert info.value.code == "UNAVAILABLE"
            assert_no_secret(str(info.value), "the key error")
        finally:
            other.close()


def test_jobs_stored_without_a_key_stay_readable_and_rotation_seals_them(store_url):
    plain = Store(store_url)
    plain.create_schema()
    _insert_all(plain)
    assert TOKEN in _raw_specs(plain)  # no key: plain text, as before
    plain.close()

    first, second = new_key(), new_key()
    store = Store(store_url, secret_key=first)
    try:
        assert _secrets_of(store) == EXPECTED  # old rows read fine with a key set
        assert store.rotate_secret_key(first) == N_JOBS  # no old key: encrypt what was plain
        assert_no_secret(_raw_specs(store), "the table after the first rotation")
        assert store.rotate_secret_key(second, old_keys=first) == N_JOBS
        assert_no_secret(_raw_specs(store), "the table after the second rotation")
    finally:
        store.close()

    for key, readable in ((second, True), (first, False), (f"{second},{first}", True)):
        s = Store(store_url, secret_key=key)
        try:
            if readable:
                assert _secrets_of(s) == EXPECTED
            else:
                with pytest.raises(SecretKeyError, match="not the key they were encrypted with"):
                    s.all_jobs()
        finally:
            s.close()


def test_rotation_with_a_wrong_old_key_changes_nothing(store_url):
    key = new_key()
    store = Store(store_url, secret_key=key)
    store.create_schema()
    try:
        _insert_all(store)
        before = _raw_specs(store)
        with pytest.raises(SecretKeyError, match="cannot decrypt"):
            store.rotate_secret_key(new_key(), old_keys=new_key())
        assert _raw_specs(store) == before
    finally:
        store.close()


def test_malformed_key_is_a_clear_error():
    with pytest.raises(SecretKeyError, match="not a valid Fernet key"):
        Store("sqlite://", secret_key="not-a-key")


def test_rotate_key_command(tmp_path):
    from chronos.serve.main import app

    url = f"sqlite:///{tmp_path / 'chronos.db'}"
    old, new = new_key(), new_key()
    store = Store(url, secret_key=old)
    store.create_schema()
    _insert_all(store)
    store.close()

    runner = CliRunner()
    wrong = runner.invoke(app, ["rotate-key", "--database-url", url, "--old-key", new_key(), "--new-key", new])
    assert wrong.exit_code == 1 and "Error: UNAVAILABLE: cannot decrypt" in wrong.output, wrong.output
    done = runner.invoke(app, ["rotate-key", "--database-url", url], env={"CHRONOS_OLD_SECRET_KEY": old, "CHRONOS_NEW_SECRET_KEY": new})
    assert done.exit_code == 0 and f"{N_JOBS} job(s)" in done.output, done.output
    assert old not in done.output and new not in done.output
    store = Store(url, secret_key=new)
    try:
        assert _secrets_of(store) == EXPECTED
    finally:
        store.close()


# ---------------------------------------------------------------- the Ray dashboard


def _gcs_actor_records(namespace: str) -> list[Any]:
    """Ray's own actor table (what the dashboard and `ray list actors` read) for ``namespace``."""
    import ray
    from ray.core.generated import gcs_pb2

    accessor = ray._private.state.state._connect_and_get_accessor()
    records = [gcs_pb2.ActorTableData.FromString(b) for b in accessor.get_actor_table(None, None)]
    return [r for r in records if r.ray_namespace == namespace]


@pytest.mark.ray
async def test_ray_actor_reprs_never_show_secrets(ray_session, tmp_path):
    import ray

    from chronos.actors.client import SupervisorClient
    from chronos.actors.supervisor import start_supervisor
    from chronos.settings import Settings
    from receiver import Receiver

    settings = Settings(data_dir=tmp_path, namespace=f"test-{uuid.uuid4().hex[:8]}", placement="pooled", pool_size=1)
    actor = await asyncio.to_thread(start_supervisor, settings)
    try:
        client = SupervisorClient(settings.namespace)
        async with Receiver() as receiver:
            for spec in secret_jobs(receiver.base_url):
                await client.create_job(parse_job(spec))
            for spec in secret_jobs(receiver.base_url):
                await client.trigger(spec["name"])
            hits = await receiver.wait_for(N_JOBS, timeout=30)
        assert any(h.headers.get("X-Api-Key") == API_KEY for h in hits)  # the secrets are really in use

        host = ray.get_actor("chronos:pool:0", namespace=settings.namespace)
        reprs = [await h.__ray_call__.remote(lambda self: repr(self)) for h in (actor, host)]
        assert reprs[1].startswith("HostActor(chronos:pool:0") and f"jobs={N_JOBS}" in reprs[1]
        records = _gcs_actor_records(settings.namespace)
        assert {r.class_name for r in records} >= {"SupervisorActor", "HostActor"}
        shown = [r.repr_name for r in records]
        # Ray records the repr once, when the actor starts: the dashboard shows that text.
        assert any(s.startswith("HostActor(chronos:pool:0") for s in shown), shown
        for where, text_ in [("actor repr", "\n".join(reprs)), ("GCS actor table", b"".join(r.SerializeToString() for r in records))]:
            assert_no_secret(text_, where)
    finally:
        await actor.shutdown.remote()
        ray.kill(actor, no_restart=True)
        for name in ("chronos:pool:0",):
            try:
                ray.kill(ray.get_actor(name, namespace=settings.namespace), no_restart=True)
            except ValueError:
                pass


# ---------------------------------------------------------------- chronos serve, end to end

GCS_SCRIPT = """
import json, ray
from ray.core.generated import gcs_pb2
ray.init(address="auto", log_to_driver=False)
accessor = ray._private.state.state._connect_and_get_accessor()
records = [gcs_pb2.ActorTableData.FromString(b) for b in accessor.get_actor_table(None, None)]
print(json.dumps([[r.class_name, r.repr_name, r.SerializeToString().hex()] for r in records]))
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real `chronos serve` (its Ray's files in a private temp dir) with the four secret jobs,
    each triggered once, and a receiver on 127.0.0.1 that got them."""
    from receiver import ThreadedReceiver
    from server import Server

    ray_tmp = tempfile.mkdtemp(prefix="crs", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    data = tmp_path_factory.mktemp("secrets") / "data"
    env = {"RAY_TMPDIR": ray_tmp, "CHRONOS_SECRET_KEY": new_key(), "CHRONOS_CONFIG": "/nonexistent.yaml",
           "CHRONOS_SIGNING_SECRET": DEFAULT_SIGNING}
    with ThreadedReceiver() as receiver:
        receiver.route("/failing", status=500)
        receiver.route(NOTIFY_PATH, status=503)
        server = Server(data, env=env)
        try:
            server.start()
            api = f"{server.url}/api/v1"
            for spec in secret_jobs(receiver.base_url):  # each starts an actor: slow on a busy machine
                assert httpx.post(f"{api}/jobs", json=spec, timeout=60).status_code == 201
            for spec in secret_jobs(receiver.base_url):
                trigger(f"{api}/jobs/{spec['name']}/trigger")
            receiver.wait_for(N_JOBS, timeout=60)
            yield {"server": server, "receiver": receiver, "api": api, "ray_tmp": Path(ray_tmp), "env": env}
        finally:
            server.stop()
            shutil.rmtree(ray_tmp, ignore_errors=True)


def trigger(url: str, within: float = 90) -> None:
    """POST a trigger; 503 means the job's actor is still starting ("try again in a few seconds")."""
    deadline = time.monotonic() + within
    while (status := httpx.post(url, timeout=60).status_code) == 503 and time.monotonic() < deadline:
        time.sleep(1)
    assert status == 202, status


def _sent_secrets(receiver) -> set[str]:
    """The secrets the requests carried, and the signing secrets they verify with."""
    from standardwebhooks import Webhook as Verifier
    from standardwebhooks import WebhookVerificationError

    headers = [r.headers for r in receiver.requests]
    sent = {h.get(name, "") for h in headers for name in ("Authorization", "X-Api-Key", "X-Upstream-Token")}
    for request in receiver.requests:
        for secret in (SIGNING, DEFAULT_SIGNING):
            try:
                Verifier(secret).verify(request.body, dict(request.headers))
                sent.add(secret)
            except WebhookVerificationError:
                pass
    return sent


SENT = {f"Bearer {TOKEN}", f"Basic {BASIC_B64}", API_KEY, f"Bearer {HEADER_AUTH}", HEADER_TOKEN, SIGNING, DEFAULT_SIGNING}


@pytest.mark.e2e
def test_api_and_cli_never_show_secrets(served):
    from chronos.cli.main import app as cli_app

    api, receiver = served["api"], served["receiver"]
    assert _sent_secrets(receiver) >= SENT
    seen: list[tuple[str, httpx.Response]] = []

    def call(method: str, path: str, expect: int, **kw: Any) -> httpx.Response:
        url = path if path.startswith("http") else f"{api}{path}"
        r = httpx.request(method, url, timeout=30, **kw)
        assert r.status_code == expect, (method, path, r.status_code, r.text)
        seen.append((f"{method} {path}", r))
        return r

    jobs = call("GET", "/jobs", 200).json()["items"]
    assert len(jobs) == N_JOBS
    call("GET", "/jobs?search=with&limit=2", 200)
    for job in jobs:
        name = job["name"]
        call("GET", f"/jobs/{job['id']}", 200)
        echo = {k: v for k, v in call("GET", f"/jobs/{name}", 200).json().items()
                if k not in ("id", "created_at", "updated_at", "next_run", "last_run", "last_status")}
        call("PUT", f"/jobs/{name}", 200, json={**echo, "description": "replaced"})  # secrets sent back as ***
        call("PATCH", f"/jobs/{name}", 200, json={"webhook": echo["webhook"], "description": "patched"})
        call("POST", f"/jobs/{name}/disable", 200)
        call("POST", f"/jobs/{name}/enable", 200)
        spec = next(s for s in secret_jobs(receiver.base_url) if s["name"] == name)
        call("POST", "/jobs", 409, json=spec)  # duplicate, secrets in the body
        call("PUT", f"/jobs/{name}", 422, json={**spec, "schedule": "0 0 31 2 *", "timeout": "-5s"})
        call("PATCH", f"/jobs/{name}", 422, json={"webhook": {**spec["webhook"], "url": "ftp://x", "extra": TOKEN}})
        call("PATCH", f"/jobs/{name}", 422, json={"webhook": {"auth": {"type": "bearer", "token": 12}}, "retry_policy": {"max_attempts": TOKEN}})
        call("POST", "/jobs", 400, content=f'{{"name": "x", "token": "{TOKEN}"'.encode(), headers={"Content-Type": "application/json"})
        execution = call("POST", f"/jobs/{name}/trigger", 202).json()
        call("GET", f"/jobs/{name}/executions?limit=5", 200)
        call("GET", f"/jobs/{name}/executions/{execution['id']}", 200)
    receiver.wait_for(2 * N_JOBS, timeout=60)
    # The echoed "***" kept every stored secret: the second round carried them all again.
    assert _sent_secrets(receiver) >= SENT
    finished = call("GET", "/jobs/with-bearer/executions?status=success", 200).json()["items"][0]
    call("POST", f"/jobs/with-bearer/executions/{finished['id']}/cancel", 409)
    base = served["server"].url
    for path in ("/metrics", "/openapi.json", "/health", "/ready", "/docs"):
        call("GET", f"{base}{path}", 200)
    for where, r in seen:
        assert_no_secret(r.text + json.dumps(dict(r.headers)), where)

    runner = CliRunner()
    env = {"CHRONOS_SERVER": served["server"].url, "COLUMNS": "250", "NO_COLOR": "1"}
    for fmt in ("table", "json", "yaml"):
        outputs = [runner.invoke(cli_app, ["-o", fmt, "job", "list"], env=env)]
        for job in jobs:
            outputs.append(runner.invoke(cli_app, ["-o", fmt, "job", "get", job["name"]], env=env))
            outputs.append(runner.invoke(cli_app, ["-o", fmt, "execution", "list", job["name"]], env=env))
        for result in outputs:
            assert result.exit_code == 0, result.output
            assert_no_secret(result.output, f"chronosctl -o {fmt}")
    assert "***" in runner.invoke(cli_app, ["-o", "yaml", "job", "get", "with-basic"], env=env).output
    shown = runner.invoke(cli_app, ["-o", "json", "job", "get", "with-notify"], env=env).output
    url = json.loads(shown)["notify"][0]["url"]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/***"), url  # where it goes, not its path


@pytest.mark.e2e
def test_logs_and_actor_table_never_show_secrets(served):
    server = served["server"]
    # Ray's actor table (what the dashboard lists), read by a driver joining the server's Ray.
    env = {**os.environ, "RAY_TMPDIR": str(served["ray_tmp"])}
    out = subprocess.run([sys.executable, "-c", GCS_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    actors = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"SupervisorActor", "HostActor"} <= {cls for cls, _, _ in actors}, actors
    for cls, repr_name, record in actors:
        assert_no_secret(repr_name + bytes.fromhex(record).decode("latin-1"), f"the actor table entry of {cls}")

    served["receiver"].wait_for(5, timeout=90, path=NOTIFY_PATH)  # every attempt of the notification
    time.sleep(2)  # its last answer came: the supervisor logs the failure
    server.stop()  # flush every log
    files = [p for p in _files([server.data_dir, served["ray_tmp"]]) if not p.name.startswith("chronos.db")]
    assert any("session_" in str(p) and p.suffix in (".log", ".out", ".err") for p in files), files[:20]
    for path in files:
        assert_no_secret(path.read_bytes(), str(path))
    # The notification "with-notify"'s target refused was logged (its origin only, no path).
    assert any(b"notification not delivered" in p.read_bytes() for p in files if p.suffix in (".log", ".out", ".err"))
    log = server.read_log()
    assert "Chronos" in log and "is up" in log  # the captured stdout/stderr is really the server's
    assert_no_secret(log, "the server's stdout/stderr")


@pytest.mark.e2e
def test_the_database_holds_no_secret_when_the_key_is_set(served):
    """Needs the supervisor actor to pass settings.secret_key to its Store (see docs/security.md)."""
    served["server"].stop()
    db_files = sorted(served["server"].data_dir.glob("chronos.db*"))
    assert db_files
    for path in db_files:
        assert_no_secret(path.read_bytes(), str(path))
    store = Store(f"sqlite:///{served['server'].data_dir / 'chronos.db'}", secret_key=served["env"]["CHRONOS_SECRET_KEY"])
    try:
        assert TOKEN in {getattr(j.webhook.auth, "token", None) for j in store.all_jobs()}
    finally:
        store.close()


def _files(roots: Iterable[Path]) -> list[Path]:
    return [p for root in roots for p in Path(root).rglob("*") if p.is_file() and not p.is_symlink()]
