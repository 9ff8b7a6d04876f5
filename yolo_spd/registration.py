"""Registration of yolo_spd's modules into Ultralytics: the only file that touches Ultralytics internals.

``import yolo_spd`` calls :func:`register`, which makes three reversible changes to ``ultralytics.nn.tasks``, one
to torch's checkpoint allow-list and one to ``BaseModel.fuse``:

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

5. Inference fuse. Ultralytics calls ``model.fuse()`` before val, predict and export, and its ``BaseModel.fuse`` only
   knows Ultralytics' classes. ``BaseModel.fuse`` is wrapped to run :func:`yolo_spd.fuse_modules` (SCConv's and
   SSDConv's exact BatchNorm and branch folding) first, then Ultralytics' own fuse, unchanged.

:func:`register` is idempotent; :func:`unregister` undoes all five. Both check the Ultralytics version against
:data:`SUPPORTED_ULTRALYTICS`, and registration verifies on a two-row model that the channel rule took effect, so a
future Ultralytics that builds models differently fails at import with a clear message instead of building wrong
models.
"""

from __future__ import annotations

import builtins
import re
from pathlib import Path

import torch
from ultralytics.nn.modules import C3, Conv

from .configs import packaged_config
from .modules import CRU, SRU, SCConv, SPDConv, SSDConv, SpaceToDepth, fuse_modules

# [lower, upper). 8.4.67 is the first release with restricted checkpoint loading (ULTRALYTICS_SAFE_LOAD); both ends
# of the range are tested (see README, "Tested versions").
SUPPORTED_ULTRALYTICS = ((8, 4, 67), (8, 5, 0))
SUPPORTED_TEXT = "ultralytics>={}.{}.{},<{}.{}".format(*SUPPORTED_ULTRALYTICS[0], *SUPPORTED_ULTRALYTICS[1][:2])

#: YAML name -> class, for every module a model YAML may name.
MODULES = {cls.__name__: cls for cls in (SpaceToDepth, SPDConv, SCConv, SSDConv)}
#: Modules that take Ultralytics' Conv-style (c1, c2, *args) channel rule.
BASE_MODULES = frozenset(MODULES.values())
#: Modules that also take a repeat count as their third argument (C3-style blocks); none yet.
REPEAT_MODULES: frozenset = frozenset()
#: Classes a checkpoint of a yolo_spd model pickles, besides torch's and Ultralytics' own.
PICKLED_CLASSES = (SpaceToDepth, SPDConv, SCConv, SSDConv, SRU, CRU)


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


def _fuse_ours_first(original):
    """Wrap ``BaseModel.fuse``: fuse yolo_spd's modules, then run Ultralytics' fuse exactly as before."""

    def fuse(self, *args, **kwargs):
        fuse_modules(self)
        return original(self, *args, **kwargs)

    fuse.__wrapped__ = original
    return fuse


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
    _state["safe_globals_before"] = list(torch.serialization.get_safe_globals())
    for name in _state["added_names"]:
        setattr(tasks, name, MODULES[name])
    tasks.frozenset = _frozenset_with_ours
    tasks.check_yaml = _check_yaml_resolving_packaged(_state["check_yaml"])
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
    tasks.BaseModel.fuse = _state["fuse"]
    ours = set(PICKLED_CLASSES)
    kept = [g for g in torch.serialization.get_safe_globals() if g not in ours or g in _state["safe_globals_before"]]
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(kept)
    _state.clear()
