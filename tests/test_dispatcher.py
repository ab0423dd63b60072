"""The webhook dispatcher against a real aiohttp receiver on 127.0.0.1 (DESIGN.md §5)."""

from __future__ import annotations

import asyncio
import base64
import math
import os
import ssl
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
import pytest_asyncio

import chronos
from chronos.dispatcher import MAX_REDIRECTS, Dispatcher, Outcome, format_scheduled_time, parse_retry_after
from chronos.egress import EgressPolicy
from chronos.models import RESPONSE_BODY_LIMIT, Execution, Job, Webhook
from receiver import Receiver, Reply, ThreadedReceiver, closed_port

SCHEDULED = datetime(2026, 1, 1, 10, 15, 30, tzinfo=timezone.utc)


def make(url: str, *, name: str = "nightly-backup", scheduled_at: datetime = SCHEDULED, **webhook) -> tuple[Job, Execution]:
    # model_construct: only the webhook matters here, and it is fully validated.
    job = Job.model_construct(name=name, schedule="@every 1m", webhook=Webhook(url=url, **webhook))
    execution = Execution(job_id=job.id, job_name=job.name, scheduled_at=scheduled_at)
    return job, execution


@pytest_asyncio.fixture(loop_scope="function")
async def receiver():
    async with Receiver() as r:
        yield r


@pytest_asyncio.fixture(loop_scope="function")
async def dispatcher():
    d = Dispatcher()
    yield d
    await d.close()


# ---------------------------------------------------------------- headers


async def test_every_attempt_carries_the_chronos_headers(receiver, dispatcher):
    job, execution = make(receiver.url("/hook"))
    first = await dispatcher.send(job, execution, 1, 5)
    second = await dispatcher.send(job, execution, 2, 5)
    assert first.status_code == second.status_code == 200
    assert first.kind == "response" and first.error is None and first.body == "ok"

    one, two = await receiver.wait_for(2)
    for req, attempt in ((one, "1"), (two, "2")):
        h = req.headers
        assert h["User-Agent"] == f"Chronos/{chronos.__version__}"
        assert h["X-Chronos-Job-ID"] == str(job.id)
        assert h["X-Chronos-Job-Name"] == "nightly-backup"
        assert h["X-Chronos-Execution-ID"] == str(execution.id)
        assert h["X-Chronos-Scheduled-Time"] == "2026-01-01T10:15:30Z"
        assert h["X-Chronos-Attempt"] == attempt
        assert h["Idempotency-Key"] == str(execution.id)
        assert req.method == "GET" and req.path == "/hook" and req.body == b""
    assert one.headers["Idempotency-Key"] == two.headers["Idempotency-Key"]


async def test_idempotency_key_differs_between_executions(receiver, dispatcher):
    job, first = make(receiver.url("/hook"))
    second = Execution(job_id=job.id, job_name=job.name, scheduled_at=SCHEDULED + timedelta(minutes=1))
    await dispatcher.send(job, first, 1, 5)
    await dispatcher.send(job, second, 1, 5)
    a, b = await receiver.wait_for(2)
    assert a.headers["Idempotency-Key"] != b.headers["Idempotency-Key"]
    assert b.headers["X-Chronos-Scheduled-Time"] == "2026-01-01T10:16:30Z"


def test_scheduled_time_format():
    assert format_scheduled_time(SCHEDULED) == "2026-01-01T10:15:30Z"
    assert format_scheduled_time(SCHEDULED.replace(microsecond=250_000)) == "2026-01-01T10:15:30.250Z"
    assert format_scheduled_time(SCHEDULED.replace(microsecond=1_999)) == "2026-01-01T10:15:30.001Z"
    assert format_scheduled_time(SCHEDULED.replace(microsecond=999)) == "2026-01-01T10:15:30Z"
    new_york = timezone(timedelta(hours=-5))
    assert format_scheduled_time(datetime(2026, 1, 1, 5, 15, 30, tzinfo=new_york)) == "2026-01-01T10:15:30Z"
    assert format_scheduled_time(datetime(2026, 1, 1, 10, 15, 30)) == "2026-01-01T10:15:30Z"  # naive = UTC


