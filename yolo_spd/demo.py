"""The built-in demo dataset: synthetic small objects that ``yolo-spd train`` uses when no data is given.

The images are generated from a fixed seed, so every machine gets the same dataset, and cached in the user's cache
folder (``$YOLO_SPD_CACHE`` or e.g. ``~/.cache/yolo_spd``); nothing is downloaded. Each 256x256 image has a
textured background (smooth noise, stripes and clutter blobs) and 2-9 objects of three classes - discs, squares and
triangles in random colours - most of them smaller than 32x32 px, the COCO "small" range. Labels are YOLO format;
160 images train, 40 validate.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .paths import cache_dir

DEMO_DATA_NAME = "demo"  # what users type: data=demo
DEMO_NAME = "spd-synth-v1"  # bump when the generator changes, so stale caches are not reused
CLASSES = ("disc", "square", "triangle")
IMAGE_SIZE = 256
SPLITS = {"train": 160, "val": 40}
SEED = 0
SIZE_RANGE = (8, 48)  # object side in px; drawn so that about 80 % are under 32 px


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
        labels = [draw_object(image, rng) for _ in range(rng.integers(2, 10))]
        cv2.imwrite(str(root / "images" / split / f"{i:04d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        (root / "labels" / split / f"{i:04d}.txt").write_text("".join(labels), encoding="utf-8")


def background(rng: np.random.Generator) -> np.ndarray:
    """Smooth colour noise plus stripes and dim blobs, so objects must be told apart from texture."""
    import cv2

    coarse = rng.integers(40, 200, (8, 8, 3)).astype(np.uint8)
    image = cv2.resize(coarse, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_CUBIC)
    image = cv2.add(image, rng.integers(0, 25, image.shape, dtype=np.uint8))
    for _ in range(rng.integers(2, 6)):
        p0, p1 = rng.integers(0, IMAGE_SIZE, 2), rng.integers(0, IMAGE_SIZE, 2)
        cv2.line(image, tuple(map(int, p0)), tuple(map(int, p1)), _colour(rng, dim=True), int(rng.integers(1, 4)))
    for _ in range(rng.integers(3, 8)):
        centre = tuple(map(int, rng.integers(0, IMAGE_SIZE, 2)))
        axes = tuple(map(int, rng.integers(3, 20, 2)))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, _colour(rng, dim=True), -1)
    return image


def _colour(rng: np.random.Generator, dim: bool = False) -> tuple[int, int, int]:
    low, high = (30, 140) if dim else (0, 256)
    return tuple(int(c) for c in rng.integers(low, high, 3))


def draw_object(image: np.ndarray, rng: np.random.Generator) -> str:
    """Draw one object and return its YOLO label line."""
    import cv2

    cls = int(rng.integers(0, len(CLASSES)))
    side = int(np.clip(rng.gamma(3.0, 6.5), *SIZE_RANGE))
    x0, y0 = (int(v) for v in rng.integers(0, IMAGE_SIZE - side, 2))
    colour = _colour(rng)
    if CLASSES[cls] == "disc":
        cv2.circle(image, (x0 + side // 2, y0 + side // 2), side // 2, colour, -1, cv2.LINE_AA)
    elif CLASSES[cls] == "square":
        cv2.rectangle(image, (x0, y0), (x0 + side - 1, y0 + side - 1), colour, -1)
    else:
        corners = np.array([[x0 + side // 2, y0], [x0, y0 + side - 1], [x0 + side - 1, y0 + side - 1]], np.int32)
        cv2.fillPoly(image, [corners], colour, cv2.LINE_AA)
    cx, cy = (x0 + side / 2) / IMAGE_SIZE, (y0 + side / 2) / IMAGE_SIZE
    return f"{cls} {cx:.6f} {cy:.6f} {side / IMAGE_SIZE:.6f} {side / IMAGE_SIZE:.6f}\n"
