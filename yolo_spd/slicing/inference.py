"""Sliced inference: run a detector window by window over each full image, then merge the boxes across windows.

This is the inference half of SAHI (Akyon, Altinuc and Temizel, "Slicing Aided Hyper Inference and Fine-tuning for
Small Object Detection", ICIP 2022): an image is cut into overlapping windows (:func:`yolo_spd.slicing.slice_windows`,
SAHI's placement), each window is predicted at the network's input size, so a small object keeps its pixels instead of
being shrunk with the whole image; optionally one more pass sees the whole image (SAHI's ``perform_standard_pred``);
every box is shifted into full-image pixels, and boxes of one object found in several windows are merged.

Merging (:func:`merge_detections`; SAHI's ``postprocess_*`` options, behaviour from its documentation):

- ``NMS``: the highest-scored box suppresses every lower-scored one that matches it.
- ``GREEDYNMM`` (greedy non-maximum merging): the highest-scored remaining box claims every remaining box that matches
  it; the claimed boxes are then folded into it in score order, each one only if it still matches the box grown so
  far (one that does not is dropped): the box becomes the union (enclosing) box, the score the maximum, the class
  the higher-scored box's.
- ``NMM``: as GREEDYNMM, but transitively: a box claimed by a keeper claims in turn the lower-scored boxes it matches,
  so a chain of overlapping boxes becomes one group; the group is folded in the order it was gathered (SAHI's).

``tests/test_sliced_inference.py`` checks all three, by IoU and IoS, per class and class-agnostic, against SAHI's own
postprocessing classes on random box clusters.

Two boxes match when their overlap is at least ``postprocess_match_threshold``, measured as IoU (intersection over
union) or IoS (intersection over the smaller box's area, SAHI's default: a box cut by a window border lies mostly
inside the whole box, so IoS matches the pieces where IoU would not). Merging is per class unless
``postprocess_class_agnostic=True``; SAHI's default is per class too.

Deviations from SAHI, each deliberate:

1. The windows of an image go through Ultralytics' predictor together, ``batch`` at a time (SAHI's default is one
   window per call); this is what makes sliced val fast on a CPU (``benchmarks/sliced_speed.py``). Letterboxing is the
   same either way, since all windows of an image have the same shape, but a batched forward pass may round scores
   differently in the last float digits, so where two windows' boxes score nearly alike, merging may keep the other
   one of the pair (``batch=1`` gives SAHI's boxes exactly; the tests check both).
2. ``postprocess_type`` left unset chooses like SAHI: GREEDYNMM with IoS, or NMS with IoU when the confidence threshold
   is under 0.1 (merging many low-confidence boxes grows boxes, as SAHI's own warning says). A value the user sets is
   kept as set, where SAHI overrides even an explicit choice unless ``force_postprocess_type=True``.
3. The merged detections of an image are capped at ``max_det`` (default 300, highest scores first), as Ultralytics
   caps its own; COCO's AP reads at most 100 per image, so any cap >= 100 leaves the scores unchanged.
4. ``slice_full`` defaults to False (SAHI: ``perform_standard_pred=True``): the study's use is small objects, where a
   whole-image pass at the slice size adds time and mostly large-object boxes. Set ``slice_full=True`` for SAHI's
   default.
"""

from __future__ import annotations

import glob
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UsageError
from .windows import check_overlap, slice_windows

if TYPE_CHECKING:
    from ultralytics import YOLO

MERGE_TYPES = ("GREEDYNMM", "NMM", "NMS")
MATCH_METRICS = ("IOS", "IOU")
LOW_CONFIDENCE = 0.1  # below this, an unset postprocess_type means NMS by IoU (SAHI's rule)
MIN_SLICE = 32  # px; Ultralytics' detection models downsample by at least 32
# The CLI keys for sliced inference (no key collides with one of Ultralytics'). They default to None, meaning "not
# given", so a slicing key given without slice= is refused; SliceSettings holds the defaults.
SLICE_KEYS = dict.fromkeys(("slice", "overlap", "slice_full", "postprocess_type", "postprocess_match_metric",
                            "postprocess_match_threshold", "postprocess_class_agnostic"))
