"""COCO-format detections: read and check a saved file, or convert what Ultralytics' validator collected.

A detection is ``{"image_id", "category_id", "bbox": [x, y, w, h] in px, "score"}``. In a file given to
``yolo-spd val predictions=...`` the ids are the ground truth's: the official COCO ids for a dataset with a COCO
JSON; for label-derived ground truth, the image id is the file stem (as a number when numeric, as Ultralytics
writes it) or the file name, and the category id is the YOLO class index + 1 (Ultralytics' ``save_json`` convention).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import UsageError
from .ground_truth import GroundTruth

REQUIRED_KEYS = ("image_id", "category_id", "bbox", "score")


def read_predictions(file: str | Path) -> list[dict]:
    """Load a detections JSON file, refusing anything that is not a list of well-formed detections."""
    file = Path(file)
    where = f"predictions={file}"
    if not file.is_file():
        raise UsageError(f"{where}: file not found")
    text = file.read_text(encoding="utf-8")
    if not text.strip():
        raise UsageError(f"{where}: the file is empty (an evaluation with no detections is a JSON list: [])")
    try:
        detections = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{where}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if not isinstance(detections, list):
        raise UsageError(f"{where}: expected a JSON list of detections, found a {type(detections).__name__}")
    for i, det in enumerate(detections):
        problem = _problem(det)
        if problem:
            raise UsageError(f"{where}: detection {i} {problem}; each needs {', '.join(REQUIRED_KEYS)}")
    return detections


def _problem(det) -> str | None:
    if not isinstance(det, dict):
        return f"is a {type(det).__name__}, not an object"
    missing = [k for k in REQUIRED_KEYS if k not in det]
    if missing:
        return f"lacks {', '.join(missing)}"
    if not _is_id(det["image_id"], str):
        return f"has image_id={det['image_id']!r} (expected a whole number or a file name)"
    if not _is_id(det["category_id"]):
        return f"has category_id={det['category_id']!r} (expected a whole number)"
    if "file_name" in det and not isinstance(det["file_name"], str):
        return f"has file_name={det['file_name']!r} (expected a string)"
    box = det["bbox"]
    if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
        return f"has bbox={box!r} (expected [x, y, width, height] numbers)"
    if box[2] < 0 or box[3] < 0:
        return f"has a negative width or height in bbox={box}"
    if not _is_number(det["score"]):
        return f"has score={det['score']!r} (expected a number)"
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_id(value, *also: type) -> bool:
    """An id as JSON gives it: a whole number (``1.0`` too, as NumPy conversions write it; never ``true``) or,
    where ``also`` allows, a string."""
    return isinstance(value, also) or (_is_number(value) and float(value).is_integer())


def _image_lookup(truth: GroundTruth) -> dict:
    """Every way a detection may name an image -> its ground-truth id."""
    lookup = {}
    for file_name, image_id in truth.image_ids.items():
        stem = Path(file_name).stem
        lookup[file_name] = image_id
        lookup[stem] = image_id
        if stem.isdigit():
            lookup[int(stem)] = image_id
    for image_id in truth.image_ids.values():
        lookup[image_id] = image_id
    return lookup


def align_predictions(detections: list[dict], truth: GroundTruth, where: str) -> list[dict]:
    """Detections from a user's file with their image ids mapped onto ``truth``'s; unknown ids are refused."""
    images = _image_lookup(truth)
    categories = set(truth.category_ids)
    aligned = []
    for i, det in enumerate(detections):
        image_id = images.get(det.get("file_name"), images.get(det["image_id"]))
        if image_id is None:
            raise UsageError(f"{where}: detection {i} names image {det['image_id']!r}, which is not in the evaluated split")
        if det["category_id"] not in categories:
            raise UsageError(
                f"{where}: detection {i} has category_id={det['category_id']!r}; the ground truth's ids are "
                f"{min(categories)}..{max(categories)} ({truth.source})"
            )
        aligned.append({**det, "image_id": image_id, "category_id": int(det["category_id"])})
    return aligned


def from_validator(jdict: list[dict], class_map: list[int], truth: GroundTruth) -> list[dict]:
    """Detections Ultralytics' validator collected, re-labelled with ``truth``'s category and image ids.

    Ultralytics writes ``category_id = class_map[class index]`` and names the image by file; both are mapped back
    to the class index and the file, then onto the ground truth's ids (the official COCO ids when there is a JSON).
    """
    class_of = {category: index for index, category in enumerate(class_map)}
    images = _image_lookup(truth)
    detections = []
    for det in jdict:
        image_id = images.get(det.get("file_name"), images.get(det["image_id"]))
        if image_id is None:  # an image the ground truth skipped (unreadable); Ultralytics skipped it too
            continue
        category = truth.category_ids[class_of[det["category_id"]]]
        detections.append({"image_id": image_id, "category_id": category, "bbox": det["bbox"], "score": det["score"]})
    return detections
