"""Where runs write (issue 21): one folder per run, named as Ultralytics names its own; predict saves as `yolo predict`.

The command-line tests run `yolo-spd` in a new process in ``tmp_path``, with Ultralytics' settings in a private
folder (``YOLO_CONFIG_DIR``) whose ``runs_dir`` the test sets: the default one depends on where Ultralytics is
installed (the root of a git checkout above it, else the working directory).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from yolo_spd.errors import UsageError
from yolo_spd.run_folders import run_folder, run_output

from .conftest import child_env, make_yolo_dataset

SUMMARY = {"compare.csv", "compare.json", "compare.tex", "compare_ap_by_size.png"}


# --- run_folder ------------------------------------------------------------------------------------------------------
# In-process, only absolute projects: under pytest, Ultralytics puts relative ones in its own tests/ folder.


def test_run_folder_numbers_repeats_as_ultralytics_and_reuses_with_exist_ok(tmp_path):
    from ultralytics.utils.files import increment_path

    first = run_folder(tmp_path / "p", None, "compare")
    assert first == tmp_path / "p" / "compare" and first.is_dir()
    expected = increment_path(first)  # what the installed Ultralytics calls the next one
    second = run_folder(str(tmp_path / "p"), "", "compare")
    assert second == expected == tmp_path / "p" / "compare-2" and second.is_dir()
    assert run_folder(tmp_path / "p", "compare", "val", exist_ok=True) == first  # name= wins over the default
    assert run_folder(tmp_path / "p", "mine", "val") == tmp_path / "p" / "mine"


@pytest.mark.parametrize("blocker", ["file-as-project", "file-as-folder"])
def test_a_folder_that_cannot_be_created_is_a_usage_error_naming_it(tmp_path, blocker):
    (tmp_path / "f").write_text("a file")
    project, name = (tmp_path / "f" / "x", None) if blocker == "file-as-project" else (tmp_path, "f")
    with pytest.raises(UsageError, match=r"cannot create the output folder .*/f.* \(.+\); give project= a folder"):
        run_folder(project, name, "val", exist_ok=True)


def test_run_output_removes_the_folders_it_made_when_the_run_fails_before_writing(tmp_path):
    with pytest.raises(KeyError):
        with run_output(tmp_path / "new" / "project", None, "predict") as folder:
            assert folder.is_dir()
            raise KeyError("stopped before writing")
    assert list(tmp_path.iterdir()) == []  # the next run is predict again, not predict-2; no empty parents left
    with pytest.raises(KeyError):
        with run_output(tmp_path, None, "predict") as folder:
            (folder / "half.jpg").write_bytes(b"x")
            raise KeyError("stopped after writing")
    assert (tmp_path / "predict" / "half.jpg").is_file()  # what was written stays
    (tmp_path / "kept").mkdir()
    with pytest.raises(KeyError):
        with run_output(tmp_path, "kept", "predict", exist_ok=True):
            raise KeyError("a reused folder")
    assert (tmp_path / "kept").is_dir()
    outside = tmp_path / "outside"
    outside.mkdir()
    with pytest.raises(KeyError):  # empty folders made inside (compare's per-model folders) go too
        with run_output(tmp_path, "nested", "compare") as folder:
            (folder / "a" / "b").mkdir(parents=True)
            (folder / "link").symlink_to(outside)
            raise KeyError("stopped before writing")
    assert (tmp_path / "nested").is_dir() and [p.name for p in (tmp_path / "nested").iterdir()] == ["link"]
    assert outside.is_dir()  # a symlinked folder is not this run's to remove, nor what it points to
    (tmp_path / "nested" / "link").unlink()
    with pytest.raises(KeyError):
        with run_output(tmp_path, "written", "compare") as folder:
            (folder / "a").mkdir()
            (folder / "b").mkdir()
            (folder / "a" / "coco_eval.json").write_text("{}")
            raise KeyError("stopped after the first model")
    assert sorted(p.name for p in (tmp_path / "written").iterdir()) == ["a"]  # the finished model's scores stay


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
    # one picture per image, nothing else anywhere; Ultralytics 8.4.67 names pictures by stem, so there the .png
    # overwrites the .jpg of the same stem, as in stock `yolo predict` of that version
    stems = __import__("ultralytics").__version__ == "8.4.67"
    assert len(pictures) == (3 if stems else 4) and outputs(tmp_path) == pictures
    lines = plain.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("image ")] == per_image
    first_image = next(k for k, line in enumerate(lines) if line.startswith("image "))
    announced = lines[:first_image]  # what `yolo predict` prints before its first image
    assert any(line.startswith("Ultralytics ") and "CPU" in line for line in announced), plain.stdout[-2000:]
    assert any("summary (fused)" in line for line in announced), plain.stdout[-2000:]
    assert any(line.startswith("Results saved to") and str(folder) in line for line in lines), plain.stdout[-2000:]

    quiet = yolo_spd(["predict", model, f"source={source}", "imgsz=64", "save=False"], tmp_path, env)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert outputs(tmp_path) == pictures and [p.name for p in (runs / "detect").iterdir()] == ["predict"]
    assert "Results saved to" not in quiet.stdout and [line.split(":")[0] for line in quiet.stdout.splitlines()
                                                       if line.startswith("image ")] == per_image

    sliced = yolo_spd(["predict", model, f"source={source}", "slice=32", "conf=0.001", "save_txt=True"], tmp_path, env)
    assert sliced.returncode == 0, sliced.stderr[-3000:]
    assert sum(line.startswith("Ultralytics ") and "CPU" in line for line in sliced.stdout.splitlines()) == 1
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


COMPARE_RUNS = """
import sys
from yolo_spd.cli import main
common = ["weights={a},{b}", "data={data}", "imgsz=64", "batch=4", "workers=0", "device=cpu"]
for extra in ([], [], ["project=cmpproj"], ["project={absolute}"]):
    if main(["compare", *common, *extra]) != 0:
        sys.exit(f"compare {{extra}} failed")