# Ultralytics' keys that change what a sliced run predicts; the predict mode adds its saving keys.
PREDICT_KEYS = ("imgsz", "conf", "iou", "max_det", "device", "half", "quantize", "classes", "agnostic_nms", "augment",
                "batch")  # half: Ultralytics before quantize= (later releases map half=True to quantize=16)


@dataclass(frozen=True)
class SliceSettings:
    """How to slice and merge (the CLI keys in brackets).

    Args:
        size: window side in px (``slice``); at least 32 and at least the model's stride.
        overlap: fraction of ``size`` shared by neighbouring windows, in [0, 1) (``overlap``).
        full: also predict the whole image once and merge those boxes too (``slice_full``).
        merge: ``GREEDYNMM``, ``NMM`` or ``NMS``; None chooses by confidence (``postprocess_type``).
        metric: ``IOS`` or ``IOU``; None goes with ``merge`` (``postprocess_match_metric``).
        threshold: the overlap at which two boxes match, in [0, 1] (``postprocess_match_threshold``).
        class_agnostic: merge boxes of different classes too (``postprocess_class_agnostic``).
    """

    size: int
    overlap: float = 0.2
    full: bool = False
    merge: str | None = None
    metric: str | None = None
    threshold: float = 0.5
    class_agnostic: bool = False

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise UsageError(f"slice={self.size!r}: the slice size must be a whole number of pixels, e.g. slice=640")
        if self.size < MIN_SLICE:
            raise UsageError(f"slice={self.size}: a slice must be at least {MIN_SLICE} px (the model's stride)")
        check_overlap(self.overlap)
        if self.merge is not None and self.merge not in MERGE_TYPES:
            raise UsageError(f"postprocess_type={self.merge}: allowed values are {', '.join(MERGE_TYPES)}")
        if self.metric is not None and self.metric not in MATCH_METRICS:
            raise UsageError(f"postprocess_match_metric={self.metric}: allowed values are {', '.join(MATCH_METRICS)}")
        if not _is_number(self.threshold) or not 0 <= self.threshold <= 1:
            raise UsageError(f"postprocess_match_threshold={self.threshold!r}: must be a number in [0, 1]")
        for key, value in (("slice_full", self.full), ("postprocess_class_agnostic", self.class_agnostic)):
            if not isinstance(value, bool):
                raise UsageError(f"{key}={value!r}: must be True or False")

    @classmethod
    def from_keys(cls, slice=None, overlap=None, slice_full=None, postprocess_type=None,  # noqa: A002 - the CLI key
                  postprocess_match_metric=None, postprocess_match_threshold=None, postprocess_class_agnostic=None):
        """Settings from the CLI's :data:`SLICE_KEYS` (None: not given); None when ``slice`` is not given. A slicing
        key given without ``slice=`` is refused rather than ignored."""
        given = {"overlap": overlap, "slice_full": slice_full, "postprocess_type": postprocess_type,
                 "postprocess_match_metric": postprocess_match_metric,
                 "postprocess_match_threshold": postprocess_match_threshold,
                 "postprocess_class_agnostic": postprocess_class_agnostic}
        if slice is None:
            stray = [key for key, value in given.items() if value is not None]
            if stray:
                raise UsageError(f"{stray[0]}= applies to sliced inference only; add slice=SIZE (e.g. slice=640)")
            return None
        upper = lambda v: v.upper() if isinstance(v, str) else v  # noqa: E731 - SAHI's values are upper case
        keys = {"overlap": overlap, "full": slice_full, "merge": upper(postprocess_type),
                "metric": upper(postprocess_match_metric), "threshold": postprocess_match_threshold,
                "class_agnostic": postprocess_class_agnostic}
        return cls(size=slice, **{k: v for k, v in keys.items() if v is not None or k in ("merge", "metric")})

    def merging(self, conf: float) -> tuple[str, str]:
        """The (merge type, match metric) used at confidence threshold ``conf`` (deviation 2 above)."""
        merge = self.merge or ("NMS" if conf < LOW_CONFIDENCE else "GREEDYNMM")
        metric = self.metric or ("IOU" if merge == "NMS" and self.merge is None else "IOS")
        return merge, metric

    def check_stride(self, stride: int) -> None:
        """Refuse a slice smaller than the model's ``stride`` (a UsageError naming both)."""
        if self.size < stride:
            raise UsageError(f"slice={self.size}: smaller than the model's stride ({stride} px); use slice >= {stride}")

    def as_dict(self) -> dict:
        """The settings as plain values under the CLI's names (``slice`` for the size), for result files."""
        return {("slice" if k == "size" else k): v for k, v in asdict(self).items()}


