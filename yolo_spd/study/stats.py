"""The study's intervals: a Student t interval over seeds, and a paired bootstrap over val images.

Seed-level interval (:func:`t_interval`). Per seed, ``d = variant - baseline`` (same seed, same data, same settings);
the interval is ``mean(d) +- t(0.975, n-1) * sd(d) / sqrt(n)`` (sd with the n-1 denominator). It counts the spread
between training runs only: every run is scored on the same val images, so it says nothing about how the result would
move on other images of the same kind.

Paired image bootstrap (:func:`paired_bootstrap`). One replicate draws ``I`` val images with replacement (``I`` = the
number of val images); every run of the study is scored on that same draw, so in a replicate the baseline and the
variant of a seed see the same images; the replicate's statistic is the mean over seeds of ``variant - baseline``.
The interval is the 2.5th and 97.5th percentile of that statistic over ``resamples`` replicates (percentile
bootstrap; Efron & Tibshirani 1993, ch. 13), drawn from ``numpy.random.default_rng(seed)``, so it is deterministic.
It counts the sampling of the val images, which the t interval does not; it does not resample seeds.

Two studies scored on the same val images (:mod:`.contrast`): :func:`welch_interval` over the two studies' per-seed
differences (taken as independent samples of unequal variances), and :func:`contrast_bootstrap`, whose replicate
statistic is the difference of the two studies' paired means on one draw that every run of both is scored on.

Scoring a replicate is COCO's own accumulation (``pycocotools.cocoeval.COCOeval.accumulate``) on the per-image
matches that ``COCOeval.evaluate`` made once per run, with the drawn images' entries repeated as often as they were
drawn (:func:`accumulate`). Repeating an image this way equals scoring a dataset that holds that many copies of it,
which is what the tests check against pycocotools itself; drawing every image once gives COCO's numbers exactly.
"""

from __future__ import annotations

import contextlib
import io
import math
import statistics
from dataclasses import dataclass

import numpy as np

T_LEVEL = 0.95
BOOTSTRAP_METRICS = ("AP", "AP50", "AP_small", "AR_small")


def t_quantile(p: float, dof: float) -> float:
    """The ``p`` quantile of Student's t with ``dof`` degrees of freedom (scipy)."""
    from scipy.stats import t

    return float(t.ppf(p, dof))


def t_interval(differences: list[float], level: float = T_LEVEL) -> dict:
    """{"n", "mean", "ci": [low, high] or None, "half_width": or None} of the per-seed ``differences``."""
    n = len(differences)
    mean = statistics.fmean(differences) if n else None
    if n < 2:
        return {"n": n, "mean": mean, "ci": None, "half_width": None}
    half = t_quantile(0.5 + level / 2, n - 1) * statistics.stdev(differences) / math.sqrt(n)
    return {"n": n, "mean": mean, "ci": [mean - half, mean + half], "half_width": half}


def welch_interval(first: list[float], second: list[float], level: float = T_LEVEL) -> dict:
    """{"n": [n1, n2], "mean", "ci", "half_width", "dof"} of ``mean(second) - mean(first)`` for two independent
    samples (Welch 1947): ``+- t(0.975, dof) * sqrt(v1/n1 + v2/n2)``, dof by the Welch-Satterthwaite equation. It
    does not assume equal variances, nor that the i-th values of the two samples belong together."""
    n1, n2 = len(first), len(second)
    mean = statistics.fmean(second) - statistics.fmean(first) if n1 and n2 else None
    if n1 < 2 or n2 < 2:
        return {"n": [n1, n2], "mean": mean, "ci": None, "half_width": None, "dof": None}
    a, b = statistics.variance(first) / n1, statistics.variance(second) / n2
    if a + b == 0:  # both samples constant: no spread to scale by, the interval is the point
        return {"n": [n1, n2], "mean": mean, "ci": [mean, mean], "half_width": 0.0, "dof": None}
    dof = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1))
    half = t_quantile(0.5 + level / 2, dof) * math.sqrt(a + b)
    return {"n": [n1, n2], "mean": mean, "ci": [mean - half, mean + half], "half_width": half, "dof": dof}


@dataclass
class PerImageMatches:
    """One run's per-image COCO matches, for each class and each requested size range, at ``max_det``.

    For class ``k`` and range ``a``: ``scores[k][a]``, ``tp[k][a]``/``fp[k][a]`` ([T, N] booleans; ignored
    detections are neither) are the concatenation over images in COCO's image order, ``offsets[k][a]`` ([I + 1]) where
    each image's detections start, and ``npig[k][a]`` ([I]) each image's count of ground-truth boxes that are not
    ignored.
    """

    image_ids: list[int]
    iou_thresholds: np.ndarray
    rec_thresholds: np.ndarray
    range_labels: tuple[str, ...]  # "all" first
    scores: list[list[np.ndarray]]
    tp: list[list[np.ndarray]]
    fp: list[list[np.ndarray]]
    offsets: list[list[np.ndarray]]
    npig: list[list[np.ndarray]]


