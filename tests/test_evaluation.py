"""COCO evaluation: official JSON vs label-derived ground truth, agreement with pycocotools called directly, both
backends, size ranges, and every kind of bad input. Tests on ../shared/data/coco-tiny skip when it is absent."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from yolo_spd.errors import UsageError
from yolo_spd.evaluation import build_ground_truth, evaluate_predictions, resolve_split, run_cocoeval, size_ranges
from yolo_spd.evaluation.ground_truth import GroundTruth, image_size, label_path, labels_ground_truth
from yolo_spd.evaluation.predictions import align_predictions, read_predictions

from .conftest import SHARED, make_yolo_dataset

COCO_TINY = SHARED / "data" / "coco-tiny"
needs_coco_tiny = pytest.mark.skipif(not (COCO_TINY / "data.yaml").is_file(), reason="../shared/data/coco-tiny absent")
SUMMARY_KEYS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100", "AR_small",
                "AR_medium", "AR_large")  # the order of pycocotools' stats


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_SPD_CACHE", str(tmp_path / "cache"))


def perturbed_detections(annotations: list[dict], seed: int = 0) -> list[dict]:
    """Ground truth boxes jittered, some dropped, plus false positives, with scores: a plausible detector output."""
    rng = np.random.default_rng(seed)
    detections = []
    for ann in annotations:
        if ann.get("iscrowd") or rng.random() < 0.15:
            continue
        x, y, w, h = ann["bbox"]
        jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
        box = [x + jitter[0], y + jitter[1], max(1.0, w + jitter[2]), max(1.0, h + jitter[3])]
        detections.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": box,
                           "score": float(rng.uniform(0.2, 1.0))})
        if rng.random() < 0.3:
            detections.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                               "bbox": [x + w, y + h, w, h], "score": float(rng.uniform(0.0, 0.5))})
    return detections


def pycocotools_stats(gt_file: Path, det_file: Path, image_ids: list) -> np.ndarray:
    """The 12 numbers from pycocotools used exactly as its README shows."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        dt = gt.loadRes(str(det_file))
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def ours(result) -> np.ndarray:
    return np.array([result.metrics[k] for k in SUMMARY_KEYS])


# --- COCO itself: the official JSON ---------------------------------------------------------------------------------


@needs_coco_tiny
def test_coco_tiny_uses_the_official_json_and_ground_truth_scores_one(tmp_path):
    split = resolve_split(COCO_TINY / "data.yaml")
    assert split.coco_json == (COCO_TINY / "annotations" / "instances_val2017.json").resolve()  # standard layout
    train = resolve_split(COCO_TINY / "data.yaml", "train")  # images/train: found as instances_train2017.json
    assert train.coco_json == (COCO_TINY / "annotations" / "instances_train2017.json").resolve()
    truth = build_ground_truth(split)
    assert truth.is_official
    detections = [{**{k: a[k] for k in ("image_id", "category_id", "bbox")}, "score": 1.0}
                  for a in truth.coco["annotations"] if not a["iscrowd"]]
    file = tmp_path / "gt_as_detections.json"
    file.write_text(json.dumps(detections))
    result = evaluate_predictions(resolve_split(COCO_TINY / "data.yaml"), file)
    assert result.metrics["AP"] == pytest.approx(1.0) and result.metrics["AP_small"] == pytest.approx(1.0)


@needs_coco_tiny
@pytest.mark.parametrize("seed", [0, 1])
def test_official_path_gives_pycocotools_numbers_exactly(tmp_path, seed):
    gt_file = COCO_TINY / "annotations" / "instances_val2017.json"
    coco = json.loads(gt_file.read_text())
    det_file = tmp_path / "detections.json"
    det_file.write_text(json.dumps(perturbed_detections(coco["annotations"], seed)))
    data = tmp_path / "coco-tiny.yaml"  # a folder-style YAML naming the JSON explicitly
    data.write_text(f"path: {COCO_TINY}\ntrain: images/train\nval: images/val\n"
                    f"coco_json: annotations/instances_val2017.json\nnames: {json.dumps(resolve_names())}\n")
    result = evaluate_predictions(resolve_split(data), det_file)
    expected = pycocotools_stats(gt_file, det_file, sorted(im["id"] for im in coco["images"]))
    np.testing.assert_allclose(ours(result), expected, atol=1e-6, rtol=0)
    assert 0.1 < result.metrics["AP_small"] < 0.9  # a non-trivial score, so the comparison means something


