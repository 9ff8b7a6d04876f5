"""COCO box evaluation with object-size ranges, through pycocotools (default) or faster-coco-eval.

Both backends run COCO's own matching and accumulation; this module only chooses the size ranges and reads the
accumulated precision/recall arrays. With the default ranges the numbers are COCO's 12 summary numbers exactly as
``COCOeval.summarize()`` computes them (each is the mean of the valid, i.e. > -1, entries of its slice):

    AP, AP50, AP75, AP_small, AP_medium, AP_large        precision at maxDets=100
    AR1, AR10, AR100, AR_small, AR_medium, AR_large      recall

Dense scenes (``max_dets=N``, :func:`max_dets_thresholds`): COCO keeps at most 100 detections per image, which cuts
recall, and so AP, in scenes of hundreds of objects. With ``N`` the detection limits become ``1, 10, 100, N``
(``1, 10, N`` below 100), every AP and the per-range ARs are taken at ``N``, and the ``AR<n>`` lines are printed for
each limit: VisDrone-DET's protocol is ``max_dets=500`` exactly (limits 1/10/100/500, AP at 500); AI-TOD's is
``max_dets=1500`` (its AP at 1500; AI-TOD prints AR at 1/100/1500, here AR10 is printed too).

Size ranges are by ``sqrt(area)`` in pixels, ``area`` being the annotation's ``area`` field (the mask area in the
official COCO JSON, the box area in label-derived ground truth). Presets:

- ``coco``: small < 32, medium 32-96, large >= 96 (COCO's definition).
- ``aitod``: verytiny 2-8, tiny 8-16, small 16-32, medium >= 32, after AI-TOD (Wang et al., ICPR 2020). AI-TOD's
  own evaluation also raises maxDets to 1500: that is ``max_dets=1500``, a separate key, so the presets differ only in
  ranges.
- custom: ``sizes=0,16,32,96`` (ascending bounds; the last range is open-ended).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError
from .ground_truth import GroundTruth

BACKENDS = ("pycocotools", "faster")
OPEN_END = 1e5  # pycocotools' upper bound for "and larger"
COCO_MAX_DETS = 100


def max_dets_thresholds(max_dets: int = COCO_MAX_DETS) -> tuple[int, ...]:
    """COCOeval's ``params.maxDets`` for a per-image limit: COCO's (1, 10, 100), with ``max_dets`` as the last (the one
    AP is taken at) when it differs from 100."""
    if isinstance(max_dets, bool) or not isinstance(max_dets, int) or max_dets < 1:
        raise UsageError(f"max_dets={max_dets}: give a whole number of detections per image >= 1 (COCO: 100, "
                         "VisDrone: 500, AI-TOD: 1500)")
    return tuple(sorted({n for n in (1, 10, 100) if n < max_dets} | {max_dets}))


@dataclass(frozen=True)
class SizeRanges:
    name: str
    labels: tuple[str, ...]
    bounds: tuple[tuple[float, float], ...]  # sqrt(area) in px, [low, high)

    def area_ranges(self) -> list[list[float]]:
        return [[0.0, OPEN_END**2]] + [[low**2, high**2] for low, high in self.bounds]


SIZE_PRESETS = {
    "coco": SizeRanges("coco", ("small", "medium", "large"), ((0, 32), (32, 96), (96, OPEN_END))),
    "aitod": SizeRanges("aitod", ("verytiny", "tiny", "small", "medium"), ((2, 8), (8, 16), (16, 32), (32, OPEN_END))),
}


def size_ranges(spec: str = "coco") -> SizeRanges:
    """A preset name (``coco``, ``aitod``) or comma-separated ascending bounds in px (``0,16,32,96``)."""
    spec = str(spec).strip()
    if spec in SIZE_PRESETS:
        return SIZE_PRESETS[spec]
    try:
        bounds = [float(b) for b in spec.split(",")]
    except ValueError:
        bounds = []
    if len(bounds) < 2 or any(b < 0 for b in bounds) or any(b >= c for b, c in zip(bounds, bounds[1:])):
        raise UsageError(
            f"sizes={spec}: use a preset ({', '.join(SIZE_PRESETS)}) or at least two ascending, non-negative bounds "
            "in px of sqrt(area), e.g. sizes=0,16,32,96"
        )
    pairs = list(zip(bounds, bounds[1:])) + [(bounds[-1], OPEN_END)]
    labels = [f"{low:g}-{high:g}" for low, high in pairs[:-1]] + [f"{bounds[-1]:g}+"]
    return SizeRanges("custom", tuple(labels), tuple(pairs))


@dataclass
class EvalResult:
    """One COCO evaluation: the evaluator, the size ranges, the metrics (-1 where the ground truth has no object of
    that size, as COCOeval reports it), per-class rows, and what was counted."""

    backend: str
    ranges: SizeRanges
    metrics: dict[str, float]  # AP, AP50, AP75, AP_<range>..., AR1, AR10, AR100, AR_<range>...
    per_class: list[dict] = field(default_factory=list)  # one row per class: class, name, AP, AP50, AP_<range>...
    images: int = 0
    annotations: int = 0
    detections: int = 0
    ground_truth: str = ""
    max_dets: tuple[int, ...] = (1, 10, COCO_MAX_DETS)  # COCOeval's maxDets; AP is taken at the last

    def as_dict(self) -> dict:
        """The result as plain values: what ``coco_eval.json`` holds."""
        return {
            "backend": self.backend,
            "size_ranges": {"preset": self.ranges.name, **{lb: list(b) for lb, b in zip(self.ranges.labels, self.ranges.bounds)}},
            "ground_truth": self.ground_truth,
            "images": self.images,
            "annotations": self.annotations,
            "detections": self.detections,
            "max_dets": list(self.max_dets),
            "metrics": self.metrics,
            "per_class": self.per_class,
        }


def _coco_api(backend: str):
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    if backend == "faster":
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError:
            raise UsageError("backend=faster needs faster-coco-eval: pip install faster-coco-eval") from None
        return COCO, lambda gt, dt, iou_type: COCOeval_faster(gt, dt, iouType=iou_type, print_function=lambda *_: None)
    raise UsageError(f"backend={backend}: allowed backends are {', '.join(BACKENDS)}")


def _load(coco_cls, dataset: dict):
    api = coco_cls()
    api.dataset = dataset
    api.createIndex()
    return api


def run_cocoeval(
    truth: GroundTruth, detections: list[dict], ranges: SizeRanges | None = None, backend: str = "pycocotools",
    max_dets: int = COCO_MAX_DETS,
) -> EvalResult:
    """Evaluate ``detections`` (COCO results in ``truth``'s image and category ids) against ``truth``, keeping at most
    ``max_dets`` detections per image (see :func:`max_dets_thresholds`)."""
    ranges = ranges or SIZE_PRESETS["coco"]
    limits = max_dets_thresholds(max_dets)
    coco_cls, eval_cls = _coco_api(backend)
    with contextlib.redirect_stdout(io.StringIO()):  # both libraries narrate every step on stdout
        gt = _load(coco_cls, truth.coco)
        if detections:
            dt = gt.loadRes([dict(d) for d in detections])
        else:
            dt = _load(coco_cls, {**truth.coco, "annotations": []})
        evaluator = eval_cls(gt, dt, "bbox")
        evaluator.params.imgIds = sorted(gt.getImgIds())
        evaluator.params.areaRng = ranges.area_ranges()
        evaluator.params.areaRngLbl = ["all", *ranges.labels]
        evaluator.params.maxDets = list(limits)
        evaluator.evaluate()
        evaluator.accumulate()
    precision, recall = evaluator.eval["precision"], evaluator.eval["recall"]
    iou_thresholds = np.asarray(evaluator.params.iouThrs)
    return EvalResult(
        backend=backend,
        ranges=ranges,
        metrics=summary_metrics(precision, recall, iou_thresholds, ranges.labels, limits),
        per_class=per_class_metrics(precision, iou_thresholds, ranges.labels, truth),
        images=len(truth.coco["images"]),
        annotations=len(truth.coco["annotations"]),
        detections=len(detections),
        ground_truth=truth.source + _skipped_note(truth),
        max_dets=limits,
    )


def _skipped_note(truth: GroundTruth) -> str:
    if not truth.skipped:
        return ""
    return f"; {len(truth.skipped)} image(s) left out as Ultralytics' loader leaves them out, e.g. {truth.skipped[0]}"


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def summary_metrics(precision, recall, iou_thresholds, labels, limits=(1, 10, COCO_MAX_DETS)) -> dict[str, float]:
    """COCO's summary from accumulated arrays: precision [T, R, K, A, M], recall [T, K, A, M], for the per-image
    detection limits ``limits`` (COCOeval's maxDets; AP and the per-range AR at the last)."""
    at = {thr: int(np.argmin(np.abs(iou_thresholds - thr))) for thr in (0.5, 0.75)}
    metrics = {
        "AP": _mean_valid(precision[:, :, :, 0, -1]),
        "AP50": _mean_valid(precision[at[0.5], :, :, 0, -1]),
        "AP75": _mean_valid(precision[at[0.75], :, :, 0, -1]),
    }
    metrics |= {f"AP_{label}": _mean_valid(precision[:, :, :, a + 1, -1]) for a, label in enumerate(labels)}
    metrics |= {f"AR{m}": _mean_valid(recall[:, :, 0, i]) for i, m in enumerate(limits)}
    metrics |= {f"AR_{label}": _mean_valid(recall[:, :, a + 1, -1]) for a, label in enumerate(labels)}
    return metrics


def per_class_metrics(precision, iou_thresholds, labels, truth: GroundTruth) -> list[dict]:
    at50 = int(np.argmin(np.abs(iou_thresholds - 0.5)))
    names = {c["id"]: c.get("name", str(c["id"])) for c in truth.coco["categories"]}
    counts = {}
    for ann in truth.coco["annotations"]:
        if not ann.get("iscrowd", 0):
            counts[ann["category_id"]] = counts.get(ann["category_id"], 0) + 1
    rows = []
    for k, category in enumerate(truth.category_ids):
        row = {"class": k, "name": names.get(category, str(category)), "instances": counts.get(category, 0)}
        row["AP"] = _mean_valid(precision[:, :, k, 0, -1])
        row["AP50"] = _mean_valid(precision[at50, :, k, 0, -1])
        row |= {f"AP_{label}": _mean_valid(precision[:, :, k, a + 1, -1]) for a, label in enumerate(labels)}
        rows.append(row)
    return rows
