"""The suite leaves the checkout and ../shared as it found them (tests/conftest.py): Ultralytics' folders are the
session's temporary ones, in this process and in child processes, and a run that writes into the watched folders
fails even when every test passed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SESSION_TMP, child_env, ultralytics_settings_folder


def test_ultralytics_settings_runs_and_datasets_are_the_sessions_temporary_folders(tmp_path):
    import ultralytics.data.utils
    import ultralytics.utils

    settings = ultralytics.utils.SETTINGS
    assert Path(settings.file).is_relative_to(SESSION_TMP)
    for key in ("runs_dir", "datasets_dir", "weights_dir"):
        assert Path(settings[key]).is_relative_to(SESSION_TMP), key
    assert ultralytics.utils.RUNS_DIR.is_relative_to(SESSION_TMP)
    assert ultralytics.data.utils.DATASETS_DIR.is_relative_to(SESSION_TMP)  # bound at its import, after conftest's
    code = "from ultralytics.utils import SETTINGS; import json; print(json.dumps(dict(SETTINGS)))"
    child = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    assert json.loads(child.stdout.splitlines()[-1])["runs_dir"] == settings["runs_dir"]  # inherited

    folder = ultralytics_settings_folder(tmp_path / "fresh", runs=tmp_path / "runs")
    child = subprocess.run([sys.executable, "-c", code], env=child_env(YOLO_CONFIG_DIR=str(folder)),
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    fresh = json.loads(child.stdout.splitlines()[-1])
    assert fresh["runs_dir"] == str(tmp_path / "runs") and fresh["datasets_dir"] == settings["datasets_dir"]
    assert "reset" not in child.stderr and "updated" not in child.stderr  # the file is complete for this version
    assert [p.name for p in folder.rglob("*") if p.is_file()] == ["settings.json"]  # no fonts: a fresh machine


INNER_TEST = """
import os
from pathlib import Path


def test_passes_but_may_write():
    for target in filter(None, os.environ.get("WRITE_INTO", "").split(os.pathsep)):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text("left behind")
"""


def _inner_pytest(tmp_path: Path, checkout: Path, shared: Path, *writes: Path) -> subprocess.CompletedProcess:
    """pytest on a throwaway test file that passes, with this suite's conftest as a plugin watching ``checkout`` and
    ``shared`` instead of the real ones; the test writes the files ``writes``."""
    folder = tmp_path / "inner"
    folder.mkdir()
    (folder / "test_inner.py").write_text(INNER_TEST)
    env = child_env(YOLO_SPD_TEST_CHECKOUT=str(checkout), YOLO_SPD_TEST_SHARED_DATA=str(shared),
                    WRITE_INTO=":".join(map(str, writes)))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                           "--rootdir", str(folder), str(folder / "test_inner.py")],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def watched(tmp_path) -> tuple[Path, Path]:
    """A git repository standing in for the checkout (runs/ ignored, as in the real one) and a shared-data folder."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    checkout, shared = tmp_path / "checkout", tmp_path / "shared" / "data"
    checkout.mkdir()
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    (checkout / ".gitignore").write_text("runs/\n")
    (checkout / "README.md").write_text("a file\n")
    (checkout / "notes.txt").write_text("untracked\n")
    (shared / "set" / "labels").mkdir(parents=True)
    (shared / "set" / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    return checkout, shared


@pytest.mark.parametrize("where", ["nowhere", "checkout", "shared", "both"])
def test_a_run_that_writes_into_the_checkout_or_the_shared_data_fails(tmp_path, watched, where):
    checkout, shared = watched
    stray_run = checkout / "runs" / "detect" / "train-2" / "args.yaml"  # ignored by git, still a change
    label_cache = shared / "set" / "labels" / "train.cache"  # what Ultralytics writes beside labels
    notes = checkout / "notes.txt"  # untracked already, as a developer's own file may be
    writes = {"nowhere": [tmp_path / "elsewhere.txt"], "checkout": [stray_run, notes], "shared": [label_cache],
              "both": [stray_run, notes, label_cache]}[where]
    out = _inner_pytest(tmp_path, checkout, shared, *writes)
    text = out.stdout + out.stderr
    assert "1 passed" in text, text[-3000:]
    assert out.returncode == (0 if where == "nowhere" else 1), text[-3000:]
    assert ("changed the checkout" in text) == (where in ("checkout", "both")), text[-3000:]
    assert ("+ !! runs/detect/train-2/args.yaml\t11\t" in text) == (where in ("checkout", "both"))
    assert ("+ ?? notes.txt\t" in text) == (where in ("checkout", "both"))  # untracked before, written again
    assert ("changed the shared data" in text) == (where in ("shared", "both")), text[-3000:]
    assert ("+ set/labels/train.cache\t" in text) == (where in ("shared", "both"))


def test_a_checkout_that_is_no_git_repository_and_absent_shared_data_are_skipped_with_a_note(tmp_path):
    plain = tmp_path / "unpacked-sdist"
    plain.mkdir()
    out = _inner_pytest(tmp_path, plain, tmp_path / "no-shared", plain / "runs" / "x.txt")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "is not a git checkout; its state was not checked" in text and "is absent; the shared data" in text