def resolve_names() -> list[str]:
    return list(resolve_split(COCO_TINY / "data.yaml").names)


@needs_coco_tiny
def test_label_derived_ground_truth_gives_a_different_ap_small_on_coco(tmp_path):
    """The same detections scored against the YOLO labels (box areas, no crowd) and the official JSON differ."""
    split = resolve_split(COCO_TINY / "data.yaml")
    official = build_ground_truth(split, "json")
    derived = build_ground_truth(split, "labels")
    assert not derived.is_official
    to_label_id = {cat: i + 1 for i, cat in enumerate(official.category_ids)}
    official_dets = perturbed_detections(official.coco["annotations"])
    label_dets = [{**d, "category_id": to_label_id[d["category_id"]]} for d in official_dets]
    a = run_cocoeval(official, official_dets)
    b = run_cocoeval(derived, label_dets)
    assert a.metrics["AP_small"] != pytest.approx(b.metrics["AP_small"], abs=1e-3)
    small = lambda truth: sum(x["area"] < 32**2 and not x["iscrowd"] for x in truth.coco["annotations"])  # noqa: E731
    assert small(official) > small(derived)  # mask areas put more objects in "small" than box areas do


@needs_coco_tiny
def test_backends_agree_on_coco_tiny(tmp_path):
    truth = build_ground_truth(resolve_split(COCO_TINY / "data.yaml"))
    detections = perturbed_detections(truth.coco["annotations"], seed=3)
    a, b = run_cocoeval(truth, detections), run_cocoeval(truth, detections, backend="faster")
    np.testing.assert_allclose(ours(a), ours(b), atol=1e-4, rtol=0)


# --- label-derived ground truth ---------------------------------------------------------------------------------------


@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_yolo_dataset(tmp_path / "data", n_train=2, n_val=6, size=96)


def test_label_derived_boxes_are_pixel_boxes_of_the_label_rows(dataset):
    split = resolve_split(dataset)
    truth = build_ground_truth(split)
    assert truth.source.startswith("YOLO labels")
    image = split.images[0]
    rows = np.loadtxt(label_path(image), ndmin=2)
    anns = [a for a in truth.coco["annotations"] if a["image_id"] == truth.image_ids[image.name]]
    assert len(anns) == len(rows)
    for row, ann in zip(rows, anns):
        cls, cx, cy, w, h = row
        assert ann["category_id"] == int(cls) + 1
        np.testing.assert_allclose(ann["bbox"], [(cx - w / 2) * 96, (cy - h / 2) * 96, w * 96, h * 96], atol=1e-3)
        assert ann["area"] == pytest.approx(w * h * 96 * 96, rel=1e-4) and ann["iscrowd"] == 0


def test_ground_truth_follows_ultralytics_label_rules(dataset, capsys):
    root = dataset.parent
    labels, images = root / "labels" / "val", root / "images" / "val"
    (labels / "000.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n1 0.95 0.95 0.2 0.2\n")  # dup + overhang
    (labels / "001.txt").write_text("5 0.5 0.5 0.1 0.1\n")  # class out of range: image skipped
    (labels / "002.txt").write_text("")  # empty: image kept, no objects
    (images / "003.jpg").write_bytes(b"not an image")  # unreadable: skipped
    (labels / "004.txt").unlink()  # no label file: image kept, no objects
    truth = build_ground_truth(resolve_split(dataset))
    kept = sorted(truth.image_ids)
    assert kept == ["000.jpg", "002.jpg", "004.jpg", "005.jpg"]
    assert len(truth.skipped) == 2 and "out of range" in " ".join(truth.skipped)
    first = [a for a in truth.coco["annotations"] if a["image_id"] == truth.image_ids["000.jpg"]]
    assert len(first) == 2  # the duplicate row counts once
    x, y, w, h = first[1]["bbox"]
    assert x + w == pytest.approx(96) and y + h == pytest.approx(96)  # clipped to the image


def test_image_list_naming_a_missing_file_scores_the_rest_and_says_so(dataset, tmp_path):
    root = dataset.parent
    listing = root / "val.txt"
    listing.write_text("./images/val/000.jpg\n./images/val/001.jpg\n./images/val/gone.jpg\n")
    data = tmp_path / "listed.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: val.txt\nnames: [red, green]\n")
    truth = build_ground_truth(resolve_split(data))
    assert sorted(truth.image_ids) == ["000.jpg", "001.jpg"]
    result = run_cocoeval(truth, [])
    assert result.images == 2 and "1 image(s) left out" in result.ground_truth and "gone.jpg" in result.ground_truth


