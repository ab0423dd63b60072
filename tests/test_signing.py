"""Signed webhooks (Standard Webhooks): every attempt verifies with the ``standardwebhooks``
package from PyPI, the reference verifier, on a real receiver on 127.0.0.1; across a retry and
a kill -9 restart of ``chronos serve`` the ``webhook-id`` stays the execution id."""

from __future__ import annotations

import dataclasses
import time
import uuid

import httpx
import pytest
from standardwebhooks import Webhook as Verifier
from standardwebhooks import WebhookVerificationError

from chronos.dispatcher import Dispatcher
from chronos.errors import Conflict, ValidationError
from chronos.models import Execution, Job, check_resolved, keep_secrets, parse_job
from chronos.settings import Settings
from chronos.signing import generate_secret, secret_problem, signature_headers
from receiver import Receiver, ThreadedReceiver
from server import Server


def verify(secret: str, request) -> dict:
    """What a receiver does: raises WebhookVerificationError unless the request is genuine."""
    return Verifier(secret).verify(request.body, dict(request.headers))


def signed_job(url: str, secret, **extra) -> Job:
    spec = {"name": "signed", "schedule": "@every 1h", "webhook": {"url": url, "method": "POST", "body": '{"a": 1}',
                                                                  "signing_secret": secret}, **extra}
    return Job(**parse_job(spec).model_dump())


def test_generated_secrets_are_valid_and_distinct():
    a, b = generate_secret(), generate_secret()
    assert a != b and a.startswith("whsec_") and secret_problem(a) is None
    Verifier(a)  # the reference library accepts its format


@pytest.mark.parametrize(
    "bad, says",
    [("abc", 'start with "whsec_"'), ("whsec_!!!", "base64"), ("whsec_AAAA", "24 to 64 bytes"), (["a"] * 6, "1 to 5")],
)
def test_a_bad_secret_is_refused_naming_the_field_and_the_fix(bad, says):
    with pytest.raises(ValidationError) as info:
        signed_job("http://127.0.0.1:9/", bad)
    assert "webhook.signing_secret" in str(info.value) and says in str(info.value)
    if isinstance(bad, str):
        assert bad not in str(info.value).replace('"whsec_"', "")  # the value is never echoed


def test_stars_with_no_stored_secret_to_keep_are_refused_before_storing():
    spec = parse_job({"name": "x", "schedule": "@daily", "webhook": {"url": "http://127.0.0.1:9/", "signing_secret": "***"}})
    with pytest.raises(ValidationError, match='webhook.signing_secret: "\\*\\*\\*" keeps a stored secret') as info:
        check_resolved(spec)
    assert info.value.errors[0]["field"] == "webhook.signing_secret"


def test_headers_verify_with_the_reference_library_and_a_tampered_body_does_not():
    secret, msg_id, now = generate_secret(), str(uuid.uuid4()), int(time.time())
    headers = signature_headers([secret], msg_id, now, b'{"x": 1}')
    assert headers["webhook-id"] == msg_id and headers["webhook-timestamp"] == str(now)
    assert Verifier(secret).verify(b'{"x": 1}', headers) == {"x": 1}
    with pytest.raises(WebhookVerificationError):
        Verifier(secret).verify(b'{"x": 2}', headers)
    with pytest.raises(WebhookVerificationError):
        Verifier(generate_secret()).verify(b'{"x": 1}', headers)
    assert signature_headers([], msg_id, now, b"") == {}


def test_rotation_signs_with_every_secret_and_the_stars_keep_the_stored_ones():
    old, new = generate_secret(), generate_secret()
    job = signed_job("http://127.0.0.1:9/", old)
    # Rotate: the new secret first, "***" keeps the old one (what a client read back).
    rotated = parse_job(keep_secrets({**job.spec().model_dump(mode="json"), "webhook": {
        **job.public()["webhook"], "signing_secret": [new, "***"]}}, job))
    assert rotated.webhook.signing_secret == [new, old]
    headers = signature_headers(rotated.webhook.signing_secrets, "msg_1", int(time.time()), b"{}")
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):  # a receiver that knows either verifies
        Verifier(secret).verify(b"{}", headers)
    # Drop the old one: ["***"] keeps the first stored, the new.
    stored = Job(**{**job.model_dump(), "webhook": rotated.webhook.model_dump()})
    assert stored.public()["webhook"]["signing_secret"] == ["***", "***"]
    dropped = parse_job(keep_secrets({**stored.spec().model_dump(mode="json"), "webhook": {
        **stored.public()["webhook"], "signing_secret": ["***"]}}, stored))
    assert dropped.webhook.signing_secret == [new]
    assert new not in repr(stored) and old not in repr(stored.webhook)


async def test_every_attempt_of_a_retried_execution_verifies():
    secret = generate_secret()
    async with Receiver() as receiver, Dispatcher() as dispatcher:
        receiver.route("/hook", sequence=[503, 200])
        job = signed_job(receiver.url("/hook"), secret)
        execution = Execution(job_id=job.id, job_name=job.name, scheduled_at=job.created_at)
        for attempt in (1, 2):
            await dispatcher.send(job, execution, attempt, timeout=5)
        hits = await receiver.wait_for(2, path="/hook")
    for hit in hits:
        assert verify(secret, hit) == {"a": 1}
        assert hit.headers["webhook-id"] == str(execution.id) == hit.headers["Idempotency-Key"]


