"""COCO-format ground truth for evaluation: the official JSON when a dataset has one, else built from YOLO labels.

Official JSON (COCO itself). Crowd regions and the official ``area`` field (the mask area, not the box area) decide
what is ignored and what is small/medium/large, so only the official file gives the official AP_S. YOLO class ``i``
is the ``i``-th category in ascending category-id order (the order Ultralytics' ``coco.yaml`` and COCO-to-YOLO
converters use), and images are matched by file name.

Label-derived (every other YOLO dataset). One annotation per label row, in pixels of the image as stored on disk
(size read from the image header, EXIF rotation applied as OpenCV applies it when Ultralytics loads the image),
``area`` = box area, ``iscrowd`` = 0. The rows and images kept follow Ultralytics' label checks, so the ground truth
describes exactly what its dataloader trains and validates on:

- an image that cannot be opened, or is under 10 px on a side, is skipped;
- a label file that fails Ultralytics' checks (wrong column count, coordinates above 1.01 or negative, non-integer
  or out-of-range class) makes the whole image skipped, as Ultralytics marks it corrupt;
- duplicate rows are counted once; polygon (segment) rows become their bounding box; boxes are clipped to the image.

The result is cached in the user's cache folder under a key made from every label and image file's path, size and
modification time, so it is rebuilt whenever a label changes and costs one ``stat`` per file otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import UsageError
from ..paths import cache_dir, write_atomic
from .dataset import DatasetSplit, read_coco_json

EXIF_ORIENTATION = 0x0112
ROTATED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
GT_CACHE_VERSION = 1
CONTENT_KEY_VERSION = 1


@dataclass
class GroundTruth:
    """A COCO ground-truth dict plus the maps from YOLO indices and image files to its ids."""

    coco: dict
    category_ids: list[int]  # YOLO class index -> COCO category id
    image_ids: dict[str, int]  # image file name -> COCO image id
    source: str  # "official COCO JSON <file>" or "YOLO labels (box areas)"
    skipped: list[str] = field(default_factory=list)  # one reason per image left out

    @property
    def is_official(self) -> bool:
        return self.source.startswith("official")


def label_path(image: Path) -> Path:
    """Ultralytics' convention: the label of ``.../images/x/a.jpg`` is ``.../labels/x/a.txt``."""
    text = os.fspath(image)
    marker = f"{os.sep}images{os.sep}"
    if marker in text:
        head, tail = text.rsplit(marker, 1)
        text = f"{head}{os.sep}labels{os.sep}{tail}"
    return Path(text).with_suffix(".txt")


# Leading bytes of the formats Pillow reads without plugins. Anything else is opened only if its suffix is a format
# that needs one (HEIF), because Ultralytics' patched Image.open answers an unidentified file by pip-installing a
# HEIF plugin: a corrupt .jpg must not make evaluation reach for the network.
MAGIC = (b"\xff\xd8", b"\x89PNG", b"BM", b"GIF8", b"II*\x00", b"MM\x00*", b"RIFF")
PLUGIN_SUFFIXES = (".heic", ".heif", ".avif", ".dng", ".jp2", ".jpeg2000", ".mpo")


def image_size(image: Path) -> tuple[int, int]:
    """(width, height) as OpenCV decodes the file: from the header, swapped for EXIF-rotated images."""
    with open(image, "rb") as f:
        head = f.read(8)
    if not head.startswith(MAGIC) and image.suffix.lower() not in PLUGIN_SUFFIXES:
        raise ValueError("not an image file (unrecognised header)")
    with Image.open(image) as im:
        width, height = im.size
        orientation = im.getexif().get(EXIF_ORIENTATION, 1) if im.format in ("JPEG", "MPO", "TIFF", "WEBP") else 1
    return (height, width) if orientation in ROTATED_ORIENTATIONS else (width, height)


