"""Retry policy: how long to wait before each retry, and what one attempt's outcome means.

DESIGN.md §5: the wait before retry k (k = 1, 2, ...) is
``min(initial_interval * multiplier ** (k - 1), max_interval)``. Retried: connection errors,
timeouts, invalid responses, 408, 429 and 5xx (unless listed in the webhook's
``success_codes``). A ``Retry-After`` on a 429 or 503 replaces the computed wait, capped by
``max_interval``. Not retried: other 4xx and 3xx.

The guide's backup example (max_attempts 5, 10s, x2, max 5m) waits 10s, 20s, 40s, 80s
between its five attempts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

from chronos.outcome import Outcome
from chronos.models import ExecutionStatus, RetryPolicy, Webhook

__all__ = ["Verdict", "backoff", "judge", "is_retryable_status", "RETRY_AFTER_CODES"]

RETRY_AFTER_CODES = frozenset({429, 503})
_RETRYABLE_4XX = frozenset({408, 429})


def backoff(policy: RetryPolicy, retry: int) -> timedelta:
    """The wait before retry ``retry`` (1 = the first retry, after attempt 1 failed)."""
    if retry < 1:
        raise ValueError(f"retry numbers start at 1, got {retry}")
    initial = policy.initial_interval.total_seconds()
    cap = policy.max_interval.total_seconds()
    if initial <= 0:
        return timedelta(0)
    try:
        seconds = initial * policy.multiplier ** (retry - 1)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds) or seconds >= cap:
        return policy.max_interval
    return timedelta(seconds=seconds)


def is_retryable_status(status: int, webhook: Optional[Webhook] = None) -> bool:
    """408, 429 and 5xx are worth retrying (never a code the webhook counts as success)."""
    if webhook is not None and webhook.is_success(status):
        return False
    return status in _RETRYABLE_4XX or 500 <= status <= 599


@dataclass(frozen=True)
class Verdict:
    """What to do after an attempt.

    ``status`` is the status this attempt gives the execution: the final status when
    ``retry`` is false, the status it would have had otherwise. ``wait`` is set when retrying.
    """

    status: ExecutionStatus  # success | failed | timeout
    retry: bool
    wait: Optional[timedelta]
    error: Optional[str]


def judge(outcome: Outcome, webhook: Webhook, policy: RetryPolicy, attempt: int) -> Verdict:
    """Classify ``outcome`` of attempt number ``attempt`` (1-based) under ``policy``."""
    code = outcome.status_code
    if outcome.kind == "response" and code is not None:
        if webhook.is_success(code):
            return Verdict(ExecutionStatus.success, retry=False, wait=None, error=None)
        status = ExecutionStatus.failed
        retryable = is_retryable_status(code, webhook)
        error = outcome.error or f"HTTP {code}"
    elif outcome.kind == "denied":  # the egress policy refused the target: retrying cannot help
        status, retryable = ExecutionStatus.failed, False
        error = outcome.error or "webhook target refused by the egress policy"
    elif outcome.kind == "timeout":
        status, retryable = ExecutionStatus.timeout, True
        error = outcome.error or "timed out"
    else:  # connection, invalid (or a response without a status, which cannot happen)
        status, retryable = ExecutionStatus.failed, True
        error = outcome.error or f"{outcome.kind} error"

    if not retryable or attempt >= policy.max_attempts:
        return Verdict(status, retry=False, wait=None, error=error)

    wait = backoff(policy, attempt)
    if code in RETRY_AFTER_CODES and outcome.kind == "response" and outcome.retry_after is not None:
        seconds = float(outcome.retry_after)
        if math.isnan(seconds):
            pass  # keep the computed wait
        elif seconds >= policy.max_interval.total_seconds():
            wait = policy.max_interval
        else:
            wait = timedelta(seconds=max(0.0, seconds))
    return Verdict(status, retry=True, wait=wait, error=error)
