"""yolo-spd export when it cannot finish: earlier exports kept as they were, no calibration dataset downloaded, no
package pip-installed (yolo_spd/integration/exporting.py, yolo_spd/integration/autoinstall.py)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from yolo_spd.paths import restored_if_failed

from .conftest import REPO, child_env

CHECKPOINT = REPO / "weights" / "yolov5-spd-n-demo.pt"


def listing(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` -> its content's digest ('dir' for a folder)."""
    return {str(p.relative_to(folder)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))}


def exported_folder(tmp_path: Path) -> Path:
    """best.pt with earlier exports beside it, named as Ultralytics names them, a file of the user's named after the
    same stem, and a file of another stem."""
    folder = tmp_path / "weights"
    (folder / "best_openvino_model").mkdir(parents=True)
    (folder / "best.onnx").write_bytes(b"the user's dynamic ONNX")
    (folder / "best_openvino_model" / "best.xml").write_text("<net/>")
    (folder / "best.pt").write_bytes(b"weights")
    (folder / "best_calib.yaml").write_text("val: images\n")
    (folder / "last.onnx").write_bytes(b"another stem")
    return folder


def guarded(file: Path):
    from yolo_spd.integration.exporting import output_names

    return restored_if_failed(file, output_names(Path(file).stem))


# --- the guard itself ------------------------------------------------------------------------------------------------

def test_export_names_come_from_ultralytics_format_table():
    from yolo_spd.integration.exporting import output_names

    names = output_names("best")
    assert {"best.onnx", "best_openvino_model", "best_ncnn_model", "best.torchscript", "best_int8.onnx"} <= names
    assert "best.pt" not in names and "best_calib.yaml" not in names


def test_a_failed_block_leaves_the_folder_as_it_was(tmp_path):
    folder = exported_folder(tmp_path)
    before = listing(folder)
    with pytest.raises(RuntimeError, match="converter missing"):
        with guarded(folder / "best.pt"):
            visible = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
            assert visible == ["best.pt", "best_calib.yaml", "last.onnx"]  # the user's own file stays in reach
            (folder / "best.onnx").write_bytes(b"a static ONNX written on the way")
            (folder / "best_mnn_model").mkdir()
            (folder / "best_mnn_model" / "part").write_bytes(b"half")
            raise RuntimeError("converter missing")
    assert listing(folder) == before  # nothing new, nothing lost, and no hidden folder left


def test_a_successful_block_replaces_what_it_wrote_and_keeps_the_rest(tmp_path):
    folder = exported_folder(tmp_path)
    with guarded(folder / "best.pt"):
        (folder / "best.onnx").write_bytes(b"new ONNX")
        (folder / "best.mnn").write_bytes(b"new MNN")
    after = listing(folder)
    assert sorted(after) == ["best.mnn", "best.onnx", "best.pt", "best_calib.yaml", "best_openvino_model",
                             "best_openvino_model/best.xml", "last.onnx"]
    assert (folder / "best.onnx").read_bytes() == b"new ONNX"
    assert (folder / "best_openvino_model" / "best.xml").read_text() == "<net/>"


def test_a_model_yaml_exports_into_the_working_directory_and_its_own_yaml_stays(tmp_path, monkeypatch):
    """Ultralytics names a YAML's exports after its file name in the working directory: the YAML is not set aside."""
    (tmp_path / "net.yaml").write_text("nc: 1\n")
    (tmp_path / "net.onnx").write_bytes(b"old")
    monkeypatch.chdir(tmp_path)
    before = listing(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with guarded(Path("net.yaml")):
            assert (tmp_path / "net.yaml").is_file() and not (tmp_path / "net.onnx").exists()
            (tmp_path / "net.onnx").write_bytes(b"half")
            raise KeyboardInterrupt
    assert listing(tmp_path) == before


def test_a_file_without_a_stem_guards_nothing_and_touches_nothing(tmp_path, monkeypatch):
    """Ultralytics names a model built from a dict after an empty path: '.' and '_' prefixes must not set the
    working folder's dotfiles aside (nor delete them on failure)."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "_notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    before = listing(tmp_path)
    with pytest.raises(RuntimeError):
        with restored_if_failed(Path(""), {".onnx", "_openvino_model"}):
            assert listing(tmp_path) == before
            raise RuntimeError
    assert listing(tmp_path) == before


def test_what_cannot_be_set_aside_stays_and_a_killed_exports_files_come_back(tmp_path, monkeypatch):
    folder = exported_folder(tmp_path)
    before = listing(folder)
    # a killed export (its pid gone) left the user's ONNX in its hidden folder
    stale = folder / ".yolo-spd-aside-best-999999999-0000abcd"
    stale.mkdir()
    (folder / "best.onnx").rename(stale / "best.onnx")
    real_rename = Path.rename

    def refusing(self, target):  # a folder without write permission cannot be moved (EACCES; root moves anything)
        if self.name == "best_openvino_model":
            raise PermissionError(13, "Permission denied", str(self))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", refusing)
    with pytest.raises(RuntimeError):
        with guarded(folder / "best.pt"):
            assert (folder / "best_openvino_model").is_dir() and not (folder / "best.onnx").exists()
            (folder / "best.onnx").write_bytes(b"half")
            raise RuntimeError
    assert listing(folder) == before


# --- the command -----------------------------------------------------------------------------------------------------

def yolo_spd(code: str, cwd: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``code`` (which ends by calling the CLI) in a fresh interpreter, as the console script would."""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=child_env(YOLO_CONFIG_DIR=str(tmp_path / "config"), YOLO_SPD_CACHE=str(tmp_path / "c")))


