"""Part 8: the validator hook - what yolo_spd's COCO evaluation needs from Ultralytics' validator.

:func:`validate_collecting_detections` runs ``model.val(save_json=True)`` with a validator subclass whose
``eval_json`` (Ultralytics' own COCO-JSON scoring step) is switched off, and reads back the detections, class map and
image list the validator collected, so yolo_spd scores them against the right ground truth exactly once. It changes
nothing global, so :func:`yolo_spd.integration.register` has nothing to apply for it.

Before Ultralytics 8.4.178 the validator ran a static export at ``imgsz=`` (640 when not given) instead of the size it
was exported at: ONNX Runtime refused the input and a 256-px NCNN export scored near AP 0 with no warning. On those
releases the size is read from the export's metadata (:func:`static_export_size`) and passed as ``imgsz``, so every
supported release runs an export at its own size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .version import release

#: The first Ultralytics release whose validator runs a static export at the input size in its metadata.
EXPORT_SIZE_FROM_METADATA = (8, 4, 178)


@dataclass
class CollectedValidation:
    """What one ``model.val`` run saw and produced, in Ultralytics' conventions."""

    detections: list[dict]  # COCO results: image_id from the file stem, category_id = class_map[class index]
    class_map: list[int]
    image_files: list[str]  # the images the dataloader kept, in order
    save_dir: Path
    metrics: object  # Ultralytics' DetMetrics
    imgsz: object  # the input size the model ran at: a static export's own (8.4.190 takes it from the export)


def static_export_size(model, device=None) -> list[int] | None:
    """The input size [height, width] a static export loaded by ``model`` (a ``YOLO``) was made at, read from its
    metadata by Ultralytics' own backend on ``device``; None for a PyTorch model, a dynamic export, or an export
    without that metadata."""
    if not isinstance(model.model, (str, Path)):
        return None  # a PyTorch model (.pt, .yaml) runs at any size
    from ultralytics.nn.autobackend import AutoBackend
    from ultralytics.utils.torch_utils import select_device

    backend = AutoBackend(model=str(model.model), device=select_device(device or "", verbose=False), verbose=False)
    size = getattr(backend, "imgsz", None)
    if backend.format == "pt" or not size or getattr(backend, "dynamic", False):
        return None
    return [int(v) for v in size]


def validate_collecting_detections(model, **overrides) -> CollectedValidation:
    """Run ``model.val(**overrides)`` collecting COCO-format detections, without Ultralytics' own JSON scoring.

    Ultralytics scores collected detections in ``DetectionValidator.eval_json`` against the official JSON only for a
    ``val2017.txt`` COCO layout and against box-area ground truth otherwise; yolo_spd replaces that step with its own
    evaluation (the official JSON whenever the dataset has one), so the subclass turns it off.

    A static export runs at the size it was exported at, as Ultralytics 8.4.178 and later run it, whatever ``imgsz``
    says (older releases are given that size here; the validator there takes a single size, so a non-square export
    runs at its longer side).
    """
    from ultralytics.models.yolo.detect import DetectionValidator

    if release() < EXPORT_SIZE_FROM_METADATA:
        size = static_export_size(model, overrides.get("device", model.overrides.get("device")))
        if size is not None:
            overrides = {**overrides, "imgsz": size[0] if size[0] == size[-1] else max(size)}

    keep_json = bool(overrides.get("save_json"))

    class DetectionsCollector(DetectionValidator):
        def eval_json(self, stats):
            return stats

        def finalize_metrics(self):
            super().finalize_metrics()
            # save_json is forced on so that every batch's detections are collected (jdict); after the last batch
            # it only writes Ultralytics' predictions.json, which the caller did not ask for (and is told of)
            self.args.save_json = keep_json

    seen = []
    model.add_callback("on_val_end", seen.append)
    try:
        metrics = model.val(validator=DetectionsCollector, **{**overrides, "save_json": True})
    finally:
        model.callbacks["on_val_end"].remove(seen.append)
    validator = seen[-1]
    return CollectedValidation(
        detections=list(validator.jdict),
        class_map=list(validator.class_map),
        image_files=list(validator.dataloader.dataset.im_files),
        save_dir=Path(validator.save_dir),
        metrics=metrics,
        imgsz=validator.args.imgsz,
    )
