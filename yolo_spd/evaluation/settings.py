"""Everything that decides how detections are scored, as one value: :class:`EvalSettings`.

The CLI builds it once from its keys (``sizes=``, ``backend=``, ``gt=`` and the slicing keys ``slice=``,
``overlap=``, ... of :data:`yolo_spd.slicing.inference.SLICE_KEYS`) with
:meth:`EvalSettings.from_keys`, which is the one place these keys are checked; ``train``, ``val`` and ``compare``
then pass the same object to :func:`yolo_spd.evaluation.evaluate_model`, so every model of a comparison is scored
with identical settings, and ``compare.json`` records them from :meth:`EvalSettings.as_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UsageError
from ..slicing.inference import SLICE_KEYS, SliceSettings
from .cocoeval import BACKENDS, COCO_MAX_DETS, SIZE_PRESETS, SizeRanges, max_dets_thresholds, size_ranges

GT_CHOICES = ("auto", "json", "labels")
# the CLI keys and their defaults
SCORING_KEYS = {"sizes": "coco", "backend": "pycocotools", "gt": "auto", "max_dets": COCO_MAX_DETS}
KEYS = {**SCORING_KEYS, **SLICE_KEYS}


@dataclass(frozen=True)
class EvalSettings:
    """How to score: object-size ranges, COCO backend and ground-truth source (see the CLI's ``yolo-spd help``).

    Args:
        sizes: the size ranges AP and AR are reported for (:func:`yolo_spd.evaluation.size_ranges`).
        backend: ``pycocotools`` (the numbers papers quote) or ``faster`` (faster-coco-eval).
        gt: ``auto`` (the dataset's COCO JSON if it has one, else its labels), ``json`` or ``labels``.
        max_dets: detections kept per image for scoring (COCO: 100; VisDrone 500, AI-TOD 1500); AP is taken at it
            (:func:`yolo_spd.evaluation.cocoeval.max_dets_thresholds`).
        slicing: None to score Ultralytics' validation as it is; else the model predicts each full image window by
            window (:mod:`yolo_spd.slicing.inference`) and the merged boxes are scored at native resolution.
    """

    sizes: SizeRanges = field(default_factory=lambda: SIZE_PRESETS["coco"])
    backend: str = "pycocotools"
    gt: str = "auto"
    slicing: SliceSettings | None = None
    max_dets: int = COCO_MAX_DETS

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise UsageError(f"backend={self.backend}: allowed backends are {', '.join(BACKENDS)}")
        if self.gt not in GT_CHOICES:
            raise UsageError(f"gt={self.gt}: allowed values are {', '.join(GT_CHOICES)}")
        max_dets_thresholds(self.max_dets)  # one-line error for a bad value

    @classmethod
    def from_keys(cls, sizes="coco", backend="pycocotools", gt="auto", max_dets=COCO_MAX_DETS,
                  **slice_keys) -> EvalSettings:
        """Settings from the CLI's key values (:data:`KEYS`), each checked with a one-line error naming the bad
        value."""
        return cls(sizes=size_ranges(sizes), backend=str(backend), gt=str(gt),
                   slicing=SliceSettings.from_keys(**slice_keys), max_dets=max_dets)

    def as_dict(self) -> dict:
        """The settings as plain values, for result files."""
        return {"sizes": self.sizes.name, "backend": self.backend, "gt": self.gt, "max_dets": self.max_dets,
                "slicing": self.slicing.as_dict() if self.slicing else None}
