"""yolo-spd's AP_S is Ultralytics' own small-object AP, where the installed Ultralytics computes one.

Ultralytics 8.4.133 and later score ``val ... save_json=True`` with faster-coco-eval on any detection dataset and
report ``metrics/mAP_small(B)``. On the same checkpoint, data and validation settings, yolo-spd scores the same
detections (it collects them from the same validator), so the two agree: exactly with ``backend=faster``, the library
Ultralytics uses, and to ``PYCOCOTOOLS_TOLERANCE`` with the default pycocotools (the two libraries' summaries agree to
1e-4, tests/test_evaluation.py).

One difference is float rounding at the size boundaries. COCO's ranges include both ends, so an object of area
exactly 32² px² is small and medium. Both sides compute label-derived areas with rounding, yolo-spd in float64 from
the labels at the image's size, Ultralytics through its letterbox in float32, so a box of exactly 32x32 px can land
on either side of 1024 px², and the two sides differ. The demo's val split has 7 such boxes (in 7 of its 40 images; 5
of them small and medium for yolo-spd, medium only for Ultralytics), and there AP_S is 0.5640 (yolo-spd) against
0.5602 (Ultralytics). The comparison therefore runs on the demo's val images that hold no object within 0.01 px² of a
boundary (32² or 96²); on those the two are identical.

The checkpoint is the demo's own (weights/), scored on the demo's val images, regenerated here (the generator is
seeded: tests/test_demo.py checks its labels' digest).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from yolo_spd import demo
from yolo_spd.evaluation import EvalSettings, evaluate_model, resolve_split
from yolo_spd.evaluation.cocoeval import run_cocoeval

from .conftest import REPO

CHECKPOINT = REPO / "weights" / "yolov5-spd-n-demo.pt"
FIRST_WITH_AP_SMALL = (8, 4, 133)  # Ultralytics adds metrics/mAP_small(B) to save_json scoring of any dataset
PYCOCOTOOLS_TOLERANCE = 1e-4
VAL_ARGS = {"imgsz": 256, "batch": 8, "device": "cpu", "plots": False, "workers": 0}


def val_images_off_the_size_boundaries(data: Path, out: Path) -> tuple[Path, int]:
    """A dataset of the demo's val images (both splits) without those holding an object whose area is within 0.01
    px² of a COCO size boundary; its data.yaml and the number of images left out."""
    root, left_out = data.parent, 0
    for folder in ("images", "labels"):
        (out / folder / "val").mkdir(parents=True)
    for label in sorted((root / "labels" / "val").glob("*.txt")):
        rows = [line.split() for line in label.read_text().splitlines() if line.strip()]
        areas = [float(w) * demo.IMAGE_SIZE * float(h) * demo.IMAGE_SIZE for _, _, _, w, h in rows]
        if any(abs(area - bound**2) < 0.01 for area in areas for bound in (32, 96)):
            left_out += 1
            continue
        shutil.copy2(label, out / "labels" / "val" / label.name)
        shutil.copy2(root / "images" / "val" / f"{label.stem}.jpg", out / "images" / "val" / f"{label.stem}.jpg")
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(demo.CLASSES))
    (out / "data.yaml").write_text(f"path: {out}\ntrain: images/val\nval: images/val\nnames:\n{names}\n")
    return out / "data.yaml", left_out


@pytest.mark.slow
def test_ap_small_equals_ultralytics_own_on_the_same_checkpoint_and_data(tmp_path):
    import ultralytics

    release = tuple(int(part) for part in re.match(r"(\d+)\.(\d+)\.(\d+)", ultralytics.__version__).groups())
    if release < FIRST_WITH_AP_SMALL:
        pytest.skip(f"Ultralytics {ultralytics.__version__} reports no AP_S of its own (from 8.4.133)")
    from ultralytics import YOLO
    from ultralytics.models.yolo.detect import DetectionValidator

    data, left_out = val_images_off_the_size_boundaries(demo.generate(tmp_path / demo.DEMO_NAME), tmp_path / "val")
    assert left_out == 7  # the images with a 32x32 box (the generator is seeded)
    # Ultralytics' own validation and faster-coco-eval scoring, as `yolo val ... save_json=True` runs them (its
    # YOLO.val adds rect=True); the validator itself, because YOLO.val returns the metrics without the COCO stats.
    validator = DetectionValidator(args={"model": str(CHECKPOINT), "data": str(data), "save_json": True, "rect": True,
                                         "project": str(tmp_path), "name": "ultralytics", **VAL_ARGS})
    stats = validator()
    theirs = stats["metrics/mAP_small(B)"]

    evaluation = evaluate_model(YOLO(CHECKPOINT), resolve_split(data), EvalSettings(backend="faster"),
                                project=str(tmp_path), name="yolo_spd", **VAL_ARGS)
    ours = evaluation.result.metrics["AP_small"]
    pycocotools = run_cocoeval(evaluation.truth, evaluation.detections, backend="pycocotools").metrics["AP_small"]

    assert 0.3 < theirs < 1  # a detector that finds small objects, so the comparison means something
    assert len(evaluation.detections) == len(validator.jdict)  # the same detections
    print(f"AP_S: Ultralytics {theirs!r}, yolo-spd faster {ours!r}, pycocotools {pycocotools!r}")
    assert ours == pytest.approx(theirs, abs=1e-9)
    assert pycocotools == pytest.approx(theirs, abs=PYCOCOTOOLS_TOLERANCE)
