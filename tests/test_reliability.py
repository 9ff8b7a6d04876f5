"""Failure paths (issue 7): the evaluation's ground truth agrees with Ultralytics' dataloader on broken data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from yolo_spd.evaluation import build_ground_truth, resolve_split

from .conftest import REPO, make_yolo_dataset


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


# --- kill and resume ---------------------------------------------------------------------------------------------------

TRAIN_ARGS = ["cfg=yolov5-spd-n.yaml", "epochs=3", "imgsz=64", "batch=2", "workers=0", "device=cpu", "amp=False",
              "plots=False", "name=run", "exist_ok=True"]


def cli_process(args: list[str], cwd: Path, prelude: str = ""):
    import subprocess
    import sys

    from .conftest import child_env

    code = f"{prelude}\nimport sys\nfrom yolo_spd.cli import main\nsys.exit(main({args!r}))\n"
    return subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def results_epochs(run: Path) -> list[int]:
    import csv

    with open(run / "results.csv", encoding="utf-8") as f:
        return [int(float(row["epoch"])) for row in csv.DictReader(f)]


def checkpoint_epoch(file: Path) -> int:
    import torch

    return torch.load(file, weights_only=False)["epoch"]


def resume(run: Path, cwd: Path) -> None:
    process = cli_process(["train", "resume=True", f"model={run / 'weights' / 'last.pt'}"], cwd)
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output[-3000:]


# Simulates a kill while last.pt is being written: the second checkpoint write is cut short and the process dies
# before the rename. Ultralytics itself writes last.pt in place, so without the atomic write this corrupts it.
KILL_DURING_SECOND_CHECKPOINT = """
import os, signal
real_replace = os.replace
def replace(source, target, *args, **kwargs):
    if str(target).endswith("last.pt") and os.path.exists(target):
        with open(source, "r+b") as f:
            f.truncate(1000)
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(source, target, *args, **kwargs)
os.replace = replace
"""


@pytest.mark.slow
def test_a_kill_while_writing_the_checkpoint_leaves_the_previous_one_and_resume_finishes(tmp_path):
    data = make_yolo_dataset(tmp_path / "data", n_train=8, n_val=2, size=64)
    args = ["train", f"data={data}", f"project={tmp_path / 'runs'}", *TRAIN_ARGS]
    process = cli_process(args, tmp_path, prelude=KILL_DURING_SECOND_CHECKPOINT)
    output = process.communicate(timeout=600)[0]
    run = tmp_path / "runs" / "run"
    assert process.returncode == -9, output[-3000:]
    assert checkpoint_epoch(run / "weights" / "last.pt") == 0  # epoch 1's checkpoint, intact
    assert results_epochs(run) == [1, 2]  # Ultralytics wrote epoch 2's row before the checkpoint that died
    resume(run, tmp_path)
    assert results_epochs(run) == [1, 2, 3]  # epoch 2 re-run once, not listed twice
    assert (run / "coco_eval.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGINT"])
def test_training_killed_mid_epoch_resumes_to_the_right_epoch_count(tmp_path, signal_name):
    import signal
    import time

    # 96 images at batch 2: an epoch lasts seconds even on an idle machine, so 1.5 s after the first epoch's checkpoint
    # the run is inside epoch 2 (with 24 images, an idle CI machine finished all three epochs within those 1.5 s)
    data = make_yolo_dataset(tmp_path / "data", n_train=96, n_val=2, size=64)
    args = ["train", f"data={data}", f"project={tmp_path / 'runs'}", *TRAIN_ARGS]
    process = cli_process(args, tmp_path)
    run = tmp_path / "runs" / "run"
    deadline = time.time() + 600
    while not ((run / "results.csv").is_file() and (run / "weights" / "last.pt").is_file()):
        assert process.poll() is None and time.time() < deadline, "training ended before its first epoch finished"
        time.sleep(0.2)
    time.sleep(1.5)  # into epoch 2
    process.send_signal(getattr(signal, signal_name))
    output = process.communicate(timeout=120)[0]
    assert process.returncode != 0, output[-3000:]
    done_before = checkpoint_epoch(run / "weights" / "last.pt") + 1
    assert 1 <= done_before < 3
    resume(run, tmp_path)
    assert results_epochs(run) == [1, 2, 3]
    final = __import__("torch").load(run / "weights" / "last.pt", weights_only=False)
    assert len(final["train_results"]["epoch"]) == 3


@pytest.mark.slow
def test_resume_refuses_a_ground_truth_its_data_lacks_before_training_again(tmp_path):
    """gt=json on a resumed run whose data (named by the checkpoint) has no COCO JSON: one error line before the next
    epoch, as a new run gets it before the first, not after the remaining epochs."""
    from ultralytics import YOLO

    class Stop(Exception):
        pass

    def stop_after_first_epoch(trainer):
        raise Stop

    data = make_yolo_dataset(tmp_path / "data", n_train=4, n_val=2, size=64)
    yolo = YOLO("yolov5-spd-n.yaml")
    yolo.add_callback("on_fit_epoch_end", stop_after_first_epoch)  # after epoch 1's last.pt is written
    with pytest.raises(Stop):
        yolo.train(data=str(data), epochs=3, imgsz=64, batch=2, workers=0, device="cpu", amp=False, plots=False,
                   project=str(tmp_path / "runs"), name="run", exist_ok=True, verbose=False)
    run = tmp_path / "runs" / "run"
    assert checkpoint_epoch(run / "weights" / "last.pt") == 0 and results_epochs(run) == [1]
    process = cli_process(["train", "resume=True", f"model={run / 'weights' / 'last.pt'}", "gt=json"], tmp_path)
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 2, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("yolo-spd: error: ")]
    assert len(errors) == 1 and "gt=json:" in errors[0] and "names no COCO JSON" in errors[0], output[-3000:]
    assert "Traceback" not in output and results_epochs(run) == [1]  # no epoch trained again


# --- multi-GPU launch ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_ddp_worker_rebuilds_yolo_spd_models_without_importing_yolo_spd_itself(tmp_path):
    """Ultralytics launches DDP workers from a generated script; run that script's setup on CPU in a fresh process."""
    import re
    import subprocess
    import sys

    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.utils import dist

    from yolo_spd.integration.training import DDP_IMPORT

    from .conftest import child_env

    data = make_yolo_dataset(tmp_path / "data", n_train=2, n_val=2, size=64)
    trainer = DetectionTrainer(overrides={"model": "yolov5-spd-n.yaml", "data": str(data), "imgsz": 64,
                                          "device": "cpu", "project": str(tmp_path / "runs"), "name": "ddp"})
    script = Path(dist.generate_ddp_file(trainer))
    try:
        text = script.read_text()
        assert text.count(DDP_IMPORT) == 1
        forward = ("{0}import torch, sys\n"
                   "{0}model = trainer.model if isinstance(trainer.model, torch.nn.Module) else "
                   "trainer.get_model(cfg=trainer.args.model, verbose=False)\n"
                   "{0}model.eval()(torch.zeros(1, 3, 64, 64))\n"
                   "{0}print('worker', type(model.model[2]).__name__, 'forward-ok')\n")
        text, replaced = re.subn(r"^(\s*)(?:results = )?trainer\.train\(\)\s*$", lambda m: forward.format(m[1]), text,
                                 flags=re.M)
        assert replaced == 1
        script.write_text(text)
        env = child_env()
        env.pop("PYTHONPATH")  # the worker finds yolo_spd only through the launch script
        out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.split()[-3:] == ["worker", "SpaceToDepth", "forward-ok"]
    finally:
        script.unlink(missing_ok=True)
        script.with_suffix(".pt").unlink(missing_ok=True)


