"""Folding standalone SpaceToDepth rows into the convolutions that read them, for inference (``model.fuse()``).

In the authors' YOLOv5-SPD (``cfg/yolov5-spd-*.yaml``) every downsampling is a stride-1 ``Conv``, a ``SpaceToDepth``
row, and the two 1 x 1 convolutions (``cv1``, ``cv2``) of the next ``C3``, which read the space-to-depth output
directly (backbone) or through a ``Concat`` with an earlier head layer (PAN head). By
:func:`~yolo_spd.modules.spd.spd_to_strided`, a k x k stride-1 'same' convolution after space-to-depth (Sunkara &
Luo, Sec. 3.1-3.2) is one (s k) x (s k) convolution with stride s of the space-to-depth input; for C3's 1 x 1
convolutions a 2 x 2, stride-2 one. :func:`fold_space_to_depth_into_convolutions` rewrites a model that way:

- a SpaceToDepth whose output only reaches such convolutions becomes :class:`FoldedSpaceToDepth` (its input passes
  through) and each reader an :class:`~yolo_spd.modules.spd.SPDStridedConv2d`;
- read through a channel concatenation, the ``Concat`` becomes :class:`DeferredConcat` (it hands on its inputs) and
  each convolution reading it a :class:`SplitConv2d`: a convolution of a concatenation is the sum of the
  convolutions of its parts (its input-channel columns split by part), and the space-to-depth parts' convolutions
  fold as above. That is exact only if *every* reader of the concatenation is such a convolution.

Where the fold applies is decided by running the model, not by names: one pass with hooks on a float64 copy finds
each SpaceToDepth's readers (and the concatenations it reaches); layers whose readers are not all foldable
convolutions are left alone; each candidate is then applied to that copy and kept only if the copy's outputs on the
probe still equal the unfolded copy's to float64 rounding (so a reader the hooks cannot see, such as a residual sum
in a ``forward``, undoes it); then the accepted folds are applied to the model itself, weights computed in float64
and rounded once to its dtype. The training graph is never touched: Ultralytics fuses only for inference (val,
predict, export), and its training checkpoints store the unfused model (a model saved after ``fuse()`` keeps the
folded form; these classes are on the checkpoint allow-list).
"""

from __future__ import annotations

import copy
from collections import defaultdict

import torch
from torch import nn

from .spd import (
    _LAYER_ATTRIBUTES,
    SpaceToDepth,
    SPDConv,
    SPDStridedConv2d,
    _float64_pair,
    _is_channel_concatenation,
    _same_float64,
    _tensors,
    is_foldable_conv,
)


class FoldedSpaceToDepth(nn.Module):
    """A SpaceToDepth layer whose readers took the rearrangement into their weights: returns its input unchanged.

    Args:
        scale (int): The folded layer's block size (kept for inspection).
        block_order (str): The folded layer's block order (kept for inspection).
    """

    def __init__(self, scale: int = 2, block_order: str = "authors"):
        super().__init__()
        self.scale, self.block_order = scale, block_order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return f"scale={self.scale}, block_order={self.block_order!r}"


class DeferredConcat(nn.Module):
    """A channel ``Concat`` whose every reader is a :class:`SplitConv2d`: hands its inputs on as a tuple, which
    each reader convolves part by part, so the concatenated tensor (and the space-to-depth inside it) is never
    formed."""

    def forward(self, x: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return tuple(x)


class SplitConv2d(nn.Module):
    """A convolution of a channel concatenation, given the parts: ``sum(conv_p(part_p))``.

    Each part's convolution holds that part's input-channel columns of the original weight, a part that was a
    space-to-depth output as the folded :class:`~yolo_spd.modules.spd.SPDStridedConv2d` of its (full-resolution)
    input; the first part's convolution carries the bias.

    Args:
        parts (list[nn.Conv2d]): One convolution per concatenated input, in concatenation order.
    """

    def __init__(self, parts: list[nn.Conv2d]):
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, x: tuple[torch.Tensor, ...]) -> torch.Tensor:
        out = self.parts[0](x[0])
        for conv, part in zip(self.parts[1:], x[1:]):
            out = out + conv(part)
        return out


