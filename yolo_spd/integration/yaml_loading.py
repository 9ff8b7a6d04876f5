"""Part 2: bare config names and row errors, in how ``ultralytics.nn.tasks`` finds and parses a model YAML.

- Bare config names. ``yaml_model_load`` finds a YAML through ``tasks.check_yaml``; the wrapper returns the packaged
  ``cfg/`` file for a bare name such as ``"yolov5-spd-n.yaml"`` when no file of that name exists locally (a local
  file always wins).
- Row errors. ``tasks.parse_model`` is wrapped: the rows are checked first (:mod:`yolo_spd.model_yaml`) and an
  error while building a row is re-raised as :class:`~yolo_spd.model_yaml.ModelYAMLError` naming the YAML file and
  the layer, instead of a bare ``KeyError`` or ``IndexError``. The wrapper also gives one-scale YAMLs such as
  ``yolo11-spd-n.yaml`` their scale letter (see :func:`scale_from_file_name`).
"""

from __future__ import annotations

from pathlib import Path

from ..configs import packaged_config
from ..model_yaml import ModelYAMLError, check_rows
from . import names

_saved: dict = {}


def check_yaml_resolving_packaged(original):
    def check_yaml(file, *args, **kwargs):
        packaged = packaged_config(file)
        if packaged is not None and not Path(str(file)).exists():
            return str(packaged)
        return original(file, *args, **kwargs)

    check_yaml.__wrapped__ = original
    return check_yaml


def ultralytics_config(name: str) -> Path | None:
    """The file Ultralytics builds a bare model-config name from (``yolov5nu.yaml`` -> its ``yolov5.yaml``), found the
    way ``tasks.yaml_model_load`` finds it (the name, then the name without its scale letter), or None. Only
    Ultralytics' own ``cfg/`` folder is searched: nothing is downloaded."""
    import re

    from ultralytics.utils.checks import check_yaml

    name = str(name)
    if Path(name).name != name:
        return None
    for candidate in (name, re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", name)):
        found = check_yaml(candidate, hard=False) if candidate.lower().endswith((".yaml", ".yml")) else None
        if found and Path(found).is_file():
            return Path(found)
    return None


def _rows(d: dict) -> list:
    return list(d.get("backbone") or []) + list(d.get("head") or [])


def first_failing_layer(parse_model, d: dict, ch) -> int | None:
    """Index of the first layer whose prefix of the YAML fails to build (binary search; only on the error path)."""
    from copy import deepcopy

    rows, backbone = _rows(d), len(d.get("backbone") or [])

    def builds(k: int) -> bool:
        prefix = {**deepcopy(d), "backbone": deepcopy(rows[: min(k, backbone)]), "head": deepcopy(rows[backbone:k])}
        try:
            parse_model(prefix, ch=ch, verbose=False)
            return True
        except Exception:  # noqa: BLE001 - any failure means this prefix contains the bad row
            return False

    low, high = 0, len(rows)  # invariant: prefix of `low` rows builds, of `high` rows fails
    if builds(high):
        return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if builds(middle) else (low, middle)
    return high - 1


def scale_from_file_name(d: dict) -> None:
    """Give a one-scale YAML named ``<family>-<scale>.yaml`` its scale letter.

    Ultralytics guesses the scale only from names like ``yolo11n``; for ``yolo11-spd-n`` the guess is ``""``, and
    8.4.67's ``parse_model`` tests ``scale in "mlx"``, which is true for the empty string, so it forced C3k2's
    ``c3k=True`` at every scale. The letter from the file name keeps each scale's rows as written.
    """
    if d.get("scale") or d.get("scales"):
        return
    suffix = Path(str(d.get("yaml_file", ""))).stem.rpartition("-")[2]
    if len(suffix) == 1 and suffix in "nslmx":
        d["scale"] = suffix


def parse_model_naming_rows(original, namespace: dict):
    def parse_model(d, ch, verbose=True):
        where = Path(str(d.get("yaml_file", "model YAML"))).name
        check_rows(d, namespace, names.yaml_parameters, where)
        scale_from_file_name(d)
        try:
            return original(d, ch, verbose=verbose)
        except Exception as error:
            layer = first_failing_layer(original, d, ch)
            if layer is None:
                raise
            row = _rows(d)[layer]
            problem = " ".join(str(error).split()) or type(error).__name__
            raise ModelYAMLError(f"{where}: layer {layer} {row[2]} {row[3]}: {problem}") from error

    parse_model.__wrapped__ = original
    return parse_model


def apply() -> None:
    from ultralytics.nn import tasks

    _saved.update(check_yaml=tasks.check_yaml, parse_model=tasks.parse_model)
    tasks.check_yaml = check_yaml_resolving_packaged(_saved["check_yaml"])
    tasks.parse_model = parse_model_naming_rows(_saved["parse_model"], vars(tasks))


def undo() -> None:
    from ultralytics.nn import tasks

    tasks.check_yaml, tasks.parse_model = _saved.pop("check_yaml"), _saved.pop("parse_model")