# --- offline guard ----------------------------------------------------------------------------------------------------

OFFLINE_FLOWS = """
exec(open({guard!r}).read())
import sys
from yolo_spd.cli import main
common = ["imgsz=64", "batch=2", "workers=0", "device=cpu", "project={runs}"]
best = "{runs}/t/weights/best.pt"
for argv in (["train", "cfg=yolov5-spd-n.yaml", "data={data}", "epochs=1", "name=t", *common],
             ["val", "weights=" + best, "data={data}", "name=v", *common],
             ["predict", "model=" + best, "source={images}", "name=p", *common],
             ["export", "model=" + best, "format=onnx", "imgsz=64"]):
    assert main(argv) == 0, argv
print("ALL FLOWS DONE")
"""


def guard_entries(log: Path) -> list[tuple[str, str]]:
    """(header line, stack) per recorded attempt."""
    if not log.is_file():
        return []
    entries = log.read_text().split("=== ")[1:]
    return [(entry.splitlines()[0], entry) for entry in entries]


@pytest.mark.slow
def test_main_flows_make_no_network_connection_and_spawn_no_pip(tmp_path):
    """Build, train one epoch (with plots: fonts), val with AP_S, predict, export, on a machine where Ultralytics never
    ran (empty settings folder, no fonts) and the network is blocked. The one thing allowed is Ultralytics' own
    connectivity probe at import; YOLO_OFFLINE=true skips even that (the export test below)."""
    import subprocess
    import sys

    from .conftest import child_env

    data = make_yolo_dataset(tmp_path / "data", n_train=4, n_val=2)
    settings, log = tmp_path / "settings", tmp_path / "guard.log"
    settings.mkdir()
    code = OFFLINE_FLOWS.format(guard=str(Path(__file__).with_name("network_guard.py")), data=data,
                                images=data.parent / "images" / "val", runs=tmp_path / "runs")
    env = child_env(NETWORK_GUARD_LOG=str(log), YOLO_CONFIG_DIR=str(settings), YOLO_SPD_CACHE=str(tmp_path / "c"))
    env.pop("YOLO_OFFLINE")  # a user who set nothing
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0 and "ALL FLOWS DONE" in out.stdout, (out.stdout + out.stderr)[-3000:]
    unexpected = [head for head, stack in guard_entries(log) if "in is_online" not in stack]
    assert unexpected == [], guard_entries(log)[0][1][-3000:]
    assert (tmp_path / "runs" / "t" / "labels.jpg").is_file()  # plots with text were drawn (font found offline)