def picture_suffix(file: Path) -> str:
    """The suffix of the picture saved for ``file``: its own where OpenCV writes that format (PNG and TIFF stay
    sharp), else ``.jpg``, as ``yolo predict`` saves every picture (OpenCV reads .mpo and .dng but writes neither)."""
    import cv2

    return file.suffix if file.suffix and cv2.haveImageWriter(f"x{file.suffix}") else ".jpg"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- merging -------------------------------------------------------------------------------------------------------


def overlaps(box: np.ndarray, boxes: np.ndarray, metric: str) -> np.ndarray:
    """IoU or IoS of ``box`` (x0, y0, x1, y1) with each row of ``boxes``; 0 where a denominator is 0."""
    box, boxes = np.asarray(box, dtype=np.float64), np.asarray(boxes, dtype=np.float64)
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = width * height
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    denominator = area + areas - inter if metric == "IOU" else np.minimum(area, areas)
    return np.divide(inter, denominator, out=np.zeros_like(inter), where=denominator > 0)


def merge_detections(detections: np.ndarray, merge: str = "GREEDYNMM", metric: str = "IOS", threshold: float = 0.5,
                     class_agnostic: bool = False) -> np.ndarray:
    """Merge or suppress matching boxes (see the module docstring). ``detections``: (N, 6) rows of x0, y0, x1, y1,
    score, class in one image's pixels; returns rows in the same layout, highest score first (ties as in SAHI).

    Raises:
        ValueError: ``merge`` is not one of :data:`MERGE_TYPES`, ``metric`` not one of :data:`MATCH_METRICS` (both
            upper case, as SAHI spells them), or ``threshold`` not a number in [0, 1].
    """
    if merge not in MERGE_TYPES:
        raise ValueError(f"merge={merge!r} is not allowed; expected one of {', '.join(MERGE_TYPES)}")
    if metric not in MATCH_METRICS:
        raise ValueError(f"metric={metric!r} is not allowed; expected one of {', '.join(MATCH_METRICS)}")
    if not _is_number(threshold) or not 0 <= threshold <= 1:
        raise ValueError(f"threshold={threshold!r} is not allowed; expected a number in [0, 1]")
    detections = np.asarray(detections, dtype=np.float64).reshape(-1, 6)
    if class_agnostic or len(detections) == 0:
        merged = _merge_group(detections, merge, metric, threshold)
    else:
        merged = np.concatenate([_merge_group(detections[detections[:, 5] == c], merge, metric, threshold)
                                 for c in np.unique(detections[:, 5])])
    return merged[np.lexsort((merged[:, 3], merged[:, 2], merged[:, 1], merged[:, 0], -merged[:, 4]))]


def _merge_group(detections: np.ndarray, merge: str, metric: str, threshold: float) -> np.ndarray:
    # Score order, equal scores by x0, y0, x1, y1 (SAHI's tie-break), so that ties resolve the same way
    # whatever order the windows' boxes arrive in.
    x0, y0, x1, y1, score = detections[:, :5].T
    order = np.lexsort((y1, x1, y0, x0, -score))  # position in that order -> input row
    rows = detections[order]
    boxes, n = rows[:, :4], len(rows)
    owner = np.full(n, -1)
    groups: list[list[int]] = []
    for i in range(n):
        if owner[i] < 0:
            owner[i] = len(groups)
            groups.append([i])
        elif merge != "NMM":  # only NMM lets a claimed box claim further boxes (for its keeper's group)
            continue
        later = np.flatnonzero(owner[i + 1:] < 0) + i + 1
        claimed = later[overlaps(boxes[i], boxes[later], metric) >= threshold]
        if merge == "NMM":  # gathered in input order, as SAHI gathers them
            claimed = claimed[np.argsort(order[claimed], kind="stable")]
        owner[claimed] = owner[i]
        groups[owner[i]].extend(claimed.tolist())
    if merge == "NMS":
        return rows[[group[0] for group in groups]]
    out = []
    for keeper, *members in groups:
        row = rows[keeper].copy()  # score and class stay the keeper's: the group's highest score
        for j in members:
            if overlaps(row[:4], boxes[j : j + 1], metric)[0] >= threshold:
                row[:2] = np.minimum(row[:2], boxes[j, :2])
                row[2:4] = np.maximum(row[2:4], boxes[j, 2:4])
        out.append(row)
    return np.array(out).reshape(-1, 6)


