"""COCO evaluation with AP on small objects: ground truth, detections, scoring and reports.

- :mod:`.dataset`: a dataset YAML -> the split's images, class names and official COCO JSON (never downloads),
  resolved once into a :class:`DatasetSplit` that every step below takes as it is.
- :mod:`.settings`: :class:`EvalSettings`, the scoring settings as one checked value.
- :mod:`.ground_truth`: the official JSON, or ground truth built from YOLO labels.
- :mod:`.predictions`: detections from a file or from Ultralytics' validator, in the ground truth's ids.
- :func:`evaluate_sliced`: detections from sliced inference (:mod:`yolo_spd.slicing.inference`) on the full images.
- :mod:`.cocoeval`: pycocotools / faster-coco-eval with COCO, AI-TOD or custom size ranges.
- :mod:`.report`: summary lines, per-class table, ``coco_eval.json`` / ``coco_eval.csv``.
- :mod:`.compare`: several models, the same split and settings, one table and an AP-by-size plot.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..paths import write_atomic
from .cocoeval import BACKENDS, SIZE_PRESETS, EvalResult, run_cocoeval, size_ranges
from .dataset import DatasetSplit, plural, resolve_split
from .ground_truth import GroundTruth, label_path, labels_ground_truth, official_ground_truth
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
    "check_ground_truth",
    "resolve_split",
    "size_ranges",
)


def build_ground_truth(split: DatasetSplit, gt: str = "auto", images: list[Path] | None = None,
                       unlabelled_ok: bool = False) -> GroundTruth:
    """Ground truth for ``split`` (restricted to ``images`` if given): the official JSON when there is one and
    ``gt`` is ``auto`` or ``json``, label-derived when ``gt=labels``; ``unlabelled_ok`` as in
    :func:`check_ground_truth`."""
    assert gt in GT_CHOICES, gt  # checked by EvalSettings
    whole = check_ground_truth(split, gt, unlabelled_ok)
    if images is None:
        return whole
    return _ground_truth(split, gt, list(images))


def _ground_truth(split: DatasetSplit, gt: str, images: list[Path]) -> GroundTruth:
    if gt != "labels" and split.coco_json is not None:
        return official_ground_truth(split.coco_json, images, list(split.names))
    return labels_ground_truth(images, list(split.names))


def check_ground_truth(split: DatasetSplit, gt: str, unlabelled_ok: bool = False) -> GroundTruth:
    """The whole split's ground truth, after refusing ``gt=json`` for a split without a COCO JSON, two images of the
    split with the same file name (in different folders), a COCO JSON that is not an instances file, lacks a category
    or an image of the split, and a split with nothing to score (every image skipped, or, unless ``unlabelled_ok``,
    no labelled object): before a validation or a training run, not after it (the JSON is read once per process and
    label-derived ground truth is cached, so scoring reads it again for free). ``unlabelled_ok`` is for a run that
    is there for its detections (``save_json=True`` on a test split, for a benchmark server)."""
    if gt == "json" and split.coco_json is None:
        raise UsageError(
            f"gt=json: {split.yaml_file} names no COCO JSON and none was found in {split.root / 'annotations'}; "
            "add a 'coco_json:' key"
        )
    seen: dict[str, Path] = {}
    for image in split.images:  # COCO's ground truth and Ultralytics' detections name an image by its file name
        other = seen.setdefault(image.name, image)
        if other != image:
            raise UsageError(
                f"data={split.yaml_file}: the {split.split} split has two images named {image.name} ({other} and "
                f"{image}); COCO evaluation names each image by its file name, so their boxes would be mixed up: "
                "rename one"
            )
    truth = _ground_truth(split, gt, list(split.images))
    where = f"data={split.yaml_file}: the {split.split} split"
    if not truth.coco["images"]:  # Ultralytics' loader would stop with "No valid images found"
        more = f" (and {len(truth.skipped) - 1} more)" if len(truth.skipped) > 1 else ""
        raise UsageError(f"{where} has no image Ultralytics would load: every one is skipped, e.g. "
                         f"{truth.skipped[0]}{more}; fix the labels or the images")
    if not truth.coco["annotations"] and not unlabelled_ok:  # COCO's evaluator would print -1 for every score
        images = plural(len(truth.coco["images"]), "image")
        skipped = (f" ({plural(len(truth.skipped), 'other')} skipped, e.g. {truth.skipped[0]})" if truth.skipped
                   else "")
        source = (f"coco_json={split.coco_json} annotates none of its {images}" if truth.is_official else
                  f"has no labelled object: none of the {images} Ultralytics would load{skipped} has a label row in "
                  f"{label_path(split.images[0]).parent}")
        raise UsageError(f"{where} {source}; there is nothing to score (COCO gives -1 for every metric): point "
                         f"'{split.split}:' at labelled images (`val save_json=True` runs an unlabelled split for its "
                         "detections alone)")
    return truth


def evaluate_predictions(split: DatasetSplit, predictions: str | Path,
                         settings: EvalSettings | None = None) -> EvalResult:
    """Score a saved detections file (see :mod:`.predictions` for its ids) on ``split``."""
    settings = settings or EvalSettings()
    detections = read_predictions(predictions)
    truth = build_ground_truth(split, settings.gt)
    detections = align_predictions(detections, truth, f"predictions={predictions}")
    return run_cocoeval(truth, detections, settings.sizes, settings.backend, settings.max_dets)


@dataclass
class ModelEvaluation:
    """What :func:`evaluate_model` gives: the COCO result, the ground truth it was scored on, the detections in that
    ground truth's ids, the run folder, Ultralytics' own metrics and the input size the model ran at."""

    result: EvalResult
    truth: GroundTruth
    detections: list[dict]
    save_dir: Path
    metrics: object  # Ultralytics' DetMetrics from the same run; None for sliced validation
    imgsz: object = None  # the input size Ultralytics' validator ran the model at; None for sliced validation


def evaluate_model(model, split: DatasetSplit, settings: EvalSettings | None = None, **val_args) -> ModelEvaluation:
    """Run Ultralytics validation of ``model`` (a ``YOLO``) on ``split`` and score its detections with COCO's evaluator.

    ``val_args`` are Ultralytics' validation keys (``imgsz``, ``batch``, ``project``, ...). The ground truth is
    restricted to the images Ultralytics' dataloader kept, so both describe the same images. With
    ``settings.slicing``, the model runs window by window instead (:func:`evaluate_sliced`).
    """
    from ..integration import validate_collecting_detections

    settings = settings or EvalSettings()
    check_classes(model.names, split)
    unlabelled_ok = bool(val_args.get("save_json"))  # wanted for the detections, scored or not
    whole = check_ground_truth(split, settings.gt, unlabelled_ok)
    if not whole.coco["annotations"]:
        print(f"yolo-spd: note: the {split.split} split of {split.yaml_file.name} has no labelled object: nothing is "
              "scored (COCO gives -1 for every metric); the detections are saved (save_json=True)", file=sys.stderr)
    val_args = with_detection_limit(val_args, settings.max_dets)
    if settings.slicing is not None:
        return evaluate_sliced(model, split, settings, **val_args)
    val_args = {k: v for k, v in val_args.items() if k not in ("data", "split")}
    collected = validate_collecting_detections(model, data=str(split.yaml_file), split=split.split, **val_args)
    kept = [Path(f).resolve() for f in collected.image_files]
    truth = whole if set(kept) == set(split.images) else _ground_truth(split, settings.gt, kept)  # checked above
    detections = from_validator(collected.detections, collected.class_map, truth)
    result = run_cocoeval(truth, detections, settings.sizes, settings.backend, settings.max_dets)
    return ModelEvaluation(result, truth, detections, collected.save_dir, collected.metrics, collected.imgsz)


def evaluate_sliced(model, split: DatasetSplit, settings: EvalSettings, project=None, name=None, exist_ok=False,
                    save_dir=None, **val_args) -> ModelEvaluation:
    """Sliced validation: every image of ``split`` that the ground truth keeps is predicted window by window at its
    native resolution (:class:`yolo_spd.slicing.inference.SlicedPredictor`), and the merged full-image detections are
    scored against the full images' ground truth, so AP_S refers to objects as they are in the original images.

    The run folder is ``save_dir`` if given, else the one :func:`yolo_spd.run_folders.run_folder` picks from
    ``project``/``name``/``exist_ok`` as Ultralytics would (default ``runs/detect/val``, ``val-2``, ...). Sliced
    validation itself writes nothing there (the CLI saves the scores and detections into it), so a folder it picked
    and found empty at the end is taken away again: ``save_dir`` names where results would go.
    Of ``val_args``, Ultralytics' prediction keys are used (``imgsz`` defaults to the slice size, ``conf`` to
    Ultralytics' val default 0.001, ``batch`` is windows per forward pass); the others (``workers``, ``plots``, ...)
    concern Ultralytics' dataloader and plots and are ignored, with a note.
    """
    from ..run_folders import created_run_folder, remove_created
    from ..slicing.inference import PREDICT_KEYS, SlicedPredictor

    assert settings.slicing is not None
    truth = build_ground_truth(split, settings.gt, unlabelled_ok=bool(val_args.get("save_json")))
    ignored = sorted(k for k, v in val_args.items() if k not in PREDICT_KEYS and k not in SLICED_IGNORED_QUIETLY)
    if ignored:
        print(f"yolo-spd: note: sliced val ignores {', '.join(f'{k}=' for k in ignored)} (Ultralytics' validation "
              "loader keys)", file=sys.stderr)
    predictor = SlicedPredictor(model, settings.slicing, {k: v for k, v in val_args.items() if k in PREDICT_KEYS},
                                default_conf=0.001)
    folder, created = (Path(save_dir), ()) if save_dir else created_run_folder(project, name, "val", exist_ok)
    folder.mkdir(parents=True, exist_ok=True)
    files = [image for image in split.images if image.name in truth.image_ids]
    print(f"Sliced val on {len(files)} images of {split.yaml_file.name} ({split.split}): {predictor.describe()}")
    detections = []
    for file, _, found in predictor.run(files, desc="sliced val"):
        image_id = truth.image_ids[file.name]
        for x0, y0, x1, y1, score, cls in found.tolist():
            detections.append({"image_id": image_id, "category_id": truth.category_ids[int(cls)],
                               "bbox": [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)],
                               "score": round(score, 5)})
    result = run_cocoeval(truth, detections, settings.sizes, settings.backend, settings.max_dets)
    if created and not any(folder.iterdir()):
        remove_created(created)  # an empty runs/detect/val per Python call: the caller writes into it, if anything
    return ModelEvaluation(result, truth, detections, folder, None)


ULTRALYTICS_MAX_DET = 300  # Ultralytics' default max_det (detections kept per image by its NMS)


def with_detection_limit(val_args: dict, max_dets: int) -> dict:
    """``val_args`` with Ultralytics' ``max_det`` raised to ``max_dets`` when scoring keeps more detections per image
    than Ultralytics' NMS would pass on (its default 300); a ``max_det`` the user gave is kept as given."""
    if "max_det" in val_args or max_dets <= ULTRALYTICS_MAX_DET:
        return val_args
    return {**val_args, "max_det": max_dets}


