"""Which model forms ``yolo-spd`` accepts for ``model=`` / ``weights=`` (train, val, compare, predict), resolved once.

The rule follows stock ``yolo``: a model YAML (a path, or a bare name of a packaged config), or an existing local
model in any form Ultralytics loads: a ``.pt`` checkpoint or an export, file or folder (``best.torchscript``,
``best.onnx``, ``best_openvino_model/``, ``best_ncnn_model/``, ``best.mlpackage``, ...). Exports are recognised by
the suffixes of Ultralytics' own export-format table (``ultralytics.engine.exporter.export_formats()``, the same
table its ``AutoBackend`` reads to pick a runtime), so a format Ultralytics adds is accepted without a change here.

Deliberate differences from stock ``yolo``: nothing is downloaded (a missing ``yolov8n.pt`` is an error, not a
download), and Triton server URLs are not accepted. Training (``cfg=``) takes a YAML or a ``.pt`` only: an export
holds no trainable model. Anything else raises :class:`~yolo_spd.errors.UsageError` naming the value and listing
the accepted forms.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .errors import UsageError

YAML_SUFFIXES = (".yaml", ".yml")
#: Legacy CoreML file that ``AutoBackend`` also loads but ``export_formats()`` no longer lists.
EXTRA_SUFFIXES = {".mlmodel": "coreml"}


def export_suffixes() -> dict[str, str]:
    """{suffix: format argument} for every model form Ultralytics loads, from its export-format table.

    A suffix with a dot names a file or bundle (``.onnx``, ``_qnn.onnx``, ``.mlpackage``); one without names a folder
    (``_openvino_model``). PyTorch's ``.pt`` is included (argument ``pt``).
    """
    from ultralytics.engine.exporter import export_formats

    table = export_formats()
    suffixes = {suffix: ("pt" if arg == "-" else arg) for suffix, arg in zip(table["Suffix"], table["Argument"])}
    return {**suffixes, **EXTRA_SUFFIXES}


def model_format(path: Path) -> str | None:
    """The format ``path``'s name ends with (the longest matching suffix, so ``best_qnn.onnx`` is qnn), or None."""
    name = path.name.lower()
    matches = [(len(suffix), fmt) for suffix, fmt in export_suffixes().items() if name.endswith(suffix.lower())]
    return max(matches)[1] if matches else None


def accepted_forms(exports: bool = True) -> str:
    """The accepted forms, one line, for error messages."""
    if not exports:
        return "a model YAML (path or packaged name, see `yolo-spd info`) or a .pt checkpoint"
    suffixes = sorted(s for s in export_suffixes() if s != ".pt")
    files = ", ".join(f"*{s}" for s in suffixes if "." in s)  # .onnx, _qnn.onnx, .mlpackage (a bundle)
    folders = ", ".join(f"*{s}/" for s in suffixes if "." not in s)  # _openvino_model, _ncnn_model, ...
    return (f"a model YAML (path or packaged name, see `yolo-spd info`), a .pt checkpoint, or an export: "
            f"{files}, {folders}")


def resolve_model(model: str | Path, key: str, exports: bool = True) -> str:
    """Check ``model`` (the value of ``key=``) against the accepted forms; return it as the string to give ``YOLO()``.

    Args:
        model: A model YAML path or packaged name, a ``.pt`` checkpoint, or (with ``exports``) an exported model.
        key (str): The argument's name, for error messages (``model``, ``weights``, ``cfg``).
        exports (bool): Accept exported models too (predict, val, compare); training takes a YAML or a ``.pt``.

    Raises:
        UsageError: ``model`` is missing, or not a form listed by :func:`accepted_forms`.
    """
    text, path = str(model), Path(str(model))
    if text.lower().endswith(YAML_SUFFIXES):
        return _resolve_yaml(text, path, key)
    fmt = model_format(path)
    if fmt is not None and not path.exists():
        raise UsageError(f"{key}={text}: file not found (yolo_spd never downloads weights)")
    allowed = fmt == "pt" or (exports and fmt is not None)
    if not allowed or (fmt == "pt" and not path.is_file()):
        what = "not found" if not path.exists() else f"not an accepted model form ({fmt or 'unknown'})"
        raise UsageError(f"{key}={text}: {what}; expected {accepted_forms(exports)}")
    return text


def _resolve_yaml(text: str, path: Path, key: str) -> str:
    file = yaml_file(text)
    if file is None:
        raise UsageError(f"{key}={text}: no such model YAML here, among the packaged configs (yolo-spd info) or "
                         "among Ultralytics' own (yolov5nu.yaml, yolov8n.yaml, ...)")
    if not is_model_yaml(file):
        raise UsageError(
            f"{key}={text} is not a model YAML (it has no 'backbone:'); for an Ultralytics settings-override "
            "file use overrides="
        )
    return text


def yaml_file(text: str) -> Path | None:
    """The model YAML a value names: a local file, else a packaged config, else one of Ultralytics' own configs
    (``yolov5nu.yaml``: the file it is built from), else None."""
    from .configs import packaged_config
    from .integration.yaml_loading import ultralytics_config

    path = Path(text)
    if path.is_file():
        return path
    return packaged_config(text) or ultralytics_config(text)


def model_file(model: str | Path) -> Path | None:
    """The file a model value (a YAML or a checkpoint, as :func:`resolve_model` accepts it) is read from, or None."""
    text = str(model)
    if text.lower().endswith(YAML_SUFFIXES):
        return yaml_file(text)
    return Path(text) if Path(text).is_file() else None


def is_model_yaml(file: Path) -> bool:
    """True if ``file`` parses as a model YAML (a mapping with ``backbone:``)."""
    try:
        content = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(content, dict) and "backbone" in content