async def test_scheduled_time_with_milliseconds_on_the_wire(receiver, dispatcher):
    job, execution = make(receiver.url("/"), scheduled_at=SCHEDULED.replace(microsecond=123_456))
    await dispatcher.send(job, execution, 1, 5)
    (req,) = await receiver.wait_for(1)
    assert req.headers["X-Chronos-Scheduled-Time"] == "2026-01-01T10:15:30.123Z"


async def test_chronos_headers_win_over_job_headers_and_job_headers_are_sent(receiver, dispatcher):
    job, execution = make(
        receiver.url("/"),
        headers={"X-Custom": "yes", "x-chronos-attempt": "99", "idempotency-key": "mine", "User-Agent": "curl/8"},
    )
    await dispatcher.send(job, execution, 3, 5)
    (req,) = await receiver.wait_for(1)
    assert req.headers["X-Custom"] == "yes"
    assert req.headers.getall("X-Chronos-Attempt") == ["3"]
    assert req.headers.getall("Idempotency-Key") == [str(execution.id)]
    assert req.headers.getall("User-Agent") == [f"Chronos/{chronos.__version__}"]


async def test_version_is_configurable(receiver):
    d = Dispatcher(version="9.9.9")
    try:
        job, execution = make(receiver.url("/"))
        await d.send(job, execution, 1, 5)
    finally:
        await d.close()
    (req,) = await receiver.wait_for(1)
    assert req.headers["User-Agent"] == "Chronos/9.9.9"


async def test_a_prepared_attempt_is_sent_as_built(receiver, dispatcher):
    job, execution = make(receiver.url("/hook"), method="POST", body='{"run": true}')
    prepared = dispatcher.prepare(job, execution, 1)
    outcome = await dispatcher.send(job, execution, 1, 5, prepared)
    assert outcome.status_code == 200 and outcome.kind == "response"
    (req,) = await receiver.wait_for(1)
    assert req.method == "POST" and req.path == "/hook" and req.body == b'{"run": true}'
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["X-Chronos-Attempt"] == "1"
    assert req.headers["X-Chronos-Execution-ID"] == req.headers["Idempotency-Key"] == str(execution.id)
    assert req.headers["X-Chronos-Scheduled-Time"] == "2026-01-01T10:15:30Z"


async def test_a_prepared_attempt_for_another_attempt_or_spec_is_built_again(receiver, dispatcher):
    job, execution = make(receiver.url("/old"))
    prepared = dispatcher.prepare(job, execution, 1)
    await dispatcher.send(job, execution, 2, 5, prepared)  # a retry: never attempt 1's headers
    updated = job.model_copy(update={"webhook": Webhook(url=receiver.url("/new"))})
    await dispatcher.send(updated, execution, 1, 5, dispatcher.prepare(job, execution, 1))  # spec changed meanwhile
    retry, after_update = await receiver.wait_for(2)
    assert retry.path == "/old" and retry.headers["X-Chronos-Attempt"] == "2"
    assert after_update.path == "/new" and after_update.headers["X-Chronos-Attempt"] == "1"


async def test_prepare_refuses_a_denied_address_and_nothing_is_sent(receiver):
    d = Dispatcher(egress=EgressPolicy(deny_loopback=True))
    try:
        job, execution = make(receiver.url("/hook"))
        prepared = d.prepare(job, execution, 1)
        assert prepared.failure is not None and prepared.failure["kind"] == "denied"
        outcome = await d.send(job, execution, 1, 5, prepared)
    finally:
        await d.close()
    assert outcome.kind == "denied" and outcome.status_code is None and "loopback" in outcome.error
    assert receiver.requests == []


