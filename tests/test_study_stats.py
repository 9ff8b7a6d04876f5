"""The study's interval arithmetic and its re-implementation of COCO's accumulation, against independent oracles:
numpy/scipy for the t interval, pycocotools itself (on datasets with images really duplicated) for the bootstrap's
replicate scoring, and max_dets against pycocotools with ``params.maxDets`` set the same way."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest

from yolo_spd.errors import UsageError
from yolo_spd.evaluation.cocoeval import SIZE_PRESETS, max_dets_thresholds, run_cocoeval
from yolo_spd.evaluation.ground_truth import GroundTruth
from yolo_spd.study import stats


def scene(seed: int = 0, images: int = 6, classes: int = 3, max_boxes: int = 12, dense: int = 0):
    """Ground truth and noisy detections (misses, false positives, jittered boxes, tied scores) in COCO form."""
    rng = np.random.default_rng(seed)
    coco = {"images": [], "annotations": [], "categories": [{"id": c + 1, "name": f"c{c}"} for c in range(classes)]}
    detections = []
    for i in range(images):
        coco["images"].append({"id": i + 1, "file_name": f"{i}.jpg", "width": 640, "height": 640})
        count = dense if dense else int(rng.integers(0, max_boxes))
        for _ in range(count):
            w, h = rng.uniform(4, 120, 2)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 640 - h)
            c = int(rng.integers(1, classes + 1))
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": i + 1, "category_id": c,
                                        "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.random() < 0.03)})
            if rng.random() < 0.85:
                jitter = rng.normal(0, 0.1, 4) * [w, h, w, h]
                score = round(float(rng.random()), 2)  # rounded: ties across images and classes
                detections.append({"image_id": i + 1, "category_id": c if rng.random() < 0.9 else 1,
                                   "bbox": [x + jitter[0], y + jitter[1], max(1.0, w + jitter[2]),
                                            max(1.0, h + jitter[3])], "score": score})
        for _ in range(int(rng.integers(0, 4))):
            w, h = rng.uniform(4, 80, 2)
            detections.append({"image_id": i + 1, "category_id": int(rng.integers(1, classes + 1)),
                               "bbox": [float(rng.uniform(0, 500)), float(rng.uniform(0, 500)), w, h],
                               "score": round(float(rng.random()), 2)})
    return coco, detections


def pycoco_arrays(coco: dict, detections: list[dict], area_ranges, max_dets):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = coco
        gt.createIndex()
        dt = gt.loadRes([dict(d) for d in detections])
        e = COCOeval(gt, dt, "bbox")
        e.params.imgIds = sorted(gt.getImgIds())
        e.params.areaRng = area_ranges
        e.params.areaRngLbl = ["all", *(f"r{i}" for i in range(len(area_ranges) - 1))]
        e.params.maxDets = list(max_dets)
        e.evaluate()
        e.accumulate()
    return e.eval["precision"][..., -1], e.eval["recall"][..., -1]


def duplicated(coco: dict, detections: list[dict], counts: np.ndarray):
    """The dataset with image i present counts[i] times (new ids in the order: each image's copies together)."""
    out = {"images": [], "annotations": [], "categories": coco["categories"]}
    dets = []
    for image, count in zip(sorted(coco["images"], key=lambda im: im["id"]), counts):
        for _ in range(count):
            new = len(out["images"]) + 1
            out["images"].append({**image, "id": new})
            for a in coco["annotations"]:
                if a["image_id"] == image["id"]:
                    out["annotations"].append({**a, "id": len(out["annotations"]) + 1, "image_id": new})
            dets += [{**d, "image_id": new} for d in detections if d["image_id"] == image["id"]]
    return out, dets


AREAS = SIZE_PRESETS["coco"].area_ranges()
LABELS = ("all", *SIZE_PRESETS["coco"].labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accumulate_equals_pycocotools_on_the_data_as_it_is(seed):
    coco, dets = scene(seed)
    matches = stats.per_image_matches(coco, dets, AREAS, LABELS, max_det=100)
    precision, recall = stats.accumulate(matches)
    expected_p, expected_r = pycoco_arrays(coco, dets, AREAS, (1, 10, 100))
    np.testing.assert_array_equal(precision, expected_p)
    np.testing.assert_array_equal(recall, expected_r)


@pytest.mark.parametrize("seed", [3, 4])
def test_a_replicate_equals_pycocotools_on_a_dataset_with_the_drawn_images_copied(seed):
    coco, dets = scene(seed)
    matches = stats.per_image_matches(coco, dets, AREAS, LABELS, max_det=100)
    counts = stats.bootstrap_counts(len(coco["images"]), 3, seed=seed)
    for row in counts:
        assert row.sum() == len(coco["images"])
        precision, recall = stats.accumulate(matches, row)
        expected_p, expected_r = pycoco_arrays(*duplicated(coco, dets, row), AREAS, (1, 10, 100))
        np.testing.assert_array_equal(precision, expected_p)
        np.testing.assert_array_equal(recall, expected_r)


def test_bootstrap_draws_are_deterministic_and_seeded():
    a = stats.bootstrap_counts(10, 50, seed=7)
    np.testing.assert_array_equal(a, stats.bootstrap_counts(10, 50, seed=7))
    assert not np.array_equal(a, stats.bootstrap_counts(10, 50, seed=8))
    assert a.shape == (50, 10) and (a.sum(axis=1) == 10).all()


def test_t_interval_against_scipy():
    from scipy import stats as scipy_stats

    diffs = [0.013, -0.021, 0.034, 0.002]
    got = stats.t_interval(diffs)
    low, high = scipy_stats.t.interval(0.95, len(diffs) - 1, loc=np.mean(diffs), scale=scipy_stats.sem(diffs))
    assert got["ci"] == pytest.approx([low, high], abs=1e-12)
    assert got["half_width"] == pytest.approx((high - low) / 2, abs=1e-12)
    assert stats.t_interval([0.1])["ci"] is None and stats.t_interval([0.1])["mean"] == 0.1


def test_welch_interval_against_scipy_and_its_degenerate_cases():
    from scipy import stats as scipy_stats

    first, second = [-0.112, -0.051, -0.043, -0.110, -0.028], [-0.040, -0.042, 0.036, -0.034, 0.031, 0.002]
    got = stats.welch_interval(first, second)
    reference = scipy_stats.ttest_ind(second, first, equal_var=False)
    assert got["ci"] == pytest.approx(list(reference.confidence_interval(0.95)), abs=1e-12)
    assert got["dof"] == pytest.approx(reference.df, abs=1e-9) and got["n"] == [5, 6]
    assert got["mean"] == pytest.approx(np.mean(second) - np.mean(first), abs=1e-15)  # second minus first
    assert stats.welch_interval([0.1], second)["ci"] is None  # one value has no spread to estimate
    assert stats.welch_interval([0.1, 0.1], [0.3, 0.3])["ci"] == pytest.approx([0.2, 0.2])  # nothing varies


def test_contrast_bootstrap_scores_both_studies_on_each_replicates_draw():
    """The statistic per replicate is (second's seed-mean difference) - (first's), replicate by replicate: the
    same draw on both sides, so a study contrasted with itself gives exactly 0, and noise common to every run on a
    draw cancels instead of widening the interval."""
    rng = np.random.default_rng(1)
    common = rng.normal(0, 0.05, (400, 2))  # what a draw of images does to every run alike
    study = lambda shift: ({s: 0.3 + common + rng.normal(0, 0.002, (400, 2)) for s in (0, 1, 2)},  # noqa: E731
                           {s: 0.3 + shift + common + rng.normal(0, 0.002, (400, 2)) for s in (0, 1, 2, 3)})
    first, second = study(-0.06), study(-0.01)
    out = stats.contrast_bootstrap(first, second, ("AP", "AP50"))
    d = [np.mean([pair[1][s][:, 0] - pair[0][s][:, 0] for s in (0, 1, 2)], axis=0) for pair in (first, second)]
    assert out["AP"]["ci"] == pytest.approx([np.quantile(d[1] - d[0], 0.025), np.quantile(d[1] - d[0], 0.975)])
    assert out["AP"]["n"] == [3, 3]  # seeds with both runs: study two's seed 3 has no baseline
    assert 0.04 < out["AP"]["ci"][0] and out["AP"]["half_width"] < 0.01  # the common noise cancelled
    assert stats.contrast_bootstrap(first, first, ("AP",))["AP"]["ci"] == [0.0, 0.0]
    assert stats.contrast_bootstrap(first, ({}, second[1]), ("AP",))["AP"]["ci"] is None


def test_paired_bootstrap_is_the_percentile_interval_of_the_seed_mean_difference():
    rng = np.random.default_rng(0)
    base = {s: rng.normal(0.3, 0.02, (400, 2)) for s in (0, 1, 2)}
    var = {s: base[s] + rng.normal(0.05, 0.01, (400, 2)) for s in (0, 1, 2)}
    out = stats.paired_bootstrap(base, var, ("AP", "AP50"))
    stat = np.mean([var[s][:, 0] - base[s][:, 0] for s in (0, 1, 2)], axis=0)
    assert out["AP"]["ci"] == pytest.approx([np.quantile(stat, 0.025), np.quantile(stat, 0.975)])
    assert out["AP"]["n"] == 3 and out["AP"]["ci"][0] > 0  # a clear difference is resolved
    assert stats.paired_bootstrap({0: base[0]}, {1: var[1]}, ("AP",))["AP"]["ci"] is None  # no pair, no interval


def test_replicate_metrics_identity_draw_equals_cocoeval_summary():
    coco, dets = scene(5)
    truth = GroundTruth(coco, [c["id"] for c in coco["categories"]], {}, "test")
    official = run_cocoeval(truth, dets)
    matches = stats.per_image_matches(coco, dets, AREAS, LABELS, max_det=100)
    values = stats.replicate_metrics(matches, np.ones((1, len(coco["images"])), int))[0]
    for metric, value in zip(stats.BOOTSTRAP_METRICS, values):
        assert value == pytest.approx(official.metrics[metric], abs=1e-12), metric


def test_a_class_alone_on_a_replicate_equals_pycocotools_restricted_to_that_class():
    """replicate_scopes' per-class values: COCO's summary of that class's slice of pycocotools' own arrays, on the
    dataset with the drawn images copied, and the all-class scope equal to replicate_metrics."""
    coco, dets = scene(6, images=8)
    matches = stats.per_image_matches(coco, dets, AREAS, LABELS, max_det=100)
    counts = np.vstack([np.ones((1, 8), int), stats.bootstrap_counts(8, 3, seed=2)])
    scopes = stats.replicate_scopes(matches, counts, stats.BOOTSTRAP_METRICS, classes=(0, 2))
    assert set(scopes) == {None, 0, 2}
    np.testing.assert_array_equal(scopes[None], stats.replicate_metrics(matches, counts))
    for b, row in enumerate(counts):
        precision, recall = pycoco_arrays(*duplicated(coco, dets, row), AREAS, (1, 10, 100))
        for k in (0, 2):
            p, r = precision[:, :, k, :], recall[:, k, :]
            mean = lambda a: float(a[a > -1].mean()) if (a > -1).any() else -1.0
            expected = {"AP": mean(p[..., 0]), "AP50": mean(p[0, :, 0]), "AP_small": mean(p[..., 1]),
                        "AR_small": mean(r[:, 1])}
            got = dict(zip(stats.BOOTSTRAP_METRICS, scopes[k][b]))
            assert got == pytest.approx(expected, abs=1e-12), (b, k)
    assert not np.array_equal(scopes[0], scopes[2])


# ---- max_dets ---------------------------------------------------------------------------------------------------

def test_max_dets_thresholds_follow_the_dense_scene_protocols():
    assert max_dets_thresholds(100) == (1, 10, 100)
    assert max_dets_thresholds(500) == (1, 10, 100, 500)  # VisDrone-DET
    assert max_dets_thresholds(1500) == (1, 10, 100, 1500)  # AI-TOD's AP at 1500
    assert max_dets_thresholds(50) == (1, 10, 50)
    for bad in (0, -3, 2.5, "many", True):
        with pytest.raises(UsageError, match="max_dets="):
            max_dets_thresholds(bad)


def test_max_dets_raises_recall_and_ap_on_a_dense_scene_and_equals_pycocotools():
    coco, dets = scene(6, images=2, classes=1, dense=400)
    truth = GroundTruth(coco, [1], {}, "test")
    at100, at500 = run_cocoeval(truth, dets), run_cocoeval(truth, dets, max_dets=500)
    assert at500.metrics["AR500"] > 2 * at100.metrics["AR100"]  # 400 objects an image: 100 detections cut recall
    assert at500.metrics["AP"] > 1.5 * at100.metrics["AP"]
    assert at500.metrics["AR100"] == pytest.approx(at100.metrics["AR100"])
    precision, recall = pycoco_arrays(coco, dets, AREAS, (1, 10, 100, 500))
    valid = precision[:, :, :, 0][precision[:, :, :, 0] > -1]
    assert at500.metrics["AP"] == pytest.approx(float(valid.mean()), abs=1e-12)
    small = recall[:, :, 1]
    assert at500.metrics["AR_small"] == pytest.approx(float(small[small > -1].mean()), abs=1e-12)
    assert at500.max_dets == (1, 10, 100, 500)
    assert math.isclose(at100.metrics["AP"], run_cocoeval(truth, dets, max_dets=100).metrics["AP"])


def test_the_summary_names_each_detection_limit_in_its_lines():
    from yolo_spd.evaluation.cocoeval import EvalResult
    from yolo_spd.evaluation.report import summary_lines

    coco, dets = scene(7, images=2, classes=1, dense=150)
    result = run_cocoeval(GroundTruth(coco, [1], {}, "test"), dets, max_dets=500)
    lines = summary_lines(result, color=False)
    assert [line.split("maxDets=")[1].split("]")[0].strip() for line in lines] == [
        "500"] * 6 + ["1", "10", "100", "500"] + ["500"] * 3
    assert "area= small | maxDets=500 ] =" in lines[3] and lines[3].endswith("<- AP_S")
    assert isinstance(result, EvalResult) and f"{result.metrics['AR500']:0.3f}" in lines[9]