# --- atomic writes --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
@pytest.mark.parametrize("data", ["text\n", b"\x00bytes"])
def test_atomic_writes_give_files_the_usual_mode_and_leave_no_temporary(tmp_path, umask, mode, data):
    """A result file gets the mode any new file gets (0644 under the usual umask), as Ultralytics' own files do."""
    import os

    from yolo_spd.paths import write_atomic

    before = os.umask(umask)
    try:
        written = write_atomic(tmp_path / "out" / "coco_eval.json", data)
    finally:
        os.umask(before)
    assert written.stat().st_mode & 0o777 == mode
    assert (written.read_text() if isinstance(data, str) else written.read_bytes()) == data
    assert [p.name for p in written.parent.iterdir()] == ["coco_eval.json"]


def test_a_failed_atomic_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    from yolo_spd.paths import atomic_target, write_atomic

    target = write_atomic(tmp_path / "compare.png", b"previous")
    with pytest.raises(RuntimeError):
        with atomic_target(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("the writer died")
    assert target.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["compare.png"]


def test_checkpoints_are_written_through_the_atomic_helper_with_the_usual_mode(tmp_path):
    import os

    from yolo_spd.integration.training import AtomicWritePath

    before = os.umask(0o022)
    try:
        last = AtomicWritePath(tmp_path) / "last.pt"
        assert isinstance(last, AtomicWritePath) and last.write_bytes(b"checkpoint") == len(b"checkpoint")
    finally:
        os.umask(before)
    assert last.read_bytes() == b"checkpoint" and last.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


# --- user errors through the CLI: one line, exit 2; bugs keep their traceback ----------------------------------------


def yolo_spd_command(args: list[str], cwd: Path, prelude: str = "", **env: str):
    """``yolo-spd ARGS`` as a user runs it (a new process, the console-script entry point), after ``prelude``."""
    import subprocess
    import sys

    from .conftest import child_env

    code = f"{prelude}\nimport sys\nfrom yolo_spd.cli import entry\nsys.argv = ['yolo-spd', *{args!r}]\nentry()\n"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=child_env(**env), capture_output=True, text=True,
                          timeout=600)


