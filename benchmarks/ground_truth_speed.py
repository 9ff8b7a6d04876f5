"""How long building label-derived COCO ground truth takes, per 1000 images: first build and cached.

    python benchmarks/ground_truth_speed.py [--images 2000] [--write-docs docs/evaluation.md]

Writes a YOLO dataset of small JPEGs (640x480, 1-9 boxes each) to a temporary folder and prints a Markdown table of
wall times (machine-dependent); ``--write-docs`` also writes it into the generated block ``ground-truth-speed``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from _timing import add_write_docs, check_docs, markdown_table, write_docs

BLOCK = "ground-truth-speed"


def write_dataset(root: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    files = []
    for i in range(count):
        file = root / "images" / f"{i:06d}.jpg"
        file.write_bytes(encoded.tobytes())
        boxes = rng.uniform(0.1, 0.9, (int(rng.integers(1, 10)), 4)) * [1, 1, 0.1, 0.1]
        rows = [f"{int(rng.integers(0, 3))} {x:.5f} {y:.5f} {w:.5f} {h:.5f}" for x, y, w, h in boxes]
        (root / "labels" / f"{i:06d}.txt").write_text("\n".join(rows) + "\n")
        files.append(file)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    add_write_docs(parser, BLOCK)
    args = parser.parse_args()
    check_docs(args.write_docs, BLOCK)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["YOLO_SPD_CACHE"] = str(Path(tmp) / "cache")
        from yolo_spd.evaluation.ground_truth import labels_ground_truth

        images = write_dataset(Path(tmp) / "data", args.images)
        timings = {}
        for label in ("first build", "cached"):
            start = time.perf_counter()
            truth = labels_ground_truth(images, ["a", "b", "c"])
            timings[label] = time.perf_counter() - start
        boxes = len(truth.coco["annotations"])
    rows = [[label, f"{seconds / args.images * 1000:.3f}"] for label, seconds in timings.items()]
    text = (f"{args.images} images of 640x480, {boxes} boxes; {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}.\n\n"
            + markdown_table(["ground truth from YOLO labels", "seconds per 1000 images"], rows))
    print(text)
    if args.write_docs:
        write_docs(args.write_docs, BLOCK, text)


if __name__ == "__main__":
    main()
