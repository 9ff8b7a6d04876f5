"""SPD-Conv: space-to-depth followed by a non-strided convolution.

Sunkara & Luo, "No More Strided Convolutions or Pooling: A New CNN Building Block for Low-Resolution Images and
Small Objects", ECML PKDD 2022. The paper (Sec. 3.1) slices X (S x S x C1) by a scale factor into the sub-maps
f_{i,j} = X[i:S:scale, j:S:scale] and concatenates them along channels into X' (S/scale x S/scale x scale^2 C1), then
applies a non-strided convolution (Sec. 3.2) so no information is discarded by the downsampling.

The two steps together are one strided convolution (:func:`spd_to_strided`): space-to-depth by s, then a k x k
stride-1 convolution with 'same' zero padding, equals an (s k) x (s k) convolution of X with stride s, the weights
mapped one to one. SPD-Conv therefore computes nothing a 2k x 2k stride-2 convolution cannot; it is that convolution
with its kernel stored in a different layout. ``SPDConv.fuse()`` uses it for inference.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from ultralytics.nn.modules.conv import Conv, Focus

from ._common import is_int, require, require_odd_kernel, require_positive_int


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
    and is slower on CPU (``benchmarks/modules.py`` prints both), so the authors' order is produced directly. In
    training the gradient is the inverse rearrangement, also one copy; for NCHW it is written along rows
    (:class:`_SpaceToDepthCopy`), where autograd's backward of the view chain loops over the s block columns
    innermost. ``benchmarks/space_to_depth.py`` measures both directions against ``clone()``; ``docs/speed.md``
    has the figures and what limits NCHW on CPU (a stride-s gather that PyTorch's CPU copy does not vectorise).

    Block order: ``block_order="authors"`` is the order above (column-major over the s x s block grid). ``"onnx"`` is
    ONNX's ``SpaceToDepth`` order (row-major: f_{0,0}, f_{0,1}, f_{1,0}, f_{1,1}); in that order an ONNX export emits
    the single native ``SpaceToDepth`` op, which ONNX Runtime runs several times faster than the 6-D ``Transpose``
    the authors' order needs (``benchmarks/modules.py`` prints the ratio). Only :func:`fold_space_to_depth_order`
    (run by ``model.fuse()``) switches a layer to it, after permuting the input channels of every convolution reading
    the output, so the model's outputs stay the same.

    For inference ``model.fuse()`` first removes the layer where it can: space-to-depth followed by a convolution is
    one strided convolution (:func:`spd_to_strided`), so the layer folds into the convolutions reading it
    (:func:`~yolo_spd.modules.spd_fold.fold_space_to_depth_into_convolutions`); the switch above is for layers left.

    Args:
        c1 (int, optional): Input channels. Only checked; given by ``parse_model`` when used in a model YAML.
        c2 (int, optional): Output channels. Only checked (must equal scale^2 * c1). In a YAML row this is the
            declared output width, e.g. ``[-1, 1, SpaceToDepth, [512]]`` after a ``Conv`` of width 128.
        scale (int): Block size; the spatial downsampling factor.
    """

    #: "authors" or "onnx"; a class attribute so checkpoints pickled before it existed load with the authors' order.
    block_order = "authors"

    def __init__(self, c1: int | None = None, c2: int | None = None, scale: int = 2):
        super().__init__()
        require_positive_int("scale", scale, "SpaceToDepth")
        for name, value in (("c1", c1), ("c2", c2)):
            if value is not None:
                require_positive_int(name, value, "SpaceToDepth")
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
        onnx = torch.onnx.is_in_onnx_export()
        # While exporting, always emit the pad (of 0 where nothing is needed): a traced `if` would bake in the
        # example input's parity, and a dynamic-shape ONNX model would then fail on odd feature maps.
        if onnx or pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        row_major = self.block_order == "onnx"
        if row_major and onnx:
            return _NativeOnnxSpaceToDepth.apply(x, s)
        if torch.jit.is_tracing() and not onnx:
            return _space_to_depth_traced(x, s, row_major)
        if torch.compiler.is_compiling():  # torch.compile / torch.export: step slices, see _space_to_depth_sliced
            return _space_to_depth_sliced(x, s, row_major)
        # With gradients, is_exporting() reduces to the ONNX and tracing checks above (its torch.export clause needs
        # them off), so the cheap flags suffice; scripting cannot reach this Python forward.
        if x.requires_grad and torch.is_grad_enabled() and not onnx and not _is_channels_last(x):
            return _SpaceToDepthCopy.apply(x, s, row_major)
        return _rearranged(x, s, row_major)