# --- prediction ----------------------------------------------------------------------------------------------------


def model_stride(model) -> int:
    """The largest stride of an Ultralytics ``YOLO``'s network (32 when the model does not say, e.g. an export)."""
    stride = getattr(getattr(model, "model", None), "stride", None)
    try:
        return int(max(stride)) if stride is not None else MIN_SLICE
    except TypeError:
        return int(stride)


def _height_width(imgsz) -> tuple:
    """An Ultralytics ``imgsz`` (one size, a one-item list, or height and width) as (height, width)."""
    if isinstance(imgsz, (int, str)):
        return (int(imgsz), int(imgsz))
    sizes = tuple(int(v) for v in imgsz)
    return (sizes[0], sizes[-1])


class SlicedPredictor:
    """Predict full images window by window with an Ultralytics ``YOLO`` and merge the boxes.

    Args:
        model: an Ultralytics ``YOLO`` (any format its ``predict`` reads).
        settings: the slicing and merging settings.
        predict_args: Ultralytics' prediction keys (:data:`PREDICT_KEYS`); ``imgsz`` defaults to the slice size,
            ``conf`` to ``default_conf``, ``batch`` (windows per forward pass) to 16.
        default_conf: the confidence threshold without ``conf`` (Ultralytics: 0.001 for val, 0.25 for predict).
    """

    def __init__(self, model: YOLO, settings: SliceSettings, predict_args: dict | None = None,
                 default_conf: float = 0.25):
        stride = model_stride(model)
        settings.check_stride(stride)
        self.window_imgsz = math.ceil(settings.size / stride) * stride  # a window's own size, as the model takes it
        args = {k: v for k, v in (predict_args or {}).items() if v is not None}
        self.model, self.settings = model, settings
        self.batch = int(args.pop("batch", None) or 16)
        self.max_det = int(args.get("max_det") or 300)
        self.conf = float(args.get("conf") if args.get("conf") is not None else default_conf)
        self.args = {**args, "imgsz": args.get("imgsz") or settings.size, "conf": self.conf, "verbose": False,
                     "save": False}
        self.merge, self.metric = settings.merging(self.conf)
        self.most_windows = self.last_windows = 0
        rounded = self._round_to_stride(stride, given=bool(args.get("imgsz")))
        if not self._use_export_size() and rounded:  # a fixed-size export's own note says what size it runs at
            print(f"yolo-spd: note: {rounded}", file=sys.stderr)

    def _round_to_stride(self, stride: int, given: bool) -> str | None:
        """``imgsz`` up to a multiple of the model's stride, as Ultralytics rounds it, once: Ultralytics would warn
        on every call (once per image), and :meth:`describe` would report the size asked, not the one used
        (slice=100 runs at 128). Returns the note that says so, or None where nothing was rounded."""
        asked = self.args["imgsz"]
        try:
            sizes = [int(asked)] if isinstance(asked, (int, str)) else [int(v) for v in asked]
        except (TypeError, ValueError):
            return None  # a form Ultralytics reads itself ("640,480") or refuses (64.5): left to it
        if not 1 <= len(sizes) <= 2:
            return None
        sizes = (sizes[0], sizes[-1])  # [640] is 640 x 640, as Ultralytics reads it
        rounded = tuple(math.ceil(v / stride) * stride for v in sizes)
        if rounded == sizes:
            return None
        used = rounded[0] if rounded[0] == rounded[1] else list(rounded)
        self.args["imgsz"] = used
        what = f"imgsz={asked}" if given else f"the slice size, {asked} px,"
        return (f"{what} is not a multiple of the model's stride {stride}; windows run at imgsz={used}, as "
                "Ultralytics rounds it")

    def _use_export_size(self) -> bool:
        """An export without dynamic shapes predicts at the size it was exported at, whatever ``imgsz`` says
        (Ultralytics' predictor takes it from the export's metadata): windows are resized to it. That size goes into
        :attr:`args`, so :meth:`describe` reports the size used, with a note where it is not the one asked for. Such
        an export also takes its export batch (1 by default) and no more: windows go through it that many at a time
        (Ultralytics 8.4.67 passed the whole batch on, which ONNX Runtime refused). True where the export's size
        replaced ``imgsz``."""
        if not isinstance(self.model.model, (str, Path)):  # a PyTorch model: any size
            return False
        self.model.predict([np.zeros((32, 32, 3), np.uint8)], **self.args)  # sets up the predictor and its size
        backend = self.model.predictor.model
        if not ((getattr(backend, "metadata", None) or {}).get("args") or {}).get("dynamic"):
            self.batch = min(self.batch, int(getattr(backend, "batch", None) or 1))
        asked, (height, width) = self.args["imgsz"], _height_width(self.model.predictor.args.imgsz)
        if (height, width) != _height_width(asked):
            size = height if height == width else f"{height}x{width}"
            print(f"yolo-spd: note: {self.model.model} takes a fixed {size} px input (exported without dynamic=True), "
                  f"so each {self.settings.size} px window is resized to it, not to imgsz={asked}; export it with "
                  f"imgsz={self.window_imgsz} (or dynamic=True) to predict windows at their own size",
                  file=sys.stderr)
            self.args["imgsz"] = height if height == width else [height, width]
            return True
        return False

    def _predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        results = self.model.predict(images, **self.args)
        return [r.boxes.data.cpu().numpy().astype(np.float64) for r in results]

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Merged detections (N, 6: x0, y0, x1, y1, score, class) of one BGR image, in its pixels."""
        height, width = image.shape[:2]
        windows = slice_windows(width, height, self.settings.size, self.settings.overlap)
        self.last_windows = len(windows)
        self.most_windows = max(self.most_windows, len(windows))
        found = []
        for start in range(0, len(windows), self.batch):
            batch = windows[start : start + self.batch]
            crops = [np.ascontiguousarray(image[w.y0 : w.y1, w.x0 : w.x1]) for w in batch]
            for w, boxes in zip(batch, self._predict(crops)):
                boxes[:, [0, 2]] += w.x0
                boxes[:, [1, 3]] += w.y0
                found.append(boxes)
        if self.settings.full and len(windows) > 1:
            found += self._predict([image])
        detections = np.concatenate(found) if found else np.zeros((0, 6))
        detections[:, [0, 2]] = detections[:, [0, 2]].clip(0, width)
        detections[:, [1, 3]] = detections[:, [1, 3]].clip(0, height)
        detections = detections[(detections[:, 2] > detections[:, 0]) & (detections[:, 3] > detections[:, 1])]
        merged = merge_detections(detections, self.merge, self.metric, self.settings.threshold,
                                  self.settings.class_agnostic)
        return merged[: self.max_det]

    def run(self, files: list[Path], desc: str = "sliced", progress: bool = True, skip_unreadable: bool = False):
        """Yield ``(file, image, detections)`` for each image file, with an Ultralytics-style progress bar unless
        ``progress`` is False; an unreadable file is a :class:`UsageError`, or with ``skip_unreadable`` (predict, as
        ``yolo predict`` does) a warning, and the next file is read. Says once, at the end, when every image fitted
        in one window."""
        from ultralytics.utils import TQDM
        from ultralytics.utils.patches import imread

        self.most_windows = 0
        for file in TQDM(files, desc=desc, unit="image") if progress else files:
            image = imread(str(file))
            if image is None and skip_unreadable:
                print(f"yolo-spd: warning: cannot read image {file}; skipped", file=sys.stderr)
                continue
            if image is None:
                raise UsageError(f"cannot read image {file}")
            yield file, image, self.predict(image)
        if files and self.most_windows == 1:
            print(f"yolo-spd: note: slice={self.settings.size} is at least as large as every image, so each image "
                  "was predicted as one window", file=sys.stderr)

    def describe(self) -> str:
        """The settings line printed before a sliced run (slice, overlap, the imgsz used, conf, merging)."""
        s = self.settings
        full = " + whole image" if s.full else ""
        return (f"slice {s.size} px, overlap {s.overlap:g}{full}, imgsz {self.args['imgsz']}, conf {self.conf:g}, "
                f"merge {self.merge}/{self.metric} >= {s.threshold:g}{' class-agnostic' if s.class_agnostic else ''}")


# --- predict mode --------------------------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic")


def image_files(source) -> list[Path]:
    """The image files ``source=`` names: one image, a folder's images (not recursive, as Ultralytics) or a glob."""
    if source is None:
        raise UsageError("predict with slice= needs source= (an image, a folder of images or a glob pattern)")
    text, path = str(source), Path(str(source))
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise UsageError(f"source={text}: slice= works on images ({', '.join(IMAGE_SUFFIXES)}), not {path.suffix}")
        files = [path]
    elif any(c in text for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
    else:
        raise UsageError(f"source={text}: no such file or folder (slice= works on image files)")
    if not files:
        raise UsageError(f"source={text}: no images found")
    return files


def predict_sliced(model, settings: SliceSettings, source, project=None, name=None, exist_ok=False, save=True,
                   save_txt=False, save_conf=False, line_width=None, show_labels=True, show_conf=True, verbose=True,
                   save_dir=None, **predict_args) -> Path | None:
    """``yolo-spd predict slice=...``: each image predicted by :class:`SlicedPredictor` and saved as ``yolo predict``
    saves predictions: the image with its boxes drawn in the run folder, with ``save_txt=True`` a
    ``labels/<stem>.txt`` of ``class x y w h [conf]`` rows normalised to the image (none for an image without
    detections; images of the same stem get ``<stem>-2``, as Ultralytics names them). The run folder is ``save_dir``,
    else :func:`yolo_spd.run_folders.run_folder`'s from ``project``/``name``/``exist_ok`` (``runs/detect/predict``,
    ``predict-2``, ...); with neither ``save`` nor ``save_txt`` nothing is written and no folder is made. Prints a
    line per image (``verbose``) and, at the end, where the results went. Returns the run folder, or None."""
    import time

    import torch
    from ultralytics.engine.results import Results

    from ..paths import atomic_target
    from ..run_folders import run_folder

    files = image_files(source)
    predictor = SlicedPredictor(model, settings, predict_args, default_conf=0.25)
    folder = None
    if save or save_txt:
        folder = Path(save_dir) if save_dir else run_folder(project, name, "predict", exist_ok)
        (folder / "labels" if save_txt else folder).mkdir(parents=True, exist_ok=True)  # as Ultralytics' predictor:
        # the folder the last line names exists even when nothing was found
    print(f"Sliced prediction: {predictor.describe()}")
    labels, stems = 0, set()
    started = time.perf_counter()
    position = {file: k for k, file in enumerate(files, 1)}  # "image i/N" counts a skipped unreadable file too
    for file, image, detections in predictor.run(files, desc="predict", progress=False, skip_unreadable=True):
        i = position[file]
        elapsed = (time.perf_counter() - started) * 1e3  # reading, windows, merging
        result = Results(image, path=str(file), names=model.names, boxes=torch.from_numpy(detections).float())
        if verbose:  # Ultralytics' per-image line, with the window count where it gives the input shape
            print(f"image {i}/{len(files)} {file.resolve()}: {predictor.last_windows} window"
                  f"{'s' * (predictor.last_windows != 1)}, {result.verbose()}{elapsed:.1f}ms")
        if folder is not None:
            base = _output_stem(file.stem, stems)
            if save:
                result.save(str(folder / f"{base}{picture_suffix(file)}"), line_width=line_width,
                            labels=show_labels, conf=show_conf)
            if save_txt:
                label = folder / "labels" / f"{base}.txt"
                label.unlink(missing_ok=True)  # replace, never append to, an earlier run's file (exist_ok=True)
                if len(detections):
                    with atomic_target(label) as tmp:
                        result.save_txt(tmp, save_conf=save_conf)
                    labels += 1
        started = time.perf_counter()
    if folder is not None:
        print(f"Results saved to {folder}")
        if save_txt:
            print(f"{labels} label{'s' * (labels != 1)} saved to {folder / 'labels'}")
    return folder


def _output_stem(stem: str, taken: set[str]) -> str:
    """``stem``, or ``stem-2``, ``stem-3``, ... if taken (bus.jpg and bus.png), as Ultralytics' predictor names
    its outputs; the name returned is added to ``taken``."""
    base, k = stem, 1
    while base in taken:
        k += 1
        base = f"{stem}-{k}"
    taken.add(base)
    return base
