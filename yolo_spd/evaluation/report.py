"""Print and save an evaluation: COCO's summary lines with AP_S highlighted, a per-class table, JSON and CSV files."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from ..paths import write_atomic
from .cocoeval import EvalResult

HIGHLIGHT = "small"  # the range users of small-object detectors look at first


def _line(kind: str, iou: str, area: str, max_dets: int, value: float, width: int) -> str:
    name = "Average Precision  (AP)" if kind == "AP" else "Average Recall     (AR)"
    return f" {name} @[ IoU={iou:<9} | area={area:>{width}} | maxDets={max_dets:>3d} ] = {value:0.3f}"


def summary_lines(result: EvalResult, color: bool | None = None) -> list[str]:
    """COCO's summary (pycocotools' layout), one line per number, the AP_small line marked."""
    color = sys.stdout.isatty() if color is None else color
    m, labels = result.metrics, result.ranges.labels
    width = max(6, *(len(label) for label in labels))
    limits, top = result.max_dets, result.max_dets[-1]
    rows = [
        ("AP", "0.50:0.95", "all", top, m["AP"]),
        ("AP", "0.50", "all", top, m["AP50"]),
        ("AP", "0.75", "all", top, m["AP75"]),
        *(("AP", "0.50:0.95", label, top, m[f"AP_{label}"]) for label in labels),
        *(("AR", "0.50:0.95", "all", n, m[f"AR{n}"]) for n in limits),
        *(("AR", "0.50:0.95", label, top, m[f"AR_{label}"]) for label in labels),
    ]
    lines = []
    for kind, iou, area, max_dets, value in rows:
        line = _line(kind, iou, area, max_dets, value, width)
        if kind == "AP" and area == HIGHLIGHT:
            line = f"\033[1m{line}  <- AP_S\033[0m" if color else f"{line}  <- AP_S"
        lines.append(line)
    return lines


def header(result: EvalResult) -> str:
    return (
        f"COCO box evaluation ({result.backend}; sizes: {result.ranges.name}) on {result.images} images, "
        f"{result.annotations} objects, {result.detections} detections; ground truth: {result.ground_truth}"
    )


def per_class_table(result: EvalResult) -> str:
    """Markdown table, one row per class, for pasting into a paper or an issue."""
    from ..markdown import table

    columns = ["AP", "AP50", *(f"AP_{label}" for label in result.ranges.labels)]
    rows = [[row["name"], row["instances"], *(metric_cell(row[c]) for c in columns)] for row in result.per_class]
    return table(["class", "instances", *columns], rows)


def metric_cell(value: float) -> str:
    """A metric as tables show it: three decimals, or ``-`` where COCOeval reports -1 (no objects of that kind)."""
    return "-" if value < 0 else f"{value:.3f}"


def to_csv(result: EvalResult) -> str:
    """One header row and one value row: the summary metrics, ready for a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["backend", "sizes", *result.metrics])
    writer.writerow([result.backend, result.ranges.name, *(f"{v:.6f}" for v in result.metrics.values())])
    return buffer.getvalue()


def save(result: EvalResult, folder: Path, stem: str = "coco_eval") -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.csv`` into ``folder`` (each through a temporary file and a rename)."""
    folder = Path(folder)
    json_file = write_atomic(folder / f"{stem}.json", json.dumps(result.as_dict(), indent=2) + "\n")
    csv_file = write_atomic(folder / f"{stem}.csv", to_csv(result))
    return json_file, csv_file