RUN = "import sys\nfrom yolo_spd.cli import main\nsys.exit(main({argv!r}))\n"


def test_an_export_that_fails_after_writing_its_onnx_keeps_the_users_onnx(tmp_path):
    """MNN converts through an ONNX file written first: with the MNN package missing, the failed export used to leave
    that ONNX behind, overwriting the user's own (here a dynamic-shape one) without a word."""
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(CHECKPOINT, folder / "best.pt")
    made = yolo_spd(RUN.format(argv=["export", "model=best.pt", "format=onnx", "dynamic=True", "imgsz=64"]), folder,
                    tmp_path)
    assert made.returncode == 0, made.stderr[-2000:]
    before = listing(folder)
    code = "import sys\nsys.modules['MNN'] = None  # as if not installed\n" + RUN.format(
        argv=["export", "model=best.pt", "format=mnn", "imgsz=64"])
    out = yolo_spd(code, folder, tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.splitlines()[-1].startswith("yolo-spd: error: format=mnn needs the Python package 'MNN'")
    assert "export success" in out.stdout + out.stderr  # the ONNX was written on the way, then removed
    assert listing(folder) == before


@pytest.mark.parametrize("argv", [["format=imx"], ["format=edgetpu"]])
def test_an_int8_export_without_data_asks_for_it_instead_of_downloading_a_dataset(tmp_path, argv):
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(CHECKPOINT, folder / "best.pt")
    before = listing(folder)
    out = yolo_spd(RUN.format(argv=["export", "model=best.pt", *argv, "imgsz=64"]), folder, tmp_path)
    fmt = argv[0].partition("=")[2]
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == (
        f"yolo-spd: error: format={fmt} calibrates INT8 weights on a dataset, and data= is not given; give "
        "data=YOUR.yaml (images like those the model will see). Ultralytics' default, coco8.yaml, is a download, and "
        "yolo-spd never downloads datasets")
    assert "Download" not in out.stdout + out.stderr and listing(folder) == before


def test_an_export_with_data_resolves_it_without_downloading(tmp_path):
    out = yolo_spd(RUN.format(argv=["export", f"model={CHECKPOINT}", "format=onnx", "data=coco8.yaml"]), tmp_path,
                   tmp_path)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [f"yolo-spd: error: data=coco8.yaml: no such dataset YAML (looked for "
                                       f"{(tmp_path / 'coco8.yaml').resolve()} and in the packaged data/)"]


@pytest.mark.skipif(importlib.util.find_spec("MNN") is not None, reason="MNN is installed: nothing to pip-install")
def test_a_missing_package_is_never_pip_installed_online(tmp_path):
    """Online, Ultralytics' check_requirements pip-installs a missing package (AutoUpdate); under yolo-spd it does not.
    The machine is made to look online and pip is replaced by a recorder, so nothing is installed either way."""
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(CHECKPOINT, folder / "best.pt")
    code = (
        "import sys, subprocess\n"
        "sys.modules['MNN'] = None\n"
        "import ultralytics.utils.checks as checks\n"
        "checks.ONLINE = True\n"
        "calls = []\n"
        "def recorder(cmd, *a, **k):\n"
        "    calls.append(cmd)\n"
        "    raise subprocess.CalledProcessError(1, cmd)\n"
        "subprocess.check_output = recorder\n"
        "from yolo_spd.cli import main\n"
        "code = main(['export', 'model=best.pt', 'format=mnn', 'imgsz=64'])\n"
        "print('PIP CALLS', calls)\n"
        "print('AUTOINSTALL after', checks.AUTOINSTALL)\n"
        "sys.exit(code)\n"
    )
    out = yolo_spd(code, folder, tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "PIP CALLS []" in out.stdout and "AUTOINSTALL after True" in out.stdout
    assert "attempting AutoUpdate" not in out.stdout + out.stderr


def test_autoinstall_is_restored_in_every_ultralytics_module_afterwards(monkeypatch):
    """Also in a module first imported during the command, which copies the switch while it is off."""
    import types

    import ultralytics.utils
    import ultralytics.utils.checks

    from yolo_spd.integration.autoinstall import without_autoinstall

    original = ultralytics.utils.AUTOINSTALL
    monkeypatch.delenv("YOLO_AUTOINSTALL", raising=False)
    with without_autoinstall():
        assert ultralytics.utils.AUTOINSTALL is False and ultralytics.utils.checks.AUTOINSTALL is False
        assert os.environ["YOLO_AUTOINSTALL"] == "False"  # a process it starts (multi-GPU workers) imports it so
        late = types.ModuleType("ultralytics._imported_during_the_command")
        late.AUTOINSTALL = ultralytics.utils.AUTOINSTALL
        monkeypatch.setitem(sys.modules, late.__name__, late)
    assert ultralytics.utils.AUTOINSTALL == ultralytics.utils.checks.AUTOINSTALL == late.AUTOINSTALL == original
    assert "YOLO_AUTOINSTALL" not in os.environ
