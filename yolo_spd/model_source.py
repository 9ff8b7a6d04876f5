"""Which model forms ``yolo-spd`` accepts for ``model=`` / ``weights=`` (train, val, compare, predict), resolved once.

The rule follows stock ``yolo``: a model YAML (a path, or a bare name of a packaged config), or an existing local
model in any form Ultralytics loads: a ``.pt`` checkpoint or an export, file or folder (``best.torchscript``,
``best.onnx``, ``best_openvino_model/``, ``best_ncnn_model/``, ``best.mlpackage``, ...). Exports are recognised by
the suffixes of Ultralytics' own export-format table (``ultralytics.engine.exporter.export_formats()``, the same
table its ``AutoBackend`` reads to pick a runtime), so a format Ultralytics adds is accepted without a change here.

Deliberate differences from stock ``yolo``: nothing is downloaded (a missing ``yolov8n.pt`` is an error, not a
download), and Triton server URLs are not accepted. Training (``cfg=``) takes a YAML or a ``.pt`` only: an export
holds no trainable model. Anything else raises :class:`~yolo_spd.errors.UsageError` naming the value and listing
the accepted forms; so does a ``.pt`` that is not a checkpoint (a text file, an image, an archive renamed ``.pt``:
refused before anything unpickles it; a PyTorch file with no Ultralytics model in it, such as a bare ``state_dict``:
refused by :func:`load_model` where Ultralytics reads it) and a model YAML that does not parse (file, line, column).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import yaml

from .errors import UsageError

YAML_SUFFIXES = (".yaml", ".yml")
#: Legacy CoreML file that ``AutoBackend`` also loads but ``export_formats()`` no longer lists.
EXTRA_SUFFIXES = {".mlmodel": "coreml"}
#: How torch.save's pre-1.6 format begins: pickle protocol 2 and torch's magic number (``torch.serialization``).
LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"
#: What a .pt must be, for error messages.
CHECKPOINT = "a .pt checkpoint written by Ultralytics or yolo-spd (a training run's weights/best.pt, or YOLO.save())"


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
        from .configs import packaged_config

        what = ("not found" if not path.exists() else f"not an accepted model form ({fmt})" if fmt else
                "a folder that is no export (an export folder's name ends as listed)" if path.is_dir() else
                f"not an accepted model form (a {path.suffix or 'suffix-less'} file)")
        if not path.exists() and fmt is None and packaged_config(f"{text}.yaml") is not None:
            # a name as `yolo-spd info` lists it: the config's file name has the suffix, as YOLO() needs it
            raise UsageError(f"{key}={text}: not found; the packaged config is {key}={text}.yaml")
        raise UsageError(f"{key}={text}: {what}; expected {accepted_forms(exports)}")
    if fmt == "pt":
        check_torch_file(path, f"{key}={text}")
    return text


def check_torch_file(path: Path, what: str) -> None:
    """Refuse a ``.pt`` that torch.save did not write (a text file, an image, an archive renamed ``.pt``, an empty or
    truncated file, a TorchScript archive) before anything unpickles it. torch.save writes a zip archive with a
    ``<name>/data.pkl`` record (torch >= 1.6), or, in the legacy format, a pickle that begins with torch's magic number;
    torch.jit.save's archive has that record too, beside ``constants.pkl`` and the ``code/`` folder (torch.load of it
    printed two torch warnings before the error line)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
            if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
                problem = ("a TorchScript archive, which torch.jit.save writes: an export, read under its "
                           ".torchscript name")
            elif any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
                return
            else:
                problem = "a zip archive without torch.save's data.pkl"
        else:
            with open(path, "rb") as f:
                head = f.read(len(LEGACY_TORCH_MAGIC))
            if head == LEGACY_TORCH_MAGIC:
                return
            problem = "an empty file" if not head else "not written by torch.save"
    except (OSError, zipfile.BadZipFile) as error:
        problem = f"cannot be read: {getattr(error, 'strerror', None) or error}"
    raise UsageError(f"{what}: not a PyTorch checkpoint ({problem}); expected {CHECKPOINT}")