def test_image_size_applies_exif_rotation(tmp_path):
    from PIL import Image

    file = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.new("RGB", (40, 20)).save(file, exif=exif)
    assert image_size(file) == (20, 40)
    import cv2

    assert cv2.imread(str(file)).shape[:2] == (40, 20)  # what Ultralytics' loader sees: height 40, width 20


def test_ground_truth_cache_is_reused_and_rebuilt_when_a_label_changes(dataset, monkeypatch):
    split = resolve_split(dataset)
    first = labels_ground_truth(list(split.images), list(split.names))
    from yolo_spd.evaluation import ground_truth as module

    def fail(*_):
        raise AssertionError("rebuilt although nothing changed")

    monkeypatch.setattr(module, "build_from_labels", fail)
    assert labels_ground_truth(list(split.images), list(split.names)).coco == first.coco
    monkeypatch.undo()
    label = label_path(split.images[0])
    label.write_text("1 0.5 0.5 0.5 0.5\n")
    changed = labels_ground_truth(list(split.images), list(split.names))
    image_id = changed.image_ids[split.images[0].name]
    assert [a["category_id"] for a in changed.coco["annotations"] if a["image_id"] == image_id] == [2]


# --- backends and size ranges -----------------------------------------------------------------------------------------


def one_image_truth(sides: list[float]) -> GroundTruth:
    annotations = [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [60.0 * i, 0.0, s, s], "area": s * s,
                    "iscrowd": 0} for i, s in enumerate(sides)]
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 400, "height": 100}], "annotations": annotations,
            "categories": [{"id": 1, "name": "thing"}]}
    return GroundTruth(coco=coco, category_ids=[1], image_ids={"a.jpg": 1}, source="test")


def test_aitod_ranges_split_objects_by_sqrt_area():
    truth = one_image_truth([5, 12, 24, 50])
    found = [{"image_id": 1, "category_id": 1, "bbox": a["bbox"], "score": 0.9} for a in truth.coco["annotations"][:2]]
    m = run_cocoeval(truth, found, size_ranges("aitod")).metrics
    assert (m["AP_verytiny"], m["AP_tiny"], m["AP_small"], m["AP_medium"]) == pytest.approx((1, 1, 0, 0))
    assert m["AR_verytiny"] == pytest.approx(1) and m["AR_medium"] == pytest.approx(0)
    coco = run_cocoeval(truth, found).metrics  # COCO: 5, 12 and 24 px are all "small"; 2 of 3 found, none wrong
    assert coco["AP_small"] == pytest.approx(67 / 101)  # precision 1 at the 67 recall points 0.00 ... 0.66


def test_custom_size_bounds():
    ranges = size_ranges("0,10,30")
    assert ranges.labels == ("0-10", "10-30", "30+")
    truth = one_image_truth([5, 20, 40])
    found = [{"image_id": 1, "category_id": 1, "bbox": truth.coco["annotations"][1]["bbox"], "score": 0.9}]
    m = run_cocoeval(truth, found, ranges).metrics
    assert (m["AP_0-10"], m["AP_10-30"], m["AP_30+"]) == pytest.approx((0, 1, 0))


@pytest.mark.parametrize("bad", ["tiny", "32", "32,16", "-1,5", "a,b"])
def test_bad_size_ranges_are_refused(bad):
    with pytest.raises(UsageError, match=r"sizes=.*coco, aitod"):
        size_ranges(bad)


def test_backends_agree_on_generated_data(dataset):
    truth = build_ground_truth(resolve_split(dataset))
    detections = perturbed_detections(truth.coco["annotations"], seed=5)
    for sizes in ("coco", "aitod"):
        a = run_cocoeval(truth, detections, size_ranges(sizes))
        b = run_cocoeval(truth, detections, size_ranges(sizes), backend="faster")
        assert a.metrics.keys() == b.metrics.keys()
        np.testing.assert_allclose(list(a.metrics.values()), list(b.metrics.values()), atol=1e-4, rtol=0)


def test_unknown_backend_is_refused(dataset):
    truth = build_ground_truth(resolve_split(dataset))
    with pytest.raises(UsageError, match="backend=fast: allowed backends are pycocotools, faster"):
        run_cocoeval(truth, [], backend="fast")


# --- bad input ------------------------------------------------------------------------------------------------------


