"""Small helpers shared by the module files: argument checks and the Conv-row tail (BN + activation)."""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import nn
from ultralytics.nn.modules.conv import Conv


def require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition`` holds.

    Every constructor validates its arguments up front with this, so a bad YAML row fails with one line naming the
    argument and what is allowed, instead of a shape error from deep inside torch.
    """
    if not condition:
        raise ValueError(message)


def is_int(value) -> bool:
    """An integer (Python's or NumPy's), not a bool: ``True`` is not a channel count."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def require_positive_int(name: str, value, owner: str) -> None:
    """Check that ``value`` is an integer >= 1 (:func:`is_int`)."""
    require(
        is_int(value) and value >= 1,
        f"{owner}: {name}={value!r} is not allowed; expected an integer >= 1",
    )


def require_odd_kernel(k, owner: str) -> None:
    """Odd kernels keep 'same' padding (k // 2) symmetric, so stride-1 outputs keep H x W exactly."""
    require(
        is_int(k) and k >= 1 and k % 2 == 1,
        f"{owner}: k={k!r} is not allowed; expected an odd kernel size (1, 3, 5, ...)",
    )


def require_stride(s, owner: str) -> None:
    require(is_int(s) and s in (1, 2), f"{owner}: s={s!r} is not allowed; expected 1 or 2")


def is_number(value) -> bool:
    """A real number (Python's or NumPy's), not a bool: what ratio and threshold arguments take (checked before
    comparing them, so that a string gets the argument's own error, not a TypeError)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def differentiable_backward(plain, inputs: tuple, grads: tuple) -> tuple:
    """A hand-written backward's form under ``create_graph=True`` (double backward: gradient penalties, higher-order
    gradients): the gradients of ``plain(*inputs)``, the same function written in differentiable tensor ops, taken by
    autograd with ``create_graph``, so that they can be differentiated again. The hand-written backward passes write
    with ``out=`` and treat what the forward computed as constants, which is right only once.

    ``inputs`` are the Function's inputs as its backward has them (saved tensors stay attached to the graph; other
    values are passed on as they are); ``grads`` the gradients of ``plain``'s outputs (one per output; outputs that
    need no gradient, such as batch statistics, are not among ``plain``'s). Returns one gradient per input, None
    where the input needs none."""
    wanted = [i for i, t in enumerate(inputs) if isinstance(t, torch.Tensor) and t.requires_grad]
    # Each input as a new node of the graph: gradients only through its direct uses in ``plain``, not also through
    # another input computed from it (SRU's gate logits come from the same X that the gate multiplies).
    inputs = tuple(t.view_as(t) if i in wanted else t for i, t in enumerate(inputs))
    outputs = plain(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    pairs = [(o, g) for o, g in zip(outputs, grads) if o.requires_grad]
    found = torch.autograd.grad([o for o, _ in pairs], [inputs[i] for i in wanted], [g for _, g in pairs],
                                create_graph=True, allow_unused=True)
    result = [None] * len(inputs)
    for i, grad in zip(wanted, found):
        result[i] = grad
    return tuple(result)


def norm_act(c2: int, bn: bool, act) -> tuple[nn.Module, nn.Module]:
    """Return the (BatchNorm, activation) tail that turns a bare convolution into an Ultralytics ``Conv`` row.

    ``act`` follows Ultralytics' ``Conv`` exactly: ``True`` selects ``Conv.default_act`` (SiLU unless the model YAML
    sets ``activation:``), an ``nn.Module`` is used as given, anything else means no activation.
    """
    norm = nn.BatchNorm2d(c2) if bn else nn.Identity()
    if act is True:
        activation = Conv.default_act
    elif isinstance(act, nn.Module):
        activation = act
    else:
        activation = nn.Identity()
    return norm, activation


def is_exporting() -> bool:
    """True while torch traces or exports the model (a traced graph must not contain Python autograd Functions):
    ONNX export, TorchScript tracing or scripting, and ``torch.export`` without autograd (ExecuTorch's and Core AI's
    route, whose converters cannot lower the in-place ``out=`` writes of the eager inference paths). The torch.export
    flag counts only without gradients: torch 2.7-2.13 also report it under ``torch.compile`` (pytorch issue 176347),
    where training must keep the straight-through gradients the export forms do not have."""
    if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    return not torch.is_grad_enabled() and is_torch_exporting()


def is_torch_exporting() -> bool:
    """``torch.compiler.is_exporting()`` where torch has it (>= 2.6): ``torch.export`` is tracing, with fake
    tensors."""
    exporting = getattr(torch.compiler, "is_exporting", None)
    return exporting is not None and exporting()


def observed(*modules: nn.Module | None) -> bool:
    """Whether any of ``modules`` has forward (pre-)hooks, or global module hooks are set: someone watches the module
    run (thop, which Ultralytics' and yolo_spd's GFLOPs counts use, hooks every leaf module; feature extractors).
    A fast path that computes with a module's weights without calling it must then call it instead."""
    if torch.nn.modules.module._global_forward_hooks or torch.nn.modules.module._global_forward_pre_hooks:
        return True
    return any(m is not None and (m._forward_hooks or m._forward_pre_hooks) for m in modules)


def bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, t) with bn(y) = s * y + t per channel, from the running statistics (eval-mode BatchNorm)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def grouped_to_dense(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """The dense (groups=1) weight of the same convolution as a grouped ``weight``: block-diagonal in channels."""
    c_out, c_in_per_group = weight.shape[:2]
    dense = weight.new_zeros(c_out, c_in_per_group * groups, *weight.shape[2:])
    out_per_group = c_out // groups
    for g in range(groups):  # runs once, at fuse time
        rows = slice(g * out_per_group, (g + 1) * out_per_group)
        dense[rows, g * c_in_per_group : (g + 1) * c_in_per_group] = weight[rows]
    return dense


def conv_like(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None, groups: int | None = None) -> nn.Conv2d:
    """A new Conv2d with ``conv``'s geometry (stride, padding) and the given weight, bias and groups."""
    groups = conv.groups if groups is None else groups
    c_out, c_in = weight.shape[0], weight.shape[1] * groups
    fused = nn.Conv2d(c_in, c_out, weight.shape[2:], conv.stride, conv.padding, conv.dilation, groups, bias is not None)
    fused = fused.to(weight.device, weight.dtype)
    fused.weight.data.copy_(weight)
    if bias is not None:
        fused.bias.data.copy_(bias)
    return fused.requires_grad_(False)


def pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias)`` for a dense 1 x 1 ``weight`` (C_out, C_in, 1, 1), as one matrix product.

    On CPU, oneDNN reorders small-channel NCHW tensors around a 1 x 1 convolution, which costs several times the
    arithmetic; a batched matrix product over the (C, H*W) view, or over channels for a channels-last input, reads
    the tensor where it is. Layouts where neither view exists fall back to the convolution.
    """
    n, _, h, w = x.shape
    matrix = weight.flatten(1)
    # Export targets know a 1 x 1 convolution, not all know baddbmm; under torch.compile inductor makes its own
    # kernel of the convolution, and the matrix-product views below met an inductor error with dynamic shapes
    # ("cannot determine truth value of Relational" while ordering their symbolic strides; torch 2.14).
    if x.device.type != "cpu" or is_exporting() or torch.compiler.is_compiling():
        return F.conv2d(x, weight, bias)
    if x.stride(1) == 1 and x.shape[1] > 1:  # channels innermost (channels-last, or a channel slice of it)
        return F.linear(x.permute(0, 2, 3, 1), matrix, bias).permute(0, 3, 1, 2)
    if x.stride(-1) != 1 or x.stride(-2) != w:
        return F.conv2d(x, weight, bias)
    pixels, matrices = x.flatten(2), matrix.expand(n, -1, -1)  # (N, C, H*W) views; matmul would copy both
    if bias is None:
        return torch.bmm(matrices, pixels).view(n, matrix.shape[0], h, w)  # not -1: an empty batch has N = 0
    return torch.baddbmm(bias.view(1, -1, 1), matrices, pixels).view(n, matrix.shape[0], h, w)


# Export forms. NCNN's converter (pnnx) has no addcmul, lerp or comparison ops: it writes them into its generated
# Python as ``aten::addcmul(...)``, a syntax error, and into the NCNN graph as unknown layers. While exporting, the
# modules use these instead: the same arithmetic as a multiply and an add (equal within float rounding).


def addcmul(base: torch.Tensor, a: torch.Tensor, b: torch.Tensor, value: float = 1.0) -> torch.Tensor:
    """``torch.addcmul(base, a, b, value=value)``; while exporting, ``base + value * a * b`` (value 1 or -1 as an
    add or a subtract)."""
    if not is_exporting():
        return torch.addcmul(base, a, b, value=value)
    product = a * b
    if value == 1:
        return base + product
    return base - product if value == -1 else base + value * product


def lerp(start: torch.Tensor, end: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``torch.lerp(start, end, weight)``; while exporting, ``start + weight * (end - start)``."""
    if not is_exporting():
        return torch.lerp(start, end, weight)
    return start + weight * (end - start)


def average_pool(x: torch.Tensor, pool: nn.Module) -> torch.Tensor:
    """``pool(x)`` for a module's ``pool``: ``nn.Identity`` (stride 1) or ``nn.AvgPool2d(2, 2, ceil_mode=True)``.

    For a contiguous input with even H and W, eagerly, the 2 x 2 average as two vector adds (:class:`_AveragePool2x2`):
    ``F.avg_pool2d`` on NCHW measured 3-5x slower on CPU at one thread. Otherwise (odd sizes, other layouts, while
    exporting: every export target has an average pool; with forward hooks, as a FLOP counter's) the module itself."""
    if isinstance(pool, nn.Identity) or is_exporting() or observed(pool):
        return pool(x)
    h, w = x.shape[-2:]
    if x.dim() != 4 or h % 2 or w % 2 or not x.is_contiguous():
        return pool(x)
    return _AveragePool2x2.apply(x)


class _AveragePool2x2(torch.autograd.Function):
    """2 x 2 average pooling, stride 2, of a contiguous (N, C, H, W) with even H and W: row pairs added as two
    contiguous halves, then column pairs, then a scale. Backward: the gradient / 4 broadcast to each 2 x 2 block (one
    copy)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        rows = x.view(n, c, h // 2, 2 * w)
        pairs = rows[..., :w] + rows[..., w:]  # (N, C, H/2, W)
        return torch.add(pairs[..., 0::2], pairs[..., 1::2]).mul_(0.25)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        n, c, h, w = grad.shape
        quarter = (grad * 0.25).reshape(n, c, h, 1, w, 1)
        return quarter.expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)