def load_model(model: str | Path, key: str, exports: bool = True):
    """``YOLO(model)`` for a value :func:`resolve_model` accepts (checked here again).

    A ``.pt`` that is a PyTorch file but holds no Ultralytics model (a bare ``state_dict``, a tensor, or under
    ``ULTRALYTICS_SAFE_LOAD`` classes outside the allow-list) is refused by Ultralytics' checkpoint reader with a
    TypeError (AttributeError or KeyError in some releases); that error, raised there, becomes a
    :class:`~yolo_spd.errors.UsageError` naming the file. The same exception types raised anywhere else are bugs and
    propagate unchanged.
    """
    from ultralytics import YOLO

    text = resolve_model(model, key, exports)
    try:
        return YOLO(text)
    except (TypeError, AttributeError, KeyError) as error:
        if model_format(Path(text)) != "pt" or not _raised_reading_checkpoint(error):
            raise
        raise UsageError(f"{key}={text}: a PyTorch file but not an Ultralytics checkpoint "
                         f"({_reason(error, text)}); expected {CHECKPOINT}") from error


def is_resumable(yolo) -> bool:
    """Whether a loaded ``YOLO`` holds an unfinished run's checkpoint: its epoch and optimizer state, Ultralytics' own
    test in ``Model.train(resume=True)`` (8.4.190). Training strips both from ``last.pt`` and ``best.pt`` when its last
    epoch ends, before its final validation; from such a file 8.4.190 trains anew on its default data (coco8) with a
    warning, and 8.4.67 asserts."""
    checkpoint = getattr(yolo, "ckpt", None) or {}
    return checkpoint.get("epoch", -1) >= 0 and checkpoint.get("optimizer") is not None


#: Ultralytics' checkpoint reader (ultralytics/nn/tasks.py): the functions that read a .pt and check what it holds.
CHECKPOINT_READERS = ("torch_safe_load", "load_checkpoint", "attempt_load_one_weight", "attempt_load_weights")


def _raised_reading_checkpoint(error: BaseException) -> bool:
    """Was ``error`` raised (innermost frame) by Ultralytics' checkpoint reader itself?"""
    traceback = error.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    if traceback is None:
        return False
    code = traceback.tb_frame.f_code
    return Path(code.co_filename).as_posix().endswith("ultralytics/nn/tasks.py") and code.co_name in CHECKPOINT_READERS


def _reason(error: BaseException, text: str) -> str:
    """Ultralytics' reason, one sentence, without its ERROR prefix, the file name and its advice."""
    message = " ".join(str(error).split()) if not isinstance(error, KeyError) else f"no {error} entry in it"
    for prefix in ("ERROR", "❌️", "❌", text, Path(text).name):
        message = message.removeprefix(prefix).strip()
    return message.split(". ")[0].rstrip(".") or type(error).__name__


def _resolve_yaml(text: str, path: Path, key: str) -> str:
    file = yaml_file(text)
    if file is None:
        raise UsageError(f"{key}={text}: no such model YAML here, among the packaged configs (yolo-spd info) or "
                         "among Ultralytics' own (yolov5nu.yaml, yolov8n.yaml, ...)")
    content = read_yaml(file, f"{key}={text}")
    if not (isinstance(content, dict) and "backbone" in content):
        dataset = isinstance(content, dict) and ("names" in content or "nc" in content or any(
            isinstance(content.get(k), (str, list)) for k in ("train", "val")))  # val: false is a training key
        hint = ("; a dataset YAML goes in data=" if dataset else
                "; for an Ultralytics settings-override file use overrides=" if key == "cfg" else "")  # train's key
        raise UsageError(f"{key}={text} is not a model YAML (it has no 'backbone:'){hint}")
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


def architecture(model: str | Path) -> str | dict:
    """What Ultralytics' ``DetectionModel`` builds ``model``'s architecture from: its YAML, or a ``.pt`` checkpoint's
    model dict (``DetectionModel`` takes no checkpoint), copied so that building it for other classes leaves the
    loaded checkpoint as it was."""
    if Path(str(model)).suffix != ".pt":
        return str(model)
    import copy

    from ultralytics import YOLO

    return copy.deepcopy(YOLO(str(model)).model.yaml)


def read_yaml(file: Path, what: str):
    """The content of a YAML file; a file that cannot be read or parsed raises UsageError naming ``what`` (the
    argument), the file and, for a syntax error, the line and column, as PyYAML reports them."""
    try:
        return yaml.safe_load(Path(file).read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"{what}: cannot read {file} ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{what}: {file} is not a text file (not UTF-8), so not a YAML file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = f"{file}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(file)
        problem = " ".join(str(getattr(error, "problem", None) or error).split())
        context = getattr(error, "context", None)
        context_mark = getattr(error, "context_mark", None)
        if context and context_mark and context_mark is not mark:
            problem += f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
        raise UsageError(f"{what}: not valid YAML: {where}: {problem}") from None


def is_model_yaml(file: Path) -> bool:
    """True if ``file`` parses as a model YAML (a mapping with ``backbone:``)."""
    try:
        content = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(content, dict) and "backbone" in content
