"""Where the packaged model YAMLs live, and how to list them.

The YAMLs sit in ``cfg/`` at the top of the repository. A wheel ships them as ``yolo_spd/cfg/`` (see
pyproject.toml); a source checkout or an editable install reads the top-level folder directly.
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


def config_dir() -> Path:
    """Return the folder holding the packaged model YAMLs."""
    in_wheel = Path(__file__).with_name("cfg")
    return in_wheel if in_wheel.is_dir() else Path(__file__).resolve().parents[1] / "cfg"


def list_models(pattern: str = "*") -> list[str]:
    """Names of the packaged model configs (file stems) matching a shell-style ``pattern``, small scales first.

    >>> "yolov5-spd-n" in list_models("yolov5-spd-*")
    True
    """
    stems = (p.stem for p in config_dir().iterdir() if p.suffix in YAML_SUFFIXES and fnmatch.fnmatch(p.stem, pattern))
    return sorted(stems, key=_scale_order)


def packaged_config(name) -> Path | None:
    """The packaged YAML a bare file name (``"yolov5-spd-n.yaml"``) refers to, or None.

    Names with a directory part are never resolved here: a path the user typed means that path.
    """
    name = str(name)
    if Path(name).name != name or not name.endswith(YAML_SUFFIXES):
        return None
    candidate = config_dir() / name
    return candidate if candidate.is_file() else None