# ---------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "auth, header, value",
    [
        ({"type": "bearer", "token": "your-jwt-token"}, "Authorization", "Bearer your-jwt-token"),
        (
            {"type": "basic", "username": "user", "password": "pa:ss"},
            "Authorization",
            "Basic " + base64.b64encode(b"user:pa:ss").decode(),
        ),
        (
            {"type": "basic", "username": "üser", "password": "pässword"},
            "Authorization",
            "Basic " + base64.b64encode("üser:pässword".encode()).decode(),
        ),
        ({"type": "api_key", "api_key": "k-123"}, "X-API-Key", "k-123"),
        ({"type": "api_key", "api_key": "k-456", "header": "X-Custom-Key"}, "X-Custom-Key", "k-456"),
    ],
    ids=["bearer", "basic", "basic-utf8", "api_key-default-header", "api_key-custom-header"],
)
async def test_auth(receiver, dispatcher, auth, header, value):
    job, execution = make(receiver.url("/secure"), auth=auth)
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.status_code == 200
    (req,) = await receiver.wait_for(1)
    assert req.headers.getall(header) == [value]
    if header != "Authorization":
        assert "Authorization" not in req.headers


async def test_auth_replaces_a_hand_written_authorization_header(receiver, dispatcher):
    job, execution = make(
        receiver.url("/"), headers={"Authorization": "Bearer old"}, auth={"type": "bearer", "token": "new"}
    )
    await dispatcher.send(job, execution, 1, 5)
    (req,) = await receiver.wait_for(1)
    assert req.headers.getall("Authorization") == ["Bearer new"]


# ---------------------------------------------------------------- method and body


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_method_and_body(receiver, dispatcher, method):
    body = '{"type": "full", "note": "café ✓"}'
    job, execution = make(receiver.url("/trigger"), method=method, body=body)
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.status_code == 200
    (req,) = await receiver.wait_for(1)
    assert req.method == method
    assert req.body == body.encode("utf-8")
    assert req.json() == {"type": "full", "note": "café ✓"}
    assert req.headers["Content-Type"] == "application/json"  # a JSON body without Content-Type
    assert req.headers["Content-Length"] == str(len(body.encode("utf-8")))


async def test_body_content_type(receiver, dispatcher):
    job, execution = make(receiver.url("/a"), method="POST", body="plain words")
    await dispatcher.send(job, execution, 1, 5)
    job2, execution2 = make(
        receiver.url("/b"), method="POST", body="<x/>", headers={"content-type": "application/xml"}
    )
    await dispatcher.send(job2, execution2, 1, 5)
    a, b = await receiver.wait_for(2)
    assert a.headers["Content-Type"] == "text/plain; charset=utf-8" and a.text == "plain words"
    assert b.headers.getall("Content-Type") == ["application/xml"] and b.text == "<x/>"


async def test_post_without_body(receiver, dispatcher):
    job, execution = make(receiver.url("/"), method="POST")
    assert (await dispatcher.send(job, execution, 1, 5)).status_code == 200
    (req,) = await receiver.wait_for(1)
    assert req.method == "POST" and req.body == b""


async def test_head_has_no_body(receiver, dispatcher):
    receiver.route("/head", status=200, headers={"X-Thing": "1"})
    job, execution = make(receiver.url("/head"), method="HEAD")
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.status_code == 200 and outcome.body is None and not outcome.truncated
    (req,) = await receiver.wait_for(1)
    assert req.method == "HEAD"


async def test_response_body_is_recorded_and_decoded_leniently(receiver, dispatcher):
    receiver.route("/text", body="héllo wörld")
    receiver.route("/binary", body=b"\xff\xfeok")
    job, execution = make(receiver.url("/text"))
    assert (await dispatcher.send(job, execution, 1, 5)).body == "héllo wörld"
    job, execution = make(receiver.url("/binary"))
    assert (await dispatcher.send(job, execution, 1, 5)).body == "\ufffd\ufffdok"


# ---------------------------------------------------------------- status codes


async def test_error_status_is_an_outcome_not_an_exception(receiver, dispatcher):
    receiver.route("/down", status=503, body="maintenance")
    job, execution = make(receiver.url("/down"))
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome == Outcome(
        status_code=503, duration=outcome.duration, body="maintenance", error="HTTP 503", kind="response"
    )


