"""Settings read at process entry: defaults that depend on the machine."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from chronos.settings import Settings


def test_pool_size_defaults_to_one_host_per_core_and_at_least_four(monkeypatch):
    monkeypatch.delenv("CHRONOS_POOL_SIZE", raising=False)
    assert Settings().pool_size == max(4, os.cpu_count() or 1)


def test_pool_size_from_the_environment(monkeypatch):
    monkeypatch.setenv("CHRONOS_POOL_SIZE", "7")
    assert Settings().pool_size == 7
    monkeypatch.setenv("CHRONOS_POOL_SIZE", "0")
    with pytest.raises(ValidationError, match="pool_size"):
        Settings()
