"""Which notifications an execution result calls for, and what they say (pure: no I/O).

The supervisor hands every execution the store made final to :meth:`Notifier.decide` (each
exactly once: it is derived from the write that made it durable). A job is *healthy* or
*failing*; its state survives restarts because it is the job's stored ``last_status``.

- ``mode: change`` (default): a target hears when the state changes -- healthy to failing
  (``failed`` or ``timeout``), failing to healthy (``recovered``; or ``succeeded`` for a target
  that listens to it and not to ``recovered``) -- and of every missed-slot record. A job failing
  every minute sends one message, not 1,440 a day.
- ``mode: every``: every run whose outcome the target lists, plus ``recovered`` on the change.

At most one message per target and execution. Formats: ``json`` (the event object documented in
docs/notifications.md) and ``slack`` (an incoming-webhook message).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Optional
from uuid import UUID

from chronos.models import (
    Execution,
    ExecutionStatus,
    Job,
    NotifyEvent,
    NotifyFormat,
    NotifyMode,
    NotifyTarget,
)

_FAILING = frozenset({ExecutionStatus.failed, ExecutionStatus.timeout})
_NOTICE_IDS = uuid.UUID("6f1d3c2e-9a57-4b8e-a1a4-0c9e7f6d5b31")  # namespace of uuid5 notice ids
_ICONS = {"failed": ":x:", "timeout": ":hourglass:", "missed": ":warning:", "recovered": ":white_check_mark:",
          "succeeded": ":white_check_mark:"}


@dataclass(frozen=True)
class Notice:
    """One message for one target. ``id`` is stable for (execution, event, target), so every
    retry of it carries the same ``webhook-id`` and a receiver can dedupe."""

    id: UUID
    event: NotifyEvent
    target: NotifyTarget
    job: Job
    execution: Execution
    body: str


class Notifier:
    def __init__(self, defaults: Iterable[NotifyTarget] = (), *, public_url: Optional[str] = None):
        """``defaults``: the server's targets, told of every job. ``public_url``: where the API
        is reached from outside (the link to the execution)."""
        self.defaults = list(defaults)
        self.public_url = (public_url or "").rstrip("/")
        self._failing: dict[UUID, bool] = {}

    def seed(self, jobs: Iterable[Job]) -> None:
        """Each job's state from its last stored final status (at start)."""
        for job in jobs:
            self._failing[job.id] = job.last_status in _FAILING

    def forget(self, job_id: UUID) -> None:
        self._failing.pop(job_id, None)

    def decide(self, job: Job, execution: Execution) -> list[Notice]:
        """The notices a just-finished ``execution`` of ``job`` calls for (updates the job's state)."""
        events = self._events(job.id, execution)
        if not events:
            return []
        notices = []
        for target in [*job.notify, *self.defaults]:
            event = self._pick(target, events)
            if event is not None:
                notices.append(self._notice(event, target, job, execution))
        return notices

    def _events(self, job_id: UUID, e: Execution) -> dict[NotifyEvent, bool]:
        """The events this execution stands for, each with whether it is a state change."""
        if e.status is ExecutionStatus.skipped:
            return {NotifyEvent.missed: True} if e.missed_slots else {}
        was_failing = self._failing.get(job_id, False)
        if e.status in _FAILING:
            self._failing[job_id] = True
            return {NotifyEvent(e.status.value): not was_failing}
        if e.status is ExecutionStatus.success:
            self._failing[job_id] = False
            events = {NotifyEvent.succeeded: was_failing}
            if was_failing:
                events[NotifyEvent.recovered] = True
            return events
        return {}  # cancelled: says nothing about the job's health

    @staticmethod
    def _pick(target: NotifyTarget, events: dict[NotifyEvent, bool]) -> Optional[NotifyEvent]:
        for event in sorted(events, key=lambda ev: ev is not NotifyEvent.recovered):  # recovered says most
            if event in target.events and (events[event] or target.mode is NotifyMode.every):
                return event
        return None

    def _notice(self, event: NotifyEvent, target: NotifyTarget, job: Job, execution: Execution) -> Notice:
        data = self.event_object(event, job, execution)
        body = data if target.format is NotifyFormat.json else slack_message(data)
        notice_id = uuid.uuid5(_NOTICE_IDS, f"{execution.id}/{event.value}/{target.url}")
        return Notice(notice_id, event, target, job, execution, json.dumps(body, separators=(",", ":")))

    def event_object(self, event: NotifyEvent, job: Job, e: Execution) -> dict[str, Any]:
        """The ``json`` format (docs/notifications.md)."""
        last = e.attempts[-1] if e.attempts else None
        path = f"/api/v1/jobs/{job.name}/executions/{e.id}"
        return {
            "type": f"chronos.job.{event.value}",
            "event": event.value,
            "job": {"id": str(job.id), "name": job.name},
            "execution": {
                "id": str(e.id),
                "trigger": e.trigger.value,
                "status": e.status.value,
                "scheduled_at": _time(e.scheduled_at),
                "started_at": _time(e.started_at),
                "finished_at": _time(e.finished_at),
                "attempts": len(e.attempts),
                "status_code": e.status_code if e.status_code is not None else (last.status_code if last else None),
                "error": e.error or (last.error if last else None),
                "reason": e.reason,
                "missed_slots": e.missed_slots,
            },
            "link": f"{self.public_url}{path}" if self.public_url else path,
        }


def slack_message(data: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message (``text`` in Slack's mrkdwn) for an event object."""
    e, job, event = data["execution"], data["job"]["name"], data["event"]
    if event == "missed":
        what = f"missed {e['missed_slots']} run(s): {e['reason'] or ''}".rstrip(": ")
    elif event in ("recovered", "succeeded"):
        what = "recovered" if event == "recovered" else "succeeded"
    else:
        detail = e["error"] or (f"HTTP {e['status_code']}" if e["status_code"] else e["status"])
        what = f"{'timed out' if event == 'timeout' else 'failed'} after {e['attempts']} attempt(s): {detail}"
    link = data["link"]
    shown = f"<{link}|execution>" if link.startswith("http") else f"execution {e['id']}"
    return {"text": f"{_ICONS[event]} Chronos job *{job}* {what} (scheduled {e['scheduled_at']}, {shown})"}


def _time(when: Optional[datetime]) -> Optional[str]:
    return when.isoformat().replace("+00:00", "Z") if when is not None else None
