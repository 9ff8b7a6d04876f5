"""Where runs write (issue 21): predict saves as `yolo predict` does, where it does.

The command-line tests run `yolo-spd` in a new process in ``tmp_path``, with Ultralytics' settings in a private
folder (``YOLO_CONFIG_DIR``) whose ``runs_dir`` the test sets: the default one depends on where Ultralytics is
installed (the root of a git checkout above it, else the working directory).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import child_env, make_yolo_dataset

# --- the command --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """data/ (2 classes, 3 val images of 64 px) and two randomly initialised 2-class checkpoints a.pt, b.pt."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    import yolo_spd  # noqa: F401

    root = tmp_path_factory.mktemp("inputs")
    make_yolo_dataset(root / "data", n_train=1, n_val=3, size=64)
    for name in ("a", "b"):
        model = YOLO("yolov5-spd-n.yaml")
        model.model = DetectionModel("yolov5-spd-n.yaml", nc=2, verbose=False)
        model.model.names = {0: "red", 1: "green"}
        model.save(root / f"{name}.pt")
    return root


def settings(tmp_path: Path, runs_dir: str) -> dict:
    """An environment whose Ultralytics settings are private to the test, with ``runs_dir`` set."""
    from ultralytics.utils import SettingsManager

    config = tmp_path / "config"
    SettingsManager(config / "Ultralytics" / "settings.json").update(runs_dir=runs_dir)
    return child_env(YOLO_CONFIG_DIR=str(config), YOLO_SPD_CACHE=str(tmp_path / "cache"))


def yolo_spd(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "yolo_spd", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def outputs(tmp_path: Path) -> set[str]:
    """Every file the runs wrote under ``tmp_path`` (not the settings, the cache or the input images), relative to
    it."""
    return {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
            if p.is_file() and p.relative_to(tmp_path).parts[0] not in ("config", "cache", "images")}


def test_predict_saves_like_yolo_predict_sliced_or_not_and_says_where(inputs, tmp_path):
    import shutil

    import cv2

    runs = tmp_path / "my-runs"  # an absolute runs_dir setting
    env = settings(tmp_path, str(runs))
    source = tmp_path / "images"
    shutil.copytree(inputs / "data" / "images" / "val", source)
    cv2.imwrite(str(source / "000.png"), cv2.imread(str(source / "000.jpg")))  # same stem, another picture
    names = ["000.jpg", "000.png", "001.jpg", "002.jpg"]
    per_image = [f"image {i + 1}/4 {source / name}" for i, name in enumerate(names)]  # Ultralytics' per-image lines
    model = f"model={inputs / 'a.pt'}"

    plain = yolo_spd(["predict", model, f"source={source}", "imgsz=64"], tmp_path, env)
    assert plain.returncode == 0, plain.stderr[-3000:]
    folder = runs / "detect" / "predict"
    pictures = {p.relative_to(tmp_path).as_posix() for p in folder.iterdir()}
    assert len(pictures) == 4 and outputs(tmp_path) == pictures  # one picture per image, nothing else anywhere
    lines = plain.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("image ")] == per_image
    assert any(line.startswith("Results saved to") and str(folder) in line for line in lines), plain.stdout[-2000:]

    quiet = yolo_spd(["predict", model, f"source={source}", "imgsz=64", "save=False"], tmp_path, env)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert outputs(tmp_path) == pictures and [p.name for p in (runs / "detect").iterdir()] == ["predict"]
    assert "Results saved to" not in quiet.stdout and [line.split(":")[0] for line in quiet.stdout.splitlines()
                                                       if line.startswith("image ")] == per_image

    sliced = yolo_spd(["predict", model, f"source={source}", "slice=32", "conf=0.001", "save_txt=True"], tmp_path, env)
    assert sliced.returncode == 0, sliced.stderr[-3000:]
    second = runs / "detect" / "predict-2"  # the next folder, named as Ultralytics names it
    assert sorted(p.name for p in second.iterdir() if p.is_file()) == ["000-2.png", "000.jpg", "001.jpg", "002.jpg"]
    assert f"Results saved to {second}" in sliced.stdout
    assert [line.split(":")[0] for line in sliced.stdout.splitlines() if line.startswith("image ")] == per_image
    labels = sorted(p.name for p in second.glob("labels/*.txt"))
    assert set(labels) <= {"000.txt", "000-2.txt", "001.txt", "002.txt"}  # one file per picture, none overwritten
    assert f"{len(labels)} label{'s' * (len(labels) != 1)} saved to {second / 'labels'}" in sliced.stdout
    assert outputs(tmp_path) == pictures | {
        (second / name).relative_to(tmp_path).as_posix() for name in ("000-2.png", "000.jpg", "001.jpg", "002.jpg",
                                                                      *(f"labels/{label}" for label in labels))}
