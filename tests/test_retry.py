"""Backoff and outcome classification (DESIGN.md §5 Retries)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chronos.outcome import Outcome
from chronos.models import ExecutionStatus, RetryPolicy, Webhook
from chronos.retry import Verdict, backoff, judge

S = timedelta(seconds=1)

GUIDE = RetryPolicy(max_attempts=5, initial_interval="10s", max_interval="5m", multiplier=2.0)
WEBHOOK = Webhook(url="http://127.0.0.1:9/hook")


def response(code: int, retry_after: float | None = None, error: str | None = None) -> Outcome:
    return Outcome(status_code=code, duration=0.01, body="", retry_after=retry_after, error=error)


TIMEOUT = Outcome(status_code=None, duration=30.0, error="timed out after 30s", kind="timeout")
REFUSED = Outcome(status_code=None, duration=0.001, error="connection refused: 127.0.0.1:9", kind="connection")
INVALID = Outcome(status_code=None, duration=0.001, error="invalid HTTP response: Bad status line", kind="invalid")


# ---------------------------------------------------------------- backoff


def test_guide_backup_example_waits_10_20_40_80_seconds():
    assert [backoff(GUIDE, k) for k in range(1, 5)] == [10 * S, 20 * S, 40 * S, 80 * S]


def test_guide_backup_example_through_judge_has_no_fifth_retry():
    waits = []
    for attempt in range(1, 6):
        verdict = judge(response(503), WEBHOOK, GUIDE, attempt)
        if not verdict.retry:
            break
        waits.append(verdict.wait)
    assert waits == [10 * S, 20 * S, 40 * S, 80 * S]
    assert attempt == 5
    assert verdict == Verdict(ExecutionStatus.failed, retry=False, wait=None, error="HTTP 503")


def test_backoff_is_capped_by_max_interval():
    policy = RetryPolicy(max_attempts=20, initial_interval="10s", max_interval="5m", multiplier=2.0)
    assert backoff(policy, 5) == 160 * S
    assert backoff(policy, 6) == 5 * 60 * S  # 320s capped
    assert backoff(policy, 19) == 5 * 60 * S


def test_default_policy_waits_1_2_4_up_to_a_minute():
    policy = RetryPolicy()
    assert policy.max_attempts == 3
    assert [backoff(policy, k) for k in range(1, 9)] == [1 * S, 2 * S, 4 * S, 8 * S, 16 * S, 32 * S, 60 * S, 60 * S]


def test_backoff_guards_overflow_for_huge_retry_numbers():
    policy = RetryPolicy(max_attempts=100, multiplier=100.0)
    assert backoff(policy, 100) == timedelta(minutes=1)
    assert backoff(policy, 10**6) == timedelta(minutes=1)


def test_backoff_fractional_multiplier_and_sub_second_interval():
    policy = RetryPolicy(initial_interval="500ms", multiplier=1.5, max_interval="1m")
    assert backoff(policy, 1) == timedelta(milliseconds=500)
    assert backoff(policy, 3) == timedelta(milliseconds=1125)


def test_backoff_zero_interval_and_constant_multiplier():
    assert backoff(RetryPolicy(initial_interval=0), 7) == timedelta(0)
    assert backoff(RetryPolicy(initial_interval="3s", multiplier=1.0), 9) == 3 * S


def test_backoff_initial_above_max_is_capped():
    policy = RetryPolicy(initial_interval="10m", max_interval="1m")
    assert backoff(policy, 1) == timedelta(minutes=1)


def test_backoff_rejects_retry_zero():
    with pytest.raises(ValueError):
        backoff(RetryPolicy(), 0)


# ---------------------------------------------------------------- classification

POLICY = RetryPolicy(max_attempts=3)  # waits 1s, 2s


@pytest.mark.parametrize(
    "outcome, success_codes, status, retry",
    [
        (response(200), None, ExecutionStatus.success, False),
        (response(201), None, ExecutionStatus.success, False),
        (response(204), None, ExecutionStatus.success, False),
        (response(204), [200], ExecutionStatus.failed, False),  # success_codes replace "any 2xx"
        (response(200), [200, 202], ExecutionStatus.success, False),
        (response(404), [200, 404], ExecutionStatus.success, False),  # a 404 can be what you want
        (response(503), [503], ExecutionStatus.success, False),  # listed 5xx: success, not retried
        (response(301), None, ExecutionStatus.failed, False),
        (response(302, error="redirect to another host not followed: http://127.0.0.2/"), None, ExecutionStatus.failed, False),
        (response(400), None, ExecutionStatus.failed, False),
        (response(401), None, ExecutionStatus.failed, False),
        (response(404), None, ExecutionStatus.failed, False),
        (response(408), None, ExecutionStatus.failed, True),
        (response(429), None, ExecutionStatus.failed, True),
        (response(500), None, ExecutionStatus.failed, True),
        (response(502), None, ExecutionStatus.failed, True),
        (response(503), None, ExecutionStatus.failed, True),
        (response(504), None, ExecutionStatus.failed, True),
        (TIMEOUT, None, ExecutionStatus.timeout, True),
        (REFUSED, None, ExecutionStatus.failed, True),
        (INVALID, None, ExecutionStatus.failed, True),
    ],
    ids=lambda v: repr(v.status_code or v.kind) if isinstance(v, Outcome) else None,
)
def test_classification(outcome, success_codes, status, retry):
    webhook = Webhook(url="http://127.0.0.1:9/hook", success_codes=success_codes)
    verdict = judge(outcome, webhook, POLICY, attempt=1)
    assert verdict.status is status
    assert verdict.retry is retry
    assert verdict.wait == (1 * S if retry else None)
    if status is ExecutionStatus.success:
        assert verdict.error is None
    else:
        assert verdict.error


def test_errors_are_readable():
    assert judge(response(404), WEBHOOK, POLICY, 1).error == "HTTP 404"
    assert judge(TIMEOUT, WEBHOOK, POLICY, 1).error == "timed out after 30s"
    assert judge(REFUSED, WEBHOOK, POLICY, 1).error == "connection refused: 127.0.0.1:9"
    cross = response(302, error="redirect to another host not followed: https://elsewhere.test/")
    assert judge(cross, WEBHOOK, POLICY, 1).error == "redirect to another host not followed: https://elsewhere.test/"


def test_second_retry_waits_longer():
    assert judge(response(500), WEBHOOK, POLICY, attempt=2).wait == 2 * S


# ---------------------------------------------------------------- Retry-After


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_replaces_computed_wait(code):
    verdict = judge(response(code, retry_after=7), WEBHOOK, GUIDE, attempt=1)
    assert verdict.retry and verdict.wait == 7 * S  # not the computed 10s
    shorter = judge(response(code, retry_after=0.5), WEBHOOK, GUIDE, attempt=3)
    assert shorter.wait == timedelta(milliseconds=500)  # not the computed 40s


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_is_capped_by_max_interval(code):
    verdict = judge(response(code, retry_after=3600), WEBHOOK, GUIDE, attempt=1)
    assert verdict.wait == timedelta(minutes=5)
    huge = judge(response(code, retry_after=1e300), WEBHOOK, GUIDE, attempt=1)
    assert huge.wait == timedelta(minutes=5)
    inf = judge(response(code, retry_after=float("inf")), WEBHOOK, GUIDE, attempt=1)
    assert inf.wait == timedelta(minutes=5)


def test_retry_after_never_negative():
    assert judge(response(429, retry_after=-5), WEBHOOK, GUIDE, attempt=1).wait == timedelta(0)
    assert judge(response(503, retry_after=0), WEBHOOK, GUIDE, attempt=1).wait == timedelta(0)


def test_retry_after_ignored_on_other_codes():
    for code in (500, 502, 408):
        assert judge(response(code, retry_after=1), WEBHOOK, GUIDE, attempt=1).wait == 10 * S


def test_retry_after_does_not_make_a_4xx_retryable_or_survive_the_last_attempt():
    assert judge(response(400, retry_after=1), WEBHOOK, GUIDE, 1) == Verdict(
        ExecutionStatus.failed, retry=False, wait=None, error="HTTP 400"
    )
    assert judge(response(429, retry_after=1), WEBHOOK, GUIDE, 5).retry is False


# ---------------------------------------------------------------- attempts exhausted


def test_attempts_exhausted_is_final():
    policy = RetryPolicy(max_attempts=3)
    assert judge(response(500), WEBHOOK, policy, 2).retry is True
    final = judge(response(500), WEBHOOK, policy, 3)
    assert final == Verdict(ExecutionStatus.failed, retry=False, wait=None, error="HTTP 500")


def test_last_attempt_timing_out_is_final_timeout():
    policy = RetryPolicy(max_attempts=2)
    assert judge(TIMEOUT, WEBHOOK, policy, 1) == Verdict(ExecutionStatus.timeout, True, 1 * S, "timed out after 30s")
    assert judge(TIMEOUT, WEBHOOK, policy, 2) == Verdict(ExecutionStatus.timeout, False, None, "timed out after 30s")


def test_single_attempt_policy_never_retries():
    policy = RetryPolicy(max_attempts=1)
    for outcome in (response(503), TIMEOUT, REFUSED, INVALID):
        assert judge(outcome, WEBHOOK, policy, 1).retry is False
    assert judge(REFUSED, WEBHOOK, policy, 1).status is ExecutionStatus.failed


def test_success_after_retries_is_success():
    assert judge(response(200), WEBHOOK, GUIDE, 5) == Verdict(ExecutionStatus.success, False, None, None)
