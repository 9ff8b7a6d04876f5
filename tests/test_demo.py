"""The built-in demo: its synthetic dataset, the detector its settings produce, and `yolo-spd train` end to end.

The full demo takes minutes on a CPU, too long for the suite. Its result is checked through the checkpoint in
``weights/`` instead, which is that demo's own output (weights/README.md gives the command): the checkpoint must have
been made with the demo's current settings and data, and must detect most val objects at Ultralytics' default
confidence, as the user is told it will. A one-epoch `yolo-spd train` checks the pipeline around it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from yolo_spd import cli, demo

from .conftest import REPO, child_env, ultralytics_settings_folder

CHECKPOINT = REPO / "weights" / "yolov5-spd-n-demo.pt"
# sha256 of the label files of each generator version (see _labels_digest). A different digest means the generator
# changed: bump demo.DEMO_NAME (so cached copies are not reused), put its digest here and remake weights/.
LABELS_SHA256 = {"spd-synth-v3": "bdc1fdadc726595bf648ab1af1fce2367f3fb5c0b39a8d526f0e38cc3a15a0f4"}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / demo.DEMO_NAME
    demo.generate(root)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def _labels_digest(root: Path) -> str:
    sha = hashlib.sha256()
    for name, content in _files(root / "labels").items():
        sha.update(name.encode() + b"\0" + content)
    return sha.hexdigest()


def _labels(file: Path) -> np.ndarray:
    """YOLO label rows (class, cx, cy, w, h[, conf]) of one image; empty (0, 5) if the file is missing."""
    return np.loadtxt(file, ndmin=2) if file.is_file() and file.stat().st_size else np.zeros((0, 5))


def test_demo_dataset_is_the_same_every_time_it_is_generated(demo_root, tmp_path):
    again = tmp_path / demo.DEMO_NAME
    demo.generate(again)
    first, second = _files(demo_root), _files(again)
    assert first.keys() == second.keys()
    assert sum(name.startswith("images/train/") for name in first) == demo.SPLITS["train"]
    assert sum(name.startswith("labels/val/") for name in first) == demo.SPLITS["val"]
    changed = [name for name in first if name != "data.yaml" and first[name] != second[name]]
    assert not changed  # data.yaml differs only in the path it names


def test_demo_generator_version_matches_its_name(demo_root):
    """Changing the generator without bumping DEMO_NAME would silently reuse old cached datasets."""
    assert _labels_digest(demo_root) == LABELS_SHA256.get(demo.DEMO_NAME), (
        "the demo generator's labels changed: bump DEMO_NAME, record the new digest and remake weights/")


def test_demo_objects_are_small_and_labelled_where_they_are_drawn(demo_root):
    import cv2

    sides, hue_ok, bright = [], [], []
    for label_file in sorted((demo_root / "labels").rglob("*.txt")):
        split = label_file.parent.name
        image = cv2.imread(str(demo_root / "images" / split / f"{label_file.stem}.jpg"))
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(int)
        rows = _labels(label_file)
        assert demo.OBJECTS_PER_IMAGE[0] - 2 <= len(rows) <= demo.OBJECTS_PER_IMAGE[1]
        for cls, cx, cy, w, h in rows:
            assert w == h and min(cx, cy) - w / 2 > -1e-5 and max(cx, cy) + w / 2 < 1 + 1e-5  # inside (6 decimals)
            sides.append(w * demo.IMAGE_SIZE)
            hue, _, value = hsv[int(cy * demo.IMAGE_SIZE), int(cx * demo.IMAGE_SIZE)]
            distance = abs(hue - demo.HUES[int(cls)])
            hue_ok.append(min(distance, 180 - distance) <= demo.HUE_JITTER + 6)
            bright.append(value >= 150)
    sides = np.round(sides, 2)  # labels keep 6 decimals
    assert sides.min() >= demo.SIZE_RANGE[0] and sides.max() <= demo.SIZE_RANGE[1]
    assert np.mean(sides < 32) > 0.8  # mostly COCO-small objects
    # The centre of every box lies on its object: bright and in its class's colour (JPEG blurs a few tiny ones).
    assert np.mean(hue_ok) > 0.97 and np.mean(bright) > 0.97


def _yolo_spd(tmp_path: Path, *argv: str, **env: str) -> str:
    """Run ``python -m yolo_spd ARGV`` offline with a private cache and fresh Ultralytics settings; its stdout."""
    # A machine where Ultralytics never ran (no fonts), with its runs folder in tmp_path: left to itself Ultralytics
    # would put the demo's run into the checkout when the interpreter is a venv inside it.
    settings = ultralytics_settings_folder(tmp_path / "ultralytics-settings", runs=tmp_path / "runs")
    env = child_env(YOLO_SPD_CACHE=str(tmp_path / "cache"), YOLO_CONFIG_DIR=str(settings), **env)
    out = subprocess.run([sys.executable, "-m", "yolo_spd", *argv], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of (cx, cy, w, h) boxes ``a`` (n, 4) and ``b`` (m, 4)."""
    a0, a1 = a[:, None, :2] - a[:, None, 2:] / 2, a[:, None, :2] + a[:, None, 2:] / 2
    b0, b1 = b[None, :, :2] - b[None, :, 2:] / 2, b[None, :, :2] + b[None, :, 2:] / 2
    inter = np.prod(np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None), axis=2)
    return inter / (np.prod(a[:, None, 2:], axis=2) + np.prod(b[None, :, 2:], axis=2) - inter)


