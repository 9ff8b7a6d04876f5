"""Shared timing helpers for the benchmark scripts: clock and thread options, interleaved medians, tables,
--write-docs.

Timings on a shared machine drift; every candidate of a comparison is therefore run once per round, in alternating
order, and a ratio is the median of the per-round ratios, so load changes hit both sides of a ratio alike. The
default clock is this process's CPU time at one torch thread (``time.process_time``): other processes on the machine
slow it far less than they slow wall time (wall-time ratios swung up to 3x on a busy 2-core machine). ``--wall-time``
times wall-clock time instead, for a quiet machine.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def setup(threads: int) -> None:
    """Import yolo_spd (and tests.reference) from this checkout, offline, with a fixed torch thread count."""
    os.environ.setdefault("YOLO_OFFLINE", "true")
    sys.path.insert(0, str(REPO))
    import torch

    torch.set_num_threads(threads)


def add_clock_options(parser) -> None:
    """``--threads N`` (default 1) and ``--wall-time`` (default: process CPU time)."""
    parser.add_argument("--threads", type=int, default=1, help="torch (and ONNX Runtime) intra-op threads (default 1)")
    parser.add_argument("--wall-time", action="store_true",
                        help="time wall-clock time instead of this process's CPU time (for a quiet machine; on a busy "
                             "one other processes' load moves wall times and their ratios)")


def clock(args) -> Callable[[], float]:
    """The clock the options choose: ``time.perf_counter`` with ``--wall-time``, else ``time.process_time``."""
    return time.perf_counter if args.wall_time else time.process_time


def clock_name(args) -> str:
    return "wall time" if args.wall_time else "process CPU time"


class Timings:
    """Wall times in seconds per candidate, one entry per round."""

    def __init__(self, rounds: dict[str, list[float]]):
        self.rounds = rounds

    def ms(self, name: str) -> float:
        return statistics.median(self.rounds[name]) * 1e3

    def ratio(self, name: str, baseline: str) -> float:
        """Median over rounds of the per-round ratio: the two sides of each ratio ran back to back."""
        return statistics.median(a / b for a, b in zip(self.rounds[name], self.rounds[baseline]))


def interleaved(
    candidates: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int,
    clock: Callable[[], float] = time.perf_counter,
) -> Timings:
    """Run every candidate once per round, in alternating order, ``repeats`` rounds after ``warmup`` calls each.
    ``clock`` is wall time by default; ``time.process_time`` (this process's CPU time) is steadier on a busy machine."""
    for run in candidates.values():
        for _ in range(warmup):
            run()
    rounds: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for round_index in range(repeats):
        for name in names if round_index % 2 == 0 else reversed(names):
            start = clock()
            candidates[name]()
            rounds[name].append(clock() - start)
    return Timings(rounds)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """Label column left, numbers right, written by yolo_spd's one table writer (imported here, after setup())."""
    from yolo_spd.markdown import table

    return table(header, rows)


def add_write_docs(parser, block: str) -> None:
    """``--write-docs FILE ...``: the script also writes its output into the generated block ``block`` of each FILE."""
    parser.add_argument("--write-docs", nargs="+", default=[], metavar="FILE",
                        help=f"also write the output into the generated block '{block}' of each Markdown FILE "
                             "(yolo_spd.markdown), e.g. docs/speed.md")


def check_docs(files: list[str], block: str) -> None:
    """Fail now, not after minutes of timing, when a --write-docs file lacks the block."""
    if not files:
        return
    from yolo_spd.errors import UsageError
    from yolo_spd.markdown import read_block

    for file in files:
        try:
            read_block(file, block)
        except (UsageError, OSError) as e:
            sys.exit(f"{Path(sys.argv[0]).name}: error: --write-docs {file}: {e}")


def write_docs(files: list[str], block: str, text: str) -> None:
    from yolo_spd.markdown import write_blocks

    write_blocks(files, block, text)


def environment_line(threads: int, clock_label: str | None = None) -> str:
    import platform

    import torch

    machine = platform.processor() or platform.machine()
    timed = f"{clock_label}, " if clock_label else ""
    return f"torch {torch.__version__}, {timed}{threads} thread(s), {machine}, medians in ms"


def ort_session(model: str | bytes, threads: int):
    """An ONNX Runtime CPU session for a model file or serialized model, with the same thread count as torch."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (argparse turns the ValueError into one 'error:' line naming the value)."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


positive_int.__name__, non_negative_int.__name__ = "integer >= 1", "integer >= 0"  # what argparse's error names
