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


# --- determinism -----------------------------------------------------------------------------------------------------

ALL_MODULES_YAML = """\
nc: 2
depth_multiple: 1.0
width_multiple: 1.0
backbone:
  - [-1, 1, Conv, [16, 3, 2]]      # 0  P1/2
  - [-1, 1, SPDConv, [32, 3]]      # 1  P2/4
  - [-1, 1, SCConv, [32, 3, 2]]    # 2  P3/8
  - [-1, 1, SSDConv, [64, 3, 2]]   # 3  P4/16
  - [-1, 1, SPDConv, [64, 3]]      # 4  P5/32
head:
  - [[2, 3, 4], 1, Detect, [nc]]
"""


@pytest.mark.slow
def test_same_seed_gives_identical_weights_after_one_cpu_epoch(tmp_path):
    import torch
    from ultralytics import YOLO

    data = make_yolo_dataset(tmp_path / "data", n_train=8, n_val=2)
    model_yaml = tmp_path / "all-modules.yaml"
    model_yaml.write_text(ALL_MODULES_YAML)

    def train(name: str) -> dict:
        YOLO(str(model_yaml)).train(
            data=str(data), epochs=1, imgsz=64, batch=4, workers=0, device="cpu", seed=7, deterministic=True,
            amp=False, plots=False, val=False, project=str(tmp_path / "runs"), name=name, verbose=False,
        )
        checkpoint = torch.load(tmp_path / "runs" / name / "weights" / "last.pt", weights_only=False)
        return checkpoint["ema"].float().state_dict() if checkpoint.get("ema") else checkpoint["model"].state_dict()

    first, second = train("a"), train("b")
    assert first.keys() == second.keys() and any("cru" in k or "sru" in k for k in first)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    initial = YOLO(str(model_yaml)).model.state_dict()
    assert any(not torch.equal(first[k].float(), initial[k].float()) for k in first if k in initial)  # it trained


# --- safe checkpoint loading -------------------------------------------------------------------------------------------

FOREIGN_MODULE = '''
import torch
from pathlib import Path

class Foreign(torch.nn.Module):
    def __setstate__(self, state):
        Path("UNPICKLED_FOREIGN_CODE").write_text("ran")
        super().__setstate__(state)
'''


def test_restricted_loading_accepts_ours_and_refuses_foreign_classes(tmp_path):
    import subprocess
    import sys

    import torch
    from ultralytics import YOLO

    from .conftest import child_env

    (tmp_path / "foreign_mod.py").write_text(FOREIGN_MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        from foreign_mod import Foreign

        ours = YOLO("yolov5-spd-n.yaml").model
        torch.save({"model": ours, "train_args": {}}, tmp_path / "ours.pt")
        ours.extra = Foreign()
        torch.save({"model": ours, "train_args": {}}, tmp_path / "foreign.pt")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("foreign_mod", None)

    def load(name: str) -> subprocess.CompletedProcess:
        code = f"import yolo_spd\nfrom ultralytics import YOLO\nprint(type(YOLO({name!r}).model.model[2]).__name__)\n"
        env = child_env(ULTRALYTICS_SAFE_LOAD="true")
        env["PYTHONPATH"] += f"{__import__('os').pathsep}{tmp_path}"
        return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)

    accepted = load("ours.pt")
    assert accepted.returncode == 0 and accepted.stdout.split()[-1] == "SpaceToDepth", accepted.stderr[-2000:]
    refused = load("foreign.pt")
    assert refused.returncode != 0 and "references types outside" in refused.stderr
    assert not (tmp_path / "UNPICKLED_FOREIGN_CODE").exists()  # the foreign class's code never ran