def _border_changed(source: np.ndarray, drawn: np.ndarray, box: np.ndarray) -> bool:
    """Whether ``drawn`` differs clearly from ``source`` along the border of ``box`` (a drawn box outline)."""
    size = source.shape[0]
    cx, cy, w, h = box * size
    x0, y0, x1, y1 = (int(round(v)) for v in (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    band = np.zeros(source.shape[:2], bool)
    band[max(y0 - 3, 0) : y1 + 3, max(x0 - 3, 0) : x1 + 3] = True
    band[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2] = False
    return np.abs(source.astype(int) - drawn.astype(int))[band].mean() > 20


@pytest.mark.slow
def test_shipped_demo_checkpoint_detects_most_val_objects_at_the_default_confidence(tmp_path):
    """What the demo promises, checked on its output: AP50 >= 0.5, and `yolo-spd predict` boxes most objects."""
    import cv2

    out = _yolo_spd(tmp_path, "val", f"weights={CHECKPOINT}", "data=demo", "imgsz=256", f"project={tmp_path}",
                    "name=val")
    folder = out.rsplit("Saved coco_eval.json and coco_eval.csv to ", 1)[1].split()[0]
    scores = json.loads((Path(folder) / "coco_eval.json").read_text())
    assert scores["images"] == demo.SPLITS["val"] and scores["metrics"]["AP50"] >= 0.5

    images = tmp_path / "cache" / "datasets" / demo.DEMO_NAME / "images" / "val"
    _yolo_spd(tmp_path, "predict", f"model={CHECKPOINT}", f"source={images}", "imgsz=256", "save=True",
              "save_txt=True", f"project={tmp_path}", "name=predict")  # Ultralytics' default conf=0.25
    found, outlined, total = 0, 0, 0
    for image in sorted(images.glob("*.jpg")):
        truth = _labels(images.parents[1] / "labels" / "val" / f"{image.stem}.txt")
        predicted = _labels(tmp_path / "predict" / "labels" / f"{image.stem}.txt")
        iou = _iou(truth[:, 1:5], predicted[:, 1:5]) * (truth[:, :1] == predicted[None, :, 0])
        found += int((iou.max(1, initial=0) >= 0.5).sum())  # a box of the right class on the object
        source, drawn = cv2.imread(str(image)), cv2.imread(str(tmp_path / "predict" / image.name))
        outlined += sum(_border_changed(source, drawn, box) for box in truth[:, 1:5])
        total += len(truth)
    assert found / total > 0.75, f"{found} of {total} val objects detected at conf 0.25"
    assert outlined / total > 0.8, f"boxes drawn around {outlined} of {total} val objects"


def test_shipped_demo_checkpoint_was_made_by_the_demo():
    """The checkpoint stands for the demo only while the demo's model, data and settings are those it was made with."""
    import torch

    args = torch.load(CHECKPOINT, map_location="cpu", weights_only=False)["train_args"]
    assert Path(args["model"]).name == cli.DEFAULT_MODEL
    assert Path(args["data"]).parent.name == demo.DEMO_NAME
    assert {key: args[key] for key in cli.DEMO_TRAIN_ARGS} == cli.DEMO_TRAIN_ARGS
    assert args["seed"] == 0 and args["deterministic"]


@pytest.mark.slow
def test_train_with_no_arguments_runs_the_offline_demo(tmp_path):
    """`yolo-spd train` alone, shortened to one epoch: the dataset is generated into the cache, trained on, scored."""
    out = _yolo_spd(tmp_path, "train", YOLO_SPD_DEMO_EPOCHS="1")
    assert "built-in demo dataset" in out and "<- AP_S" in out
    run_dir = tmp_path / out.rsplit("Saved coco_eval.json and coco_eval.csv to ", 1)[1].split()[0]
    saved = json.loads((run_dir / "coco_eval.json").read_text())
    assert saved["images"] == demo.SPLITS["val"] and saved["annotations"] > 300
    assert (run_dir / "val_batch0_pred.jpg").is_file() and (run_dir / "weights" / "best.pt").is_file()
    import yaml

    args = yaml.safe_load((run_dir / "args.yaml").read_text())
    assert {key: args[key] for key in cli.DEMO_TRAIN_ARGS if key != "epochs"} == {
        key: value for key, value in cli.DEMO_TRAIN_ARGS.items() if key != "epochs"}
    assert args["epochs"] == 1 and Path(args["data"]).parent.name == demo.DEMO_NAME


@pytest.mark.parametrize("given", [{}, {"data": "demo"}, {"data": "demo", "epochs": 3, "imgsz": 128}])
def test_train_on_the_demo_takes_its_recipe_whether_or_not_data_is_given(given, capsys):
    """`yolo-spd train data=demo` trained with Ultralytics' defaults (100 epochs at 640 px) where `yolo-spd train`
    alone takes the demo's recipe; now both do, and a key given wins."""
    args = cli._with_training_data(dict(given), cli.DEFAULT_MODEL)
    expected = {**cli.DEMO_TRAIN_ARGS, **{k: v for k, v in given.items() if k != "data"}}
    assert {k: args[k] for k in expected} == expected and Path(args["data"]).parent.name == demo.DEMO_NAME
    out = capsys.readouterr().out
    assert "built-in demo dataset" in out and ("epochs=12" in out) == ("epochs" not in given)


def test_train_on_other_data_takes_ultralytics_defaults(tmp_path):
    from .conftest import make_yolo_dataset

    data = make_yolo_dataset(tmp_path, n_train=1, n_val=1, size=32)
    assert cli._with_training_data({"data": str(data)}, cli.DEFAULT_MODEL) == {"data": str(data)}
