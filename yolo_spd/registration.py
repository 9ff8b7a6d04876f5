"""Registration of yolo_spd's modules into Ultralytics: the only file that touches Ultralytics internals.

``import yolo_spd`` calls :func:`register`, which makes these reversible changes (to ``ultralytics.nn.tasks`` and its
``BaseModel.fuse``, torch's checkpoint allow-list, Ultralytics' default trainer callbacks and its DDP launch-file
writer):

1. Module names. ``parse_model`` resolves a YAML row's module name in the ``tasks`` namespace, so each class in
   :data:`MODULES` is bound there under its name (refusing to shadow an existing Ultralytics name).
2. Channel bookkeeping. ``parse_model`` applies its Conv-style channel rule - c1 from the ``from`` layer, c2 scaled by
   ``width_multiple`` / ``max_channels`` with ``make_divisible``, arguments ``[c1, c2, *rest]`` - to the classes in a
   ``frozenset({...})`` it builds on each call (``base_modules``), and inserts the repeat count for those in a second
   one (``repeat_modules``). ``frozenset`` is looked up in the ``tasks`` namespace before builtins, so binding
   :func:`_frozenset_with_ours` there adds our classes to those two sets and to nothing else. Ultralytics then does
   all the arithmetic, prints its usual layer table, and no Ultralytics file or function body is changed.
3. Bare config names. ``yaml_model_load`` finds a YAML through ``tasks.check_yaml``; the wrapper returns the packaged
   ``cfg/`` file for a bare name such as ``"yolov5-spd-n.yaml"`` when no file of that name exists locally.
4. Safe loading. The classes are added to ``torch.serialization``'s safe globals, so checkpoints load under
   ``ULTRALYTICS_SAFE_LOAD=true`` (import yolo_spd before loading: a restricted load cannot import it for you).
5. Row errors. ``tasks.parse_model`` is wrapped: the rows are checked first (:mod:`yolo_spd.model_yaml`) and an
   error while building a row is re-raised as :class:`~yolo_spd.model_yaml.ModelYAMLError` naming the YAML file and
   the layer, instead of a bare ``KeyError`` or ``IndexError``. The wrapper also gives one-scale YAMLs such as
   ``yolo11-spd-n.yaml`` their scale letter (see :func:`_scale_from_file_name`).
6. Training reliability. Two callbacks join Ultralytics' default trainer callbacks: checkpoints (``last.pt``,
   ``best.pt``, ``epochN.pt``) are written to a temporary file and renamed, so a kill mid-write leaves the previous
   checkpoint intact; and on resume, ``results.csv`` rows of epochs about to be re-run are dropped (Ultralytics writes
   the row before the checkpoint, so a kill between the two would otherwise duplicate that epoch). The multi-GPU
   launch file Ultralytics generates gets an ``import yolo_spd`` line, so DDP workers rebuild our models.
7. Fonts offline. Ultralytics' ``check_font`` downloads Arial from GitHub when it is not in the settings folder, even
   in offline mode; when Ultralytics found no connectivity at import (``ultralytics.utils.ONLINE`` false) the wrapper
   answers with matplotlib's bundled DejaVu Sans instead, so plots never reach for the network. Online, Ultralytics'
   own download runs as usual.
8. Inference fuse. Ultralytics calls ``model.fuse()`` before val, predict and export, and its ``BaseModel.fuse`` only
   knows Ultralytics' classes. ``BaseModel.fuse`` is wrapped to run :func:`yolo_spd.fuse_modules` (SCConv's and
   SSDConv's exact BatchNorm and branch folding, and SpaceToDepth's switch to ONNX's block order, checked on a small
   random image sized from the model's ``yaml["channels"]`` and ``stride``) first, then Ultralytics' own fuse,
   unchanged.

Evaluation also needs one thing from Ultralytics' validator, kept here with the rest:
:func:`validate_collecting_detections` runs ``model.val(save_json=True)`` with a validator subclass whose
``eval_json`` (Ultralytics' own COCO-JSON scoring step) is switched off, and reads back the detections, class map and
image list the validator collected, so yolo_spd scores them against the right ground truth exactly once.

:func:`register` is idempotent; :func:`unregister` undoes all eight. Both check the Ultralytics version against
:data:`SUPPORTED_ULTRALYTICS`, and registration verifies on a two-row model that the channel rule took effect, so a
future Ultralytics that builds models differently fails at import with a clear message instead of building wrong
models.
"""

from __future__ import annotations

import builtins
import csv
import inspect
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from ultralytics.nn.modules import C3, Conv

