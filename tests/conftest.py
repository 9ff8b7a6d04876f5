"""Shared fixtures, and the suite's hygiene.

Tests never touch the network: Ultralytics' online checks are switched off before it is imported. They never write
into the checkout or into ``../shared``: Ultralytics gets its own settings folder, runs folder and datasets folder in
a temporary directory for the session (set here, before anything imports Ultralytics, and inherited by subprocesses
through :func:`child_env`), and the session fails if ``git status`` of the checkout or a listing of the shared data
(paths, sizes, modification times) differs at its end from its start (:func:`pytest_sessionfinish`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("YOLO_OFFLINE", "true")  # Ultralytics: no connectivity probes, hub calls or asset downloads

from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the checkout; YOLO_SPD_SHARED names another place (a worktree elsewhere, or a test of this file).
SHARED = Path(os.environ.get("YOLO_SPD_SHARED") or REPO.parent / "shared")
# What the hygiene check watches: the checkout (git status) and the shared data (a listing). Environment variables
# move them, so that tests/test_hygiene.py can show on throwaway folders that the check fails a run.
WATCHED_CHECKOUT = Path(os.environ.get("YOLO_SPD_TEST_CHECKOUT") or REPO)
WATCHED_SHARED = Path(os.environ.get("YOLO_SPD_TEST_SHARED_DATA") or SHARED / "data")

# --- Ultralytics' settings, runs and datasets folders: temporary, for this session only ---------------------------

if "ultralytics" in sys.modules:  # its settings are read once, at import: too late to move them
    raise RuntimeError("tests/conftest.py must run before anything imports ultralytics (its settings folder and runs "
                       "folder are set here)")
SESSION_TMP = Path(tempfile.mkdtemp(prefix="yolo_spd_tests_"))
ULTRALYTICS_CONFIG = SESSION_TMP / "ultralytics-config"
os.environ["YOLO_CONFIG_DIR"] = str(ULTRALYTICS_CONFIG)  # Ultralytics' settings.json (and fonts) live here
# Made now: older 8.4 releases (8.4.67 among them) use YOLO_CONFIG_DIR only when it (the parent of their Ultralytics/
# folder) exists and is writable, and otherwise fall back to the machine-wide /tmp/Ultralytics.
ULTRALYTICS_CONFIG.mkdir()
# yolo_spd's own cache (tiled datasets, `yolo-spd info` rows) is the session's, never the user's. pytest-xdist workers
# share the controller's, which sets the variable before it starts them, so each cached thing is built once per run.
YOLO_SPD_CACHE = Path(os.environ.get("YOLO_SPD_TEST_CACHE") or SESSION_TMP / "yolo_spd-cache")
os.environ["YOLO_SPD_TEST_CACHE"] = os.environ["YOLO_SPD_CACHE"] = str(YOLO_SPD_CACHE)
# Hypothesis keeps its example database and a constants cache in ./.hypothesis unless told otherwise; read lazily.
os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = str(SESSION_TMP / "hypothesis")


def _redirect_ultralytics_folders() -> dict[str, str]:
    """Point Ultralytics' runs, datasets and weights folders into the session's temporary folder, in the settings
    file (which child processes read) and in the module constants this process computed from it at import.

    Without this, a checkout with a venv inside it is Ultralytics' "git root", whose runs/ collects every run that
    names no absolute project (and the machine's own settings would be read and changed).
    """
    import ultralytics.utils as ultralytics_utils  # reads (creates) settings.json in ULTRALYTICS_CONFIG

    folders = {key: str(SESSION_TMP / key.removesuffix("_dir")) for key in ("runs_dir", "datasets_dir", "weights_dir")}
    ultralytics_utils.SETTINGS.update(folders)
    for key, value in folders.items():
        setattr(ultralytics_utils, key.upper(), Path(value))  # RUNS_DIR, DATASETS_DIR, WEIGHTS_DIR
    return folders


ULTRALYTICS_FOLDERS = _redirect_ultralytics_folders()


def ultralytics_settings_folder(folder: Path, runs: Path) -> Path:
    """A settings folder for a child process that sees a machine where Ultralytics never ran (no fonts, nothing
    cached), except that its settings file names ``runs`` as its runs folder and temporary datasets/weights folders;
    returns ``folder``, for ``YOLO_CONFIG_DIR``."""
    from ultralytics.utils import SETTINGS

    settings = {**SETTINGS, **ULTRALYTICS_FOLDERS, "runs_dir": str(runs)}
    file = Path(folder) / Path(SETTINGS.file).relative_to(ULTRALYTICS_CONFIG)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(settings, indent=2))
    return Path(folder)


# --- hygiene: the checkout and the shared data are what they were --------------------------------------------------

# Bytecode and pytest's own cache appear wherever Python and pytest run; everything else new in the checkout, tracked
# or ignored (runs/ and .venv/ are ignored, and a stray run folder is what this check is for), fails the session.
HYGIENE_NOISE = ("__pycache__", ".pytest_cache")


def checkout_state(folder: Path) -> list[str] | None:
    """``git status`` of ``folder`` as sorted lines, ignored files included (bytecode left out), each with the file's
    size and modification time, so that a file already modified or untracked is seen changing again; None when
    ``folder`` is not the top of a git work tree or git is missing."""
    try:
        top = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=60)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != folder.resolve():
            return None
        status = subprocess.run(["git", "-C", str(folder), "status", "--porcelain=v1", "-z", "--ignored",
                                 "--untracked-files=all"], capture_output=True, text=True, timeout=300, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    entries = [entry for entry in status.stdout.split("\0") if entry]
    kept = [entry for entry in entries
            if not (set(Path(entry[3:]).parts) & set(HYGIENE_NOISE) or entry.endswith((".pyc", ".pyo")))]
    return sorted(f"{entry}\t{_size_and_mtime(folder / entry[3:])}" for entry in kept)  # a file changed again too


def _size_and_mtime(path: Path) -> str:
    try:
        info = path.lstat()
    except OSError:
        return "-"
    return "-" if path.is_dir() else f"{info.st_size}\t{info.st_mtime_ns}"


def folder_listing(folder: Path) -> list[str] | None:
    """Every path under ``folder`` with its size and modification time (ns), sorted; None when it is absent."""
    if not folder.is_dir():
        return None
    lines = []
    for path in sorted([folder, *folder.rglob("*")]):
        info = path.lstat()
        lines.append(f"{path.relative_to(folder)}\t{info.st_size}\t{info.st_mtime_ns}")
    return lines


def _changes(before: list[str], after: list[str]) -> list[str]:
    gone, new = sorted(set(before) - set(after)), sorted(set(after) - set(before))
    return [f"  - {line}" for line in gone] + [f"  + {line}" for line in new]


def pytest_sessionstart(session):
    session.config.stash[_HYGIENE] = {"checkout": checkout_state(WATCHED_CHECKOUT),
                                      "shared": folder_listing(WATCHED_SHARED)}


def pytest_sessionfinish(session, exitstatus):
    """Fail the run (exit status 1) if it changed the checkout or the shared data, and say what changed."""
    before = session.config.stash.get(_HYGIENE, None)
    if before is None:
        return
    report = []
    notes = []
    if before["checkout"] is None:
        notes.append(f"hygiene: {WATCHED_CHECKOUT} is not a git checkout; its state was not checked")
    else:
        changed = _changes(before["checkout"], checkout_state(WATCHED_CHECKOUT) or [])
        if changed:
            report += [f"hygiene: the test run changed the checkout {WATCHED_CHECKOUT} (git status):", *changed]
    if before["shared"] is None:
        notes.append(f"hygiene: {WATCHED_SHARED} is absent; the shared data was not checked")
    else:
        changed = _changes(before["shared"], folder_listing(WATCHED_SHARED) or [])
        if changed:
            report += [f"hygiene: the test run changed the shared data {WATCHED_SHARED} (path, size, mtime):",
                       *changed]
    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None and notes + report:
        terminal.write("\n")  # after the progress line
    for line in notes + report:
        if terminal is not None:
            terminal.write_line(line, red=line in report)
        else:
            print(line, file=sys.stderr)
    if report and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config):
    shutil.rmtree(SESSION_TMP, ignore_errors=True)


_HYGIENE = pytest.StashKey[dict]()


def load_script(name: str):
    """A benchmark script as a module (benchmarks/ is not a package; its scripts import _timing as a sibling)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # as an import would: dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return module


def child_env(**extra: str) -> dict:
    """Environment for subprocesses: offline, the repo importable, plus ``extra``."""
    env = dict(os.environ, YOLO_OFFLINE="true", **extra)
    env.pop("PYTEST_CURRENT_TEST", None)  # else Ultralytics thinks it runs inside its own tests and moves run folders
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def make_yolo_dataset(root: Path, n_train: int = 8, n_val: int = 4, size: int = 96, seed: int = 0) -> Path:
    """Write a tiny YOLO-format dataset of coloured rectangles (2 classes) and return its data.yaml."""
    import cv2

    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            lines = []
            for _ in range(rng.integers(1, 4)):
                cls = int(rng.integers(0, 2))
                w, h = rng.integers(8, 28, 2)
                x0, y0 = rng.integers(0, size - w), rng.integers(0, size - h)
                image[y0 : y0 + h, x0 : x0 + w] = (230, 40, 40) if cls == 0 else (40, 230, 40)
                lines.append(f"{cls} {(x0 + w / 2) / size:.6f} {(y0 + h / 2) / size:.6f} {w / size:.6f} {h / size:.6f}")
            cv2.imwrite(str(root / "images" / split / f"{i:03d}.jpg"), image)
            (root / "labels" / split / f"{i:03d}.txt").write_text("\n".join(lines) + "\n")
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: red\n  1: green\n")
    return data