async def test_success_codes_decide_whether_there_is_an_error(receiver, dispatcher):
    receiver.route("/gone", status=404)
    job, execution = make(receiver.url("/gone"), success_codes=[200, 404])
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.status_code == 404 and outcome.error is None
    job, execution = make(receiver.url("/"), success_codes=[201])
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.status_code == 200 and outcome.error == "HTTP 200"


async def test_status_sequence_across_attempts(receiver, dispatcher):
    receiver.route("/flaky", sequence=[503, 503, 200])
    job, execution = make(receiver.url("/flaky"))
    codes = [(await dispatcher.send(job, execution, n, 5)).status_code for n in (1, 2, 3, 4)]
    assert codes == [503, 503, 200, 200]
    reqs = await receiver.wait_for(4, path="/flaky")
    assert [r.headers["X-Chronos-Attempt"] for r in reqs] == ["1", "2", "3", "4"]
    assert len({r.headers["Idempotency-Key"] for r in reqs}) == 1


# ---------------------------------------------------------------- body limit


async def test_truncation_closes_the_connection_instead_of_draining_it(receiver, dispatcher):
    receiver.route("/mb", body=b"a" * (1024 * 1024))
    job, execution = make(receiver.url("/mb"))
    await dispatcher.send(job, execution, 1, 5)
    await dispatcher.send(job, execution, 2, 5)
    first, second = await receiver.wait_for(2)
    assert first.peer != second.peer


async def test_one_megabyte_body_reads_exactly_64_kib(receiver, dispatcher):
    receiver.route("/mb", body=b"a" * (1024 * 1024))
    job, execution = make(receiver.url("/mb"))
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.status_code == 200
    assert outcome.truncated is True
    assert outcome.body == "a" * RESPONSE_BODY_LIMIT
    assert len(outcome.body.encode()) == 64 * 1024


async def test_hundred_megabyte_stream_costs_64_kib_and_little_time(receiver, dispatcher):
    route = receiver.route("/huge", body_size=100 * 1024 * 1024)
    job, execution = make(receiver.url("/huge"))
    was_tracing = tracemalloc.is_tracing()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        started = time.monotonic()
        outcome = await dispatcher.send(job, execution, 1, 30)
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        if not was_tracing:
            tracemalloc.stop()
    assert outcome.status_code == 200 and outcome.truncated is True
    assert len(outcome.body) == RESPONSE_BODY_LIMIT and set(outcome.body) == {"x"}
    assert elapsed < 2.0
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes (receiver included)"
    # the connection was closed, not drained: the receiver could not send most of it
    for _ in range(100):
        if route.disconnects:
            break
        await asyncio.sleep(0.01)
    assert route.disconnects == 1
    assert route.bytes_sent < 50 * 1024 * 1024


async def test_chunked_body_without_length_is_capped_too(receiver, dispatcher):
    receiver.route("/chunked", body_size=1024 * 1024, chunked=True, chunk_size=1000)
    job, execution = make(receiver.url("/chunked"))
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.truncated and len(outcome.body) == RESPONSE_BODY_LIMIT


@pytest.mark.parametrize("size", [RESPONSE_BODY_LIMIT - 1, RESPONSE_BODY_LIMIT])
async def test_body_up_to_the_limit_is_not_truncated(receiver, dispatcher, size):
    receiver.route("/exact", body_size=size, chunk_size=10_000)
    job, execution = make(receiver.url("/exact"))
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.truncated is False and len(outcome.body) == size


async def test_body_one_byte_over_the_limit_is_truncated(receiver, dispatcher):
    receiver.route("/over", body=b"y" * (RESPONSE_BODY_LIMIT + 1))
    job, execution = make(receiver.url("/over"))
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.truncated is True and len(outcome.body) == RESPONSE_BODY_LIMIT


async def test_connection_is_reused_after_a_complete_body(receiver, dispatcher):
    job, execution = make(receiver.url("/"))
    for attempt in (1, 2, 3):
        await dispatcher.send(job, execution, attempt, 5)
    reqs = await receiver.wait_for(3)
    assert len({r.peer for r in reqs}) == 1  # one pooled keep-alive connection served all three


