"""Load against a real `chronos serve` (pooled placement): concurrent API
clients while every job fires every second at a receiver on 127.0.0.1. No
API request may fail and no slot of the window may be missed (each second of
each job has a scheduled execution, delivered). See ``bench/load.py``.

A scaled-down run (4 clients, 50 jobs, 15 s) is marked ``slow`` (``pytest -m slow``;
.ci/run runs it after the suite); the full one
(16 clients, 1,000 jobs, 60 s) is marked ``chaos``: ``pytest -m chaos``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import load  # noqa: E402


def _assert_held(report: dict) -> None:
    print({k: v for k, v in report.items() if k != "violations"})
    assert not report["violations"], "\n".join(report["violations"][:30])
    assert report["requests"] > 0 and report["failed_requests"] == 0
    assert report["slots_expected"] > 0 and report["slots_missed"] == 0


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_load_scaled_down(tmp_path):
    _assert_held(load.run(50, 4, 15, workdir=tmp_path))


@pytest.mark.chaos
@pytest.mark.timeout(1200)
def test_load(tmp_path):
    _assert_held(load.run(1000, 16, 60, workdir=tmp_path))