"""


@pytest.mark.parametrize("runs_setting", ["relative", "absolute"])
def test_compare_puts_each_run_in_one_folder_named_as_ultralytics_names_them(inputs, tmp_path, runs_setting):
    """Default project twice (compare, compare-2), a relative project (under the runs folder, as Ultralytics puts
    one) and an absolute one: the table, the plot and every model's own validation in the run's one folder."""
    runs = "runs" if runs_setting == "relative" else str(tmp_path / "elsewhere" / "runs")
    env = settings(tmp_path, runs)
    code = COMPARE_RUNS.format(a=inputs / "a.pt", b=inputs / "b.pt", data=inputs / "data" / "data.yaml",
                               absolute=tmp_path / "abs")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    base = Path(runs) if Path(runs).is_absolute() else tmp_path / runs
    folders = [base / "detect" / "compare", base / "detect" / "compare-2", base / "detect" / "cmpproj" / "compare",
               tmp_path / "abs" / "compare"]
    saved = [line.rpartition(" to ")[2] for line in out.stdout.splitlines() if line.startswith("Saved compare.csv")]
    assert saved == [str(f) for f in folders]
    written = {tmp_path / p for p in outputs(tmp_path)}
    for folder in folders:
        mine = {p for p in written if folder in p.parents}
        assert {p.name for p in mine if p.parent == folder} == SUMMARY
        assert {p.parent.name for p in mine if p.parent != folder} == {"a", "b"}  # each model's validation run
        assert {folder / m / "coco_eval.json" for m in "ab"} <= mine
        assert json.loads((folder / "compare.json").read_text())["models"][1]["weights"] == str(inputs / "b.pt")
        written -= mine
    assert written == set()  # nothing anywhere else (no runs/detect/runs/..., no ./cmpproj)