def parse_label_file(file: Path, nc: int) -> list[tuple[float, ...]]:
    """The ``(cls, x, y, w, h)`` rows Ultralytics keeps from one label file, in file order; raises ValueError where it
    would mark the image corrupt. (Plain Python: label files are a few rows, where numpy's per-call cost dominates.)"""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return []
    rows = [line.split() for line in text.strip().splitlines() if line.strip()]
    if any(len(r) > 6 for r in rows):  # polygons
        if any(len(r) == 5 for r in rows):
            raise ValueError("labels mix segment and detection rows")
        rows = [_polygon_to_box(r) for r in rows]
    labels = [tuple(float(v) for v in row) for row in rows]
    for row in labels:
        _check_row(row, nc)
    return list(dict.fromkeys(labels))  # duplicate rows count once


def _check_row(row: tuple[float, ...], nc: int) -> None:
    if len(row) != 5:
        raise ValueError(f"labels need 5 columns, found {len(row)}")
    if max(row[1:]) > 1.01:
        raise ValueError("non-normalized or out-of-bounds coordinates")
    if min(row) < 0 and not (min(row) >= -0.01 and min(row[3:]) >= 0):
        raise ValueError("negative label values")
    if row[0] % 1:
        raise ValueError("non-integer class labels")
    if row[0] >= nc:
        raise ValueError(f"class {int(row[0])} is out of range for {nc} classes (0-{nc - 1})")


def _polygon_to_box(row: list[str]) -> list[float]:
    xs, ys = [float(v) for v in row[1::2]], [float(v) for v in row[2::2]]
    return [float(row[0]), (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)]


def read_labelled_image(image: Path, nc: int) -> tuple[int, int, list[tuple[float, ...]]]:
    """(width, height, label rows) of one image as Ultralytics keeps them; ValueError where it skips the image."""
    width, height = image_size(image)
    if width < 10 or height < 10:
        raise ValueError(f"image size {width}x{height} is under 10 px")
    return width, height, parse_label_file(label_path(image), nc)


def pixel_box(cx: float, cy: float, w: float, h: float, width: int, height: int) -> tuple[float, float, float, float]:
    """A normalised YOLO box as ``(x0, y0, x1, y1)`` pixels of a ``width`` x ``height`` image, clipped to it."""
    x0, x1 = (min(max(v, 0.0), 1.0) * width for v in (cx - w / 2, cx + w / 2))
    y0, y1 = (min(max(v, 0.0), 1.0) * height for v in (cy - h / 2, cy + h / 2))
    return x0, y0, x1, y1


def _image_id(image: Path, index: int, numeric_stems: bool) -> int:
    return int(image.stem) if numeric_stems else index + 1


