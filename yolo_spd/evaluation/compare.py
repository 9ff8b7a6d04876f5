"""``yolo-spd compare``: several models, the same data, the same evaluator, one side-by-side table and an AP-by-size plot.

Each model is validated on one resolved :class:`~yolo_spd.evaluation.DatasetSplit` and scored by
:func:`yolo_spd.evaluation.evaluate_model` with one :class:`~yolo_spd.evaluation.EvalSettings`, so the settings are
identical by construction. The table (Markdown on screen; ``compare.csv``, ``compare.tex`` (LaTeX) and
``compare.json`` on disk) and the bar plot (``compare_ap_by_size.png``) go to one run folder; each model's own
validation output, with its ``coco_eval.json`` and ``coco_predictions.json``, sits in a subfolder.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..paths import save_figure, write_atomic
from .dataset import DatasetSplit
from .settings import EvalSettings


@dataclass
class ModelScore:
    """One row of the side-by-side table: the model's label, weights file, parameter count, metrics and input size."""

    label: str
    weights: Path
    params: int | None  # None for an export, whose parameters Ultralytics does not expose
    metrics: dict[str, float]
    imgsz: object = None  # the input size it ran at (a static export runs at its own); None for sliced validation
    per_class: list[dict] = field(default_factory=list)  # the evaluation's per-class rows (EvalResult.per_class)


def model_labels(weights: list[Path]) -> list[str]:
    """Short unique names: the file stem; where stems repeat, the file name (``best.onnx`` beside ``best.pt``), then
    ``<run folder>/<stem>`` (``train3/best``); what is still equal gets a number."""

    def run(w: Path) -> str:
        return (w.parent.parent if w.parent.name == "weights" else w.parent).name

    namings = (lambda w: w.stem, lambda w: w.name, lambda w: f"{run(w)}/{w.stem}", lambda w: f"{run(w)}/{w.name}")
    labels = [w.stem for w in weights]
    for naming in namings[1:]:
        repeated = {label for label in labels if labels.count(label) > 1}
        labels = [naming(w) if label in repeated else label for w, label in zip(weights, labels)]
    repeated = {label for label in labels if labels.count(label) > 1}  # same run and file names: number them
    return [f"{label}#{i + 1}" if label in repeated else label for i, label in enumerate(labels)]


def model_folders(labels: list[str]) -> list[str]:
    """Each model's subfolder in the compare run: its label with ``/`` as ``_``, numbered where that makes two equal
    (``train3/best`` beside a file ``train3_best.pt``)."""
    names = [label.replace("/", "_") for label in labels]
    return [f"{name}#{i + 1}" if names.count(name) > 1 else name for i, name in enumerate(names)]


def check_same_classes(names_by_model: dict[str, dict], data_names: tuple[str, ...]) -> None:
    """Refuse models whose class lists differ from each other or from the data's."""
    from . import first_difference

    expected = list(data_names)
    for label, names in names_by_model.items():
        listed = [names[i] for i in sorted(names)]
        if len(listed) != len(expected):
            raise UsageError(
                f"{label} detects {len(listed)} classes {_short(listed)} but the data has {len(expected)} "
                f"{_short(expected)}; compare only models trained on the same class list"
            )
        index = first_difference(names, expected)
        if index is not None:  # the lists' first four names may agree: name the class that differs
            raise UsageError(
                f"{label}'s class {index} is {listed[index]!r} but the data names it {expected[index]!r}; compare only "
                "models trained on the same class list"
            )


def _short(names: list[str]) -> str:
    return "[" + ", ".join(names[:4]) + (", ...]" if len(names) > 4 else "]")


def table_columns(range_labels: tuple[str, ...]) -> list[str]:
    """The table's metric columns: AP, AP50, AP75, AP of every size range, AR of the first (and AR_small)."""
    columns = ["AP", "AP50", "AP75", *(f"AP_{r}" for r in range_labels), f"AR_{range_labels[0]}"]
    if "small" in range_labels and "AR_small" not in columns:
        columns.append("AR_small")
    return columns


def table_rows(scores: list[ModelScore], columns: list[str]) -> tuple[list[str], list[list[str]]]:
    """The side-by-side table's headers and cells (3 decimals; "-" for a size range without val objects, and for an
    export's parameter count, which Ultralytics does not expose)."""
    from .report import metric_cell

    rows = [[s.label, "-" if s.params is None else f"{s.params:,}", *(metric_cell(s.metrics[c]) for c in columns)]
            for s in scores]
    return ["model", "params", *columns], rows