from .configs import packaged_config
from .model_yaml import ModelYAMLError, check_rows
from .modules import CRU, SRU, SCConv, SPDConv, SSDConv, SpaceToDepth, fuse_modules
from .modules.blocks import BLOCKS

# [lower, upper). 8.4.67 is the first release with restricted checkpoint loading (ULTRALYTICS_SAFE_LOAD); both ends
# of the range are tested (see README, "Tested versions").
SUPPORTED_ULTRALYTICS = ((8, 4, 67), (8, 5, 0))
SUPPORTED_TEXT = "ultralytics>={}.{}.{},<{}.{}".format(*SUPPORTED_ULTRALYTICS[0], *SUPPORTED_ULTRALYTICS[1][:2])

#: YAML name -> class, for every module a model YAML may name.
MODULES = {cls.__name__: cls for cls in (SpaceToDepth, SPDConv, SCConv, SSDConv, *BLOCKS)}
#: Modules that take Ultralytics' Conv-style (c1, c2, *args) channel rule.
BASE_MODULES = frozenset(MODULES.values())
#: Modules that also take a repeat count as their third argument: the C3/C2f/C3k2 variants.
REPEAT_MODULES = frozenset(BLOCKS)
#: Classes a checkpoint of a yolo_spd model pickles, besides torch's and Ultralytics' own.
PICKLED_CLASSES = (SpaceToDepth, SPDConv, SCConv, SSDConv, SRU, CRU, *BLOCKS)


class UnsupportedUltralyticsError(ImportError):
    """The installed Ultralytics is outside the range whose internals this module was written and tested against."""


_state: dict = {}  # what register() changed, so unregister() can restore it exactly


def is_registered() -> bool:
    return bool(_state)


def check_ultralytics_version(version: str | None = None) -> None:
    """Raise :class:`UnsupportedUltralyticsError` unless ``version`` (default: installed) is in the supported range."""
    if version is None:
        import ultralytics

        version = ultralytics.__version__
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    release = tuple(int(part) for part in match.groups()) if match else None
    low, high = SUPPORTED_ULTRALYTICS
    if release is None or not low <= release < high:
        raise UnsupportedUltralyticsError(
            f"yolo_spd supports {SUPPORTED_TEXT}, but ultralytics {version} is installed; "
            f"install a supported version: pip install '{SUPPORTED_TEXT}'"
        )


def _frozenset_with_ours(iterable=()):
    """``frozenset`` for ``ultralytics.nn.tasks``: adds our classes to parse_model's base and repeat module sets."""
    members = builtins.frozenset(iterable)
    if Conv in members and C3 in members:  # base_modules (the only set holding both)
        return members | BASE_MODULES
    if C3 in members:  # repeat_modules
        return members | REPEAT_MODULES
    return members


def _check_yaml_resolving_packaged(original):
    def check_yaml(file, *args, **kwargs):
        packaged = packaged_config(file)
        if packaged is not None and not Path(str(file)).exists():
            return str(packaged)
        return original(file, *args, **kwargs)

    check_yaml.__wrapped__ = original
    return check_yaml


def _yaml_parameters(cls) -> list | None:
    """The constructor parameters a YAML row's ``args`` map onto, for our classes (None for anyone else's)."""
    if cls not in BASE_MODULES:
        return None
    parameters = list(inspect.signature(cls).parameters.values())[1:]  # c1 comes from the 'from' layer
    if cls in REPEAT_MODULES:
        parameters = parameters[:1] + parameters[2:]  # the repeat count comes from the repeats column
    return parameters


def _rows(d: dict) -> list:
    return list(d.get("backbone") or []) + list(d.get("head") or [])


def _first_failing_layer(parse_model, d: dict, ch) -> int | None:
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


def _scale_from_file_name(d: dict) -> None:
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


def _parse_model_naming_rows(original, namespace: dict):
    def parse_model(d, ch, verbose=True):
        where = Path(str(d.get("yaml_file", "model YAML"))).name
        check_rows(d, namespace, _yaml_parameters, where)
        _scale_from_file_name(d)
        try:
            return original(d, ch, verbose=verbose)
        except Exception as error:
            layer = _first_failing_layer(original, d, ch)
            if layer is None:
                raise
            row = _rows(d)[layer]
            problem = " ".join(str(error).split()) or type(error).__name__
            raise ModelYAMLError(f"{where}: layer {layer} {row[2]} {row[3]}: {problem}") from error

    parse_model.__wrapped__ = original
    return parse_model


