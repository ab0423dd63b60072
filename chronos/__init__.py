"""Chronos: a self-hosted webhook scheduler on Ray.

The ``chronos`` package is the pure domain core (no Ray, no FastAPI):
models, schedules, durations, retries, the webhook dispatcher, the per-job
state machine and the store. ``chronos.actors``, ``chronos.serve`` and
``chronos.cli`` are the thin edges built on it.
"""

__version__ = "0.1.0"
