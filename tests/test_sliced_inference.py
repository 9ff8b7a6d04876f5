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


@pytest.mark.parametrize("args, message", [
    (("nms", "IOU", 0.5), "merge='nms' is not allowed; expected one of GREEDYNMM, NMM, NMS"),  # ran greedy NMM
    (("NMS", "iou", 0.5), "metric='iou' is not allowed; expected one of IOS, IOU"),  # ran IoS
    (("NMS", "IOU", 5), r"threshold=5 is not allowed; expected a number in \[0, 1\]"),
    (("NMS", "IOU", float("nan")), "threshold=nan is not allowed"),
])
def test_merge_detections_refuses_names_and_thresholds_it_does_not_know(args, message):
    """merge_detections ran greedy NMM by IoS for any merge or metric it did not recognise (lower case included)."""
    with pytest.raises(ValueError, match=message):
        merge_detections(dets([0, 0, 10, 10, 0.9, 0], [0, 0, 10, 20, 0.8, 0]), *args)


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


# --- end to end on a model trained here ------------------------------------------------------------------------------

SLICE = 160  # the training imgsz and the slice size, as one trains on tiles and predicts by slices
COLOURS = ((40, 40, 240), (40, 230, 40))  # BGR: red, green


def make_small_object_dataset(root: Path, n_train: int = 48, n_val: int = 4, seed: int = 0) -> Path:
    """Small objects (8-20 px squares, 2 classes) on noise: SLICE-px training tiles and larger val images
    (320-415 x 256-351 px, so each val image is several windows). PNG, so every reader decodes the same pixels."""
    import cv2

    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count):
            width, height = (SLICE, SLICE) if split == "train" else (int(rng.integers(320, 416)),
                                                                    int(rng.integers(256, 352)))
            image = rng.integers(0, 50, (height, width, 3), dtype=np.uint8)
            rows = []
            for _ in range(int(rng.integers(width * height // 6000, width * height // 2500 + 2))):
                cls, w, h = int(rng.integers(0, 2)), int(rng.integers(8, 21)), int(rng.integers(8, 21))
                x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
                image[y0 : y0 + h, x0 : x0 + w] = COLOURS[cls]
                rows.append(f"{cls} {(x0 + w / 2) / width:.6f} {(y0 + h / 2) / height:.6f} {w / width:.6f} "
                            f"{h / height:.6f}")
            cv2.imwrite(str(root / "images" / split / f"{i:03d}.png"), image)
            (root / "labels" / split / f"{i:03d}.txt").write_text("\n".join(rows) + "\n")
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames: [red, green]\n")
    return data


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data.yaml, last.pt): yolov8n trained from scratch on 96 tiles for 15 epochs at imgsz=SLICE (about a minute
    on 2 idle cores). It learns a little, and at conf=0.01 reports a hundred or more boxes on the val split with
    scores that differ from box to box: enough to compare two sliced-inference pipelines box by box and by AP_S.
    (``benchmarks/sliced_speed.py --synthetic 40`` does the same with a model trained longer.)"""
    from ultralytics import YOLO

    root = tmp_path_factory.mktemp("sliced")
    data = make_small_object_dataset(root / "data", n_train=96)
    model = YOLO("yolov8n.yaml")
    model.train(data=str(data), epochs=15, imgsz=SLICE, batch=8, optimizer="AdamW", lr0=0.01, warmup_epochs=0,
                mosaic=0.0, workers=0, device="cpu", amp=False, plots=False, val=False, seed=0, verbose=False,
                project=str(root / "runs"), name="train")
    return data, Path(model.trainer.last)


def cli(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "yolo_spd", *argv], cwd=cwd, env=child_env(), capture_output=True,
                          text=True, timeout=600)


def sahi_coco_detections(weights: Path, data: Path, conf: float, **options) -> tuple[list[dict], object]:
    """SAHI's get_sliced_prediction on every val image with the same checkpoint, as COCO detections in the ground
    truth's ids; and that ground truth (label-derived, built by yolo_spd: its own tests check it against the labels)."""
    from sahi import AutoDetectionModel
    from sahi.predict import get_sliced_prediction

    from yolo_spd.evaluation import build_ground_truth, resolve_split

    split = resolve_split(data)
    truth = build_ground_truth(split)
    model = AutoDetectionModel.from_pretrained(model_type="ultralytics", model_path=str(weights), device="cpu",
                                               confidence_threshold=conf, image_size=SLICE)
    detections = []
    for file in split.images:
        result = get_sliced_prediction(str(file), model, slice_height=SLICE, slice_width=SLICE,
                                       overlap_height_ratio=0.2, overlap_width_ratio=0.2, verbose=0, **options)
        for p in result.object_prediction_list:
            x0, y0, x1, y1 = p.bbox.to_xyxy()
            detections.append({"image_id": truth.image_ids[file.name], "category_id": p.category.id + 1,
                               "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(p.score.value)})
    return detections, truth


def pycocotools_ap_small(truth, detections: list[dict]) -> float:
    """AP_S from pycocotools called directly (COCO's default areas), independent of yolo_spd's evaluator."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = truth.coco
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(detections), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[3])


def assert_same_detections(ours: list[dict], theirs: list[dict], at_least: int = 50, share: float = 1.0) -> None:
    """One to one: at least ``share`` of our detections have their own counterpart in ``theirs``, in the same image
    and class, with the same box (within 0.01 px) and score (within 1e-4); and both have as many detections."""
    assert len(ours) == len(theirs) >= at_least
    unmatched, matched = list(theirs), 0
    for d in ours:
        same = [t for t in unmatched if (t["image_id"], t["category_id"]) == (d["image_id"], d["category_id"])]
        best = min(same, key=lambda t: np.abs(np.subtract(t["bbox"], d["bbox"])).max() + abs(t["score"] - d["score"]),
                   default=None)
        if best is not None and np.abs(np.subtract(best["bbox"], d["bbox"])).max() <= 0.01 and abs(
                best["score"] - d["score"]) <= 1e-4:
            unmatched.remove(best)
            matched += 1
    assert matched >= share * len(ours), f"{matched} of {len(ours)} detections matched"


@pytest.mark.slow
def test_sliced_val_cli_writes_the_run_folder_and_agrees_with_sahi(trained, tmp_path):
    pytest.importorskip("sahi")
    data, weights = trained
    argv = ["val", f"weights={weights}", f"data={data}", f"slice={SLICE}", "overlap=0.2", "conf=0.01",
            f"project={tmp_path / 'runs'}", "name=sliced", "exist_ok=True"]
    for _ in range(2):  # exist_ok=True: the second run writes into the same folder
        out = cli(*argv)
        assert out.returncode == 0, out.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["sliced"]
    folder = tmp_path / "runs" / "sliced"
    saved = json.loads((folder / "coco_eval.json").read_text())
    assert set(saved) == {"backend", "size_ranges", "ground_truth", "images", "annotations", "detections", "max_dets",
                          "metrics", "per_class"}  # the schema of an unsliced val
    assert saved["max_dets"] == [1, 10, 100]  # COCO's limits unless max_dets= says otherwise
    assert saved["images"] == 4 and saved["annotations"] > 100
    assert "merge NMS/IOU" in out.stdout and "<- AP_S" in out.stdout  # conf < 0.1: SAHI's rule picks NMS by IoU
    assert out.stdout.strip().splitlines()[-1] == f"Results saved to {folder}"  # as every run ends (it had none)
    ours = json.loads((folder / "coco_predictions.json").read_text())
    assert saved["detections"] == len(ours) and (folder / "coco_eval.csv").is_file()

    theirs, truth = sahi_coco_detections(weights, data, conf=0.01, perform_standard_pred=False)  # SAHI's rule too
    # Batched windows give scores a float rounding away from SAHI's one-window calls; where the model gives two
    # windows' boxes nearly equal scores (this barely trained model does, for window-sized boxes), NMS may keep the
    # other one of the pair. Box-for-box identity is checked unbatched below.
    assert_same_detections(ours, theirs, share=0.95)
    from ultralytics import YOLO

    from yolo_spd.evaluation import EvalSettings, evaluate_model, resolve_split

    unbatched = evaluate_model(YOLO(weights), resolve_split(data), EvalSettings.from_keys(slice=SLICE), conf=0.01,
                               batch=1, project=str(tmp_path), name="unbatched")
    assert unbatched.save_dir == tmp_path / "unbatched" and not unbatched.save_dir.exists()  # nothing written there
    assert_same_detections(unbatched.detections, theirs)
    ap_ours, ap_sahi = pycocotools_ap_small(truth, ours), pycocotools_ap_small(truth, theirs)
    print(f"AP_S yolo_spd {ap_ours:.4f} (its report: {saved['metrics']['AP_small']:.4f}), SAHI {ap_sahi:.4f}")
    assert ap_ours == pytest.approx(saved["metrics"]["AP_small"], abs=1e-6)
    assert abs(ap_ours - ap_sahi) <= 0.03  # the bound; the box-by-box check above is the stronger one


@pytest.mark.slow
def test_sliced_val_with_merging_and_a_whole_image_pass_agrees_with_sahi(trained, tmp_path):
    pytest.importorskip("sahi")
    from ultralytics import YOLO

    from yolo_spd.evaluation import EvalSettings, evaluate_model, resolve_split

    data, weights = trained
    settings = EvalSettings.from_keys(slice=SLICE, overlap=0.2, slice_full=True, postprocess_type="GREEDYNMM",
                                      postprocess_match_metric="IOS")
    evaluation = evaluate_model(YOLO(weights), resolve_split(data), settings, conf=0.01, batch=1,
                                project=str(tmp_path), name="v")
    theirs, truth = sahi_coco_detections(weights, data, conf=0.01, perform_standard_pred=True,
                                         postprocess_type="GREEDYNMM", postprocess_match_metric="IOS",
                                         force_postprocess_type=True)
    assert_same_detections(evaluation.detections, theirs, at_least=10)  # the whole-image pass merges many boxes
    assert abs(evaluation.result.metrics["AP_small"] - pycocotools_ap_small(truth, theirs)) <= 0.03


@pytest.mark.slow
def test_sliced_predict_saves_images_and_labels_like_ultralytics(trained, tmp_path):
    from PIL import Image

    data, weights = trained
    source = data.parent / "images" / "val"
    out = cli("predict", f"model={weights}", f"source={source}", f"slice={SLICE}", "conf=0.01", "save_txt=True",
              "save_conf=True", f"project={tmp_path}", "name=pred")
    assert out.returncode == 0, out.stderr[-2000:]
    folder = tmp_path / "pred"
    assert f"Results saved to {folder}" in out.stdout
    for image in sorted(source.glob("*.png")):
        with Image.open(folder / image.name) as drawn, Image.open(image) as original:
            assert drawn.size == original.size  # full images, boxes drawn at native resolution
            assert np.abs(np.asarray(drawn, float) - np.asarray(original, float)).max() > 100  # something drawn
        rows = np.loadtxt(folder / "labels" / f"{image.stem}.txt", ndmin=2)
        assert rows.shape[1] == 6 and set(rows[:, 0]) <= {0, 1}  # class, x, y, w, h (normalised), conf
        assert (rows[:, 1:5] >= 0).all() and (rows[:, 1:5] <= 1).all() and (rows[:, 5] >= 0.01).all()
    again = cli("predict", f"model={weights}", f"source={source / '000.png'}", f"slice={SLICE}", "conf=0.01",
                f"project={tmp_path}", "name=pred")
    assert again.returncode == 0
    numbered = [p for p in tmp_path.iterdir() if p.name.startswith("pred") and p.name != "pred"]
    assert len(numbered) == 1 and (numbered[0] / "000.png").is_file()  # a new run folder, numbered as Ultralytics


@pytest.mark.slow
def test_sliced_compare_scores_every_model_with_the_same_slicing(trained, tmp_path):
    import shutil

    data, weights = trained
    copies = []
    for run in ("a", "b"):
        copy = tmp_path / run / "weights" / "last.pt"
        copy.parent.mkdir(parents=True)
        shutil.copy(weights, copy)
        copies.append(copy)
    out = cli("compare", f"weights={copies[0]},{copies[1]}", f"data={data}", f"slice={SLICE}", "overlap=0.25",
              "conf=0.01", f"project={tmp_path}", "name=cmp")
    assert out.returncode == 0, out.stderr[-2000:]
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert saved["settings"]["slicing"]["slice"] == SLICE and saved["settings"]["slicing"]["overlap"] == 0.25
    slicing = saved["settings"]["slicing"]  # merge/metric given as None (auto): what conf=0.01 chose is recorded
    assert (slicing["merge"], slicing["metric"], slicing["merge_used"], slicing["metric_used"]) == (
        None, None, "NMS", "IOU")
    assert "merge NMS/IOU >= 0.5" in out.stdout  # as the header said
    last = [line for line in out.stdout.splitlines() if line.startswith("Results saved to")][-1]
    assert last == f"Results saved to {tmp_path / 'cmp'}"  # the compare folder, after each model's own subfolder
    first, second = (m["metrics"] for m in saved["models"])
    assert first == second
    each = json.loads((tmp_path / "cmp" / "a_last" / "coco_eval.json").read_text())
    assert each["metrics"] == first and each["detections"] > 50  # each model's own sliced val beside the table


# --- bad input through the CLI ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [(["slice=16"], "slice=16: a slice must be at least 32 px"),
     (["slice=64", "overlap=1"], r"overlap=1: the overlap must be a fraction in \[0, 1\)"),
     (["slice=64", "overlap=-0.2"], r"overlap=-0.2: the overlap must be a fraction in \[0, 1\)"),
     (["overlap=0.2"], "overlap= applies to sliced inference only; add slice=SIZE"),
     (["slice=64", "predictions=p.json"], "give weights=, not predictions="),
     (["slice=64", "postprocess_type=soft"], "postprocess_type=SOFT: allowed values are GREEDYNMM, NMM, NMS")],
)
def test_bad_slicing_arguments_get_one_error_line(tmp_path, extra, message):
    import re

    args = [a if not a.startswith("predictions=") else f"predictions={tmp_path / 'p.json'}" for a in extra]
    weights = [] if any(a.startswith("predictions=") for a in args) else ["weights=never-loaded.pt"]
    out = cli("val", *weights, "data=coco.yaml", *args, cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("yolo-spd: error: ") and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert re.search(message, out.stderr), out.stderr


def test_slice_smaller_than_the_models_stride_is_refused(tmp_path):
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    model = YOLO("yolov8n.yaml")
    model.model = DetectionModel("yolov8n-p6.yaml", nc=2, verbose=False)  # strides 8-64
    model.save(tmp_path / "p6.pt")
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (200, 100)).save(image)
    out = cli("predict", f"model={tmp_path / 'p6.pt'}", f"source={image}", "slice=48", cwd=tmp_path)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "yolo-spd: error: slice=48: smaller than the model's stride (64 px); use slice >= 64" in out.stderr


@pytest.mark.slow
def test_a_slice_larger_than_every_image_gives_one_window_each_said_once(trained, tmp_path):
    data, weights = trained
    out = cli("val", f"weights={weights}", f"data={data}", "slice=1024", "conf=0.001", f"project={tmp_path}",
              "name=big")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr.count("is at least as large as every image") == 1 and "error" not in out.stderr
    saved = json.loads((tmp_path / "big" / "coco_eval.json").read_text())
    assert saved["images"] == 4 and saved["detections"] > 0  # each whole image at imgsz=1024: a correct result


def test_sliced_predict_line_and_picture_for_an_image_without_detections(tmp_path):
    """An untrained model at conf=0.99 finds nothing: the per-image line gives the window count where `yolo
    predict`'s gives the shape, then Ultralytics' own "(no detections)", and the picture keeps the source's format."""
    import re

    from PIL import Image
    from ultralytics import YOLO

    YOLO("yolov5-spd-n.yaml").save(tmp_path / "untrained.pt")
    image = tmp_path / "a.png"
    Image.new("RGB", (96, 64), (90, 120, 90)).save(image)
    out = cli("predict", f"model={tmp_path / 'untrained.pt'}", f"source={image}", "slice=64", "conf=0.99",
              f"project={tmp_path}", "name=pred", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(line for line in out.stdout.splitlines() if line.startswith("image 1/1 "))
    assert re.fullmatch(rf"image 1/1 {re.escape(str(image))}: 2 windows, \(no detections\), [0-9.]+ms", line), line
    assert [p.name for p in (tmp_path / "pred").iterdir()] == ["a.png"]
    txt = cli("predict", f"model={tmp_path / 'untrained.pt'}", f"source={image}", "slice=64", "conf=0.99", "save_txt",
              "save=False", f"project={tmp_path}", "name=txt", cwd=tmp_path)
    assert txt.returncode == 0, txt.stderr[-2000:]
    assert txt.stdout.strip().splitlines()[-1] == f"0 labels saved to {tmp_path / 'txt' / 'labels'}"
    assert (tmp_path / "txt" / "labels").is_dir() and not any((tmp_path / "txt" / "labels").iterdir())  # named: made
    mpo = tmp_path / "folder" / "b.mpo"  # a format OpenCV reads but cannot write: a cv2.error traceback, 1 of 2 saved
    mpo.parent.mkdir()
    Image.new("RGB", (96, 64), (90, 120, 90)).save(mpo, format="JPEG")
    image.rename(mpo.parent / image.name)
    (mpo.parent / "0.png").write_bytes(b"not an image")  # yolo predict warns and goes on; sliced predict stopped here
    both = cli("predict", f"model={tmp_path / 'untrained.pt'}", f"source={mpo.parent}", "slice=64", "conf=0.99",
               f"project={tmp_path}", "name=both", cwd=tmp_path)
    assert both.returncode == 0, both.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "both").iterdir()) == ["a.png", "b.jpg"]
    assert f"yolo-spd: warning: cannot read image {mpo.parent / '0.png'}; skipped" in both.stderr
    counted = [line.split(" ")[1] for line in both.stdout.splitlines() if line.startswith("image ")]
    assert counted == ["2/3", "3/3"]  # the skipped file keeps its place: the count ends at N/N
    with Image.open(tmp_path / "both" / "b.jpg") as saved:
        assert saved.format == "JPEG" and saved.size == (96, 64)


def test_a_window_size_off_the_stride_is_rounded_once_and_reported_as_used(tmp_path):
    """slice=48 on a stride-32 model: windows run at 64, which the header reports (it said 48), with one note instead
    of Ultralytics' warning for every image; an imgsz= given is named as such."""
    from PIL import Image
    from ultralytics import YOLO

    YOLO("yolov5-spd-n.yaml").save(tmp_path / "untrained.pt")
    for i in range(3):
        Image.new("RGB", (96, 64), (90, 120, 40 * i)).save(tmp_path / f"{i}.png")
    args = [f"model={tmp_path / 'untrained.pt'}", f"source={tmp_path}", "save=False", "conf=0.99"]
    out = cli("predict", *args, "slice=48", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Sliced prediction: slice 48 px, overlap 0.2, imgsz 64, " in out.stdout
    notes = [line for line in out.stderr.splitlines() if "stride" in line]
    assert notes == ["yolo-spd: note: the slice size, 48 px, is not a multiple of the model's stride 32; windows run at "
                     "imgsz=64, as Ultralytics rounds it"], out.stderr
    assert "must be multiple" not in out.stdout + out.stderr
    given = cli("predict", *args, "slice=64", "imgsz=70", cwd=tmp_path)
    assert given.returncode == 0 and "imgsz 96, " in given.stdout
    assert "yolo-spd: note: imgsz=70 is not a multiple of the model's stride 32; windows run at imgsz=96" in given.stderr
    for listed, used in (("[70]", "96"), ("[64]", "[64]"), ("[40,70]", "[64, 96]")):  # [70] was an IndexError
        out = cli("predict", *args, "slice=64", f"imgsz={listed}", cwd=tmp_path)
        assert out.returncode == 0 and f"imgsz {used}, " in out.stdout, out.stderr[-2000:]
        assert ("note:" in out.stderr) == (listed != "[64]")  # [64] is 64 x 64: nothing to round, nothing to say


def test_an_export_of_fixed_size_predicts_windows_at_that_size_and_says_so(tmp_path):
    """Ultralytics' predictor runs an export without dynamic shapes at its export size whatever imgsz= says, so the
    windows are resized to it; the header used to print imgsz as the slice size (compare then showed the same weights
    far apart with nothing said). Now the header has the size used and a note says why."""
    from PIL import Image
    from ultralytics import YOLO

    YOLO("yolov5-spd-n.yaml").save(tmp_path / "untrained.pt")
    onnx = YOLO(tmp_path / "untrained.pt").export(format="onnx", imgsz=64)
    image = tmp_path / "a.png"
    Image.new("RGB", (96, 64), (90, 120, 90)).save(image)
    out = cli("predict", f"model={onnx}", f"source={image}", "slice=32", "conf=0.99", f"project={tmp_path}",
              "name=pred", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    notes = [line for line in out.stderr.splitlines() if "note:" in line]
    assert notes == [f"yolo-spd: note: {onnx} takes a fixed 64 px input (exported without dynamic=True), so each 32 px "
                     "window is resized to it, not to imgsz=32; export it with imgsz=32 (or dynamic=True) to predict "
                     "windows at their own size"]
    assert "Sliced prediction: slice 32 px, overlap 0.2, imgsz 64, " in out.stdout
    same = cli("predict", f"model={onnx}", f"source={image}", "slice=64", "save=False", cwd=tmp_path)
    assert same.returncode == 0 and "note:" not in same.stderr and "imgsz 64, " in same.stdout
