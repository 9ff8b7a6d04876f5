"""The built-in demo dataset: synthetic small objects that ``yolo-spd train`` uses when no data is given.

The images are generated from a fixed seed, so every machine gets the same dataset, and cached in the user's cache
folder (``$YOLO_SPD_CACHE`` or e.g. ``~/.cache/yolo_spd``); nothing is downloaded. Each 256x256 image has a dim
textured background (smooth colour noise and a few thin grey lines) and 8-16 non-overlapping objects of three classes,
each in its own colour family: red discs, green squares and blue triangles (hue jittered, random saturation and
brightness). Sides are 10-40 px, about 90 % under 32 px, the COCO "small" range. Labels are YOLO format; 160 images
train, 40 validate.

Why it looks like this (measured with ``yolo-spd train``, yolov5-spd-n from scratch, the demo's optimiser settings):

1. Version 1 had 2-9 objects of random colour per image, some as dim as the background, among dim blobs that look
   like discs; 8 epochs reached AP 0.013 and no detection scored above 0.083, so nothing was drawn at Ultralytics'
   default confidence 0.25.
2. Bright objects on a dim background, 8-16 per image and never overlapping (more positives per training step):
   after 14 epochs the detector found the objects (recall 0.79 at IoU 0.5) but the classes were at chance (confusion
   matrix), AP50 0.36 (14 epochs without mosaic): telling a 10 px disc from a 10 px triangle by shape alone takes
   longer than a demo may.
3. So each class also has its own colour, a cue learnt in a few epochs; the shapes still differ and stay small. The
   demo's 12 epochs reach AP50 0.91, AP_S 0.56 (weights/README.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .paths import cache_dir

DEMO_DATA_NAME = "demo"  # what users type: data=demo
DEMO_NAME = "spd-synth-v3"  # bump when the generator changes, so stale caches are not reused
CLASSES = ("disc", "square", "triangle")
IMAGE_SIZE = 256
SPLITS = {"train": 160, "val": 40}
SEED = 0
SIZE_RANGE = (10, 40)  # object side in px
SIZE_GAMMA = (6.0, 3.5)  # shape, scale of the side's gamma distribution: mean 21 px, most under 32 px
OBJECTS_PER_IMAGE = (8, 16)
GAP = 2  # px between objects
HUES = (0, 60, 120)  # OpenCV hue (0-180) of each class: red discs, green squares, blue triangles
HUE_JITTER = 12


def demo_data_yaml() -> Path:
    """Path of the demo dataset's data.yaml, generating the dataset first if it is not cached yet."""
    root = cache_dir() / "datasets" / DEMO_NAME
    if not (root / "data.yaml").is_file():
        generate(root)
    return root / "data.yaml"


def generate(root: Path) -> Path:
    """Write the demo dataset to ``root`` (in a temporary folder first, renamed into place when complete)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        rng = np.random.default_rng(SEED)
        for split, count in SPLITS.items():
            _write_split(staging, split, count, rng)
        names = "\n".join(f"  {i}: {name}" for i, name in enumerate(CLASSES))
        (staging / "data.yaml").write_text(
            f"# yolo_spd demo: synthetic small objects ({__name__}, seed {SEED})\n"
            f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}\n",
            encoding="utf-8",
        )
        if root.exists():  # an incomplete earlier attempt (no data.yaml): replace it
            shutil.rmtree(root)
        os.replace(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root / "data.yaml"


def _write_split(root: Path, split: str, count: int, rng: np.random.Generator) -> None:
    import cv2

    (root / "images" / split).mkdir(parents=True)
    (root / "labels" / split).mkdir(parents=True)
    for i in range(count):
        image = background(rng)
        labels = [draw_object(image, rng, box) for box in place_objects(rng)]
        cv2.imwrite(str(root / "images" / split / f"{i:04d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        (root / "labels" / split / f"{i:04d}.txt").write_text("".join(labels), encoding="utf-8")


def background(rng: np.random.Generator) -> np.ndarray:
    """Smooth, dim, low-saturation colour noise with a few thin lines: texture that objects stand out from."""
    import cv2

    coarse = rng.integers(30, 120, (8, 8, 3)).astype(np.uint8)
    image = cv2.resize(coarse, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_CUBIC)
    image = cv2.add(image, rng.integers(0, 20, image.shape, dtype=np.uint8))
    for _ in range(rng.integers(1, 4)):
        p0, p1 = rng.integers(0, IMAGE_SIZE, 2), rng.integers(0, IMAGE_SIZE, 2)
        grey = int(rng.integers(60, 130))
        cv2.line(image, tuple(map(int, p0)), tuple(map(int, p1)), (grey, grey, grey), 1)
    return image


def place_objects(rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """(x0, y0, side) of OBJECTS_PER_IMAGE non-overlapping squares, at least GAP px apart."""
    boxes: list[tuple[int, int, int]] = []
    wanted = int(rng.integers(*OBJECTS_PER_IMAGE, endpoint=True))
    for _ in range(wanted * 20):
        if len(boxes) == wanted:
            break
        side = int(np.clip(rng.gamma(*SIZE_GAMMA), *SIZE_RANGE))
        x0, y0 = (int(v) for v in rng.integers(0, IMAGE_SIZE - side, 2))
        if all(x0 + side + GAP <= a or a + s + GAP <= x0 or y0 + side + GAP <= b or b + s + GAP <= y0
               for a, b, s in boxes):
            boxes.append((x0, y0, side))
    return boxes


def _bright_colour(rng: np.random.Generator, hue: int) -> tuple[int, int, int]:
    """A saturated, bright colour near OpenCV hue ``hue`` (0-180), so an object contrasts with the dim background."""
    import cv2

    jittered = (hue + rng.integers(-HUE_JITTER, HUE_JITTER + 1)) % 180
    hsv = np.array([[[jittered, rng.integers(150, 256), rng.integers(190, 256)]]], np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def draw_object(image: np.ndarray, rng: np.random.Generator, box: tuple[int, int, int]) -> str:
    """Draw one object of a random class filling ``box`` and return its YOLO label line."""
    import cv2

    x0, y0, side = box
    cls = int(rng.integers(0, len(CLASSES)))
    colour = _bright_colour(rng, HUES[cls])
    if CLASSES[cls] == "disc":
        cv2.circle(image, (x0 + side // 2, y0 + side // 2), side // 2, colour, -1, cv2.LINE_AA)
    elif CLASSES[cls] == "square":
        cv2.rectangle(image, (x0, y0), (x0 + side - 1, y0 + side - 1), colour, -1)
    else:
        corners = np.array([[x0 + side // 2, y0], [x0, y0 + side - 1], [x0 + side - 1, y0 + side - 1]], np.int32)
        cv2.fillPoly(image, [corners], colour, cv2.LINE_AA)
    cx, cy = (x0 + side / 2) / IMAGE_SIZE, (y0 + side / 2) / IMAGE_SIZE
    return f"{cls} {cx:.6f} {cy:.6f} {side / IMAGE_SIZE:.6f} {side / IMAGE_SIZE:.6f}\n"