def build_from_labels(images: list[Path], names: list[str]) -> GroundTruth:
    """Label-derived ground truth (see the module docstring for the rules)."""
    numeric = all(p.stem.isdigit() for p in images) and len({int(p.stem) for p in images}) == len(images)
    coco = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
    skipped = []
    for index, image in enumerate(images):
        try:
            width, height, labels = read_labelled_image(image, len(names))
        except Exception as e:  # noqa: BLE001 - any unreadable image or label is skipped, as Ultralytics does
            skipped.append(f"{image}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            continue
        image_id = _image_id(image, index, numeric)
        coco["images"].append({"id": image_id, "file_name": image.name, "width": width, "height": height})
        coco["annotations"] += _annotations(labels, image_id, width, height, first_id=len(coco["annotations"]) + 1)
    return GroundTruth(
        coco=coco,
        category_ids=[c["id"] for c in coco["categories"]],
        image_ids={im["file_name"]: im["id"] for im in coco["images"]},
        source="YOLO labels (box areas)",
        skipped=skipped,
    )


def _annotations(labels: list[tuple[float, ...]], image_id: int, width: int, height: int, first_id: int) -> list[dict]:
    annotations = []
    for i, (cls, cx, cy, w, h) in enumerate(labels):
        x0, y0, x1, y1 = pixel_box(cx, cy, w, h, width, height)
        annotations.append({
            "id": first_id + i,
            "image_id": image_id,
            "category_id": int(cls) + 1,
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "area": (x1 - x0) * (y1 - y0),
            "iscrowd": 0,
        })
    return annotations


def fingerprint_files(digest, images) -> None:
    """Feed ``digest`` (a hashlib object) each image's and its label file's path, size and modification time, so a
    cache keyed on it is rebuilt whenever a file changes; one ``stat`` per file."""
    for image in images:
        for file in (image, label_path(image)):
            try:
                st = os.stat(file)
                digest.update(f"{file}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{file}|missing\n".encode())


def content_key(splits: dict[str, DatasetSplit], extra: dict | None = None) -> str:
    """A key of what ``splits`` hold, the same on every machine: each image's and label file's bytes, its path
    relative to the dataset root, the class names and ``extra`` (JSON). Unlike :func:`fingerprint_files` it does not
    change when the data is copied, moved or re-extracted (new modification times), only when a byte does.

    Reading every byte is slow for a large dataset, so the key is cached on disk under the files' path, size and
    modification time; a second call reads no image.
    """
    header = json.dumps({"v": CONTENT_KEY_VERSION, "extra": extra or {}}, sort_keys=True).encode()
    quick = hashlib.sha256(header)
    for name, split in splits.items():
        quick.update(f"[{name}]{'|'.join(split.names)}\n".encode())
        fingerprint_files(quick, split.images)
    cached = cache_dir() / "content-keys" / f"{quick.hexdigest()[:24]}.txt"
    if cached.is_file():
        return cached.read_text(encoding="utf-8").strip()
    print(f"Reading the {sum(len(s.images) for s in splits.values())} images of {', '.join(splits)} and their labels "
          "once, for the data's content key (cached after this)")
    digest = hashlib.sha256(header)
    for name, split in splits.items():
        digest.update(f"[{name}]{'|'.join(split.names)}\n".encode())
        for image in split.images:
            for file in (image, label_path(image)):
                try:
                    where = file.relative_to(split.root).as_posix()
                except ValueError:  # an image listed from outside the dataset root
                    where = file.as_posix()
                try:
                    digest.update(f"{where}|{hashlib.sha256(file.read_bytes()).hexdigest()}\n".encode())
                except FileNotFoundError:
                    digest.update(f"{where}|missing\n".encode())
    key = digest.hexdigest()[:24]
    write_atomic(cached, key + "\n")
    return key


def _cache_key(images: list[Path], names: list[str]) -> str:
    digest = hashlib.sha256(f"v{GT_CACHE_VERSION}|{'|'.join(names)}".encode())
    fingerprint_files(digest, images)
    return digest.hexdigest()[:24]


def labels_ground_truth(images: list[Path], names: list[str], use_cache: bool = True) -> GroundTruth:
    """:func:`build_from_labels`, cached on disk until an image or label file changes."""
    key = _cache_key(images, names)
    cache = cache_dir() / "ground-truth" / f"{key}.json"
    if use_cache and cache.is_file():
        try:
            return GroundTruth(**json.loads(cache.read_text(encoding="utf-8")))
        except (ValueError, TypeError):
            pass  # unreadable cache (e.g. an older format): rebuild it
    truth = build_from_labels(images, names)
    if use_cache:
        write_atomic(cache, json.dumps(truth.__dict__))
    return truth


def official_ground_truth(json_file: Path, images: list[Path], names: list[str]) -> GroundTruth:
    """The official COCO JSON restricted to ``images``, with YOLO class ``i`` = ``i``-th category by id."""
    try:
        coco = read_coco_json(json_file)
        categories = sorted(coco["categories"], key=lambda c: c["id"])
        by_name = {im["file_name"]: im for im in coco["images"]}
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"coco_json={json_file}: not a COCO instances file ({type(e).__name__}: {e})") from None
    if len(categories) != len(names):
        raise UsageError(
            f"coco_json={json_file} has {len(categories)} categories but the dataset YAML names {len(names)} classes"
        )
    missing = [p.name for p in images if p.name not in by_name]
    if missing:
        raise UsageError(f"coco_json={json_file} does not describe {len(missing)} image(s) of the split, e.g. {missing[0]}")
    kept = {by_name[p.name]["id"] for p in images}
    coco = {
        **coco,
        "images": [im for im in coco["images"] if im["id"] in kept],
        "annotations": [a for a in coco["annotations"] if a["image_id"] in kept],
        "categories": categories,
    }
    return GroundTruth(
        coco=coco,
        category_ids=[c["id"] for c in categories],
        image_ids={im["file_name"]: im["id"] for im in coco["images"]},
        source=f"official COCO JSON {json_file}",
    )