SLICED_IGNORED_QUIETLY = ("plots", "verbose", "save_json", "workers")  # set by compare/train on every call


def check_classes(model_names: dict, dataset: DatasetSplit) -> None:
    """Refuse a model whose class list is not the data's: another count, or another name at some index (its
    detections of one class would be scored, and reported, as another)."""
    if len(model_names) != len(dataset.names):
        raise UsageError(
            f"the weights detect {len(model_names)} classes but data={dataset.yaml_file} has "
            f"{len(dataset.names)}; evaluate on the dataset the model was trained for"
        )
    index = first_difference(model_names, dataset.names)
    if index is not None:
        raise UsageError(
            f"the weights' class {index} is {model_names[sorted(model_names)[index]]!r} but data={dataset.yaml_file} "
            f"names class {index} {dataset.names[index]!r}; evaluate on the dataset the model was trained for"
        )


def first_difference(model_names: dict, data_names) -> int | None:
    """The first class index at which a model's names (``{index: name}``) and the data's differ, or None."""
    listed = [model_names[i] for i in sorted(model_names)]
    return next((i for i, (a, b) in enumerate(zip(listed, data_names)) if a != b), None)


def save_detections(evaluation: ModelEvaluation, folder: Path) -> Path:
    """``coco_predictions.json``: the detections in the ground truth's ids, loadable by pycocotools as they are, each
    with its image's ``file_name`` too, so the file scores again on the same data (``val predictions=``) even where
    an id is also another image's numeric file stem."""
    file_of = {image_id: name for name, image_id in evaluation.truth.image_ids.items()}
    rows = [{**det, "file_name": file_of[det["image_id"]]} for det in evaluation.detections]
    return write_atomic(Path(folder) / "coco_predictions.json", json.dumps(rows))