def one_error_line(out) -> str:
    lines = out.stderr.splitlines()
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("yolo-spd: error: "), out.stderr[-3000:]
    return lines[0]


def test_a_typo_in_a_model_yaml_through_train_is_one_error_line(tmp_path):
    from .conftest import REPO

    data = make_yolo_dataset(tmp_path / "data", n_train=2, n_val=2, size=64)
    (tmp_path / "typo.yaml").write_text((REPO / "cfg" / "yolov5-spd-n.yaml").read_text().replace(
        "SpaceToDepth", "SpaceToDepht"))
    line = one_error_line(yolo_spd_command(["train", "cfg=typo.yaml", f"data={data}", "epochs=1", "imgsz=64"], tmp_path))
    assert "typo.yaml: layer 2 (backbone row 2): unknown module 'SpaceToDepht'; did you mean SpaceToDepth?" in line


def test_an_export_whose_package_is_missing_is_one_line_naming_the_format_and_the_pip_command(tmp_path):
    """Whether or not openvino is installed here: the child sees it as missing. Nothing reaches for the network."""
    from ultralytics import YOLO

    import yolo_spd  # noqa: F401

    YOLO("yolov5-spd-n.yaml").save(tmp_path / "ours.pt")
    guard = Path(__file__).with_name("network_guard.py")
    prelude = f"exec(open({str(guard)!r}).read())\nimport sys\nsys.modules['openvino'] = None  # not installed\n"
    log = tmp_path / "guard.log"
    out = yolo_spd_command(["export", "model=ours.pt", "format=openvino", "imgsz=64"], tmp_path, prelude,
                           NETWORK_GUARD_LOG=str(log))
    line = one_error_line(out)
    assert "format=openvino needs the Python package 'openvino'" in line and line.endswith("pip install openvino")
    # YOLO_OFFLINE=true (child_env): no connection attempt at all, not even Ultralytics' connectivity probe at
    # import, which 8.4.67 still ran with YOLO_OFFLINE=1 (it reads only "true"; 8.4.190 also takes 1, yes, on)
    assert guard_entries(log) == [], log.read_text()[-3000:]


@pytest.mark.parametrize("fmt,package,extra", [("saved_model", "tensorflow", "export-tf"),
                                               ("coreml", "coremltools", "export-tf"),
                                               ("xilinx", "quark", "export-xilinx")])
def test_a_missing_package_that_needs_its_own_venv_points_to_its_extra(tmp_path, fmt, package, extra):
    """A bare `pip install tensorflow` beside numpy 2.4 does not give the set Ultralytics' onnx2tf route works with,
    coremltools under numpy 2.4 fails on YOLO11 models, and `pip install quark` is an unrelated package (AMD's is
    amd-quark, which needs onnx <= 1.22)."""
    from ultralytics import YOLO
    from ultralytics.engine.exporter import export_formats

    import yolo_spd  # noqa: F401

    if fmt not in export_formats()["Argument"]:
        pytest.skip(f"this Ultralytics has no {fmt} export (8.4.67 predates it)")
    YOLO("yolov5-spd-n.yaml").save(tmp_path / "ours.pt")
    prelude = f"import sys\nsys.modules[{package!r}] = None  # not installed\n"
    data = []  # xilinx calibrates (int8) on a dataset; the other formats refuse data=
    if fmt == "xilinx":
        data = [f"data={make_yolo_dataset(tmp_path / 'data', n_train=2, n_val=2, size=64)}"]
    line = one_error_line(yolo_spd_command(["export", "model=ours.pt", f"format={fmt}", "imgsz=32", *data],
                                           tmp_path, prelude))
    assert f"format={fmt} needs the Python package '{package}'" in line
    assert line.endswith(f"pip install 'yolo_spd[{extra}]'") and "venv of its own" in line