def test_no_detections_scores_zero(dataset, tmp_path):
    file = tmp_path / "none.json"
    file.write_text("[]")
    result = evaluate_predictions(resolve_split(dataset), file)
    assert result.metrics["AP"] == 0 and result.metrics["AR100"] == 0 and result.detections == 0


def test_ids_written_as_whole_floats_score_as_integers(dataset, tmp_path):
    """NumPy conversions write ids as 1.0: they name the same image and category as 1, and come out as integers."""
    split = resolve_split(dataset)
    detections = perturbed_detections(build_ground_truth(split).coco["annotations"], seed=3)
    as_int, as_float = tmp_path / "int.json", tmp_path / "float.json"
    as_int.write_text(json.dumps(detections))
    as_float.write_text(json.dumps([{**d, "image_id": float(d["image_id"]), "category_id": float(d["category_id"])}
                                    for d in detections]))
    assert '.0, "category_id": ' in as_float.read_text()
    a, b = evaluate_predictions(split, as_int), evaluate_predictions(split, as_float)
    assert a.metrics == b.metrics and a.metrics["AP"] > 0
    aligned = align_predictions(read_predictions(as_float), build_ground_truth(split), "predictions=float.json")
    assert all(type(d["category_id"]) is int for d in aligned)

def stem_and_id_clash(tmp_path):
    """(split, ground truth) of a val split of 2.jpg and x.jpg: ground-truth ids 1 and 2, so 2 is also 2.jpg's stem."""
    data = make_yolo_dataset(tmp_path / "data", n_train=1, n_val=2, size=96, seed=4)
    val = data.parent / "images" / "val"
    for old, new in (("000", "2"), ("001", "x")):
        (val / f"{old}.jpg").rename(val / f"{new}.jpg")
        label_path(val / f"{old}.jpg").rename(label_path(val / f"{new}.jpg"))
    split = resolve_split(data)
    return split, build_ground_truth(split)


def test_numeric_image_ids_name_the_image_the_files_convention_means(tmp_path):
    """A split with 2.jpg and x.jpg: ground-truth ids 1 (2.jpg) and 2 (x.jpg), so the number 2 is both 2.jpg's stem
    and x.jpg's id. Ultralytics' convention (stem 2 and "x") and the ground truth's ids (coco_predictions.json) both
    score the exact boxes as AP 1; a file of numbers alone that reads either way is refused, naming both images (it
    scored 2.jpg's boxes on x.jpg: AP 0.27, exit 0)."""
    split, truth = stem_and_id_clash(tmp_path)
    assert truth.image_ids == {"2.jpg": 1, "x.jpg": 2}
    anns = truth.coco["annotations"]
    stem_of = {1: 2, 2: "x"}
    exact = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
             for a in anns]
    files = {"ultralytics.json": [{**d, "image_id": stem_of[d["image_id"]]} for d in exact],
             "ground-truth-ids.json": exact}
    for name, detections in files.items():
        (tmp_path / name).write_text(json.dumps(detections))
        assert evaluate_predictions(split, tmp_path / name).metrics["AP"] == pytest.approx(1.0), name
    named = [{**d, "image_id": 2, "file_name": "x.jpg"} for d in exact if d["image_id"] == 2]
    assert {d["image_id"] for d in align_predictions(named, truth, "w")} == {2}  # the file_name decides
    only_2 = [{**d, "image_id": 2} for d in exact if d["image_id"] == 1]  # 2.jpg's boxes: by stem, or x.jpg's id?
    (tmp_path / "ambiguous.json").write_text(json.dumps(only_2))
    with pytest.raises(UsageError, match=r'ambiguous.json: image_id=2 is ambiguous: the file stem of 2.jpg and the '
                                         r"ground truth's image id of x.jpg; give each detection its file_name, or "
                                         r'write the image ids as file names \("2.jpg"\)$'):
        evaluate_predictions(split, tmp_path / "ambiguous.json")
    with_unknown = [*only_2, {**only_2[0], "image_id": 99}]  # 99 names no image: that is the error, not 2
    with pytest.raises(UsageError, match=f"detection {len(only_2)} names image 99, which is not in the evaluated "):
        align_predictions(with_unknown, truth, "w")


