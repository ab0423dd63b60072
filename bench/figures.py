"""Statistics shared by the benchmarks and the load loop; nothing beyond the
standard library, so that ``bench/load.py`` (run by the tests, without the
``bench`` extra) can use them."""

from __future__ import annotations


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]
