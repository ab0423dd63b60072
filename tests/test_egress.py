"""Outbound safety (chronos.egress): link-local and metadata targets are refused at
validation and again after DNS resolution at send time.

No test here sends a packet anywhere but 127.0.0.1: denied targets are checked by the
policy, or reached through a fake resolver while aiohttp's connect step is watched to
prove that no connection is even attempted.
"""

from __future__ import annotations

import pickle
import socket
from datetime import datetime, timezone

import aiohttp
import httpx
import pytest

from chronos import errors as E
from chronos.dispatcher import Dispatcher, Outcome
from chronos.egress import VERDICT_CACHE_SIZE, EgressDenied, EgressPolicy, parse_ip
from chronos.models import Execution, Job, RetryPolicy, Webhook, parse_job
from chronos.retry import judge
from chronos.serve.app import create_app
from chronos.settings import Settings
from chronos.backend import Backend
from chronos.local_runtime import LocalRuntime
from receiver import Receiver
from test_api import _NoNetworkDispatcher

DEFAULT = EgressPolicy()


# ---------------------------------------------------------------- the policy


@pytest.mark.parametrize(
    "host, problem",
    [
        ("169.254.169.254", "link-local (cloud metadata)"),
        ("169.254.0.1", "link-local (cloud metadata)"),
        ("fe80::1", "link-local (cloud metadata)"),
        ("[fe80::1%25eth0]", "link-local (cloud metadata)"),
        ("::ffff:169.254.169.254", "link-local (cloud metadata)"),  # IPv4-mapped IPv6
        ("2852039166", "link-local (cloud metadata)"),  # 169.254.169.254 as one number
        ("0xa9.0xfe.0xa9.0xfe", "link-local (cloud metadata)"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "reserved"),
        ("100.100.100.200", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("metadata.google.internal", "cloud metadata"),
        ("METADATA.Google.Internal.", "cloud metadata"),
        ("instance-data", "cloud metadata"),
    ],
)
def test_default_policy_refuses_link_local_and_metadata(host, problem):
    assert DEFAULT.host_problem(host) == problem
    with pytest.raises(EgressDenied, match="CHRONOS_EGRESS_ALLOW"):
        DEFAULT.check_host(host)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "::1", "localhost", "10.1.2.3", "192.168.1.10", "fd12::1", "8.8.8.8", "example.com", "1e100.net"]
)
def test_default_policy_allows_loopback_private_and_public(host):
    assert DEFAULT.host_problem(host) is None


def test_deny_private_and_deny_loopback_are_separate_opt_ins():
    private = EgressPolicy(deny_private=True)
    for host in ("10.0.0.1", "172.16.5.4", "172.31.255.255", "192.168.0.1", "100.64.0.1", "fc00::1", "fd12::1"):
        assert private.host_problem(host) == "private", host
    assert private.host_problem("172.32.0.1") is None  # just outside 172.16/12
    assert private.host_problem("127.0.0.1") is None  # loopback stays allowed
    loopback = EgressPolicy(deny_loopback=True)
    for host in ("127.0.0.1", "127.9.9.9", "::1", "localhost", "api.localhost"):
        assert loopback.host_problem(host) == "loopback", host
    assert loopback.host_problem("10.0.0.1") is None


def test_allow_list_of_cidrs_and_names_wins_over_every_deny_rule():
    policy = EgressPolicy(
        deny_private=True, deny_public=True, allow=("169.254.10.0/24", "10.20.0.0/16", "*.corp.example", "hooks.example.com")
    )
    assert policy.host_problem("169.254.10.5") is None
    assert policy.host_problem("169.254.169.254") == "link-local (cloud metadata)"
    assert policy.host_problem("10.20.3.4") is None
    assert policy.host_problem("10.21.0.1") == "private"
    assert policy.host_problem("8.8.8.8") == "public"
    # An allowed name may resolve anywhere (the operator vouches for it); others may not.
    policy.check_resolved("build.corp.example", ["10.99.0.1"])
    policy.check_resolved("hooks.example.com", ["192.168.1.1"])
    with pytest.raises(EgressDenied, match="resolved to 10.99.0.1"):
        policy.check_resolved("evil.example.net", ["10.99.0.1"])


def test_a_name_with_one_denied_address_is_refused_whole():
    with pytest.raises(EgressDenied, match=r"rebind\.test \(resolved to 169\.254\.169\.254\)"):
        DEFAULT.check_resolved("rebind.test", ["127.0.0.1", "169.254.169.254"])