# ---------------------------------------------------------------- timeouts


async def test_timeout_on_a_hanging_path(receiver, dispatcher):
    route = receiver.route("/hang", delay=math.inf)
    job, execution = make(receiver.url("/hang"))
    started = time.monotonic()
    outcome = await dispatcher.send(job, execution, 1, 0.3)
    elapsed = time.monotonic() - started
    assert outcome.kind == "timeout" and outcome.status_code is None
    assert outcome.error == "timed out after 300ms"
    assert 0.29 <= outcome.duration < 1.0 and elapsed < 1.0
    for _ in range(100):  # the receiver saw the client go away
        if route.disconnects:
            break
        await asyncio.sleep(0.01)
    assert route.disconnects == 1


async def test_timeout_message_in_seconds(receiver, dispatcher):
    receiver.route("/slow", delay=5)
    job, execution = make(receiver.url("/slow"))
    outcome = await dispatcher.send(job, execution, 1, 1)
    assert outcome.kind == "timeout" and outcome.error == "timed out after 1s"


async def test_timeout_covers_reading_the_body(receiver, dispatcher):
    receiver.route("/drip", body_size=10_000, chunk_size=100, chunk_delay=0.1)
    job, execution = make(receiver.url("/drip"))
    outcome = await dispatcher.send(job, execution, 1, 0.5)
    assert outcome.kind == "timeout" and outcome.status_code is None
    assert outcome.duration < 1.5


async def test_timedelta_timeout_is_accepted(receiver, dispatcher):
    job, execution = make(receiver.url("/"))
    outcome = await dispatcher.send(job, execution, 1, timedelta(seconds=5))
    assert outcome.status_code == 200


# ---------------------------------------------------------------- broken connections


async def test_connection_refused(dispatcher):
    port = closed_port()
    job, execution = make(f"http://127.0.0.1:{port}/hook")
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.kind == "connection" and outcome.status_code is None
    assert outcome.error == f"connection refused: 127.0.0.1:{port}"
    assert outcome.duration < 1.0


async def test_reset_mid_response(receiver, dispatcher):
    receiver.route("/reset", reset=True)
    job, execution = make(receiver.url("/reset"))
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.kind == "connection" and outcome.status_code is None
    assert outcome.error.startswith("connection broken while reading the response body")
    assert "500 of 1000 bytes" in outcome.error


async def test_reset_before_any_response(receiver, dispatcher):
    receiver.route("/reset", reset="before")
    job, execution = make(receiver.url("/reset"))
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.kind == "connection" and outcome.status_code is None
    assert outcome.error in ("connection reset by the server", "server closed the connection without a complete response")


async def test_invalid_http(receiver, dispatcher):
    receiver.route("/garbage", raw=b"SMTP READY\r\n\r\n")
    job, execution = make(receiver.url("/garbage"))
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.kind == "invalid" and outcome.status_code is None
    assert outcome.error.startswith("invalid HTTP response:")


async def test_closed_without_answer(receiver, dispatcher):
    receiver.route("/eof", raw=b"")
    job, execution = make(receiver.url("/eof"))
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.kind == "connection"
    assert outcome.error == "server closed the connection without a complete response"


# ---------------------------------------------------------------- TLS