async def test_the_server_default_signs_jobs_without_their_own_and_a_jobs_own_wins():
    default, own = generate_secret(), generate_secret()
    settings = Settings(signing_secret=f"{default} {generate_secret()}")
    assert len(settings.signing_secrets) == 2 and default not in repr(settings)
    async with Receiver() as receiver, Dispatcher(signing_secrets=settings.signing_secrets) as dispatcher:
        plain = signed_job(receiver.url("/plain"), None)
        mine = signed_job(receiver.url("/mine"), own)
        for job in (plain, mine):
            await dispatcher.send(job, Execution(job_id=job.id, job_name=job.name, scheduled_at=job.created_at), 1, 5)
        (p,), (m,) = await receiver.wait_for(1, path="/plain"), await receiver.wait_for(1, path="/mine")
    verify(default, p)
    verify(own, m)
    with pytest.raises(WebhookVerificationError):
        verify(default, m)
    async with Receiver() as receiver, Dispatcher() as dispatcher:  # no secret anywhere: unsigned
        job = signed_job(receiver.url("/x"), None)
        await dispatcher.send(job, Execution(job_id=job.id, job_name=job.name, scheduled_at=job.created_at), 1, 5)
        (hit,) = await receiver.wait_for(1)
    assert "webhook-signature" not in hit.headers


def test_bad_default_secret_is_refused_at_start():
    with pytest.raises(Exception, match="CHRONOS_SIGNING_SECRET"):
        Settings(signing_secret="whsec_short")


@pytest.mark.e2e
def test_a_signed_job_verifies_across_a_retry_and_a_kill_9_restart(tmp_path):
    """Attempt 1 gets a 503, attempt 2 hangs until the whole server is killed -9; after the
    restart the execution is re-sent. Every request verifies, all under one webhook-id."""
    secret, default = generate_secret(), generate_secret()
    with ThreadedReceiver() as receiver:
        receiver.route("/signed", sequence=[503, {"delay": 3600}, 200])
        server = Server(tmp_path / "data", env={"CHRONOS_SIGNING_SECRET": default, "CHRONOS_CONFIG": "/nonexistent.yaml"})
        try:
            server.start()
            api = f"{server.url}/api/v1"
            spec = {"name": "signed", "schedule": "0 0 1 1 *", "timeout": "1h",
                    "retry_policy": {"initial_interval": "1s"},
                    "webhook": {"url": receiver.url("/signed"), "method": "POST", "body": '{"n": 1}', "signing_secret": secret}}
            created = httpx.post(f"{api}/jobs", json=spec)
            assert created.status_code == 201, created.text
            assert created.json()["webhook"]["signing_secret"] == "***" and secret not in created.text
            execution = httpx.post(f"{api}/jobs/signed/trigger").json()
            receiver.wait_for(2, timeout=30, path="/signed")
            server.kill9()
            server.start()
            hits = receiver.wait_for(3, timeout=90, path="/signed")
        finally:
            server.stop()
    assert {h.headers["webhook-id"] for h in hits} == {execution["id"]}
    for hit in hits:
        assert verify(secret, hit) == {"n": 1}
        with pytest.raises(WebhookVerificationError):
            verify(default, hit)  # the job's own secret wins over the server's
        tampered = dataclasses.replace(hit, body=b'{"n": 2}')
        with pytest.raises(WebhookVerificationError):
            verify(secret, tampered)


async def test_the_supervisor_rotates_with_stars_and_refuses_stars_with_nothing_to_keep(supervisor):
    old, new = generate_secret(), generate_secret()
    spec = {"name": "rot", "schedule": "0 0 1 1 *", "webhook": {"url": "http://127.0.0.1:9/", "signing_secret": "***"}}
    with pytest.raises(ValidationError, match="none to keep"):
        await supervisor.create_job(parse_job(spec))
    spec["webhook"]["signing_secret"] = old
    await supervisor.create_job(parse_job(spec))
    job = await supervisor.patch_job("rot", {"webhook": {"signing_secret": [new, "***"]}})
    assert job.webhook.signing_secret == [new, old] and job.public()["webhook"]["signing_secret"] == ["***", "***"]
    job = await supervisor.patch_job("rot", {"webhook": {"signing_secret": ["***"]}, "description": "old one dropped"})
    assert job.webhook.signing_secret == [new]
    # The patch is valid on its own; with the one stored secret it is not: a conflict (409).
    with pytest.raises(Conflict, match="none to keep"):  # a request answered with an error changes nothing
        await supervisor.patch_job("rot", {"webhook": {"signing_secret": ["***", "***"]}})
    assert (await supervisor.get_job("rot")).webhook.signing_secret == [new]


async def test_the_api_generates_a_secret_it_does_not_keep(supervisor):
    from chronos.serve.app import create_app

    backend = supervisor
    app = create_app(backend, Settings(api_tokens=[]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        first, second = [await client.post("/api/v1/signing-secrets") for _ in range(2)]
        assert first.status_code == 201 and first.headers["Cache-Control"] == "no-store"
        secret = first.json()["signing_secret"]
        assert secret_problem(secret) is None and secret != second.json()["signing_secret"]
        assert "/api/v1/signing-secrets" in (await client.get("/openapi.json")).json()["paths"]
    assert (await backend.list_jobs())[0] == []  # nothing stored