def test_check_host_verdicts_are_remembered_per_policy_and_bounded():
    loopback = EgressPolicy(deny_loopback=True)
    for _ in range(2):  # the second round answers from the cache: same verdicts
        loopback.check_host("10.0.0.1")
        with pytest.raises(EgressDenied, match="loopback"):
            loopback.check_host("127.0.0.1")
        with pytest.raises(EgressDenied, match="cloud metadata"):
            DEFAULT.check_host("169.254.169.254")
    DEFAULT.check_host("127.0.0.1")  # another policy's verdict is its own
    for n in range(VERDICT_CACHE_SIZE + 10):
        loopback.check_host(f"host-{n}.example")
    assert len(loopback._verdicts) <= VERDICT_CACHE_SIZE
    with pytest.raises(EgressDenied):
        loopback.check_host("127.0.0.1")
    # The cache is not part of the policy's value.
    assert loopback == EgressPolicy(deny_loopback=True) and hash(loopback) == hash(EgressPolicy(deny_loopback=True))
    with pytest.raises(EgressDenied):
        pickle.loads(pickle.dumps(loopback)).check_host("::1")


def test_parse_ip_reads_what_the_resolver_would():
    assert str(parse_ip("2852039166")) == "169.254.169.254"
    assert str(parse_ip("0x7f.1")) == "127.0.0.1"
    assert parse_ip("example.com") is None and parse_ip("1e100.net") is None


def test_settings_build_the_policy():
    s = Settings(
        egress_deny_private=True, egress_deny_loopback=True, egress_allow="10.1.0.0/16, hooks.corp.example", api_tokens=[]
    )
    assert s.egress_policy == EgressPolicy(
        deny_private=True, deny_loopback=True, allow=("10.1.0.0/16", "hooks.corp.example")
    )


# ---------------------------------------------------------------- at validation


def _spec(url: str) -> dict:
    return {"name": "probe", "schedule": "@every 1m", "webhook": {"url": url}}


def test_parse_job_names_webhook_url_and_the_fix():
    with pytest.raises(E.ValidationError) as info:
        parse_job(_spec("http://169.254.169.254/latest/meta-data/"), egress=DEFAULT)
    [error] = info.value.errors
    assert error["field"] == "webhook.url"
    assert "169.254.169.254" in error["message"] and "CHRONOS_EGRESS_ALLOW" in error["message"]
    # Without a policy (a stored job read back) nothing is refused: tightening the policy
    # must never make stored jobs unreadable.
    assert parse_job(_spec("http://169.254.169.254/")).webhook.url == "http://169.254.169.254/"


@pytest.fixture
async def backend(make_supervisor) -> Backend:
    """The real supervisor, its hosts in this process; they never send a packet."""
    return await make_supervisor(lambda s: LocalRuntime(s, dispatcher=_NoNetworkDispatcher()))


def _client(settings: Settings, backend: Backend) -> httpx.AsyncClient:
    app = create_app(backend, settings)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


async def test_api_rejects_denied_urls_on_create_replace_and_patch(backend: Backend):
    async with _client(Settings(api_tokens=[], egress_deny_private=True), backend) as c:
        for url in ("http://169.254.169.254/", "http://[fe80::1]/", "http://metadata.google.internal/", "http://10.0.0.5/"):
            r = await c.post("/api/v1/jobs", json=_spec(url))
            assert r.status_code == 422, r.text
            assert r.json()["errors"][0]["field"] == "webhook.url"
            assert "egress policy" in r.json()["detail"]
        assert (await c.get("/api/v1/jobs")).json()["items"] == []

        assert (await c.post("/api/v1/jobs", json=_spec("http://127.0.0.1:9/hook"))).status_code == 201
        r = await c.put("/api/v1/jobs/probe", json=_spec("http://169.254.169.254/"))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "webhook.url", r.text
        r = await c.patch("/api/v1/jobs/probe", json={"webhook": {"url": "http://192.168.1.1/"}})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "webhook.url", r.text
        assert (await c.get("/api/v1/jobs/probe")).json()["webhook"]["url"] == "http://127.0.0.1:9/hook"
        # Notification targets obey the same policy, named by their own field.
        r = await c.post("/api/v1/jobs", json={**_spec("http://127.0.0.1:9/hook"), "name": "told",
                                               "notify": [{"url": "http://169.254.169.254/hook"}]})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "notify.0.url", r.text
        r = await c.patch("/api/v1/jobs/probe", json={"notify": [{"url": "http://10.1.2.3/"}]})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "notify.0.url", r.text
        assert (await c.get("/api/v1/jobs/probe")).json()["notify"] == []