@pytest.mark.parametrize("mode", ["predict", "val", "export"])
def test_a_model_form_yolo_spd_does_not_know_is_one_error_line(tmp_path, mode):
    data = [f"data={make_yolo_dataset(tmp_path / 'data', n_train=1, n_val=1, size=64)}"] if mode == "val" else []
    line = one_error_line(yolo_spd_command([mode, "model=foo.xyz", *data], tmp_path))
    assert "foo.xyz" in line


def test_a_device_this_machine_lacks_is_one_error_line(tmp_path):
    """Ultralytics' select_device rejects it with a ValueError; no machine here or in CI has 100 GPUs."""
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    cv2.imwrite(str(tmp_path / "image.jpg"), np.full((64, 64, 3), 127, np.uint8))
    line = one_error_line(yolo_spd_command(["predict", "model=yolov5-spd-n.yaml", "source=image.jpg", "imgsz=64",
                                            "device=99"], tmp_path))
    assert "device=99" in line and "device=cpu" in line


def test_an_export_format_ultralytics_does_not_know_is_one_error_line(tmp_path):
    from ultralytics import YOLO

    import yolo_spd  # noqa: F401

    YOLO("yolov5-spd-n.yaml").save(tmp_path / "ours.pt")
    line = one_error_line(yolo_spd_command(["export", "model=ours.pt", "format=bogus"], tmp_path))
    assert "Invalid export format='bogus'" in line and "'onnx'" in line and "'ncnn'" in line


def test_a_download_ultralytics_needs_offline_is_one_error_line(tmp_path):
    """Ultralytics' downloader raises a ConnectionError naming the file when it fails offline (behind the network
    guard): one line. The export below stands in for any such download
    (the real ones, TensorFlow's, need TensorFlow)."""
    guard = Path(__file__).with_name("network_guard.py")
    prelude = (f"exec(open({str(guard)!r}).read())\nimport yolo_spd.cli as cli\n"
               "def export(tokens):\n"
               "    from ultralytics.utils.downloads import attempt_download_asset\n"
               "    attempt_download_asset('calibration_image_sample_data_20x128x128x3_float32.npy.zip', unzip=True)\n"
               "cli.RUNNERS['info'] = export\n")
    log = tmp_path / "log"
    line = one_error_line(yolo_spd_command(["info"], tmp_path, prelude, NETWORK_GUARD_LOG=str(log)))
    assert "calibration_image_sample_data_20x128x128x3_float32.npy" in line and "offline" in line


def test_an_onnx2tf_export_offline_stops_before_any_connection_attempt(tmp_path):
    """YOLO_OFFLINE=true: SavedModel export would download onnx2tf's sample file first; yolo-spd stops with one line
    naming it, before Ultralytics tries. TensorFlow is made to look installed (without it, the missing package is the
    first error; the check runs before anything is imported from it)."""
    from ultralytics import YOLO

    import yolo_spd  # noqa: F401

    YOLO("yolov5-spd-n.yaml").save(tmp_path / "ours.pt")
    guard = Path(__file__).with_name("network_guard.py")
    log = tmp_path / "log"
    prelude = (f"exec(open({str(guard)!r}).read())\nimport sys, types, importlib.machinery\n"
               "tf = types.ModuleType('tensorflow')\ntf.__spec__ = importlib.machinery.ModuleSpec('tensorflow', None)\n"
               "sys.modules['tensorflow'] = tf\n")
    line = one_error_line(yolo_spd_command(["export", "model=ours.pt", "format=saved_model", "imgsz=32"], tmp_path,
                                           prelude, NETWORK_GUARD_LOG=str(log)))  # child_env sets YOLO_OFFLINE=true
    assert "calibration_image_sample_data_20x128x128x3_float32.npy" in line and "YOLO_OFFLINE" in line
    unexpected = [head for head, stack in guard_entries(log) if "in is_online" not in stack] if log.is_file() else []
    assert not unexpected, log.read_text()[-3000:]


