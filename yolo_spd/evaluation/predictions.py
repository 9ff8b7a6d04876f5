"""COCO-format detections: read and check a saved file, or convert what Ultralytics' validator collected.

A detection is ``{"image_id", "category_id", "bbox": [x, y, w, h] in px, "score"}``. In a file given to
``yolo-spd val predictions=...`` the ids are the ground truth's: the official COCO ids for a dataset with a COCO
JSON; for label-derived ground truth, the image id is the file stem (as a number when numeric, as Ultralytics
writes it), the file name, or the ground truth's own id (as ``coco_predictions.json`` holds it), and the category id
is the YOLO class index + 1 (Ultralytics' ``save_json`` convention). A ``file_name`` key names the image outright;
where a number is one image's stem and another's id, :func:`_number_meaning` reads the file as a whole.
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
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{where}: {file.name} is not a text file (not UTF-8), so not a JSON file") from None
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


def _name_lookup(truth: GroundTruth) -> dict:
    """Every way a detection may name an image by its file -> its ground-truth id: the file name, the stem, and a
    numeric stem as a number (Ultralytics' ``image_id``)."""
    lookup = {}
    for file_name, image_id in truth.image_ids.items():
        stem = Path(file_name).stem
        lookup[file_name] = lookup[stem] = image_id
        if stem.isdigit():
            lookup[int(stem)] = image_id
    return lookup


def _number_meaning(detections: list[dict], truth: GroundTruth, where: str) -> dict:
    """What a numeric ``image_id`` of this file means -> the ground-truth id it names.

    A number is either a ground-truth image id (``coco_predictions.json``, a COCO JSON's ids) or a numeric file stem
    (Ultralytics' ``predictions.json``). Where the two name different images for a number the file uses, the file
    decides as a whole: a file that names any image by a string follows Ultralytics' convention (stems); else the one
    reading under which every number names an image; if both do, the file is refused as ambiguous."""
    names, ids = _name_lookup(truth), {i: i for i in truth.image_ids.values()}
    numbered = [d for d in detections if "file_name" not in d and not isinstance(d["image_id"], str)]
    numbers = {int(d["image_id"]) for d in numbered}
    clash = sorted(n for n in numbers if n in names and n in ids and names[n] != ids[n])
    if not clash or not numbers <= names.keys() | ids.keys():  # a number naming no image: align says which
        return {**names, **ids}
    by_stem, by_id = numbers <= names.keys(), numbers <= ids.keys()
    if any(isinstance(d["image_id"], str) for d in detections) or (by_stem and not by_id):
        return {**ids, **names}
    if by_id and not by_stem:
        return {**names, **ids}
    file_of = {image_id: name for name, image_id in truth.image_ids.items()}
    n = clash[0]
    raise UsageError(f"{where}: image_id={n} is ambiguous: the file stem of {file_of[names[n]]} and the ground truth's "
                     f"image id of {file_of[ids[n]]}; give each detection its file_name, or write the image ids as "
                     f"file names (\"{file_of[names[n]]}\")")


def align_predictions(detections: list[dict], truth: GroundTruth, where: str) -> list[dict]:
    """Detections from a user's file with their image ids mapped onto ``truth``'s (a ``file_name`` first, then the
    ``image_id``: a file name or stem, or a number as :func:`_number_meaning` reads it); unknown ids are refused."""
    names = _name_lookup(truth)
    numbers = _number_meaning(detections, truth, where)
    categories = set(truth.category_ids)
    aligned = []
    for i, det in enumerate(detections):
        key = det["image_id"]
        image_id = names.get(det.get("file_name"), names.get(key) if isinstance(key, str) else numbers.get(int(key)))
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
    images = _name_lookup(truth)  # Ultralytics names the image by file (and stem): never by a ground-truth id
    detections = []
    for det in jdict:
        image_id = images.get(det.get("file_name"), images.get(det["image_id"]))
        if image_id is None:  # an image the ground truth skipped (unreadable); Ultralytics skipped it too
            continue
        category = truth.category_ids[class_of[det["category_id"]]]
        detections.append({"image_id": image_id, "category_id": category, "bbox": det["bbox"], "score": det["score"]})
    return detections
