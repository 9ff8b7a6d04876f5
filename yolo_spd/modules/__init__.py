"""The convolution blocks, one file per paper: SPD-Conv (``spd``), SCConv (``scconv``), SSDConv (``ssdconv``); and
C3/C2f/C3k2 variants whose bottleneck 3 x 3 conv is SCConv or SSDConv (``blocks``)."""

import torch
from torch import nn

from .blocks import C2f_SCConv23, C2f_SSDConv, C3_SCConv23, C3_SSDConv, C3k2_SCConv23, C3k2_SSDConv
from .scconv import CRU, SRU, SCConv
from .spd import (
    SPDConv,
    SPDStridedConv2d,
    SpaceToDepth,
    fold_space_to_depth_order,
    replace_focus,
    spd_to_strided,
    strided_geometry,
    strided_to_spd,
)
from .spd_fold import fold_space_to_depth_into_convolutions
from .ssdconv import SSDConv

__all__ = (
    "C2f_SCConv23",
    "C2f_SSDConv",
    "C3_SCConv23",
    "C3_SSDConv",
    "C3k2_SCConv23",
    "C3k2_SSDConv",
    "CRU",
    "SRU",
    "SCConv",
    "SPDConv",
    "SPDStridedConv2d",
    "SSDConv",
    "SpaceToDepth",
    "fold_space_to_depth_into_convolutions",
    "fold_space_to_depth_order",
    "fuse_modules",
    "spd_to_strided",
    "strided_geometry",
    "strided_to_spd",
)

#: Modules with an inference-time ``fuse()``. SPDConv's folds space-to-depth into one strided convolution (its inner
#: Ultralytics ``Conv`` is otherwise fused by Ultralytics itself); SSDConv's keeps its fold for export traces and
#: changes nothing else (its eager eval path folds by itself), see its module docstring.
FUSABLE = (SCConv, SPDConv, SSDConv)


def fuse_modules(model: nn.Module, example: torch.Tensor | None = None, fold_spd: bool = True) -> nn.Module:
    """Fuse every SCConv, SPDConv and SSDConv inside ``model`` (any nesting) for inference; idempotent. Call it on a
    model in eval mode (it does not switch modes): BatchNorms fold with their running statistics.

    Every Ultralytics ``Focus`` stem becomes the equivalent ``SPDConv`` first (:func:`spd.replace_focus`): the same
    outputs, but exportable where Focus's step-2 slices are not (NCNN), and foldable like any SPDConv.

    SPDConv's fuse is the single strided convolution it equals (:func:`spd.spd_to_strided`). With an ``example``
    input, each standalone SpaceToDepth (yolov5-spd's rows) is also folded into the convolutions reading it where
    that is exact (:func:`spd_fold.fold_space_to_depth_into_convolutions`), and each one left is switched to ONNX's
    block order where its readers allow (:func:`fold_space_to_depth_order`), so an ONNX export uses the native op.
    Registered, Ultralytics' ``model.fuse()`` calls this with a small random image (see
    :mod:`yolo_spd.integration.fuse`); call it yourself for a plain ``nn.Module``.

    Args:
        model (nn.Module): The model, changed in place.
        example (torch.Tensor, optional): A probe input for the folds that need to run the model.
        fold_spd (bool): False keeps every space-to-depth as a rearrangement (SPDConv is then left to Ultralytics'
            BatchNorm fold), the inference form before space-to-depth folding; ``benchmarks/spd_fold.py`` compares
            the two.
    """
    replace_focus(model)  # Ultralytics' Focus stem is SPDConv(s=2); as one it gets SpaceToDepth's export forms
    for module in list(model.modules()):  # fuse() replaces children, so iterate over a snapshot
        if isinstance(module, FUSABLE) and (fold_spd or not isinstance(module, SPDConv)):
            module.fuse()
    if example is not None:
        if fold_spd:
            fold_space_to_depth_into_convolutions(model, example)
        fold_space_to_depth_order(model, example)
    return model
