"""Sliced inference (yolo_spd.slicing.inference): merging semantics on hand-made boxes, merging against SAHI's own
postprocessing, the CLI's bad input, and sliced val/predict/compare end to end on a model trained here, with its
AP_S checked against SAHI's get_sliced_prediction + pycocotools on the same checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from yolo_spd.errors import UsageError
from yolo_spd.slicing.inference import SliceSettings, merge_detections, overlaps

from .conftest import child_env

# --- merging on hand-made boxes -------------------------------------------------------------------------------------

WHOLE = [100, 100, 120, 120]  # a 20 px object seen whole in one window...
PIECE = [110, 100, 120, 120]  # ...and cut in half by the next window's border


def dets(*rows) -> np.ndarray:
    return np.array(rows, dtype=float).reshape(-1, 6)


def test_ios_matches_a_border_piece_that_iou_does_not():
    whole, piece = np.array(WHOLE, float), np.array([PIECE], float)
    assert overlaps(whole, piece, "IOS")[0] == pytest.approx(1.0)  # the piece lies wholly inside
    assert overlaps(whole, piece, "IOU")[0] == pytest.approx(0.5)
    assert overlaps(whole, np.array([[0, 0, 0, 0.0]]), "IOU")[0] == 0  # empty box: no division by zero


def test_nms_keeps_the_best_box_and_greedy_nmm_grows_it_to_the_union():
    found = dets([*WHOLE, 0.9, 0], [102, 100, 124, 120, 0.6, 0], [300, 300, 310, 310, 0.5, 0])
    nms = merge_detections(found, "NMS", "IOU", 0.5)
    np.testing.assert_allclose(nms, found[[0, 2]])  # the overlapping 0.6 box is dropped, the far one kept
    merged = merge_detections(found, "GREEDYNMM", "IOU", 0.5)
    np.testing.assert_allclose(merged[0], [100, 100, 124, 120, 0.9, 0])  # union box, the best score and class
    np.testing.assert_allclose(merged[1], found[2])


def test_merging_is_per_class_unless_class_agnostic():
    found = dets([*WHOLE, 0.9, 0], [*WHOLE, 0.8, 1])
    assert len(merge_detections(found, "NMS", "IOU", 0.5)) == 2  # a red and a green object may coincide
    agnostic = merge_detections(found, "GREEDYNMM", "IOU", 0.5, class_agnostic=True)
    np.testing.assert_allclose(agnostic, found[:1])  # one box, the higher-scored box's class


def test_nmm_merges_a_chain_transitively_and_greedy_nmm_does_not():
    # A chain along x: IoS(A, B) = 0.75, IoS(B, C) = 0.5, but IoS(A, C) = 0.25, under the threshold 0.3.
    a, b, c = [0, 0, 10, 10, 0.9, 0], [2.5, 0, 12.5, 10, 0.8, 0], [7.5, 0, 17.5, 10, 0.7, 0]
    assert overlaps(np.array(a[:4]), np.array([c[:4]]), "IOS")[0] == pytest.approx(0.25)
    greedy = merge_detections(dets(a, b, c), "GREEDYNMM", "IOS", 0.3)
    np.testing.assert_allclose(greedy, dets([0, 0, 12.5, 10, 0.9, 0], c))  # A takes B only; C stays apart
    nmm = merge_detections(dets(a, b, c), "NMM", "IOS", 0.3)
    np.testing.assert_allclose(nmm, dets([0, 0, 17.5, 10, 0.9, 0]))  # B brings C into A's group: one box
    # By IoU the grown A+B box and C overlap 50/175 < 0.3: C is claimed through B but fails the re-check, and a
    # claimed box that fails it is dropped, as in SAHI.
    nmm_iou = merge_detections(dets(a, b, c), "NMM", "IOU", 0.3)
    np.testing.assert_allclose(nmm_iou, dets([0, 0, 12.5, 10, 0.9, 0]))


def test_greedy_nmm_rechecks_each_claimed_box_against_the_grown_box():
    keeper, near, far = [0, 0, 10, 10, 0.9, 0], [0, 0, 10, 10, 0.8, 0], [0, 0, 10, 30, 0.7, 0]
    merged = merge_detections(dets(keeper, near, far), "GREEDYNMM", "IOS", 0.9)
    np.testing.assert_allclose(merged, dets([0, 0, 10, 30, 0.9, 0]))  # IoS(keeper, far) = 1: grown to the union


def sahi_merge(found: np.ndarray, merge: str, metric: str, threshold: float, agnostic: bool) -> np.ndarray:
    from sahi.postprocess.combine import GreedyNMMPostprocess, NMMPostprocess, NMSPostprocess
    from sahi.prediction import ObjectPrediction

    cls = {"NMS": NMSPostprocess, "NMM": NMMPostprocess, "GREEDYNMM": GreedyNMMPostprocess}[merge]
    predictions = [ObjectPrediction(bbox=row[:4].tolist(), score=float(row[4]), category_id=int(row[5]),
                                    category_name=str(int(row[5]))) for row in found]
    out = cls(match_threshold=threshold, match_metric=metric, class_agnostic=agnostic)(predictions)
    rows = [[*p.bbox.to_xyxy(), p.score.value, p.category.id] for p in out]
    rows = np.array(rows, dtype=float).reshape(-1, 6)
    return rows[np.lexsort((rows[:, 0], rows[:, 1], -rows[:, 4]))]


def random_detections(rng, n: int) -> np.ndarray:
    """Clusters of jittered boxes, as several windows report one object, plus scattered ones, in 2 classes."""
    centres = rng.uniform(20, 380, (n // 4, 2))
    rows = []
    for cx, cy in centres:
        size = rng.uniform(6, 30, 2)
        for _ in range(int(rng.integers(1, 6))):
            c = np.array([cx, cy]) + rng.normal(0, 3, 2)
            s = size * rng.uniform(0.5, 1.1, 2)  # some pieces of the object (cut by a border)
            rows.append([*(c - s / 2), *(c + s / 2), rng.uniform(0.05, 1), rng.integers(0, 2)])
    return np.array(rows)


@pytest.mark.parametrize("merge", ["NMS", "GREEDYNMM", "NMM"])
@pytest.mark.parametrize("metric", ["IOU", "IOS"])
@pytest.mark.parametrize("agnostic", [False, True])
def test_merging_matches_sahis_postprocessing(merge, metric, agnostic):
    pytest.importorskip("sahi")
    rng = np.random.default_rng(["NMS", "GREEDYNMM", "NMM"].index(merge) * 4 + 2 * agnostic + (metric == "IOS"))
    for _ in range(3):
        found = random_detections(rng, 120)
        ours = merge_detections(found, merge, metric, 0.5, agnostic)
        ours = ours[np.lexsort((ours[:, 0], ours[:, 1], -ours[:, 4]))]
        theirs = sahi_merge(found, merge, metric, 0.5, agnostic)
        assert len(found) > len(ours) > 10
        np.testing.assert_allclose(ours, theirs, atol=1e-4)


# --- settings ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "keys, message",
    [({"slice": 16}, "slice=16: a slice must be at least 32 px"),
     ({"slice": "big"}, "slice='big': the slice size must be a whole number"),
     ({"slice": 64, "overlap": 1}, r"overlap=1: the overlap must be a fraction in \[0, 1\)"),
     ({"slice": 64, "overlap": -0.1}, "overlap=-0.1"),
     ({"slice": 64, "postprocess_type": "WBF"}, "postprocess_type=WBF: allowed values are GREEDYNMM, NMM, NMS"),
     ({"slice": 64, "postprocess_match_metric": "DICE"}, "allowed values are IOS, IOU"),
     ({"slice": 64, "postprocess_match_threshold": 2}, r"must be a number in \[0, 1\]"),
     ({"overlap": 0.3}, "overlap= applies to sliced inference only; add slice=SIZE")],
)
def test_slice_settings_refuse_bad_values(keys, message):
    with pytest.raises(UsageError, match=message):
        SliceSettings.from_keys(**keys)


def test_unset_merge_follows_sahis_low_confidence_rule_and_a_set_one_is_kept():
    assert SliceSettings(64).merging(0.25) == ("GREEDYNMM", "IOS")
    assert SliceSettings(64).merging(0.001) == ("NMS", "IOU")
    assert SliceSettings(64, merge="NMM").merging(0.001) == ("NMM", "IOS")
    assert SliceSettings.from_keys(slice=64, postprocess_type="nms").merging(0.5) == ("NMS", "IOS")
