"""SPD-Conv: space-to-depth followed by a non-strided convolution.

Sunkara & Luo, "No More Strided Convolutions or Pooling: A New CNN Building Block for Low-Resolution Images and
Small Objects", ECML PKDD 2022. The paper (Sec. 3.1) slices X (S x S x C1) by a scale factor into the sub-maps
f_{i,j} = X[i:S:scale, j:S:scale] and concatenates them along channels into X' (S/scale x S/scale x scale^2 C1), then
applies a non-strided convolution (Sec. 3.2) so no information is discarded by the downsampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from ultralytics.nn.modules.conv import Conv

from ._common import require, require_odd_kernel, require_positive_int


class SpaceToDepth(nn.Module):
    """Space-to-depth: (N, C, H, W) -> (N, scale^2 C, ceil(H/scale), ceil(W/scale)), losing no pixel.

    Channel order follows the SPD-Conv authors' ``space_to_depth`` so their trained weights stay usable: for scale 2
    the sub-maps are concatenated as ``x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]``,
    i.e. f_{0,0}, f_{1,0}, f_{0,1}, f_{1,1} (row offset varies fastest); general scales keep that ordering.

    Deviation from the authors' code: an H or W that is not a multiple of ``scale`` is zero-padded at the bottom and
    right before slicing. The authors' slicing yields sub-maps of different sizes there and ``torch.cat`` fails; the
    padded result has the same ceil(H/2) x ceil(W/2) size a stride-2, 'same'-padded 3x3 convolution produces, so the
    block stays a drop-in for the strided convolution it replaces.

    Implementation: one strided copy (a reshape/permute view, then one materialisation), not four slices and a
    concatenation; a channels-last input gives a channels-last output, where every output pixel is s^2 contiguous
    runs of C values. ``pixel_unshuffle`` plus a channel permutation folded into the next convolution was measured
    and is slower on CPU (``benchmarks/modules.py`` prints both), so the authors' order is produced directly.

    Args:
        c1 (int, optional): Input channels. Only checked; given by ``parse_model`` when used in a model YAML.
        c2 (int, optional): Output channels. Only checked (must equal scale^2 * c1). In a YAML row this is the
            declared output width, e.g. ``[-1, 1, SpaceToDepth, [512]]`` after a ``Conv`` of width 128.
        scale (int): Block size; the spatial downsampling factor.
    """

    def __init__(self, c1: int | None = None, c2: int | None = None, scale: int = 2):
        super().__init__()
        require_positive_int("scale", scale, "SpaceToDepth")
        if c1 is not None and c2 is not None:
            require(
                c2 == c1 * scale * scale,
                f"SpaceToDepth: output width c2={c2} is not allowed for c1={c1} input channels and scale={scale}; "
                f"space-to-depth always outputs scale^2 * c1 = {c1 * scale * scale} channels (in a model YAML, "
                f"declare {scale * scale}x the previous layer's width, or use SPDConv, which sets its own width)",
            )
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale
        pad_h, pad_w = -x.shape[-2] % s, -x.shape[-1] % s
        # While exporting, always emit the pad (of 0 where nothing is needed): a traced `if` would bake in the
        # example input's parity, and a dynamic-shape ONNX model would then fail on odd feature maps.
        if torch.onnx.is_in_onnx_export() or pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            return _space_to_depth_channels_last(x, s)
        return _space_to_depth(x, s)


def _space_to_depth(x: torch.Tensor, s: int) -> torch.Tensor:
    """One strided copy: view (N, C, H', i, W', j), order the blocks (j, i) with i fastest, as the authors' slicing."""
    n, c, h, w = x.shape
    blocks = x.reshape(n, c, h // s, s, w // s, s).permute(0, 5, 3, 1, 2, 4)  # (N, j, i, C, H', W')
    return blocks.reshape(n, s * s * c, h // s, w // s)


def _space_to_depth_channels_last(x: torch.Tensor, s: int) -> torch.Tensor:
    """As :func:`_space_to_depth` for a channels-last input, returning channels-last: every output pixel is s^2
    contiguous runs of C values, so the copy moves whole channel vectors."""
    n, c, h, w = x.shape
    pixels = x.permute(0, 2, 3, 1).reshape(n, h // s, s, w // s, s, c)  # (N, H', i, W', j, C), a view
    blocks = pixels.permute(0, 1, 3, 4, 2, 5).reshape(n, h // s, w // s, s * s * c)  # (N, H', W', j, i, C)
    return blocks.permute(0, 3, 1, 2)


class SPDConv(nn.Module):
    """SPD-Conv building block: ``SpaceToDepth(scale)`` then a non-strided ``Conv(scale^2 c1 -> c2, k)`` + BN + act.

    The drop-in for a strided convolution row: ``[-1, 1, Conv, [c2, 3, 2]]`` becomes ``[-1, 1, SPDConv, [c2, 3]]``
    (``[c2, 3, 2]`` means the same: the third argument is the downsampling factor, where Conv has its stride).

    Note the authors' YOLOv5-SPD configs use the other order at each downsampling (a stride-1 Conv, then
    space-to-depth, whose 4x wider output feeds the next block); ``cfg/yolov5-spd-*.yaml`` reproduce that with
    ``Conv`` + ``SpaceToDepth`` rows. This class is the block as the paper defines it (Sec. 3, Fig. 3).

    Args:
        c1 (int): Input channels.
        c2 (int): Output channels.
        k (int): Kernel size of the non-strided convolution (odd).
        s (int): Space-to-depth scale, i.e. the downsampling factor (2 replaces a stride-2 convolution).
        g (int): Groups of the convolution.
        act (bool | nn.Module): Activation, as in Ultralytics' ``Conv``.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 2, g: int = 1, act=True):
        super().__init__()
        require_positive_int("c1", c1, "SPDConv")
        require_positive_int("c2", c2, "SPDConv")
        require_odd_kernel(k, "SPDConv")
        require_positive_int("s", s, "SPDConv")
        require_positive_int("g", g, "SPDConv")
        require(
            (c1 * s * s) % g == 0 and c2 % g == 0,
            f"SPDConv: g={g} is not allowed; it must divide both the space-to-depth width {c1 * s * s} and c2={c2}",
        )
        self.spd = SpaceToDepth(scale=s)
        self.conv = Conv(c1 * s * s, c2, k, 1, g=g, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.spd(x))
