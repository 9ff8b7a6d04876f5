"""Failure paths (issue 7): the evaluation's ground truth agrees with Ultralytics' dataloader on broken data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from yolo_spd.evaluation import build_ground_truth, resolve_split

from .conftest import make_yolo_dataset


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_SPD_CACHE", str(tmp_path / "cache"))


def broken_dataset(root: Path) -> Path:
    """A val split with one of each problem a real dataset has."""
    data = make_yolo_dataset(root, n_train=2, n_val=9)
    labels, images = root / "labels" / "val", root / "images" / "val"
    (images / "000.jpg").write_bytes(b"\xff\x00 truncated garbage")  # corrupt image
    (labels / "001.txt").write_text("")  # empty label file
    (labels / "002.txt").write_text("0 1.2 0.5 0.1 0.1\n")  # out-of-range coordinates
    (labels / "003.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n")  # duplicate box
    (labels / "004.txt").write_text("0 0.995 0.5 0.02 0.1\n")  # overhangs the border (allowed, clipped)
    (labels / "005.txt").write_text("1 0.1 0.1 0.3 0.1 0.3 0.3 0.1 0.3\n")  # a polygon row
    (labels / "006.txt").write_text("0 0.5 0.5 0.2\n")  # a missing column
    (labels / "007.txt").write_text("2 0.5 0.5 0.2 0.2\n")  # class id >= nc
    return data


def dataloader_labels(data: Path) -> dict[str, np.ndarray]:
    """What Ultralytics' validation dataloader keeps: image name -> (N, 5) rows of class and xyxy in pixels."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    info = check_det_dataset(str(data))
    dataset = build_yolo_dataset(get_cfg(overrides={"imgsz": 64}), info["val"], 4, info, mode="val")
    kept = {}
    for label in dataset.labels:
        (h, w), (cx, cy, bw, bh) = label["shape"], label["bboxes"].T
        xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1).clip(0, 1) * [w, h, w, h]
        kept[Path(label["im_file"]).name] = np.concatenate([label["cls"].reshape(-1, 1), xyxy], 1)
    return kept


def ground_truth_rows(truth) -> dict[str, np.ndarray]:
    rows = {name: [] for name in truth.image_ids}
    names = {image_id: name for name, image_id in truth.image_ids.items()}
    for ann in truth.coco["annotations"]:
        x, y, w, h = ann["bbox"]
        rows[names[ann["image_id"]]].append([ann["category_id"] - 1, x, y, x + w, y + h])
    return {name: np.array(r).reshape(-1, 5) for name, r in rows.items()}


def sorted_rows(rows: np.ndarray) -> np.ndarray:
    return rows[np.lexsort(rows.T[::-1])] if len(rows) else rows


def test_ground_truth_keeps_exactly_the_images_and_boxes_the_dataloader_keeps(tmp_path):
    data = broken_dataset(tmp_path / "data")
    expected = dataloader_labels(data)
    truth = build_ground_truth(resolve_split(data))
    ours = ground_truth_rows(truth)
    assert sorted(ours) == sorted(expected) == ["001.jpg", "003.jpg", "004.jpg", "005.jpg", "008.jpg"]
    for name in expected:
        np.testing.assert_allclose(sorted_rows(ours[name]), sorted_rows(expected[name]), atol=1e-3, err_msg=name)
    assert len(truth.skipped) == 4  # corrupt image, out-of-range, missing column, class >= nc


def test_a_corrupt_image_never_makes_evaluation_reach_for_pip(tmp_path, monkeypatch):
    """Ultralytics' patched Image.open pip-installs a HEIF plugin for unidentified files; ours must not get there."""
    from ultralytics.utils import checks

    calls = []
    monkeypatch.setattr(checks, "check_requirements", lambda *a, **k: calls.append(a))
    data = broken_dataset(tmp_path / "data")
    build_ground_truth(resolve_split(data))
    assert calls == []
