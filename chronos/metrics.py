"""The cluster-wide Prometheus registry, kept by the supervisor (every
execution report passes through it, so totals are cluster-wide, not per
replica). Labels are bounded: statuses and outcomes, never job names."""

from __future__ import annotations

from collections import OrderedDict

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily

from chronos.models import Execution, ExecutionStatus, Trigger

disable_created_metrics()  # the *_created series only add noise to every scrape

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.jobs = _JobCount()
        r.register(self.jobs)
        self.jobs_enabled = Gauge("chronos_jobs_enabled", "Jobs enabled.", registry=r)
        self.executions = Counter(
            "chronos_executions", "Executions that reached a final status.", ["status"], registry=r
        )
        for status in ExecutionStatus:
            if status.final:
                self.executions.labels(status.value)
        self.duration = Histogram(
            "chronos_execution_duration_seconds", "Execution duration, retries included.", buckets=_DURATION_BUCKETS, registry=r
        )
        self.lag = Histogram(
            "chronos_schedule_lag_seconds", "Fire time minus scheduled time.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.missed = Counter("chronos_missed_runs", "Scheduled runs missed while no scheduler ran.", registry=r)
        self.running = Gauge("chronos_executions_running", "Executions in flight.", registry=r)
        self.attempts = Counter(
            "chronos_webhook_attempts", "Webhook requests sent, by outcome.", ["outcome"], registry=r
        )
        self._running: set = set()
        self._attempts_seen: dict = {}
        self._finished: OrderedDict = OrderedDict()

    def observe(self, execution: Execution) -> bool:
        """Account for one reported state of an execution; False if it is stale
        (the execution already finished). Reports can repeat or arrive late
        (a retried flush), so attempts and final statuses are counted once."""
        key = execution.id
        if key in self._finished:
            return False
        seen = self._attempts_seen.get(key, 0)
        for attempt in execution.attempts[seen:]:
            self.attempts.labels(_outcome(attempt.status_code, attempt.error)).inc()
        if execution.status.final:
            self._attempts_seen.pop(key, None)
            self._running.discard(key)
            self._finished[key] = None
            if len(self._finished) > 100_000:
                self._finished.popitem(last=False)
            self.executions.labels(execution.status.value).inc()
            if execution.duration is not None:
                self.duration.observe(execution.duration)
            if execution.missed_slots:
                self.missed.inc(execution.missed_slots)
        else:
            self._attempts_seen[key] = max(seen, len(execution.attempts))
            if execution.status is ExecutionStatus.running and key not in self._running:
                self._running.add(key)
                if execution.started_at and execution.trigger is Trigger.scheduled:
                    self.lag.observe(max(0.0, (execution.started_at - execution.scheduled_at).total_seconds()))
        self.running.set(len(self._running))
        return True

    def exposition(self, jobs_total: int, jobs_enabled: int) -> bytes:
        self.jobs.value = jobs_total
        self.jobs_enabled.set(jobs_enabled)
        return generate_latest(self.registry)


class _JobCount:
    """``chronos_jobs_total``: the number of jobs defined. The guide names it
    with ``_total``, which Prometheus reserves for counters (promtool rejects a
    gauge so named), so it is exposed as a counter; it drops when jobs are
    deleted, which Prometheus reads as a counter reset."""

    value = 0

    def collect(self):
        yield CounterMetricFamily("chronos_jobs", "Jobs defined.", value=self.value)


def _outcome(status_code, error) -> str:
    if status_code is None:
        return "timeout" if error and "timed out" in error else "error"
    return f"{status_code // 100}xx"