def _self_signed() -> tuple[ssl.SSLContext, bytes]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(key_path, "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert_path, key_path)
    return ctx, cert.public_bytes(serialization.Encoding.PEM)


async def test_tls_is_verified():
    pytest.importorskip("cryptography")
    ctx, _ = _self_signed()
    async with Receiver(ssl=ctx) as r:
        job, execution = make(r.url("/tls"))
        assert job.webhook.url.startswith("https://127.0.0.1:")
        strict = Dispatcher()
        lenient = Dispatcher(verify_tls=False)
        try:
            refused = await strict.send(job, execution, 1, 5)
            accepted = await lenient.send(job, execution, 1, 5)
        finally:
            await strict.close()
            await lenient.close()
    assert refused.kind == "invalid" and refused.status_code is None
    assert "certificate" in refused.error.lower()
    assert accepted.status_code == 200 and accepted.body == "ok"
    assert len(r.requests) == 1  # the verifying client never sent its request


# ---------------------------------------------------------------- redirects


async def test_redirect_to_another_origin_is_not_followed(receiver, dispatcher):
    async with Receiver() as other:
        target = other.url("/elsewhere")
        receiver.route("/go", location=target, body="moved")
        job, execution = make(receiver.url("/go"), auth={"type": "bearer", "token": "secret"})
        outcome = await dispatcher.send(job, execution, 1, 5)
        await asyncio.sleep(0.05)
        assert other.requests == []  # nothing, and certainly not the token, went there
    assert outcome.kind == "response" and outcome.status_code == 302
    assert outcome.error == f"redirect to another host not followed: {target}"
    assert outcome.body == "moved"


async def test_redirect_to_another_scheme_is_not_followed(receiver, dispatcher):
    receiver.route("/go", status=301, location=f"https://127.0.0.1:{receiver.port}/secure")
    job, execution = make(receiver.url("/go"))
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.status_code == 301
    assert outcome.error == f"redirect to another host not followed: https://127.0.0.1:{receiver.port}/secure"
    assert len(receiver.requests) == 1


async def test_cross_origin_redirect_listed_in_success_codes_is_a_plain_success(receiver, dispatcher):
    async with Receiver() as other:
        receiver.route("/go", location=other.url("/x"))
        job, execution = make(receiver.url("/go"), success_codes=[302])
        outcome = await dispatcher.send(job, execution, 1, 5)
        assert other.requests == []
    assert outcome.status_code == 302 and outcome.error is None


@pytest.mark.parametrize("code", [301, 302, 307, 308])
async def test_same_origin_redirect_is_followed(receiver, dispatcher, code):
    receiver.route("/old", status=code, location="/new")  # relative Location
    receiver.route("/new", body="arrived")
    job, execution = make(receiver.url("/old"), auth={"type": "api_key", "api_key": "k"})
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.status_code == 200 and outcome.body == "arrived" and outcome.error is None
    old, new = await receiver.wait_for(2)
    assert (old.path, new.path) == ("/old", "/new")
    assert new.headers["X-API-Key"] == "k"
    assert new.headers["Idempotency-Key"] == str(execution.id)


async def test_absolute_same_origin_redirect_is_followed(receiver, dispatcher):
    receiver.route("/old", location=receiver.url("/new?x=1"))
    job, execution = make(receiver.url("/old"))
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.status_code == 200
    _, new = await receiver.wait_for(2)
    assert new.path == "/new" and new.query == "x=1"


async def test_303_after_post_becomes_get(receiver, dispatcher):
    receiver.route("/submit", status=303, location="/result")
    job, execution = make(receiver.url("/submit"), method="POST", body='{"a": 1}')
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.status_code == 200
    post, get = await receiver.wait_for(2)
    assert post.method == "POST" and post.body == b'{"a": 1}'
    assert get.method == "GET" and get.body == b"" and "Content-Type" not in get.headers
    assert get.headers["X-Chronos-Attempt"] == "1"


async def test_307_keeps_method_and_body(receiver, dispatcher):
    receiver.route("/submit", status=307, location="/again")
    job, execution = make(receiver.url("/submit"), method="PUT", body="payload")
    await dispatcher.send(job, execution, 1, 5)
    _, again = await receiver.wait_for(2)
    assert again.method == "PUT" and again.body == b"payload"


async def test_redirect_loop_is_invalid(receiver, dispatcher):
    receiver.route("/a", location="/b")
    receiver.route("/b", location="/a")
    job, execution = make(receiver.url("/a"))
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.kind == "invalid" and outcome.status_code is None
    assert outcome.error == f"redirect loop: {receiver.url('/a')} -> {receiver.url('/b')} -> {receiver.url('/a')}"
    assert len(receiver.requests) == 2


async def test_self_redirect_is_a_loop(receiver, dispatcher):
    receiver.route("/self", location="/self")
    job, execution = make(receiver.url("/self"))
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.kind == "invalid" and outcome.error.startswith("redirect loop:")


async def test_at_most_five_hops(receiver, dispatcher):
    for i in range(MAX_REDIRECTS):
        receiver.route(f"/ok{i}", location=f"/ok{i + 1}")
    for i in range(MAX_REDIRECTS + 1):
        receiver.route(f"/far{i}", location=f"/far{i + 1}")
    job, execution = make(receiver.url("/ok0"))
    assert (await dispatcher.send(job, execution, 1, 5)).status_code == 200  # 5 hops: fine
    job, execution = make(receiver.url("/far0"))
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.kind == "invalid" and outcome.status_code is None
    assert outcome.error.startswith("too many redirects (more than 5):")
    assert len(receiver.requests_for("/far6")) == 0 and len(receiver.requests_for("/far5")) == 1


async def test_redirect_without_location_is_a_plain_response(receiver, dispatcher):
    receiver.route("/nowhere", status=302)
    job, execution = make(receiver.url("/nowhere"))
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.kind == "response" and outcome.status_code == 302 and outcome.error == "HTTP 302"


async def test_timeout_covers_the_whole_redirect_chain(receiver, dispatcher):
    receiver.route("/first", location="/slow")
    receiver.route("/slow", delay=math.inf)
    job, execution = make(receiver.url("/first"))
    outcome = await dispatcher.send(job, execution, 1, 0.3)
    assert outcome.kind == "timeout" and outcome.duration < 1.0


# ---------------------------------------------------------------- cancellation


async def test_cancel_aborts_the_request_promptly(receiver, dispatcher):
    route = receiver.route("/hang", delay=math.inf)
    job, execution = make(receiver.url("/hang"))
    task = asyncio.create_task(dispatcher.send(job, execution, 1, 60))
    await receiver.wait_for(1)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.5
    for _ in range(100):
        if route.disconnects:
            break
        await asyncio.sleep(0.01)
    assert route.disconnects == 1  # the connection really was closed


async def test_cancel_while_reading_a_body(receiver, dispatcher):
    receiver.route("/drip", body_size=10_000, chunk_size=10, chunk_delay=0.05)
    job, execution = make(receiver.url("/drip"))
    task = asyncio.create_task(dispatcher.send(job, execution, 1, 60))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# ---------------------------------------------------------------- Retry-After


async def test_retry_after_seconds(receiver, dispatcher):
    receiver.route("/busy", status=429, headers={"Retry-After": "120"})
    job, execution = make(receiver.url("/busy"))
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.status_code == 429 and outcome.retry_after == 120.0 and outcome.error == "HTTP 429"


async def test_retry_after_http_date_measured_against_the_response_date(receiver, dispatcher):
    receiver.route(
        "/busy",
        status=503,
        headers={"Date": "Wed, 21 Oct 2015 07:28:00 GMT", "Retry-After": "Wed, 21 Oct 2015 07:30:00 GMT"},
    )
    job, execution = make(receiver.url("/busy"))
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.status_code == 503 and outcome.retry_after == 120.0


async def test_retry_after_http_date_against_our_clock(receiver, dispatcher):
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=90), usegmt=True)
    receiver.route("/busy", status=503, headers={"Retry-After": when})
    job, execution = make(receiver.url("/busy"))
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert 87 <= outcome.retry_after <= 91