def per_image_matches(truth_coco: dict, detections: list[dict], area_ranges: list[list[float]],
                      range_labels: tuple[str, ...], max_det: int = 100) -> PerImageMatches:
    """Run ``COCOeval.evaluate`` (pycocotools, bbox) once and keep its per-image matches (see the class)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = truth_coco
        gt.createIndex()
        dt = gt.loadRes([dict(d) for d in detections]) if detections else _empty_results(gt, truth_coco)
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.params.imgIds = sorted(gt.getImgIds())
        evaluator.params.areaRng = [list(r) for r in area_ranges]
        evaluator.params.areaRngLbl = list(range_labels)
        evaluator.params.maxDets = [max_det]
        evaluator.evaluate()
    p = evaluator.params
    n_images, n_areas = len(p.imgIds), len(p.areaRng)
    n_thr = len(p.iouThrs)
    scores, tp, fp, offsets, npig = [], [], [], [], []
    for k in range(len(p.catIds)):
        row = [[], [], [], [], []]
        for a in range(n_areas):
            entries = evaluator.evalImgs[k * n_areas * n_images + a * n_images: k * n_areas * n_images + (a + 1) * n_images]
            s, t, f, counts, gts = [], [], [], [0], []
            for e in entries:
                if e is None:
                    counts.append(counts[-1])
                    gts.append(0)
                    continue
                matched = np.asarray(e["dtMatches"])[:, :max_det].astype(bool)
                ignored = np.asarray(e["dtIgnore"])[:, :max_det].astype(bool)
                s.append(np.asarray(e["dtScores"][:max_det], dtype=float))
                t.append(matched & ~ignored)
                f.append(~matched & ~ignored)
                counts.append(counts[-1] + len(e["dtScores"][:max_det]))
                gts.append(int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)))
            row[0].append(np.concatenate(s) if s else np.zeros(0))
            row[1].append(np.concatenate(t, axis=1) if t else np.zeros((n_thr, 0), bool))
            row[2].append(np.concatenate(f, axis=1) if f else np.zeros((n_thr, 0), bool))
            row[3].append(np.asarray(counts))
            row[4].append(np.asarray(gts))
        for store, values in zip((scores, tp, fp, offsets, npig), row):
            store.append(values)
    return PerImageMatches(list(p.imgIds), np.asarray(p.iouThrs), np.asarray(p.recThrs), tuple(range_labels),
                           scores, tp, fp, offsets, npig)


def _empty_results(gt, truth_coco: dict):
    from pycocotools.coco import COCO

    dt = COCO()
    dt.dataset = {**truth_coco, "annotations": []}
    dt.createIndex()
    return dt


def accumulate(matches: PerImageMatches, counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """COCO's accumulation for images repeated ``counts[i]`` times (default: each once).

    Returns ``precision`` [T, R, K, A] and ``recall`` [T, K, A] at the one ``max_det`` of ``matches``, -1 where a
    class has no ground truth of that range among the drawn images, as ``COCOeval.accumulate`` computes them.
    """
    n_images = len(matches.image_ids)
    counts = np.ones(n_images, dtype=int) if counts is None else np.asarray(counts, dtype=int)
    n_thr, n_rec = len(matches.iou_thresholds), len(matches.rec_thresholds)
    n_cls, n_areas = len(matches.scores), len(matches.range_labels)
    precision = -np.ones((n_thr, n_rec, n_cls, n_areas))
    recall = -np.ones((n_thr, n_cls, n_areas))
    drawn = np.flatnonzero(counts)
    for k in range(n_cls):
        for a in range(n_areas):
            npig = int(np.dot(counts, matches.npig[k][a]))
            if npig == 0:
                continue
            offsets = matches.offsets[k][a]
            pieces = [np.tile(np.arange(offsets[i], offsets[i + 1]), counts[i]) for i in drawn
                      if offsets[i + 1] > offsets[i]]
            index = np.concatenate(pieces) if pieces else np.zeros(0, dtype=int)
            order = index[np.argsort(-matches.scores[k][a][index], kind="mergesort")]
            tp_sum = np.cumsum(matches.tp[k][a][:, order], axis=1, dtype=float)
            fp_sum = np.cumsum(matches.fp[k][a][:, order], axis=1, dtype=float)
            detections = len(order)
            if detections == 0:
                recall[:, k, a] = 0
                precision[:, :, k, a] = 0
                continue
            rc = tp_sum / npig
            pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
            recall[:, k, a] = rc[:, -1]
            envelope = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision made non-increasing
            for t in range(n_thr):
                at = np.searchsorted(rc[t], matches.rec_thresholds, side="left")
                inside = at < detections
                precision[t, :, k, a] = np.where(inside, envelope[t, np.minimum(at, detections - 1)], 0.0)
    return precision, recall


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def metrics_of(matches: PerImageMatches, precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    """AP, AP50, AP75 and AP_/AR_ of each range, from :func:`accumulate`'s arrays (COCO's summary rule)."""
    at = {thr: int(np.argmin(np.abs(matches.iou_thresholds - thr))) for thr in (0.5, 0.75)}
    out = {"AP": _mean_valid(precision[:, :, :, 0]), "AP50": _mean_valid(precision[at[0.5], :, :, 0]),
           "AP75": _mean_valid(precision[at[0.75], :, :, 0])}
    for a, label in enumerate(matches.range_labels[1:], start=1):
        out[f"AP_{label}"] = _mean_valid(precision[:, :, :, a])
        out[f"AR_{label}"] = _mean_valid(recall[:, :, a])
    return out


def bootstrap_counts(n_images: int, resamples: int, seed: int = 0) -> np.ndarray:
    """[resamples, n_images]: how often each image is drawn in each replicate (``default_rng(seed)``)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_images, size=(resamples, n_images))
    return np.stack([np.bincount(row, minlength=n_images) for row in draws])