class _AtomicWritePath(type(Path())):
    """A path whose ``write_bytes`` writes a temporary file beside it and renames it into place."""

    def write_bytes(self, data) -> int:
        temporary = self.with_name(f".{self.name}.{os.getpid()}.tmp")
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self)
        return len(data)


def _write_checkpoints_atomically(trainer) -> None:
    """on_pretrain_routine_start: route the trainer's checkpoint writes through :class:`_AtomicWritePath`."""
    trainer.wdir = _AtomicWritePath(trainer.wdir)
    trainer.last, trainer.best = trainer.wdir / trainer.last.name, trainer.wdir / trainer.best.name


def _drop_rerun_epochs_from_results(trainer) -> None:
    """on_train_start: after a resume, keep only results.csv rows of epochs the checkpoint already contains."""
    csv_file = Path(trainer.csv)
    if trainer.start_epoch <= 0 or not csv_file.is_file():
        return
    rows = list(csv.reader(io.StringIO(csv_file.read_text(encoding="utf-8"))))
    kept = rows[:1] + [r for r in rows[1:] if r and int(float(r[0])) <= trainer.start_epoch]
    if len(kept) != len(rows):
        from .paths import write_atomic

        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(kept)
        write_atomic(csv_file, buffer.getvalue())


TRAINER_CALLBACKS = {
    "on_pretrain_routine_start": _write_checkpoints_atomically,
    "on_train_start": _drop_rerun_epochs_from_results,
}
DDP_IMPORT = "    import yolo_spd  # registers yolo_spd's modules in this DDP worker\n"


def _ddp_file_importing_us(original):
    def generate_ddp_file(trainer):
        file = Path(original(trainer))
        text = file.read_text(encoding="utf-8")
        main = 'if __name__ == "__main__":\n'
        if main in text and DDP_IMPORT not in text:
            file.write_text(text.replace(main, main + DDP_IMPORT, 1), encoding="utf-8")
        return str(file)

    generate_ddp_file.__wrapped__ = original
    return generate_ddp_file


FONT_USERS = ("ultralytics.utils.checks", "ultralytics.data.utils", "ultralytics.utils.plotting")  # bind check_font


def _local_font(name: str) -> Path | None:
    from matplotlib import font_manager
    from ultralytics.utils import USER_CONFIG_DIR

    candidates = [Path(USER_CONFIG_DIR) / name, *(Path(f.fname) for f in font_manager.fontManager.ttflist
                                                    if name in f.fname)]
    return next((c for c in candidates if c.is_file()), None)


def _check_font_offline_fallback(original):
    def check_font(font="Arial.ttf"):
        from ultralytics import utils

        if utils.ONLINE:
            return original(font)
        import matplotlib

        return _local_font(Path(font).name) or Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"

    check_font.__wrapped__ = original
    return check_font


def _patch_font_users(replacement) -> None:
    import importlib

    for name in FONT_USERS:
        setattr(importlib.import_module(name), "check_font", replacement)


def _fuse_ours_first(original):
    """Wrap ``BaseModel.fuse``: fuse yolo_spd's modules, then run Ultralytics' fuse exactly as before."""

    def fuse(self, *args, **kwargs):
        fuse_modules(self, example=_probe_image(self))
        return original(self, *args, **kwargs)

    fuse.__wrapped__ = original
    return fuse


def _probe_image(model) -> torch.Tensor | None:
    """A seeded random batch of one image, two maximum strides square, on the model's device; None unless float32."""
    parameter = next(model.parameters(), None)
    if parameter is None or parameter.dtype != torch.float32:
        return None
    channels = (getattr(model, "yaml", None) or {}).get("channels", 3)
    stride = getattr(model, "stride", None)
    size = 2 * max(32, int(stride.max()) if isinstance(stride, torch.Tensor) else 32)
    generator = torch.Generator().manual_seed(0)
    return torch.rand(1, channels, size, size, generator=generator).to(parameter.device)


def _self_check(tasks) -> None:
    """Build a two-row model through parse_model and confirm our channel rule was applied."""
    d = {"nc": 1, "backbone": [[-1, 1, "SPDConv", [16, 3]], [-1, 1, "SpaceToDepth", [64]]], "head": []}
    layers, _ = tasks.parse_model(d, ch=3, verbose=False)
    if layers[0].conv.conv.in_channels != 12 or layers[0].conv.conv.out_channels != 16:
        raise UnsupportedUltralyticsError(
            f"yolo_spd could not register into this Ultralytics' parse_model (channel rule not applied); "
            f"yolo_spd supports {SUPPORTED_TEXT}"
        )