def markdown_table(scores: list[ModelScore], columns: list[str]) -> str:
    """The side-by-side table as Markdown (what compare prints)."""
    from ..markdown import table

    return table(*table_rows(scores, columns))


def per_class_table(scores: list[ModelScore], range_labels: tuple[str, ...]) -> str:
    """``per_class=True``: one row per class with its val instances, then each model's AP / AP of the focus size
    range (``small`` where the ranges have it, else the first), side by side (Markdown)."""
    from ..markdown import table
    from .report import metric_cell

    focus = "small" if "small" in range_labels else range_labels[0]
    rows = [[row["name"], row["instances"], *(" / ".join(metric_cell(s.per_class[k][m]) for m in ("AP", f"AP_{focus}"))
                                              for s in scores)]
            for k, row in enumerate(scores[0].per_class)]
    return f"Per class, AP / AP_{focus} of each model:\n\n" + table(["class", "instances", *(s.label for s in scores)],
                                                                    rows)


def latex_table(scores: list[ModelScore], columns: list[str], caption: str | None = None) -> str:
    """``compare.tex``: the side-by-side table in LaTeX (booktabs; labelled ``tab:compare``)."""
    from .. import latex

    return latex.table(*table_rows(scores, columns), caption=caption, label="tab:compare")


def to_csv(scores: list[ModelScore], columns: list[str]) -> str:
    """``compare.csv``: one row per model, its weights file and parameters, the metrics at full precision."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["model", "weights", "params", *columns])
    for s in scores:
        writer.writerow([s.label, str(s.weights), "" if s.params is None else s.params, *(f"{s.metrics[c]:.6f}" for c in columns)])
    return buffer.getvalue()


def plot_ap_by_size(scores: list[ModelScore], ranges, file: Path, title: str = "") -> Path:
    """Grouped bars: AP per object-size range, one bar per model (written to a temporary file, then renamed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys, groups = size_groups(scores, ranges)
    width = 0.8 / max(len(scores), 1)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(groups), 3.6), dpi=150)
    for i, s in enumerate(scores):
        values = [max(s.metrics[k], 0.0) for k in keys]
        positions = np.arange(len(groups)) + (i - (len(scores) - 1) / 2) * width
        bars = ax.bar(positions, values, width, label=s.label)
        texts = ["" if s.metrics[k] < 0 else f"{s.metrics[k]:.3f}" for k in keys]  # -1: no objects of that size
        ax.bar_label(bars, labels=texts, fontsize=6, padding=1)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_xlabel("object size (sqrt(area), px)")
    ax.set_ylabel("AP@[.5:.95]")
    ax.set_ylim(bottom=0)
    ax.set_title(f"AP by object size: {title}" if title else "AP by object size", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return save_figure(fig, file)


def size_groups(scores: list[ModelScore], ranges) -> tuple[list[str], list[str]]:
    """The plot's metric keys and group labels: "all", then each size range with its bounds. COCOeval reports -1
    for a range without ground-truth objects; such a group says so instead of showing bars of 0."""
    keys = ["AP", *(f"AP_{r}" for r in ranges.labels)]
    groups = ["all", *(f"{label}\n{_bounds(low, high)}" for label, (low, high) in zip(ranges.labels, ranges.bounds))]
    empty = [all(s.metrics[k] < 0 for s in scores) for k in keys]
    return keys, [group + ("\n(no objects)" if none else "") for group, none in zip(groups, empty)]


def _dataset_title(yaml_file: Path) -> str:
    return yaml_file.parent.name if yaml_file.stem == "data" else yaml_file.stem


def _bounds(low: float, high: float) -> str:
    from .cocoeval import OPEN_END

    return f">= {low:g} px" if high >= OPEN_END else f"{low:g}-{high:g} px"


def save(scores: list[ModelScore], columns: list[str], ranges, folder: Path, settings: dict) -> list[Path]:
    """Write ``compare.csv``, ``compare.tex``, ``compare.json`` (with ``settings``) and the AP-by-size plot."""
    payload = {"settings": settings, "models": [
        {"model": s.label, "weights": str(s.weights), "params": s.params, "imgsz": s.imgsz, "metrics": s.metrics,
         "per_class": s.per_class} for s in scores]}
    sliced = settings.get("slicing")
    how = (f"sliced inference ({sliced['slice']}-px windows, overlap {sliced['overlap']}), " if sliced else "")
    unlike = sizes_differ(scores)
    title = _dataset_title(Path(settings["data"]))
    caption = (f"Every model scored by the same evaluator on {title} ({settings['split']} split; "
               f"{how}{settings['backend']}, sizes {settings['sizes']}, max_dets {settings['max_dets']}). "
               "-: no val object of that size." + (f" Note: {unlike}." if unlike else ""))
    return [
        write_atomic(folder / "compare.csv", to_csv(scores, columns)),
        write_atomic(folder / "compare.tex", latex_table(scores, columns, caption) + "\n"),
        write_atomic(folder / "compare.json", json.dumps(payload, indent=2) + "\n"),
        plot_ap_by_size(scores, ranges, folder / "compare_ap_by_size.png", title=title),
    ]


def parameter_count(model) -> int | None:
    """Parameters of a ``YOLO`` model; None for an export (ONNX, OpenVINO, ...), whose ``model`` is only a path."""
    network = model.model
    return sum(p.numel() for p in network.parameters()) if hasattr(network, "parameters") else None


def compare(weights: list[Path], split: DatasetSplit, folder: Path, settings: EvalSettings | None = None,
            **val_args) -> tuple[list[ModelScore], list[str], list[Path]]:
    """Validate every model in ``weights`` on ``split`` with the same settings; return scores, columns, saved files.

    ``folder`` is the run folder (the CLI's comes from :func:`yolo_spd.run_folders.run_folder`); everything goes
    into it: the table and plot, and each model's own validation run in a subfolder named after the model.
    ``val_args`` are Ultralytics' validation keys, the same for every model (``project``, ``name``, ``exist_ok`` and
    ``save_dir`` are ignored: ``folder`` is where it goes).
    """
    from ..model_source import load_model
    from . import evaluate_model, report, save_detections

    settings = settings or EvalSettings()
    labels = model_labels(weights)
    models = {label: load_model(w, "weights") for label, w in zip(labels, weights)}
    check_same_classes({label: m.names for label, m in models.items()}, split.names)
    val_args = {k: v for k, v in val_args.items() if k not in ("project", "name", "exist_ok", "plots", "save_dir")}
    scores = []
    for (label, model), file, subfolder in zip(models.items(), weights, model_folders(labels)):
        params = parameter_count(model)  # before validation: Ultralytics 8.4.67's validator fuses the model in place
        evaluation = evaluate_model(model, split, settings, save_dir=str(Path(folder) / subfolder), plots=False,
                                    **val_args)
        report.save(evaluation.result, evaluation.save_dir)  # each model's own scores and detections beside its run
        save_detections(evaluation, evaluation.save_dir)
        scores.append(ModelScore(label, file, params, evaluation.result.metrics, _size(evaluation.imgsz),
                                 evaluation.result.per_class))
    columns = table_columns(settings.sizes.labels)
    recorded = {"data": str(split.yaml_file), "split": split.split, **settings.as_dict(),
                "ground_truth": evaluation.result.ground_truth, **{k: str(v) for k, v in val_args.items()}}
    if settings.slicing:  # merge and metric None mean "chosen by conf": record what was used
        conf = val_args.get("conf")
        merge, metric = settings.slicing.merging(0.001 if conf is None else float(conf))
        recorded["slicing"] = {**recorded["slicing"], "merge_used": merge, "metric_used": metric}
    unlike = sizes_differ(scores)
    if unlike:
        print(f"yolo-spd: note: {unlike}", file=sys.stderr)
    return scores, columns, save(scores, columns, settings.sizes, folder, recorded)


def _size(imgsz) -> int | list[int] | None:
    """An input size as the result files give it: one number for a square input, else [height, width]."""
    if imgsz is None:
        return None
    sizes = [int(v) for v in imgsz] if isinstance(imgsz, (list, tuple)) else [int(imgsz)]
    return sizes[0] if len(set(sizes)) == 1 else sizes


def sizes_differ(scores: list[ModelScore]) -> str | None:
    """A sentence naming each model's input size when they are not all the same (a static export runs at the size
    it was exported at, whatever imgsz= says), else None."""
    sizes = [s.imgsz for s in scores if s.imgsz is not None]
    if len({json.dumps(v) for v in sizes}) < 2:
        return None
    listed = ", ".join(f"{s.label} at {s.imgsz}" for s in scores if s.imgsz is not None)
    return (f"the models ran at different input sizes ({listed}): a static export keeps the size it was exported "
            "at; export with dynamic=True, or at the same imgsz, to compare them alike")
