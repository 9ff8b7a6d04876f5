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
#: The module part of a config name.
MODULE_NAMES = ("spd", "scconv", "ssdconv")
#: YOLO family of a config name -> its Ultralytics baseline model name, per scale.
BASELINES = {"yolov5": "yolov5{scale}u", "yolov8": "yolov8{scale}", "yolo11": "yolo11{scale}"}


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


def _as_patterns(patterns) -> tuple[str, ...]:
    return (patterns,) if isinstance(patterns, str) else tuple(patterns)


def split_name(name: str) -> tuple[str, str, str]:
    """``"yolov8-spd-n"`` -> ``("yolov8", "spd", "n")``: (YOLO family, module, scale) of a packaged config name."""
    parts = name.split("-")
    if len(parts) != 3 or parts[0] not in BASELINES or parts[2] not in SCALES:
        raise ValueError(
            f"config name {name!r} is not allowed; expected <family>-<module>-<scale> with family one of "
            f"{', '.join(BASELINES)} and scale one of {', '.join(SCALES)}"
        )
    return parts[0], parts[1], parts[2]


def list_models(pattern="*", exclude=(), module: str | None = None, family: str | None = None) -> list[str]:
    """Names of the packaged model configs (file stems), small scales first; filterable like ``timm.list_models``.

    Args:
        pattern (str | Iterable[str]): Shell-style pattern(s); a name is kept if it matches any (default: all).
        exclude (str | Iterable[str]): Shell-style pattern(s); a name matching any is dropped.
        module (str | None): Keep only configs built with this module: ``"spd"``, ``"scconv"`` or ``"ssdconv"``.
        family (str | None): Keep only configs of this YOLO family: ``"yolov5"``, ``"yolov8"`` or ``"yolo11"``.

    >>> list_models("yolov5-spd-*")
    ['yolov5-spd-n', 'yolov5-spd-s', 'yolov5-spd-m', 'yolov5-spd-l']
    >>> list_models(module="spd", exclude="yolov5-*", pattern="*-n")
    ['yolo11-spd-n', 'yolov8-spd-n']
    """
    if module is not None and module not in MODULE_NAMES:
        raise ValueError(f"list_models: module={module!r} is not allowed; expected one of {', '.join(MODULE_NAMES)}")
    if family is not None and family not in BASELINES:
        raise ValueError(f"list_models: family={family!r} is not allowed; expected one of {', '.join(BASELINES)}")
    patterns, excluded = _as_patterns(pattern), _as_patterns(exclude)
    stems = [p.stem for p in config_dir().iterdir() if p.suffix in YAML_SUFFIXES]
    kept = [
        stem
        for stem in stems
        if any(fnmatch.fnmatch(stem, p) for p in patterns)
        and not any(fnmatch.fnmatch(stem, p) for p in excluded)
        and (module is None or stem.split("-")[1:2] == [module])
        and (family is None or stem.split("-")[0] == family)
    ]
    return sorted(kept, key=_scale_order)


def baseline(name: str) -> str:
    """The Ultralytics model a packaged config is compared with: same family and scale, stock modules.

    ``yolov5-*`` configs compare with Ultralytics' anchor-free YOLOv5 (``yolov5nu.yaml`` etc., which Ultralytics
    builds from its ``cfg/models/v5/yolov5.yaml`` at that scale), ``yolov8-*`` with ``yolov8n`` etc., ``yolo11-*``
    with ``yolo11n`` etc. Build it with ``YOLO(baseline(name) + ".yaml")`` (no download).

    >>> baseline("yolov5-scconv-m"), baseline("yolo11-spd-n")
    ('yolov5mu', 'yolo11n')
    """
    family, _, scale = split_name(name)
    return BASELINES[family].format(scale=scale)


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