def fold_space_to_depth_into_convolutions(model: nn.Module, example: torch.Tensor) -> int:
    """Fold every standalone ``SpaceToDepth`` of ``model`` into the convolutions reading it, where that is exact;
    returns how many layers were folded (see the module docstring for how, and how it is checked).

    SpaceToDepth layers inside an ``SPDConv`` are left to ``SPDConv.fuse()``. A model that cannot be copied or run on
    ``example`` in float64 on the CPU is left as it is: the fold only changes speed and graph shape, never outputs,
    so it is skipped rather than failing the caller's ``fuse()``.
    """
    if not any(isinstance(m, SpaceToDepth) for m in _standalone(model)):
        return 0
    try:
        trial = copy.deepcopy(model).to("cpu", torch.float64).eval()
        probe = example.detach().to("cpu", torch.float64)
        with torch.no_grad():
            groups = _foldable_groups(trial, probe)
            reference = _tensors(trial(probe))
    except Exception:  # noqa: BLE001 - see the docstring: no fold is better than a fuse() that fails
        return 0
    accepted = []
    with torch.no_grad():
        for group in groups:
            undo = _fold(trial, group)
            try:
                exact = _all_same_float64(_tensors(trial(probe)), reference)
            except Exception:  # noqa: BLE001 - a reader the hooks could not see got a tuple or a full-size tensor
                exact = False
            if exact:
                accepted.append(group)
            else:
                for step in reversed(undo):
                    step()
        for group in accepted:
            _fold(model, group)
    return sum(len(group["layers"]) for group in accepted)


def _standalone(model: nn.Module):
    """Every module of ``model`` except those inside an SPDConv (whose own ``fuse()`` folds its space-to-depth)."""
    inside = {id(m) for block in model.modules() if isinstance(block, SPDConv) for m in block.modules()}
    return [m for m in model.modules() if id(m) not in inside]


def _is_leaf(module: nn.Module) -> bool:
    return next(module.children(), None) is None


def _foldable_groups(model: nn.Module, example: torch.Tensor) -> list[dict]:
    """The fold candidates found by one hooked forward pass of ``example``.

    A group is the SpaceToDepth layers joined by the concatenations they reach: {"layers": {name: (scale, block
    order)}, "direct": [(conv name, layer name)], "concats": {name: [(layer name or None, width)]}, "split": {concat
    name: [conv names]}}. Only groups whose leaf readers are all foldable convolutions reading the whole tensor (a
    layer may also reach a concatenation of its group; a concatenation may hold no other concatenation) and whose
    convolutions' norms can be folded are returned.
    """
    names = {m: n for n, m in model.named_modules()}
    layers = [m for m in _standalone(model) if isinstance(m, SpaceToDepth)]
    produced, kept, widths = {}, [], {}  # id(output) -> ("layer" | "concat", name); kept holds the tensors alive
    readers, concats = defaultdict(list), {}

    def before(module, args):
        values = args[0] if args and isinstance(args[0], (list, tuple)) else args[:1]
        for t in values:
            key = produced.get(id(t)) if isinstance(t, torch.Tensor) else None
            if key is not None and names[module] not in readers[key]:
                readers[key].append(names[module])

    def after(module, args, output):
        if module in layers:
            produced[id(output)] = ("layer", names[module])
            widths[names[module]] = output.shape[1]
            kept.append(output)
        elif (args and isinstance(args[0], (list, tuple)) and any(id(t) in produced for t in args[0])
              and _is_channel_concatenation(args[0], output)):
            concats[names[module]] = [(produced.get(id(t)), t.shape[1]) for t in args[0]]
            produced[id(output)] = ("concat", names[module])
            kept.append(output)

    hooks = [m.register_forward_pre_hook(before) for m in model.modules()]
    hooks += [m.register_forward_hook(after) for m in model.modules()]
    try:
        model(example)
    finally:
        for hook in hooks:
            hook.remove()

    def foldable(conv_name: str, width: int) -> bool:
        conv = model.get_submodule(conv_name)
        parent_name, _, attr = conv_name.rpartition(".")
        norm = _norm_of(model.get_submodule(parent_name), attr)
        return is_foldable_conv(conv) and conv.in_channels == width and _float64_pair(conv, norm) is not None

    groups, seen = [], set()
    for layer in layers:
        if names[layer] in seen or names[layer] not in widths:
            continue
        group = {"layers": {}, "direct": [], "concats": {}, "split": {}}
        pending, ok = [("layer", names[layer])], True
        while pending:
            kind, name = pending.pop()
            if kind == "layer" and name not in group["layers"]:
                module = model.get_submodule(name)
                group["layers"][name] = (module.scale, module.block_order)
                for reader in readers[("layer", name)]:
                    if reader in concats:
                        pending.append(("concat", reader))
                    elif _is_leaf(model.get_submodule(reader)):
                        ok &= foldable(reader, widths[name])
                        group["direct"].append((reader, name))
            elif kind == "concat" and name not in group["concats"]:
                parts = concats[name]
                ok &= all(key is None or key[0] == "layer" for key, _ in parts)
                group["concats"][name] = [(key[1] if key else None, width) for key, width in parts]
                pending += [("layer", key[1]) for key, _ in parts if key is not None]
                total = sum(width for _, width in parts)
                group["split"][name] = [r for r in readers[("concat", name)] if _is_leaf(model.get_submodule(r))]
                ok &= bool(group["split"][name]) and all(foldable(r, total) for r in group["split"][name])
        seen |= set(group["layers"])
        ok &= len({conv for conv, _ in group["direct"]}) == len(group["direct"])  # one reader, one layer
        if ok and (group["direct"] or group["concats"]):
            groups.append(group)
    return groups