async def test_api_allow_list_lets_an_operator_open_a_range(backend: Backend):
    async with _client(Settings(api_tokens=[], egress_allow=["169.254.10.0/24"]), backend) as c:
        assert (await c.post("/api/v1/jobs", json=_spec("http://169.254.10.7/"))).status_code == 201


# ---------------------------------------------------------------- at send time


class FakeResolver(aiohttp.abc.AbstractResolver):
    """Answers from a table instead of DNS; records every lookup."""

    def __init__(self, table: dict[str, list[str]]):
        self.table, self.looked_up = table, []

    async def resolve(self, host, port=0, family=socket.AF_INET):
        self.looked_up.append(host)
        return [
            {"hostname": host, "host": ip, "port": port, "family": socket.AF_INET6 if ":" in ip else socket.AF_INET,
             "proto": 0, "flags": socket.AI_NUMERICHOST}
            for ip in self.table[host]
        ]

    async def close(self):
        pass


@pytest.fixture
def connects(monkeypatch):
    """Every connection aiohttp attempts, as (host, port); the real connect still runs."""
    seen: list[tuple[str, int]] = []
    original = aiohttp.TCPConnector._wrap_create_connection

    async def watch(self, *args, addr_infos, **kwargs):
        seen.extend((info[4][0], info[4][1]) for info in addr_infos)
        return await original(self, *args, addr_infos=addr_infos, **kwargs)

    monkeypatch.setattr(aiohttp.TCPConnector, "_wrap_create_connection", watch)
    return seen


def _job(url: str) -> tuple[Job, Execution]:
    # Built without the validation-time check, as a stored job from before a policy change is.
    job = Job.model_construct(name="probe", schedule="@every 1m", webhook=Webhook(url=url))
    return job, Execution(job_id=job.id, job_name=job.name, scheduled_at=datetime.now(timezone.utc))


async def _send(url: str, table: dict[str, list[str]], policy: EgressPolicy = DEFAULT) -> tuple[Outcome, FakeResolver]:
    resolver = FakeResolver(table)
    dispatcher = Dispatcher(egress=policy, resolver=lambda: resolver)
    try:
        job, execution = _job(url)
        return await dispatcher.send(job, execution, 1, 5), resolver
    finally:
        await dispatcher.close()


async def test_a_name_resolving_to_metadata_is_refused_before_connecting(connects):
    outcome, resolver = await _send("http://innocent.test/hook", {"innocent.test": ["169.254.169.254"]})
    assert resolver.looked_up == ["innocent.test"]
    assert outcome.kind == "denied" and outcome.status_code is None
    assert "innocent.test (resolved to 169.254.169.254)" in outcome.error
    assert connects == []


async def test_literal_and_legacy_ip_urls_are_refused_without_a_lookup(connects):
    for url in ("http://169.254.169.254/latest/", "http://[fe80::1]:8080/", "http://2852039166/", "http://[::ffff:a9fe:a9fe]/"):
        outcome, resolver = await _send(url, {})
        assert outcome.kind == "denied", (url, outcome)
        assert resolver.looked_up == []
    outcome, resolver = await _send("http://metadata.google.internal/", {"metadata.google.internal": ["127.0.0.1"]})
    assert outcome.kind == "denied" and resolver.looked_up == []  # a denied name is never looked up
    assert connects == []


async def test_a_checked_name_connects_only_to_the_checked_address(connects):
    async with Receiver() as receiver:
        port = receiver.port
        outcome, resolver = await _send(f"http://hooks.test:{port}/hook", {"hooks.test": ["127.0.0.1"]})
        assert outcome.status_code == 200 and outcome.kind == "response", outcome
        assert resolver.looked_up == ["hooks.test"]
        assert connects == [("127.0.0.1", port)]
        assert len(receiver.requests) == 1

        # The same receiver behind deny_loopback: refused, and it hears nothing.
        outcome, _ = await _send(f"http://hooks.test:{port}/hook", {"hooks.test": ["127.0.0.1"]}, EgressPolicy(deny_loopback=True))
        outcome_literal, _ = await _send(receiver.url("/hook"), {}, EgressPolicy(deny_loopback=True))
        assert outcome.kind == outcome_literal.kind == "denied"
        assert len(receiver.requests) == 1 and len(connects) == 1


def test_a_denied_outcome_is_final_not_retried():
    denied = Outcome(None, 0.0, error="webhook target x is not allowed", kind="denied")
    verdict = judge(denied, Webhook(url="http://x/"), RetryPolicy(max_attempts=5), attempt=1)
    assert verdict.retry is False and verdict.status.value == "failed" and "not allowed" in verdict.error