BUGS = {
    "ConnectionError": "raise ConnectionError('a bug')",
    "ValueError": "raise ValueError('a bug')",
    "TypeError": "raise TypeError('a bug')",
    "FileNotFoundError": "open('/nonexistent/internal-file')",
    "ModuleNotFoundError": "import yolo_spd.no_such_module",
}


@pytest.mark.parametrize("kind", BUGS)
def test_an_internal_bug_keeps_its_traceback(tmp_path, kind):
    """The exceptions Ultralytics raises for bad arguments, when raised by yolo_spd's own code, are bugs."""
    prelude = f"import yolo_spd.cli as cli\ndef buggy(tokens):\n    {BUGS[kind]}\ncli.RUNNERS['info'] = buggy\n"
    out = yolo_spd_command(["info"], tmp_path, prelude)
    assert out.returncode == 1 and "Traceback (most recent call last)" in out.stderr, out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-1].startswith(kind) and "yolo-spd: error" not in out.stderr


@pytest.mark.parametrize("imgsz, sizes", [("640", [640]), ("640,480", [640, 480]), ("[640, 480]", [640, 480]),
                                          ("(320,256)", [320, 256]), (640, [640]), ([640, 480], [640, 480]),
                                          ("abc", None), (640.0, None), (True, None)])
def test_image_sizes_read_imgsz_as_ultralytics_does(imgsz, sizes):
    """The forms Ultralytics' check_imgsz takes (its own error text suggests imgsz=640,480) pass the CLI's check; what
    it cannot read (or reads only to raise, a scalar float) does not."""
    from yolo_spd.cli import check_ultralytics_values, image_sizes
    from yolo_spd.errors import UsageError

    assert image_sizes(imgsz) == sizes
    if sizes is None:
        with pytest.raises(UsageError, match="expected a positive image size"):
            check_ultralytics_values({"imgsz": imgsz})
    else:
        check_ultralytics_values({"imgsz": imgsz})


@pytest.mark.parametrize("mode, bad, message", [
    ("train", "epochs=abc", "'epochs=abc' is of invalid type str"),
    ("train", "epochs=0", "'epochs=0' is an invalid value. 'epochs' must be >= 1."),  # 8.4.67 trained 100 epochs
    ("val", "max_det=0", "'max_det=0' is an invalid value. 'max_det' must be >= 1."),  # 8.4.67 took it
    ("train", "momentum=2", "'momentum=2' is an invalid value"),
    ("train", "conf=2", "'conf=2' is an invalid value. Valid 'conf' values are between 0.0 and 1.0"),
    ("train", "imgsz=abc", "imgsz=abc: expected a positive image size"),
    ("train", "imgsz=-1", "imgsz=-1: expected a positive image size"),  # Ultralytics would train at 32 px
    ("train", "gt=json", "gt=json: "),  # no COCO JSON to score against: refused before training, not after it
    ("predict", "iou=5", "'iou=5' is an invalid value"),  # Ultralytics' range check, which its predictor runs late
    ("predict", "imgsz=abc", "imgsz=abc: expected a positive image size"),  # 8.4.67 failed inside ast, naming nothing
    ("export", "imgsz=[640,0]", "imgsz=[640, 0]: expected a positive image size"),
    ("val", "conf=-1", "'conf=-1' is an invalid value"),
    ("val", "per_class=maybe", "per_class=maybe: expected True or False"),
])
def test_bad_ultralytics_arguments_stay_one_line(tmp_path, mode, bad, message):
    """Ultralytics' type and range checks give one line and exit 2, and make no run folder."""
    data = make_yolo_dataset(tmp_path / "data", n_train=2, n_val=2, size=64)
    demo = REPO / "weights" / "yolov5-spd-n-demo.pt"
    given = {"train": [f"data={data}"], "val": [f"data={data}", f"weights={demo}"], "export": [f"model={demo}"],
             "predict": [f"model={demo}", f"source={tmp_path / 'data' / 'images' / 'val'}", "save=True"]}[mode]
    line = one_error_line(yolo_spd_command([mode, *given, bad, f"project={tmp_path / 'runs'}"], tmp_path))
    assert message in line
    assert not (tmp_path / "runs").exists()
