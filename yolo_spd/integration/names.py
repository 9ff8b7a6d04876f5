"""Part 1: model names and the channel rule, so ``parse_model`` builds yolo_spd's modules from a model YAML.

``parse_model`` resolves a YAML row's module name in the ``ultralytics.nn.tasks`` namespace, so each class in
:data:`MODULES` is bound there under its name (refusing to shadow an existing Ultralytics name).

``parse_model`` applies its Conv-style channel rule - c1 from the ``from`` layer, c2 scaled by ``width_multiple`` /
``max_channels`` with ``make_divisible``, arguments ``[c1, c2, *rest]`` - to the classes in a ``frozenset({...})`` it
builds on each call (``base_modules``), and inserts the repeat count for those in a second one (``repeat_modules``).
``frozenset`` is looked up in the ``tasks`` namespace before builtins, so binding :func:`frozenset_with_ours` there
adds our classes to those two sets and to nothing else. Ultralytics then does all the arithmetic, prints its usual
layer table, and no Ultralytics file or function body is changed.

:func:`self_check` builds a two-row model after registration and confirms the rule took effect, so a future
Ultralytics that builds models differently fails at import with a clear message instead of building wrong models.
"""

from __future__ import annotations

import builtins
import inspect

from ultralytics.nn.modules import C3, Conv

from ..modules import SCConv, SPDConv, SSDConv, SpaceToDepth
from ..modules.blocks import BLOCKS
from .version import SUPPORTED_TEXT, UnsupportedUltralyticsError

#: YAML name -> class, for every module a model YAML may name.
MODULES = {cls.__name__: cls for cls in (SpaceToDepth, SPDConv, SCConv, SSDConv, *BLOCKS)}
#: Modules that take Ultralytics' Conv-style (c1, c2, *args) channel rule.
BASE_MODULES = frozenset(MODULES.values())
#: Modules that also take a repeat count as their third argument: the C3/C2f/C3k2 variants.
REPEAT_MODULES = frozenset(BLOCKS)

_added: list[str] = []  # names this part bound in tasks (so undo removes exactly those)


def frozenset_with_ours(iterable=()):
    """``frozenset`` for ``ultralytics.nn.tasks``: adds our classes to parse_model's base and repeat module sets."""
    members = builtins.frozenset(iterable)
    if Conv in members and C3 in members:  # base_modules (the only set holding both)
        return members | BASE_MODULES
    if C3 in members:  # repeat_modules
        return members | REPEAT_MODULES
    return members


def yaml_parameters(cls) -> list | None:
    """The constructor parameters a YAML row's ``args`` map onto, for our classes (None for anyone else's)."""
    if cls not in BASE_MODULES:
        return None
    parameters = list(inspect.signature(cls).parameters.values())[1:]  # c1 comes from the 'from' layer
    if cls in REPEAT_MODULES:
        parameters = parameters[:1] + parameters[2:]  # the repeat count comes from the repeats column
    return parameters


def apply() -> None:
    from ultralytics.nn import tasks

    taken = [name for name, cls in MODULES.items() if tasks.__dict__.get(name, cls) is not cls]
    if taken or "frozenset" in tasks.__dict__:
        clash = ", ".join(taken) or "frozenset (already patched by another package)"
        raise UnsupportedUltralyticsError(
            f"yolo_spd cannot register: ultralytics.nn.tasks already defines {clash}; yolo_spd supports {SUPPORTED_TEXT}"
        )
    _added[:] = [name for name in MODULES if name not in tasks.__dict__]
    for name in _added:
        setattr(tasks, name, MODULES[name])
    tasks.frozenset = frozenset_with_ours


def undo() -> None:
    from ultralytics.nn import tasks

    for name in _added:
        delattr(tasks, name)
    _added.clear()
    tasks.__dict__.pop("frozenset", None)


def self_check() -> None:
    """Build a two-row model through parse_model and confirm our channel rule was applied."""
    from ultralytics.nn import tasks

    d = {"nc": 1, "backbone": [[-1, 1, "SPDConv", [16, 3]], [-1, 1, "SpaceToDepth", [64]]], "head": []}
    layers, _ = tasks.parse_model(d, ch=3, verbose=False)
    if layers[0].conv.conv.in_channels != 12 or layers[0].conv.conv.out_channels != 16:
        raise UnsupportedUltralyticsError(
            f"yolo_spd could not register into this Ultralytics' parse_model (channel rule not applied); "
            f"yolo_spd supports {SUPPORTED_TEXT}"
        )
