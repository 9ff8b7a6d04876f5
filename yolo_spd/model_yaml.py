"""Checks of a model YAML's layer rows, so a mistake is reported as ``file: layer i (module): problem``.

Ultralytics' ``parse_model`` fails on a bad row with a bare ``KeyError: 'SPDconv'`` or ``IndexError``; these checks
run first (see :mod:`yolo_spd.integration.yaml_loading`) and name the YAML file, the layer index as Ultralytics numbers it
(backbone rows first, then head rows) and what is wrong: an unknown module, a ``from`` index that does not point to an
earlier layer, or arguments that do not fit one of yolo_spd's modules.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

import torch

from .errors import UsageError


class ModelYAMLError(UsageError):
    """A model YAML row that cannot be built. The message names the file, the layer and the problem.

    A :class:`~yolo_spd.errors.UsageError` (so still a ``ValueError``): the CLI prints it as one error line."""


def _fits(value, default) -> bool:
    """Does a YAML literal fit a parameter with this default? (No default: an integer, as channels and kernels are.)"""
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    return isinstance(value, int) and not isinstance(value, bool)


def _expected(default) -> str:
    return {bool: "true or false", float: "a number", str: "a string"}.get(type(default), "an integer")


def check_arguments(name: str, args: list, parameters: list[inspect.Parameter]) -> str | None:
    """The problem with a row's ``args`` for one of our modules (``parameters`` are what they map onto), or None."""
    required = [p for p in parameters if p.default is inspect.Parameter.empty]
    if len(args) < len(required) or len(args) > len(parameters):
        names = ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
                          for p in parameters)
        count = f"{len(required)}" if len(required) == len(parameters) else f"{len(required)} to {len(parameters)}"
        return f"takes {count} arguments ({names}), got {len(args)}: {args}"
    for value, parameter in zip(args, parameters):
        if isinstance(value, str) and not isinstance(parameter.default, str):
            continue  # Ultralytics evaluates strings ("nc", "0.5") before building; the module checks the result
        if not _fits(value, parameter.default):
            return f"argument {parameter.name}={value!r} ({type(value).__name__}) must be {_expected(parameter.default)}"
    return None


def _resolve(name, namespace: dict):
    if not isinstance(name, str):
        return None
    if name.startswith("nn."):
        return getattr(torch.nn, name[3:], None)
    if name.startswith("torchvision.ops."):
        import torchvision

        return getattr(torchvision.ops, name[16:], None)
    return namespace.get(name)


def _module_names(namespace: dict) -> list[str]:
    return [k for k, v in namespace.items() if isinstance(v, type) and issubclass(v, torch.nn.Module)]


def _from_problem(f, i: int) -> str | None:
    indices = f if isinstance(f, list) else [f]
    for index in indices:
        if not isinstance(index, int) or isinstance(index, bool):
            return f"'from' must be an integer or a list of integers, got {f!r}"
        absolute = i + index if index < 0 else index
        if not 0 <= absolute < i and not (i == 0 and index == -1):
            earlier = f"layers 0-{i - 1} come before it" if i else "it is the first layer, so only -1 (the input)"
            return f"'from' index {index} does not point to an earlier layer ({earlier})"
    return None


def check_rows(d: dict, namespace: dict, yaml_parameters: Callable[[type], list | None], where: str) -> None:
    """Raise :class:`ModelYAMLError` for the first row of ``d`` that cannot be built.

    ``namespace`` is where parse_model resolves module names; ``yaml_parameters(cls)`` returns the parameters a row's
    ``args`` map onto for one of our classes, or None for classes not ours (their arguments are not checked here).
    """
    sections = [("backbone", d.get("backbone") or []), ("head", d.get("head") or [])]
    i = 0
    for section, rows in sections:
        for j, row in enumerate(rows):
            prefix = f"{where}: layer {i} ({section} row {j})"
            if not (isinstance(row, list) and len(row) == 4):
                raise ModelYAMLError(f"{prefix}: a row is [from, repeats, module, args], got {row!r}")
            f, n, name, args = row
            module = _resolve(name, namespace)
            if module is None:
                close = difflib.get_close_matches(str(name), _module_names(namespace), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else "; import the package that defines it first"
                raise ModelYAMLError(f"{prefix}: unknown module {name!r}{hint}")
            problem = _from_problem(f, i)
            if problem is None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
                problem = f"repeats must be a positive integer, got {n!r}"
            if problem is None and not isinstance(args, list):
                problem = f"args must be a list, got {args!r}"
            parameters = yaml_parameters(module) if problem is None else None
            if parameters is not None:
                problem = check_arguments(name, args, parameters)
            if problem:
                raise ModelYAMLError(f"{prefix} {name}: {problem}")
            i += 1
