"""Part 7: the validator hook - what yolo_spd's COCO evaluation needs from Ultralytics' validator.

:func:`validate_collecting_detections` runs ``model.val(save_json=True)`` with a validator subclass whose
``eval_json`` (Ultralytics' own COCO-JSON scoring step) is switched off, and reads back the detections, class map and
image list the validator collected, so yolo_spd scores them against the right ground truth exactly once. It changes
nothing global, so :func:`yolo_spd.integration.register` has nothing to apply for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class CollectedValidation:
    """What one ``model.val`` run saw and produced, in Ultralytics' conventions."""

    detections: list[dict]  # COCO results: image_id from the file stem, category_id = class_map[class index]
    class_map: list[int]
    image_files: list[str]  # the images the dataloader kept, in order
    save_dir: Path
    metrics: object  # Ultralytics' DetMetrics
    imgsz: object  # the input size the model ran at: a static export's own (8.4.190 takes it from the export)


def _stat(file: Path) -> tuple | None:
    """(size, modification time) of ``file``, or None where there is none."""
    try:
        st = file.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def validate_collecting_detections(model, **overrides) -> CollectedValidation:
    """Run ``model.val(**overrides)`` collecting COCO-format detections, without Ultralytics' own JSON scoring.

    Ultralytics scores collected detections in ``DetectionValidator.eval_json`` against the official JSON only for a
    ``val2017.txt`` COCO layout and against box-area ground truth otherwise; yolo_spd replaces that step with its own
    evaluation (the official JSON whenever the dataset has one), so the subclass turns it off.
    """
    from ultralytics.models.yolo.detect import DetectionValidator

    class DetectionsCollector(DetectionValidator):
        def eval_json(self, stats):
            return stats

    seen, earlier = [], {}

    def before(validator) -> None:  # an earlier run's predictions.json (exist_ok) is not this run's to remove
        earlier["stat"] = _stat(Path(validator.save_dir) / "predictions.json")

    model.add_callback("on_val_start", before)
    model.add_callback("on_val_end", seen.append)
    try:
        metrics = model.val(validator=DetectionsCollector, **{**overrides, "save_json": True})
    finally:
        model.callbacks["on_val_end"].remove(seen.append)
        model.callbacks["on_val_start"].remove(before)
    validator = seen[-1]
    written = Path(validator.save_dir) / "predictions.json"
    if not overrides.get("save_json") and _stat(written) not in (None, earlier.get("stat")):
        written.unlink()  # Ultralytics' file, written only because save_json is forced on (an earlier run's stays)
    return CollectedValidation(
        detections=list(validator.jdict),
        class_map=list(validator.class_map),
        image_files=list(validator.dataloader.dataset.im_files),
        save_dir=Path(validator.save_dir),
        metrics=metrics,
        imgsz=validator.args.imgsz,
    )