def replicate_metrics(matches: PerImageMatches, counts: np.ndarray,
                      metrics: tuple[str, ...] = BOOTSTRAP_METRICS) -> np.ndarray:
    """[resamples, len(metrics)]: each replicate's metrics for one run."""
    return replicate_scopes(matches, counts, metrics)[None]


def replicate_scopes(matches: PerImageMatches, counts: np.ndarray, metrics: tuple[str, ...] = BOOTSTRAP_METRICS,
                     classes: tuple[int, ...] = ()) -> dict[int | None, np.ndarray]:
    """Each replicate's metrics for one run, over all classes (key ``None``) and for each class index in ``classes``
    alone (COCO's summary on that class's slice of the same accumulation): {scope: [resamples, len(metrics)]}."""
    out = {scope: np.empty((len(counts), len(metrics))) for scope in (None, *classes)}
    for b, row in enumerate(counts):
        precision, recall = accumulate(matches, row)
        for scope, store in out.items():
            if scope is None:
                values = metrics_of(matches, precision, recall)
            else:
                values = metrics_of(matches, precision[:, :, scope:scope + 1], recall[:, scope:scope + 1])
            store[b] = [values[m] for m in metrics]
    return out


def percentile_interval(samples: np.ndarray, level: float = T_LEVEL) -> list[float]:
    """The central ``level`` percentile interval of ``samples`` (numpy's linear percentiles)."""
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))]


def paired_bootstrap(baseline: dict[int, np.ndarray], variant: dict[int, np.ndarray], metrics: tuple[str, ...],
                     level: float = T_LEVEL) -> dict[str, dict]:
    """The paired image-bootstrap interval of the mean over seeds of ``variant - baseline``, per metric.

    ``baseline`` and ``variant`` map a seed to that run's :func:`replicate_metrics` on the SAME counts; seeds both
    have are paired. Returns {metric: {"n", "ci", "half_width"}} (half of the interval's width).
    """
    out = {}
    for j, metric in enumerate(metrics):
        n, stat = _seed_mean_difference(baseline, variant, j)
        if stat is None:
            out[metric] = {"n": 0, "ci": None, "half_width": None}
            continue
        low, high = percentile_interval(stat, level)
        out[metric] = {"n": n, "ci": [low, high], "half_width": (high - low) / 2}
    return out


def _seed_mean_difference(baseline: dict[int, np.ndarray], variant: dict[int, np.ndarray],
                          j: int) -> tuple[int, np.ndarray | None]:
    """(seeds paired, each replicate's mean over those seeds of variant - baseline in metric column ``j``; None
    without a paired seed)."""
    seeds = sorted(set(baseline) & set(variant))
    return len(seeds), (np.mean([variant[s][:, j] - baseline[s][:, j] for s in seeds], axis=0) if seeds else None)


def contrast_bootstrap(first: tuple[dict, dict], second: tuple[dict, dict], metrics: tuple[str, ...],
                       level: float = T_LEVEL) -> dict[str, dict]:
    """The image-bootstrap interval of (second study's paired mean) - (first study's), per metric.

    ``first`` and ``second`` are each (baseline, variant) as :func:`paired_bootstrap` takes them, all four on the SAME
    counts (two studies scored on the same val images), so a replicate draws one set of images for every run of both.
    Returns {metric: {"n": [seeds in first, seeds in second], "ci", "half_width"}}.
    """
    out = {}
    for j, metric in enumerate(metrics):
        (n1, d1), (n2, d2) = _seed_mean_difference(*first, j), _seed_mean_difference(*second, j)
        if d1 is None or d2 is None:
            out[metric] = {"n": [n1, n2], "ci": None, "half_width": None}
            continue
        low, high = percentile_interval(d2 - d1, level)
        out[metric] = {"n": [n1, n2], "ci": [low, high], "half_width": (high - low) / 2}
    return out
