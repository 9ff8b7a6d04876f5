"""The convolution blocks, one file per paper: SPD-Conv (``spd``), SCConv (``scconv``), SSDConv (``ssdconv``); and
C3/C2f/C3k2 variants whose bottleneck 3 x 3 conv is SCConv or SSDConv (``blocks``)."""

import torch
from torch import nn

from .blocks import C2f_SCConv23, C2f_SSDConv, C3_SCConv23, C3_SSDConv, C3k2_SCConv23, C3k2_SSDConv
from .scconv import CRU, SRU, SCConv
from .spd import SPDConv, SpaceToDepth, fold_space_to_depth_order, replace_focus
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
    "SSDConv",
    "SpaceToDepth",
    "fold_space_to_depth_order",
    "fuse_modules",
)

#: Modules with an inference-time ``fuse()`` (SPDConv's inner Ultralytics ``Conv`` is fused by Ultralytics itself;
#: SSDConv has none: folding its BatchNorms measured as no gain, see its module docstring).
FUSABLE = (SCConv,)


def fuse_modules(model: nn.Module, example: torch.Tensor | None = None) -> nn.Module:
    """Fuse every SCConv inside ``model`` (any nesting) for inference; eval mode, idempotent.

    Every Ultralytics ``Focus`` stem becomes the equivalent ``SPDConv`` first (:func:`spd.replace_focus`): the same
    outputs, but exportable where Focus's step-2 slices are not (NCNN).

    With an ``example`` input, also switch each SpaceToDepth whose output only feeds convolutions to ONNX's block order
    (:func:`fold_space_to_depth_order`), so an ONNX export uses the native op. Registered, Ultralytics'
    ``model.fuse()`` calls this with a small random image (see :mod:`yolo_spd.integration.fuse`); call it yourself for a
    plain ``nn.Module``.
    """
    replace_focus(model)  # Ultralytics' Focus stem is SPDConv(s=2); as one it gets SpaceToDepth's export forms
    for module in list(model.modules()):  # fuse() replaces children, so iterate over a snapshot
        if isinstance(module, FUSABLE):
            module.fuse()
    if example is not None:
        fold_space_to_depth_order(model, example)
    return model
