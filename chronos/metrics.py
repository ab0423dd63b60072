"""The cluster-wide Prometheus registry, kept by the supervisor (every
execution report passes through it, so totals are cluster-wide, not per
replica). Labels are bounded by default: statuses, outcomes and triggers; the
job name only when the operator opts in (``CHRONOS_METRICS_JOB_LABELS``).

Execution series are derived from what the store wrote
(:class:`~chronos.models.ExecutionChange`), never from reports as they come: a
report that repeats or arrives late is refused by the store and counted by
nobody, and each fact is counted on the one write that made it durable."""

from __future__ import annotations

from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily

from chronos.models import ExecutionChange, ExecutionStatus, Trigger

disable_created_metrics()  # the *_created series only add noise to every scrape

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class Metrics:
    def __init__(self, *, job_labels: bool = False) -> None:
        self.registry = r = CollectorRegistry()
        self._job_labels = job_labels
        job = ["job"] if job_labels else []
        self.jobs = _JobCount()
        r.register(self.jobs)
        self.jobs_enabled = Gauge("chronos_jobs_enabled", "Jobs enabled.", registry=r)
        self.executions = Counter(
            "chronos_executions", "Executions that reached a final status.", [*job, "status"], registry=r
        )
        if not job_labels:  # every status shows from the first scrape (rates need a prior sample)
            for status in ExecutionStatus:
                if status.final:
                    self.executions.labels(status=status.value)
        self.duration = Histogram(
            "chronos_execution_duration_seconds", "Execution duration, retries included.", job,
            buckets=_DURATION_BUCKETS, registry=r,
        )
        self.lag = Histogram(
            "chronos_schedule_lag_seconds", "Fire time minus scheduled time, once per started scheduled or catch-up run.",
            [*job, "trigger"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.missed = Counter("chronos_missed_runs", "Scheduled runs missed while no scheduler ran.", job, registry=r)
        self.running = Gauge("chronos_executions_running", "Executions in flight (status running, as stored).", registry=r)
        self.attempts = Counter(
            "chronos_webhook_attempts", "Webhook requests sent, by outcome.", [*job, "outcome"], registry=r
        )
        self.started = Gauge(
            "chronos_supervisor_start_time_seconds", "When the supervisor (re)started, Unix seconds.", registry=r
        )
        self.started.set_to_current_time()
        self.notifications = Counter(
            "chronos_notifications", "Notifications by event and outcome (sent, failed, dropped).",
            ["event", "outcome"], registry=r,
        )

    def record(self, changes: Iterable[ExecutionChange]) -> None:
        """Account for executions as the store wrote them."""
        for change in changes:
            self._record(change)

    def _record(self, change: ExecutionChange) -> None:
        e = change.execution
        job = {"job": e.job_name} if self._job_labels else {}
        for attempt in change.new_attempts:
            self.attempts.labels(**job, outcome=_outcome(attempt.status_code, attempt.error)).inc()
        # Manual runs are left out: their "schedule" is the moment someone asked.
        if change.started and e.started_at is not None and e.trigger is not Trigger.manual:
            lag = max(0.0, (e.started_at - e.scheduled_at).total_seconds())
            self.lag.labels(**job, trigger=e.trigger.value).observe(lag)
        if change.finished:
            self.executions.labels(**job, status=e.status.value).inc()
            if e.duration is not None:
                self._labelled(self.duration, job).observe(e.duration)
            if e.missed_slots:
                self._labelled(self.missed, job).inc(e.missed_slots)

    @staticmethod
    def _labelled(metric, job: dict):
        return metric.labels(**job) if job else metric

    def exposition(self, jobs_total: int, jobs_enabled: int, running: int) -> bytes:
        self.jobs.value = jobs_total
        self.jobs_enabled.set(jobs_enabled)
        self.running.set(running)
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