async def test_retry_after_on_any_response(receiver, dispatcher):
    receiver.route("/ok", headers={"Retry-After": "5"})
    job, execution = make(receiver.url("/ok"))
    assert (await dispatcher.send(job, execution, 1, 5)).retry_after == 5.0


def test_parse_retry_after():
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(" 42 ") == 42.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("-3") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    now = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now=now) == 60.0
    assert parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now=now) == 0.0  # past: no wait
    assert parse_retry_after("Thursday, 01-Jan-26 00:00:30 GMT", now=now) == 30.0  # RFC 850 form
    assert parse_retry_after("Thu Jan  1 00:00:10 2026", now=now) == 10.0  # asctime form
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", date="Thu, 01 Jan 2026 00:00:00 GMT") == 60.0
    assert parse_retry_after("99999999999999") == 366 * 86400  # absurd values are bounded


# ---------------------------------------------------------------- pool and lifecycle


def test_dispatcher_can_be_built_outside_a_loop():
    d = Dispatcher(connections=10)
    assert d._session is None


async def test_concurrent_sends_share_one_session(receiver, dispatcher):
    receiver.route("/slowish", delay=0.1)
    jobs = [make(receiver.url("/slowish")) for _ in range(50)]
    started = time.monotonic()
    outcomes = await asyncio.gather(*(dispatcher.send(j, e, 1, 5) for j, e in jobs))
    assert all(o.status_code == 200 for o in outcomes)
    assert time.monotonic() - started < 1.5  # in parallel, not one after another
    assert len({r.headers["Idempotency-Key"] for r in receiver.requests}) == 50


