"""Shared timing helpers for the benchmark scripts: thread setup, interleaved medians, Markdown tables.

Timings on a shared machine drift; every candidate of a comparison is therefore run once per round, in alternating
order, and the medians over rounds are compared, so load changes hit both sides of a ratio alike.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]


def setup(threads: int) -> None:
    """Import yolo_spd (and tests.reference) from this checkout, offline, with a fixed torch thread count."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    import torch

    torch.set_num_threads(threads)


def interleaved_medians(candidates: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, float]:
    """Median wall time in ms of each candidate, measured in ``repeats`` interleaved rounds after ``warmup`` calls."""
    for run in candidates.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for round_index in range(repeats):
        for name in names if round_index % 2 == 0 else reversed(names):
            start = time.perf_counter()
            candidates[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) * 1e3 for name, values in times.items()}


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def environment_line(threads: int) -> str:
    import platform

    import torch

    return f"torch {torch.__version__}, {threads} thread(s), {platform.processor() or platform.machine()}, medians in ms"