def _norm_of(parent: nn.Module, attr: str) -> nn.Module | None:
    """The BatchNorm an Ultralytics ``Conv`` applies after its ``conv`` (None for any other parent or attribute)."""
    from ultralytics.nn.modules.conv import Conv

    return getattr(parent, "bn", None) if isinstance(parent, Conv) and attr == "conv" else None


def _all_same_float64(outputs: list[torch.Tensor], reference: list[torch.Tensor]) -> bool:
    return len(outputs) == len(reference) and all(_same_float64(a, b) for a, b in zip(outputs, reference))


def _fold(model: nn.Module, group: dict) -> list:
    """Apply one group's fold to ``model`` (modules found by name); returns the undo steps, to run in reverse."""
    undo = []
    for name, layer in group["direct"]:
        scale, order = group["layers"][layer]
        _replace_conv(model, name, lambda conv, w, b, s=scale, o=order: SPDStridedConv2d.from_spd(w, b, s, o), undo)
    for concat, parts in group["concats"].items():
        for name in group["split"][concat]:
            _replace_conv(model, name, lambda conv, w, b, parts=parts: _split(conv, w, b, parts, group["layers"]),
                          undo)
        _replace(model, concat, DeferredConcat(), undo)
    for name, (scale, order) in group["layers"].items():
        _replace(model, name, FoldedSpaceToDepth(scale, order), undo)
    return undo


def _split(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor, parts: list, layers: dict) -> SplitConv2d:
    """The SplitConv2d equal to ``conv`` (its float64 ``weight`` and ``bias``, norm folded) over the concatenation
    ``parts`` [(SpaceToDepth layer name or None, width)]."""
    convs, start = [], 0
    for index, (layer, width) in enumerate(parts):
        columns, part_bias = weight[:, start:start + width], bias if index == 0 else None
        start += width
        if layer is not None:
            scale, order = layers[layer]
            convs.append(SPDStridedConv2d.from_spd(columns, part_bias, scale, order))
            continue
        plain = nn.Conv2d(width, conv.out_channels, conv.kernel_size, 1, conv.padding, bias=part_bias is not None,
                          dtype=columns.dtype)
        with torch.no_grad():
            plain.weight.copy_(columns)
            if part_bias is not None:
                plain.bias.copy_(part_bias)
        convs.append(plain.requires_grad_(False))
    return SplitConv2d(convs)


def _replace(model: nn.Module, name: str, new: nn.Module, undo: list) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    old = getattr(parent, attr)
    for key in _LAYER_ATTRIBUTES:
        if hasattr(old, key):
            setattr(new, key, getattr(old, key))
    new.train(old.training)
    setattr(parent, attr, new)
    undo.append(lambda: setattr(parent, attr, old))


def _replace_conv(model: nn.Module, name: str, build, undo: list) -> None:
    """Replace the convolution ``name`` by ``build(conv, weight, bias)`` (float64 weight and bias with the BatchNorm
    of the Ultralytics ``Conv`` holding it folded in), rounded once to the old weight's dtype and device. That
    ``Conv`` then runs its ``forward_fuse``: no BatchNorm is left for Ultralytics' fuse to fold."""
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    old = getattr(parent, attr)
    bn = _norm_of(parent, attr)
    new = build(old, *_float64_pair(old, bn)).to(old.weight.device, old.weight.dtype).requires_grad_(False)
    setattr(parent, attr, new)
    undo.append(lambda: setattr(parent, attr, old))
    if bn is not None:
        del parent.bn
        parent.forward = parent.forward_fuse

        def restore_norm(parent=parent, bn=bn):
            parent.bn = bn
            del parent.forward

        undo.append(restore_norm)
