"""Shared fixtures. Tests never touch the network: Ultralytics' online checks are switched off before it is imported."""

from __future__ import annotations

import importlib.util
import os
import sys

os.environ.setdefault("YOLO_OFFLINE", "1")  # Ultralytics: no connectivity probes, hub calls or asset downloads

from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def load_script(name: str):
    """A benchmark script as a module (benchmarks/ is not a package; its scripts import _timing as a sibling)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return module


def child_env(**extra: str) -> dict:
    """Environment for subprocesses: offline, the repo importable, plus ``extra``."""
    env = dict(os.environ, YOLO_OFFLINE="1", **extra)
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