def register() -> None:
    """Make the modules usable from Ultralytics model YAMLs and checkpoints. Safe to call more than once."""
    if is_registered():
        return
    check_ultralytics_version()
    from ultralytics.nn import tasks

    taken = [name for name, cls in MODULES.items() if tasks.__dict__.get(name, cls) is not cls]
    if taken or "frozenset" in tasks.__dict__:
        clash = ", ".join(taken) or "frozenset (already patched by another package)"
        raise UnsupportedUltralyticsError(
            f"yolo_spd cannot register: ultralytics.nn.tasks already defines {clash}; yolo_spd supports {SUPPORTED_TEXT}"
        )
    _state["added_names"] = [name for name in MODULES if name not in tasks.__dict__]
    _state["check_yaml"] = tasks.check_yaml
    _state["parse_model"] = tasks.parse_model
    _state["safe_globals_before"] = list(torch.serialization.get_safe_globals())
    for name in _state["added_names"]:
        setattr(tasks, name, MODULES[name])
    tasks.frozenset = _frozenset_with_ours
    tasks.check_yaml = _check_yaml_resolving_packaged(_state["check_yaml"])
    tasks.parse_model = _parse_model_naming_rows(_state["parse_model"], vars(tasks))
    from ultralytics.utils import dist
    from ultralytics.utils.callbacks import base

    _state["generate_ddp_file"] = dist.generate_ddp_file
    dist.generate_ddp_file = _ddp_file_importing_us(_state["generate_ddp_file"])
    for event, callback in TRAINER_CALLBACKS.items():
        base.default_callbacks[event].append(callback)
    from ultralytics.utils import checks

    _state["check_font"] = checks.check_font
    _patch_font_users(_check_font_offline_fallback(_state["check_font"]))
    torch.serialization.add_safe_globals(list(PICKLED_CLASSES))
    _state["fuse"] = tasks.BaseModel.__dict__["fuse"]
    tasks.BaseModel.fuse = _fuse_ours_first(_state["fuse"])
    try:
        _self_check(tasks)
    except Exception:
        unregister()
        raise


def unregister() -> None:
    """Undo :func:`register`, leaving ``ultralytics.nn.tasks`` exactly as it was. Safe to call when unregistered."""
    if not is_registered():
        return
    from ultralytics.nn import tasks

    for name in _state["added_names"]:
        delattr(tasks, name)
    del tasks.frozenset
    tasks.check_yaml = _state["check_yaml"]
    tasks.parse_model = _state["parse_model"]
    from ultralytics.utils import dist
    from ultralytics.utils.callbacks import base

    dist.generate_ddp_file = _state["generate_ddp_file"]
    for event, callback in TRAINER_CALLBACKS.items():
        base.default_callbacks[event].remove(callback)
    _patch_font_users(_state["check_font"])
    tasks.BaseModel.fuse = _state["fuse"]
    ours = set(PICKLED_CLASSES)
    kept = [g for g in torch.serialization.get_safe_globals() if g not in ours or g in _state["safe_globals_before"]]
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(kept)
    _state.clear()


@dataclass
class CollectedValidation:
    """What one ``model.val`` run saw and produced, in Ultralytics' conventions."""

    detections: list[dict]  # COCO results: image_id from the file stem, category_id = class_map[class index]
    class_map: list[int]
    image_files: list[str]  # the images the dataloader kept, in order
    save_dir: Path
    metrics: object  # Ultralytics' DetMetrics


def validate_collecting_detections(model, **overrides) -> CollectedValidation:
    """Run ``model.val(**overrides)`` collecting COCO-format detections, without Ultralytics' own JSON scoring.

    Ultralytics scores collected detections in ``DetectionValidator.eval_json`` against the official JSON only for a
    ``val2017.txt`` COCO layout and against box-area ground truth otherwise; yolo_spd replaces that step with its own
    evaluation (the official JSON whenever the dataset has one), so the subclass turns it off.
    """
    from ultralytics.models.yolo.detect import DetectionValidator

    class DetectionsCollector(DetectionValidator):
        def eval_json(self, stats):
            return stats

    seen = []
    model.add_callback("on_val_end", seen.append)
    try:
        metrics = model.val(validator=DetectionsCollector, **{**overrides, "save_json": True})
    finally:
        model.callbacks["on_val_end"].remove(seen.append)
    validator = seen[-1]
    return CollectedValidation(
        detections=list(validator.jdict),
        class_map=list(validator.class_map),
        image_files=list(validator.dataloader.dataset.im_files),
        save_dir=Path(validator.save_dir),
        metrics=metrics,
    )
