"""Where the packaged model and dataset YAMLs live, and how to list them.

Model YAMLs sit in ``cfg/`` and dataset YAMLs in ``data/`` at the top of the repository. A wheel ships them as
``yolo_spd/cfg/`` and ``yolo_spd/data/`` (see pyproject.toml); a source checkout or an editable install reads the
top-level folders directly.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

YAML_SUFFIXES = (".yaml", ".yml")
SCALES = "nsmlx"


def _scale_order(stem: str) -> tuple:
    """Sort key: family name, then scale in n, s, m, l, x order (so tables read small to large)."""
    family, _, scale = stem.rpartition("-")
    return (family, SCALES.index(scale)) if len(scale) == 1 and scale in SCALES else (stem, -1)


def _packaged_folder(name: str) -> Path:
    in_wheel = Path(__file__).with_name(name)
    return in_wheel if in_wheel.is_dir() else Path(__file__).resolve().parents[1] / name


def config_dir() -> Path:
    """Return the folder holding the packaged model YAMLs."""
    return _packaged_folder("cfg")


def data_dir() -> Path:
    """Return the folder holding the packaged dataset YAMLs (e.g. ``coco.yaml``)."""
    return _packaged_folder("data")


def list_models(pattern: str = "*") -> list[str]:
    """Names of the packaged model configs (file stems) matching a shell-style ``pattern``, small scales first.

    >>> "yolov5-spd-n" in list_models("yolov5-spd-*")
    True
    """
    stems = (p.stem for p in config_dir().iterdir() if p.suffix in YAML_SUFFIXES and fnmatch.fnmatch(p.stem, pattern))
    return sorted(stems, key=_scale_order)


def _packaged_file(folder: Path, name) -> Path | None:
    name = str(name)
    if Path(name).name != name or not name.endswith(YAML_SUFFIXES):
        return None
    candidate = folder / name
    return candidate if candidate.is_file() else None


def packaged_config(name) -> Path | None:
    """The packaged model YAML a bare file name (``"yolov5-spd-n.yaml"``) refers to, or None.

    Names with a directory part are never resolved here: a path the user typed means that path.
    """
    return _packaged_file(config_dir(), name)


def packaged_dataset(name) -> Path | None:
    """The packaged dataset YAML a bare file name (``"coco.yaml"``) refers to, or None (same rules as above)."""
    return _packaged_file(data_dir(), name)