def test_the_detections_file_val_writes_scores_again_where_its_ids_are_other_images_stems(tmp_path):
    """coco_predictions.json (ground-truth ids) carries each image's file_name: boxes found only on x.jpg (id 2, and
    2 is 2.jpg's stem) score again under val predictions= as they scored the first time; without the file names
    the file was refused as ambiguous."""
    from yolo_spd.evaluation import ModelEvaluation, save_detections

    split, truth = stem_and_id_clash(tmp_path)
    found = [{"image_id": 2, "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
             for a in truth.coco["annotations"] if a["image_id"] == 2]
    first = run_cocoeval(truth, found)
    written = save_detections(ModelEvaluation(first, truth, found, tmp_path, None), tmp_path)
    assert {d["file_name"] for d in json.loads(written.read_text())} == {"x.jpg"}
    assert evaluate_predictions(split, written).metrics == first.metrics


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "the file is empty"),
        ("[{", "not valid JSON"),
        ('{"a": 1}', "expected a JSON list of detections, found a dict"),
        ('[{"image_id": 0, "bbox": [0, 0, 1, 1], "score": 1}]', "detection 0 lacks category_id"),
        ('[{"image_id": 0, "category_id": 1, "bbox": [0, 0, 1], "score": 1}]', "bbox=\\[0, 0, 1\\]"),
        ('[{"image_id": 0, "category_id": 1, "bbox": [0, 0, 1, 1], "score": "high"}]', "score='high'"),
        ('[{"image_id": 999, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]', "names image 999"),
        ('[{"image_id": 0, "category_id": 7, "bbox": [0, 0, 1, 1], "score": 1}]', "category_id=7"),
        ('[{"image_id": [0], "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]', "image_id=\\[0\\]"),
        ('[{"image_id": 0, "category_id": [1], "bbox": [0, 0, 1, 1], "score": 1}]', "category_id=\\[1\\]"),
        ('[{"image_id": 0, "category_id": true, "bbox": [0, 0, 1, 1], "score": 1}]', "category_id=True"),
        ('[{"image_id": 0, "category_id": 1.5, "bbox": [0, 0, 1, 1], "score": 1}]', "category_id=1.5"),
        ('[{"image_id": 0, "file_name": {}, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]', "file_name=\\{\\}"),
        ('[]'.encode("utf-16"), r"bad.json is not a text file \(not UTF-8\), so not a JSON file$"),  # a traceback
    ],
)
def test_malformed_predictions_get_one_clear_error(dataset, tmp_path, content, message):
    file = tmp_path / "bad.json"
    file.write_bytes(content) if isinstance(content, bytes) else file.write_text(content)
    with pytest.raises(UsageError, match=message) as error:
        evaluate_predictions(resolve_split(dataset), file)
    assert "\n" not in str(error.value) and "predictions=" in str(error.value)


def test_missing_dataset_says_where_it_looked_and_never_downloads(tmp_path):
    data = tmp_path / "gone.yaml"
    data.write_text(f"path: {tmp_path / 'nowhere'}\ntrain: images/train\nval: images/val\nnames: [a]\n"
                    "download: https://example.com/data.zip\n")
    with pytest.raises(UsageError, match=r"val images not found at .*nowhere.*never downloads"):
        resolve_split(data)


def test_packaged_coco_yaml_resolves_by_bare_name_and_names_the_official_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=r"data=coco.yaml: val images not found at .*images/val2017"):
        resolve_split("coco.yaml")
    from yolo_spd.evaluation.dataset import load_yaml

    _, content = load_yaml("coco.yaml")
    assert content["coco_json"] == "annotations/instances_val2017.json" and len(content["names"]) == 80


# --- settings and resolution ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "keys, message",
    [({"backend": "fast"}, "backend=fast: allowed backends are pycocotools, faster"),
     ({"gt": "official"}, "gt=official: allowed values are auto, json, labels"),
     ({"sizes": "tiny"}, "sizes=tiny: use a preset")],
)
def test_eval_settings_refuse_each_bad_key_with_one_line(keys, message):
    from yolo_spd.evaluation import EvalSettings

    with pytest.raises(UsageError, match=message) as error:
        EvalSettings.from_keys(**keys)
    assert "\n" not in str(error.value)


@needs_coco_tiny
def test_the_coco_json_is_parsed_once_for_resolving_and_scoring(tmp_path, monkeypatch):
    from yolo_spd.evaluation import dataset as module

    module._read_json.cache_clear()
    split = resolve_split(COCO_TINY / "data.yaml")  # finds the JSON by reading it
    truth = build_ground_truth(split)  # builds the ground truth from it
    assert truth.is_official and module._read_json.cache_info().misses == 1
    file = tmp_path / "none.json"
    file.write_text("[]")
    evaluate_predictions(split, file)
    assert module._read_json.cache_info().misses == 1
