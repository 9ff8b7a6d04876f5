"""COCO evaluation with AP on small objects: ground truth, detections, scoring and reports.

- :mod:`.dataset`: a dataset YAML -> the split's images, class names and official COCO JSON (never downloads),
  resolved once into a :class:`DatasetSplit` that every step below takes as it is.
- :mod:`.settings`: :class:`EvalSettings`, the scoring settings as one checked value.
- :mod:`.ground_truth`: the official JSON, or ground truth built from YOLO labels.
- :mod:`.predictions`: detections from a file or from Ultralytics' validator, in the ground truth's ids.
- :mod:`.cocoeval`: pycocotools / faster-coco-eval with COCO, AI-TOD or custom size ranges.
- :mod:`.report`: summary lines, per-class table, ``coco_eval.json`` / ``coco_eval.csv``.
- :mod:`.compare`: several models, the same split and settings, one table and an AP-by-size plot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..paths import write_atomic
from .cocoeval import BACKENDS, SIZE_PRESETS, EvalResult, run_cocoeval, size_ranges
from .dataset import DatasetSplit, resolve_split
from .ground_truth import GroundTruth, labels_ground_truth, official_ground_truth
from .predictions import align_predictions, from_validator, read_predictions
from .settings import GT_CHOICES, EvalSettings

__all__ = (
    "BACKENDS",
    "GT_CHOICES",
    "SIZE_PRESETS",
    "DatasetSplit",
    "EvalResult",
    "EvalSettings",
    "GroundTruth",
    "ModelEvaluation",
    "evaluate_model",
    "evaluate_predictions",
    "build_ground_truth",
    "resolve_split",
    "size_ranges",
)


def build_ground_truth(split: DatasetSplit, gt: str = "auto", images: list[Path] | None = None) -> GroundTruth:
    """Ground truth for ``split`` (restricted to ``images`` if given): the official JSON when there is one and
    ``gt`` is ``auto`` or ``json``, label-derived when ``gt=labels``."""
    assert gt in GT_CHOICES, gt  # checked by EvalSettings
    images = list(images) if images is not None else list(split.images)
    if gt == "json" and split.coco_json is None:
        raise UsageError(
            f"gt=json: {split.yaml_file} names no COCO JSON and none was found in {split.root / 'annotations'}; "
            "add a 'coco_json:' key"
        )
    if gt != "labels" and split.coco_json is not None:
        return official_ground_truth(split.coco_json, images, list(split.names))
    return labels_ground_truth(images, list(split.names))


def evaluate_predictions(split: DatasetSplit, predictions: str | Path, settings: EvalSettings | None = None) -> EvalResult:
    """Score a saved detections file (see :mod:`.predictions` for its ids) on ``split``."""
    settings = settings or EvalSettings()
    detections = read_predictions(predictions)
    truth = build_ground_truth(split, settings.gt)
    detections = align_predictions(detections, truth, f"predictions={predictions}")
    return run_cocoeval(truth, detections, settings.sizes, settings.backend)


@dataclass
class ModelEvaluation:
    result: EvalResult
    truth: GroundTruth
    detections: list[dict]
    save_dir: Path
    metrics: object  # Ultralytics' DetMetrics from the same run


def evaluate_model(model, split: DatasetSplit, settings: EvalSettings | None = None, **val_args) -> ModelEvaluation:
    """Run Ultralytics validation of ``model`` (a ``YOLO``) on ``split`` and score its detections with COCO's evaluator.

    ``val_args`` are Ultralytics' validation keys (``imgsz``, ``batch``, ``project``, ...). The ground truth is
    restricted to the images Ultralytics' dataloader kept, so both describe the same images.
    """
    from ..registration import validate_collecting_detections

    settings = settings or EvalSettings()
    check_classes(model.names, split)
    val_args = {k: v for k, v in val_args.items() if k not in ("data", "split")}
    collected = validate_collecting_detections(model, data=str(split.yaml_file), split=split.split, **val_args)
    kept = [Path(f).resolve() for f in collected.image_files]
    truth = build_ground_truth(split, settings.gt, images=kept)
    detections = from_validator(collected.detections, collected.class_map, truth)
    result = run_cocoeval(truth, detections, settings.sizes, settings.backend)
    return ModelEvaluation(result, truth, detections, collected.save_dir, collected.metrics)


def check_classes(model_names: dict, dataset: DatasetSplit) -> None:
    if len(model_names) != len(dataset.names):
        raise UsageError(
            f"the weights detect {len(model_names)} classes but data={dataset.yaml_file.name} has "
            f"{len(dataset.names)}; evaluate on the dataset the model was trained for"
        )


def save_detections(evaluation: ModelEvaluation, folder: Path) -> Path:
    """``coco_predictions.json``: the detections in the ground truth's ids, loadable by pycocotools as they are."""
    return write_atomic(Path(folder) / "coco_predictions.json", json.dumps(evaluation.detections))