async def test_close_is_idempotent_and_send_reopens(receiver):
    d = Dispatcher()
    job, execution = make(receiver.url("/"))
    assert (await d.send(job, execution, 1, 5)).status_code == 200
    await d.close()
    await d.close()
    assert (await d.send(job, execution, 2, 5)).status_code == 200
    await d.close()


async def test_cookies_are_never_carried_between_requests(receiver, dispatcher):
    receiver.route("/login", headers={"Set-Cookie": "session=abc; Path=/"})
    job, execution = make(receiver.url("/login"))
    await dispatcher.send(job, execution, 1, 5)
    job2, execution2 = make(receiver.url("/other"))
    await dispatcher.send(job2, execution2, 1, 5)
    _, other = await receiver.wait_for(2)
    assert "Cookie" not in other.headers


# ---------------------------------------------------------------- the receiver itself


def test_threaded_receiver_from_sync_code():
    import urllib.request

    with ThreadedReceiver() as r:
        r.route("/sync", sequence=[Reply(status=503, headers={"Retry-After": "1"}), 201])
        codes = []
        for _ in range(2):
            try:
                with urllib.request.urlopen(r.url("/sync"), timeout=5) as resp:
                    codes.append(resp.status)
            except urllib.error.HTTPError as e:
                codes.append(e.code)
                assert e.headers["Retry-After"] == "1"
        reqs = r.wait_for(2, timeout=5)
        assert codes == [503, 201]
        assert [q.path for q in reqs] == ["/sync", "/sync"]
        assert reqs[0].time <= reqs[1].time <= time.time()
    with pytest.raises(RuntimeError):
        r.url("/")


async def test_receiver_wait_for_times_out_readably(receiver):
    with pytest.raises(TimeoutError, match="expected 1 requests to /never within 0.05s, got 0"):
        await receiver.wait_for(1, timeout=0.05, path="/never")


async def test_header_injection_is_refused_not_sent(receiver, dispatcher):
    job, execution = make(receiver.url("/"), auth={"type": "bearer", "token": "abc\r\nX-Evil: 1"})
    outcome = await dispatcher.send(job, execution, 1, 5)
    assert outcome.kind == "invalid" and outcome.status_code is None
    assert outcome.error.startswith("invalid request:")
    await asyncio.sleep(0.05)
    assert receiver.requests == []


async def test_no_timeout_when_infinite(receiver, dispatcher):
    job, execution = make(receiver.url("/"))
    assert (await dispatcher.send(job, execution, 1, math.inf)).status_code == 200


async def test_compressed_body_is_capped_after_decompression(receiver, dispatcher):
    import gzip

    bomb = gzip.compress(b"\0" * (20 * 1024 * 1024), compresslevel=9)  # ~20 KB on the wire
    receiver.route("/bomb", body=bomb, headers={"Content-Encoding": "gzip"})
    job, execution = make(receiver.url("/bomb"))
    was_tracing = tracemalloc.is_tracing()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        outcome = await dispatcher.send(job, execution, 1, 5)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        if not was_tracing:
            tracemalloc.stop()
    assert outcome.status_code == 200 and outcome.truncated
    assert outcome.body == "\0" * RESPONSE_BODY_LIMIT
    assert peak < 8 * 1024 * 1024
