"""The lateness distributions of every bench/firing.py result, Chronos and
APScheduler side by side per workload, into bench/lateness.png.

    python bench/plot.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common import RESULTS, percentile  # noqa: E402

ORDER = ["100x1s-dedicated", "100x1s-pooled", "1000x1s-pooled", "10000x10s-pooled"]
NAMES = {"chronos": "Chronos", "apscheduler": "APScheduler 3"}


def load() -> list[dict]:
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("firing-*.json"))]
    rank = {label: i for i, label in enumerate(ORDER)}
    return sorted(runs, key=lambda r: (rank.get(r["label"], len(ORDER)), r["label"]))


def main() -> None:
    runs = load()
    fig, axes = plt.subplots(1, len(runs), figsize=(3.2 * len(runs), 4.2), squeeze=False)
    for ax, run in zip(axes[0], runs):
        names = [k for k in NAMES if k in run["results"]]
        data = [run["results"][k]["lateness_ms"] for k in names]
        ax.boxplot(data, whis=(1, 99), showfliers=False, widths=0.6)
        ax.set_xticks(range(1, len(names) + 1), [NAMES[k] for k in names], fontsize=8)
        for i, values in enumerate(data, start=1):
            p99 = percentile(values, 99)
            ax.annotate(f"p99 {p99:.0f}", (i, p99), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=7)
        ax.set_title(run["label"], fontsize=9)
        ax.set_ylabel("lateness ms (arrival − scheduled), log", fontsize=8)
        ax.set_yscale("symlog", linthresh=10)  # Chronos and APScheduler differ by orders of magnitude
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Lateness: box = p25..p75, line = p50, whiskers = p1..p99", fontsize=9)
    fig.tight_layout()
    out = Path(__file__).parent / "lateness.png"
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main()