def _is_channels_last(x: torch.Tensor) -> bool:
    """Channels-last and not also NCHW-contiguous (a tensor with C = 1 or H = W = 1 is both; it takes the NCHW path)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _rearranged(x: torch.Tensor, s: int, row_major: bool = False) -> torch.Tensor:
    """Space-to-depth of an (already padded) input as one copy, in the input's memory format."""
    if _is_channels_last(x):
        return _space_to_depth_channels_last(x, s, row_major)
    return _space_to_depth(x, s, row_major)


class _SpaceToDepthCopy(torch.autograd.Function):
    """Space-to-depth of an NCHW input whose backward is the inverse rearrangement written along rows.

    Autograd's backward of the view chain in :func:`_space_to_depth` is one copy into the NCHW input gradient with
    the s block columns of each input row innermost: a loop of length s per element, 2-2.5x the time of a
    ``clone()`` of the gradient on CPU at the shapes of ``benchmarks/space_to_depth.py``. Here, for a float32 or
    float64 gradient on the CPU with s = 2, the two block columns of an input row are written as the real and
    imaginary parts of one complex number (``torch.complex(real, imag, out=...)`` into a complex view of the input
    gradient; a value moves unchanged, bit for bit): one pass with rows as the loop. Other dtypes, scales and
    devices get autograd's copy. Under ``create_graph`` (or ``torch.compile``) the backward is the differentiable
    view chain.

    A channels-last input does not come here: autograd's backward of :func:`_space_to_depth_channels_last` already
    copies runs of C values, and measured as fast as a hand-written one.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, s: int, row_major: bool) -> torch.Tensor:
        ctx.s, ctx.row_major = s, row_major
        return _space_to_depth(x, s, row_major)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        s, row_major = ctx.s, ctx.row_major
        if torch.is_grad_enabled() or torch.compiler.is_compiling():  # create_graph / compiled: differentiable views
            return _depth_to_space_views(grad, s, row_major), None, None
        return _depth_to_space(grad, s, row_major), None, None


def _blocks(grad: torch.Tensor, s: int, row_major: bool) -> torch.Tensor:
    """A space-to-depth output (N, s^2 C, H', W') as the view (N, j, i, C, H', W'): block column j, row i."""
    blocks = grad.unflatten(1, (s, s, grad.shape[1] // (s * s)))
    return blocks.transpose(1, 2) if row_major else blocks


def _depth_to_space_views(grad: torch.Tensor, s: int, row_major: bool) -> torch.Tensor:
    """The inverse of :func:`_space_to_depth` as differentiable views and one ``reshape`` copy (NCHW result)."""
    n, _, h, w = grad.shape
    return _blocks(grad, s, row_major).permute(0, 3, 4, 2, 5, 1).reshape(n, -1, h * s, w * s)  # (N, C, H', i, W', j)


#: Output width W' from which the NCHW backward writes in one pass (below it, one pass per row offset). Both are
#: the same bit copy; on the project's CPU (benchmarks/space_to_depth.py) the one pass took 1.1-1.5x a clone() of
#: the gradient at W' = 40-80 and 2-5x at W' = 10-20, where TensorIterator's per-row-pair overhead dominates, and
#: the per-offset passes about 1.8x at W' = 20-40 and 2.6x at W' = 80.
_LONG_ROWS = 32


def _depth_to_space(grad: torch.Tensor, s: int, row_major: bool) -> torch.Tensor:
    """The inverse of :func:`_space_to_depth`: (N, s^2 C, H', W') back to a new NCHW (N, C, s H', s W') tensor."""
    n, _, h, w = grad.shape
    blocks = _blocks(grad, s, row_major)  # (N, j, i, C, H', W'), any strides
    c = blocks.shape[3]
    out = torch.empty(n, c, h * s, w * s, dtype=grad.dtype, device=grad.device)
    complex_dtype = {torch.float32: torch.complex64, torch.float64: torch.complex128}.get(grad.dtype)
    if s == 2 and complex_dtype is not None and grad.device.type == "cpu":
        pairs = out.view(complex_dtype).view(n, c, h, 2, w)  # (N, C, H', i, W'): (j = 0, j = 1) per element
        if w >= _LONG_ROWS:  # one pass writing the input gradient in order, a row pair per inner loop
            torch.complex(blocks[:, 0].permute(0, 2, 3, 1, 4), blocks[:, 1].permute(0, 2, 3, 1, 4), out=pairs)
        else:  # short rows: one pass per row offset i, whose inner loops run over all C H' rows
            for i in range(2):
                torch.complex(blocks[:, 0, i], blocks[:, 1, i], out=pairs[:, :, :, i])
        return out
    out.view(n, c, h, s, w, s).copy_(blocks.permute(0, 3, 4, 2, 5, 1))  # (N, C, H', i, W', j): autograd's copy
    return out


def _space_to_depth(x: torch.Tensor, s: int, row_major: bool = False) -> torch.Tensor:
    """One strided copy: view (N, C, H', i, W', j), order the blocks (j, i) with i fastest, as the authors' slicing
    (or (i, j) with j fastest when ``row_major``, ONNX's order)."""
    n, c, h, w = x.shape
    order = (0, 3, 5, 1, 2, 4) if row_major else (0, 5, 3, 1, 2, 4)  # (N, i, j, C, H', W') or (N, j, i, C, H', W')
    blocks = x.reshape(n, c, h // s, s, w // s, s).permute(order)
    return blocks.reshape(n, s * s * c, h // s, w // s)


def _space_to_depth_channels_last(x: torch.Tensor, s: int, row_major: bool = False) -> torch.Tensor:
    """As :func:`_space_to_depth` for a channels-last input, returning channels-last: every output pixel is s^2
    contiguous runs of C values, so the copy moves whole channel vectors."""
    n, c, h, w = x.shape
    pixels = x.permute(0, 2, 3, 1).reshape(n, h // s, s, w // s, s, c)  # (N, H', i, W', j, C), a view
    order = (0, 1, 3, 2, 4, 5) if row_major else (0, 1, 3, 4, 2, 5)  # (N, H', W', i, j, C) or (N, H', W', j, i, C)
    blocks = pixels.permute(order).reshape(n, h // s, w // s, s * s * c)
    return blocks.permute(0, 3, 1, 2)


def _block_offsets(s: int, row_major: bool) -> list[tuple[int, int]]:
    """The (row, column) offsets of the s x s sub-maps in the layer's block order: column-major (the authors') or
    row-major (ONNX's)."""
    return [(i, j) for i in range(s) for j in range(s)] if row_major else [(i, j) for j in range(s) for i in range(s)]


def _space_to_depth_sliced(x: torch.Tensor, s: int, row_major: bool = False) -> torch.Tensor:
    """The sub-maps f_{i,j} = X[i::s, j::s] concatenated along channels in the layer's block order: the form under
    ``torch.compile``. Inductor fuses it into one kernel, and the 6-D view chain of :func:`_space_to_depth` met an
    inductor error with dynamic shapes ("cannot determine truth value of Relational" while ordering its symbolic
    strides; torch 2.14), which Ultralytics' ``compile=True`` turns on after a recompile. Bit-identical: a copy."""
    return torch.cat([x[..., i::s, j::s] for i, j in _block_offsets(s, row_major)], dim=1)


def _space_to_depth_traced(x: torch.Tensor, s: int, row_major: bool = False) -> torch.Tensor:
    """The traced (export) form: each sub-map f_{i,j} = X[i::s, j::s] as a 1 x 1, stride-s max pooling of X cropped
    at (i, j), concatenated along channels in the layer's block order.

    Neither a step-s slice (pnnx/NCNN: "slice with step 2 is not supported") nor a 6-D permute (NCNN: "permute
    5-rank tensor is not supported yet!"; CoreML is limited to rank 5) nor ``pixel_unshuffle`` (x2paddle: "not
    supported"; coremltools: only from iOS 16) appears: a step-1 crop, a pooling and a concatenation are known to
    every export target. A 1 x 1 max pooling selects, it does not compute, so this equals :func:`_space_to_depth`
    bit for bit. Used whenever ``torch.jit.trace`` runs outside an ONNX export (TorchScript, OpenVINO, pnnx/NCNN,
    x2paddle, CoreML)."""
    return torch.cat([F.max_pool2d(x[..., i:, j:], 1, s) for i, j in _block_offsets(s, row_major)], dim=1)


class _NativeOnnxSpaceToDepth(torch.autograd.Function):
    """Row-major space-to-depth that an ONNX export writes as one ``SpaceToDepth`` node (TorchScript exporter, which
    Ultralytics' ``export`` uses) rather than as the reshape/transpose/reshape the traced Python would give."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, s: int) -> torch.Tensor:
        return _space_to_depth(x, s, row_major=True)

    @staticmethod
    def symbolic(g, x, s: int):
        return g.op("SpaceToDepth", x, blocksize_i=s)


def fold_space_to_depth_order(model: nn.Module, example: torch.Tensor) -> int:
    """Switch each ``SpaceToDepth`` in ``model`` to ONNX's block order where that is exact; returns how many switched.

    A layer switches when its output reaches only ungrouped ``nn.Conv2d`` modules, directly or through channel
    concatenations (Ultralytics' ``Concat`` row after a head SpaceToDepth): those convolutions get the matching input
    channels permuted (a relabelling of the same sum, so exact up to float rounding). Readers are found by running
    ``example`` through the model in eval mode with hooks; each switch is then checked against the unswitched model's
    outputs on ``example`` and undone if they differ, which is what happens when the output also feeds something
    else (a residual sum, a functional convolution). A model that cannot run ``example`` (a ``RuntimeError``) keeps
    the authors' order everywhere: the switch only changes speed, never outputs, so it is skipped rather than
    failing the caller's ``fuse()``.
    """
    layers = [m for m in model.modules() if isinstance(m, SpaceToDepth) and m.block_order == "authors"]
    if not layers:
        return 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            try:
                readers = _convolutions_reading(model, layers, example)
                reference = _tensors(model(example))
            except RuntimeError:
                return 0
            return sum(_switch_if_exact(model, layer, readers[layer], example, reference) for layer in layers)
    finally:
        model.train(was_training)


def _convolutions_reading(model: nn.Module, layers: list[SpaceToDepth], example: torch.Tensor) -> dict:
    """{layer: [(conv, first channel, width)]}: the nn.Conv2d modules reading a layer's output, and where in their
    input channels it sits (0 when read directly, its offset when read through a channel concatenation)."""
    sources, kept, readers = {}, [], {layer: [] for layer in layers}  # sources: id(tensor) -> [(layer, first, width)]

    def track(tensor, placed):
        sources.setdefault(id(tensor), []).extend(placed)
        kept.append(tensor)  # keeps the tensor alive, so its id cannot be reused during the pass

    def record_output(module, args, output):
        if isinstance(module, SpaceToDepth) and module in readers:
            track(output, [(module, 0, output.shape[1])])
        elif args and isinstance(args[0], (list, tuple)) and any(id(t) in sources for t in args[0]):
            inputs = args[0]
            if _is_channel_concatenation(inputs, output):
                starts = itertools.accumulate((t.shape[1] for t in inputs[:-1]), initial=0)
                track(output, [(layer, start + first, width) for t, start in zip(inputs, starts)
                               for layer, first, width in sources.get(id(t), [])])

    def record_reader(conv, args):
        for layer, first, width in sources.get(id(args[0]), []):
            if (conv, first, width) not in readers[layer]:
                readers[layer].append((conv, first, width))

    hooks = [m.register_forward_hook(record_output) for m in model.modules()]
    hooks += [m.register_forward_pre_hook(record_reader) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return readers


def _is_channel_concatenation(inputs, output) -> bool:
    return (all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in inputs) and isinstance(output, torch.Tensor)
            and output.shape[1] == sum(t.shape[1] for t in inputs) and torch.equal(output, torch.cat(inputs, 1)))


def _switch_if_exact(model, layer: SpaceToDepth, readers: list, example, reference) -> bool:
    if not readers or any(conv.groups != 1 for conv, _, _ in readers):
        return False
    original = [conv.weight.detach().clone() for conv, _, _ in readers]
    for conv, first, width in readers:
        index = torch.arange(conv.in_channels)
        index[first:first + width] = first + _row_major_channel_index(layer.scale, width)
        conv.weight.copy_(conv.weight[:, index])
    layer.block_order = "onnx"
    if _same_outputs(_tensors(model(example)), reference):
        return True
    del layer.block_order  # back to the class default
    for (conv, _, _), weight in zip(readers, original):
        conv.weight.copy_(weight)
    return False


def _row_major_channel_index(s: int, channels: int) -> torch.Tensor:
    """Index i such that row_major_output = authors_output[:, i] (and the same for a reader's weight columns)."""
    authors = torch.arange(channels).view(s, s, channels // (s * s))  # authors' layout: (j, i, C)
    return authors.permute(1, 0, 2).reshape(-1)  # read back in (i, j, C) order


def _tensors(output) -> list[torch.Tensor]:
    """Every tensor in a model output (tensors, or lists/tuples/dicts of them), depth first."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors(item)]
    return []


def _same_outputs(outputs: list[torch.Tensor], reference: list[torch.Tensor]) -> bool:
    return len(outputs) == len(reference) and all(
        a.shape == b.shape and (a - b).abs().max() <= 1e-4 * (1 + b.abs().max()) for a, b in zip(outputs, reference)
    )


# ------------------------------------------------------------------------------------ SPD-Conv as a strided convolution


def _block_index(i: int, j: int, s: int, block_order: str) -> int:
    """Position of sub-map f_{i,j} (rows offset i, columns offset j) among the s^2 blocks of a SpaceToDepth output."""
    return j * s + i if block_order == "authors" else i * s + j


def _check_block_order(block_order: str) -> None:
    require(block_order in ("authors", "onnx"), f"block_order={block_order!r} is not allowed; expected 'authors' or 'onnx'")


def spd_to_strided(weight: torch.Tensor, scale: int = 2, block_order: str = "authors") -> torch.Tensor:
    """The weight of the one strided convolution that equals ``SpaceToDepth(scale)`` followed by a convolution.

    ``weight`` is (C2, s^2 C1, kh, kw): a stride-1 convolution with 'same' zero padding (kh // 2, kw // 2), no
    dilation, one group, reading space-to-depth's s^2 C1 channels. The result is (C2, C1, s kh, s kw), the weight of
    a stride-s convolution of the space-to-depth *input*, with the zero padding of :func:`strided_geometry`.

    Why (paper Sec. 3.1 and 3.2, with b(i, j) the position of sub-map f_{i,j} in the block order: j s + i in the
    authors' order, i s + j in ONNX's): space-to-depth gives X'[b(i,j) C1 + c, y, x] = X[c, s y + i, s x + j], so the
    stride-1 convolution of X' with padding p = k // 2 is

        Y[o, y, x] = sum_{c, i, j, dy, dx} W[o, b(i,j) C1 + c, dy, dx] X[c, s (y + dy - p) + i, s (x + dx - p) + j],

    and with u = s dy + i, v = s dx + j (each pair (dy, i) is one u in [0, s k)) this is the stride-s convolution
    with kernel W'[o, c, u, v] = W[o, b(i,j) C1 + c, dy, dx] whose window starts s p rows above and columns left of
    s y, s x. Space-to-depth's zero padding (Sec. 3.1 leaves it out; see :class:`SpaceToDepth`) and the convolution's
    are both zeros of X outside its extent, so the identity holds on every input size. Each weight moves to exactly
    one place: the fan-in, C1 (s k)^2 = s^2 C1 k^2, and so PyTorch's default initialisation, and every elementwise
    optimiser step (SGD, momentum, Adam, AdamW, weight decay) are the same on either form. :func:`strided_to_spd`
    is the inverse.

    Args:
        weight (torch.Tensor): (C2, scale^2 * C1, kh, kw) weight of the convolution after space-to-depth.
        scale (int): The space-to-depth block size s, which becomes the stride.
        block_order (str): The SpaceToDepth's block order, ``"authors"`` (the default) or ``"onnx"``.

    Returns:
        torch.Tensor: (C2, C1, s kh, s kw), a new tensor (a permutation of ``weight``'s entries).
    """
    require_positive_int("scale", scale, "spd_to_strided")
    _check_block_order(block_order)
    c2, wide, kh, kw = weight.shape
    require(wide % (scale * scale) == 0, f"spd_to_strided: a weight with {wide} input channels cannot follow "
                                         f"SpaceToDepth(scale={scale}), whose output has scale^2 * C1 channels")
    c1 = wide // (scale * scale)
    blocks = weight.reshape(c2, scale, scale, c1, kh, kw)  # (o, j, i, c, dy, dx) authors; (o, i, j, c, dy, dx) onnx
    order = (0, 3, 4, 2, 5, 1) if block_order == "authors" else (0, 3, 4, 1, 5, 2)  # -> (o, c, dy, i, dx, j)
    return blocks.permute(order).reshape(c2, c1, scale * kh, scale * kw)


def strided_to_spd(weight: torch.Tensor, scale: int = 2, block_order: str = "authors") -> torch.Tensor:
    """Inverse of :func:`spd_to_strided`: a stride-s convolution's (C2, C1, s kh, s kw) weight as the weight of the
    convolution after ``SpaceToDepth(scale)``, (C2, s^2 C1, kh, kw).

    Any convolution with stride s whose kernel side is a multiple of s is such a pair: with odd kh, kw and the
    padding of :func:`strided_geometry` it is exactly an ``SPDConv(C1, C2, kh, s)`` convolution (Sec. 3), e.g. the
    6 x 6, stride-2, padding-2 stem of YOLOv5 v6+ is ``SPDConv(3, C2, 3)``.

    Args:
        weight (torch.Tensor): (C2, C1, scale * kh, scale * kw) weight of a stride-``scale`` convolution.
        scale (int): The stride, which becomes the space-to-depth block size.
        block_order (str): The block order of the SpaceToDepth that will read the input, ``"authors"`` or ``"onnx"``.

    Returns:
        torch.Tensor: (C2, scale^2 * C1, kh, kw), a new tensor.
    """
    require_positive_int("scale", scale, "strided_to_spd")
    _check_block_order(block_order)
    c2, c1, big_h, big_w = weight.shape
    require(big_h % scale == 0 and big_w % scale == 0,
            f"strided_to_spd: a {big_h} x {big_w} kernel is not a multiple of the stride {scale} on both sides")
    kh, kw = big_h // scale, big_w // scale
    taps = weight.reshape(c2, c1, kh, scale, kw, scale)  # (o, c, dy, i, dx, j)
    order = (0, 5, 3, 1, 2, 4) if block_order == "authors" else (0, 3, 5, 1, 2, 4)
    return taps.permute(order).reshape(c2, scale * scale * c1, kh, kw)


class StridedGeometry(NamedTuple):
    """Geometry of the stride-s convolution equal to SpaceToDepth(s) + a k x k stride-1 'same' convolution.

    Attributes:
        kernel_size (tuple[int, int]): (s kh, s kw).
        stride (int): s.
        padding (tuple[int, int]): zero padding at the top and left, (s (kh // 2), s (kw // 2)); also the symmetric
            ``nn.Conv2d`` padding, which is all an input whose H and W are multiples of s needs.
        extra (int): further zero rows at the bottom and columns at the right, s - 1. With them the output is
            ceil(H / s) x ceil(W / s) for every H, W, as space-to-depth's output is; only an H or W that is not a
            multiple of s reads them (those padded by space-to-depth). An ONNX ``Conv`` takes this asymmetric
            padding directly; ``nn.Conv2d`` pads both sides alike, so :class:`SPDStridedConv2d` pads the input
            first where needed.
    """

    kernel_size: tuple[int, int]
    stride: int
    padding: tuple[int, int]
    extra: int


def strided_geometry(kernel_size: int | tuple[int, int], scale: int = 2) -> StridedGeometry:
    """Kernel, stride and zero padding of the convolution :func:`spd_to_strided` gives for a ``kernel_size`` (odd)
    convolution after ``SpaceToDepth(scale)``: k = 3, s = 2 is a 6 x 6 convolution, stride 2, padding 2 (plus one
    row and column at the bottom and right for odd sizes); k = 1 a 2 x 2 convolution, stride 2, padding 0."""
    sides = (kernel_size, kernel_size) if is_int(kernel_size) else tuple(kernel_size) if isinstance(
        kernel_size, (tuple, list)) else ()
    require(len(sides) == 2 and all(is_int(k) and k >= 1 and k % 2 == 1 for k in sides),
            f"strided_geometry: kernel_size={kernel_size!r} is not allowed; expected a positive odd int or a pair of "
            "them ('same' padding, k // 2 on both sides, needs odd kernel sides)")
    kh, kw = sides
    require_positive_int("scale", scale, "strided_geometry")
    return StridedGeometry((scale * kh, scale * kw), scale, (scale * (kh // 2), scale * (kw // 2)), scale - 1)


def is_foldable_conv(conv: nn.Module) -> bool:
    """True for a plain ``nn.Conv2d`` that :func:`spd_to_strided` can take after a space-to-depth: stride 1, 'same'
    zero padding of an odd kernel (k // 2), no dilation, one group."""
    return (type(conv) is nn.Conv2d and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros" and all(k % 2 == 1 for k in conv.kernel_size)
            and conv.padding == tuple(k // 2 for k in conv.kernel_size))


class SPDStridedConv2d(nn.Conv2d):
    """The strided convolution a space-to-depth and the convolution reading it fold into (:func:`spd_to_strided`).

    An ``nn.Conv2d`` (kernel s kh x s kw, stride s, padding s (k // 2)) that, like :class:`SpaceToDepth`, zero-pads an
    input whose H or W is not a multiple of s at the bottom and right first, so it returns ceil(H / s) x ceil(W / s)
    and equals space-to-depth + the convolution on every input size (:class:`StridedGeometry`). Build it with
    :meth:`from_spd`; ``model.fuse()`` puts it in place of SPDConv's convolution and of the convolutions reading a
    yolov5-spd SpaceToDepth row.

    Export: in ONNX it is one ``Conv`` node with the asymmetric padding (s p, s p, s p + s - 1, s p + s - 1), exact
    for every input size, so a dynamic-shape export stays right on odd sizes. Traced (TorchScript, OpenVINO,
    pnnx/NCNN) it is the eager code, whose pad follows the example input's parity, as space-to-depth's traced form
    does; exports use sizes that are multiples of the model stride, where no pad is needed.
    """

    @classmethod
    def from_spd(cls, weight: torch.Tensor, bias: torch.Tensor | None, scale: int, block_order: str = "authors"):
        """The convolution equal to ``SpaceToDepth(scale, block_order)`` then a stride-1 'same' convolution with
        ``weight`` (C2, s^2 C1, kh, kw) and ``bias``; same dtype and device as ``weight``, gradients off."""
        strided = spd_to_strided(weight.detach(), scale, block_order)
        geometry = strided_geometry(tuple(weight.shape[2:]), scale)
        conv = cls(strided.shape[1], strided.shape[0], geometry.kernel_size, scale, geometry.padding,
                   bias=bias is not None, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(strided)
            if bias is not None:
                conv.bias.copy_(bias)
        return conv.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (sh, sw), (ph, pw) = self.stride, self.padding
        if torch.onnx.is_in_onnx_export():
            bias = self.bias if self.bias is not None else self.weight.new_zeros(self.out_channels)
            pads = (ph, pw, ph + sh - 1, pw + sw - 1)
            return _OnnxPaddedConv.apply(x, self.weight, bias, self.kernel_size, (sh, sw), pads)
        pad_h, pad_w = -x.shape[-2] % sh, -x.shape[-1] % sw
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return super().forward(x)


class _OnnxPaddedConv(torch.autograd.Function):
    """A convolution with asymmetric zero padding (top, left, bottom, right), written to ONNX as one ``Conv`` node
    (ONNX's ``pads``); torch's exporter would write ``nn.Conv2d`` padding plus a separate ``Pad``."""

    @staticmethod
    def forward(ctx, x, weight, bias, kernel, stride, pads):
        top, left, bottom, right = pads
        return F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias, stride)

    @staticmethod
    def symbolic(g, x, weight, bias, kernel, stride, pads):
        return g.op("Conv", x, weight, bias, kernel_shape_i=list(kernel), strides_i=list(stride), pads_i=list(pads),
                    dilations_i=[1, 1], group_i=1)


def _float64_pair(conv: nn.Conv2d, bn: nn.Module | None):
    """(weight, bias) of ``conv`` followed by an eval-mode ``bn`` (None: no norm), in float64 on the CPU; None when
    ``bn`` is something other than a BatchNorm2d with running statistics (nothing this code knows to fold)."""
    weight = _float64(conv.weight)
    bias = _float64(conv.bias) if conv.bias is not None else weight.new_zeros(conv.out_channels)
    if bn is None or isinstance(bn, nn.Identity):
        return weight, bias
    if type(bn) is not nn.BatchNorm2d or bn.running_var is None:
        return None
    mean, var = _float64(bn.running_mean), _float64(bn.running_var)
    gamma = _float64(bn.weight) if bn.weight is not None else torch.ones_like(var)
    beta = _float64(bn.bias) if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    return weight * scale.view(-1, 1, 1, 1), (bias - mean) * scale + beta


def _float64(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.detach().to("cpu", torch.float64)


def _same_float64(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """Equal up to float64 rounding (relative 1e-9 of the largest magnitude, far below any float32 difference)."""
    return got.shape == expected.shape and bool((got - expected).abs().max() <= 1e-9 * (1 + expected.abs().max()))


class SPDConv(nn.Module):
    """SPD-Conv building block: ``SpaceToDepth(scale)`` then a non-strided ``Conv(scale^2 c1 -> c2, k)`` + BN + act.

    The drop-in for a strided convolution row: ``[-1, 1, Conv, [c2, 3, 2]]`` becomes ``[-1, 1, SPDConv, [c2, 3]]``
    (``[c2, 3, 2]`` means the same: the third argument is the downsampling factor, where Conv has its stride).

    Note the authors' YOLOv5-SPD configs use the other order at each downsampling (a stride-1 Conv, then
    space-to-depth, whose 4x wider output feeds the next block); ``cfg/yolov5-spd-*.yaml`` reproduce that with
    ``Conv`` + ``SpaceToDepth`` rows. This class is the block as the paper defines it (Sec. 3, Fig. 3).

    Equivalence: the block is one (s k) x (s k) convolution with stride s (:func:`spd_to_strided`; for k = 3, s = 2 a
    6 x 6, stride-2, padding-2 convolution, the layer YOLOv5 v6.0 put in place of its Focus stem), with the same
    fan-in and the same weights in another layout. :meth:`fuse` switches to that form for inference.

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
        return self.conv(x if self.spd is None else self.spd(x))

    def fuse(self) -> SPDConv:
        """Inference form, in place: the single strided convolution of :func:`spd_to_strided` with the BatchNorm
        folded into it (an :class:`SPDStridedConv2d` inside the Ultralytics ``Conv``, which keeps its activation);
        ``spd`` becomes None. Idempotent; returns ``self``.

        Exact or not at all: the folded weights are computed in float64 and checked there, on a seeded probe with
        one side a multiple of s and one not, against space-to-depth + convolution + BatchNorm; only then are they
        rounded once to the module's dtype and swapped in. A block it cannot fold exactly stays as it was (the
        check fails, groups > 1, whose strided equivalent would be a dense convolution with g times the arithmetic,
        or a convolution or norm this code does not know); Ultralytics' fuse then folds its inner ``Conv``'s
        BatchNorm as before.
        """
        if self.spd is None:
            return self
        conv, scale, order = self.conv, self.spd.scale, self.spd.block_order
        inner, bn = conv.conv, getattr(conv, "bn", None)
        pair = _float64_pair(inner, bn) if is_foldable_conv(inner) else None
        if pair is None:
            return self
        candidate = SPDStridedConv2d.from_spd(*pair, scale, order)
        kh, kw = inner.kernel_size
        generator = torch.Generator().manual_seed(0)
        probe = torch.randn(2, inner.in_channels // (scale * scale), scale * (kh + 1) + 1, scale * (kw + 1),
                            generator=generator, dtype=torch.float64)
        with torch.no_grad():
            expected = F.conv2d(self.spd(probe), _float64(inner.weight), _float64(inner.bias), padding=inner.padding)
            if isinstance(bn, nn.BatchNorm2d):
                statistics = (bn.running_mean, bn.running_var, bn.weight, bn.bias)
                expected = F.batch_norm(expected, *map(_float64, statistics), training=False, eps=bn.eps)
            if not _same_float64(candidate(probe), expected):
                return self
        conv.conv = candidate.to(inner.weight.device, inner.weight.dtype)
        if hasattr(conv, "bn"):
            del conv.bn
        conv.forward = conv.forward_fuse
        self.spd = None
        return self


#: Attributes Ultralytics' ``parse_model`` sets on each layer of ``model.model`` (read by its forward and profiler).
_LAYER_ATTRIBUTES = ("i", "f", "type", "np")


def spdconv_from_focus(focus: Focus) -> SPDConv:
    """The SPDConv that computes exactly what Ultralytics' ``Focus`` stem does, sharing its convolution.

    ``Focus`` is space-to-depth in the authors' block order (``x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2],
    x[..., 1::2, 1::2]``) followed by a stride-1 ``Conv``, i.e. ``SPDConv(s=2)``; but its four step-2 slices have no
    equivalent in some export targets (pnnx/NCNN: "slice with step 2 is not supported"). As an SPDConv the stem gets
    :class:`SpaceToDepth`'s export forms and its ONNX block-order fold. The layer attributes ``parse_model`` set
    (``i``, ``f``, ``type``, ``np``) are carried over, so the model's forward is unchanged. One difference: SPDConv
    zero-pads an odd H or W where ``Focus`` fails, which never changes an output ``Focus`` could produce.
    """
    conv = focus.conv
    spd = SPDConv.__new__(SPDConv)
    nn.Module.__init__(spd)
    spd.spd = SpaceToDepth(scale=2)
    spd.conv = conv
    spd.train(focus.training)
    for name in _LAYER_ATTRIBUTES:
        if hasattr(focus, name):
            setattr(spd, name, getattr(focus, name))
    return spd


def replace_focus(model: nn.Module) -> int:
    """Replace every ``Focus`` inside ``model`` by :func:`spdconv_from_focus`; returns how many were replaced."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is Focus:
                setattr(parent, name, spdconv_from_focus(child))
                replaced += 1
    return replaced
