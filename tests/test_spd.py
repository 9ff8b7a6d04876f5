"""SpaceToDepth and SPDConv against the SPD-Conv paper (Sec. 3.1) and the authors' channel order."""

from __future__ import annotations

import pytest
import torch

from yolo_spd import SPDConv, SpaceToDepth


def space_to_depth_by_hand(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Sec. 3.1 pixel by pixel: output channel (j*scale + i)*C + c at (y, x) is input (c, y*scale + i, x*scale + j)."""
    n, c, h, w = x.shape
    out = torch.zeros(n, scale * scale * c, h // scale, w // scale)
    for j in range(scale):
        for i in range(scale):
            block = j * scale + i
            for ch in range(c):
                for yy in range(h // scale):
                    for xx in range(w // scale):
                        out[:, block * c + ch, yy, xx] = x[:, ch, yy * scale + i, xx * scale + j]
    return out


@pytest.mark.parametrize("scale", [2, 3])
def test_space_to_depth_matches_pixel_definition(scale):
    x = torch.randn(2, 3, 2 * scale, 3 * scale)
    assert torch.equal(SpaceToDepth(scale=scale)(x), space_to_depth_by_hand(x, scale))


def test_space_to_depth_keeps_the_authors_channel_order():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    authors = torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1)
    assert torch.equal(SpaceToDepth()(x), authors)


@pytest.mark.parametrize("h,w", [(5, 7), (1, 1), (7, 4), (4, 9)])
def test_space_to_depth_pads_odd_sizes_with_zeros(h, w):
    x = torch.randn(1, 3, h, w) + 10.0  # no zeros in the input, so padding is visible
    y = SpaceToDepth()(x)
    assert y.shape == (1, 12, -(-h // 2), -(-w // 2))
    padded = torch.nn.functional.pad(x, (0, w % 2, 0, h % 2))
    assert torch.equal(y, space_to_depth_by_hand(padded, 2))
    assert (y == 0).sum() == 12 * y.shape[-2] * y.shape[-1] - x.numel()  # exactly the padded pixels are zero


def test_space_to_depth_loses_no_pixel():
    x = torch.randn(2, 5, 8, 6)
    assert torch.equal(SpaceToDepth()(x).flatten().sort().values, x.flatten().sort().values)


def test_space_to_depth_rejects_a_declared_width_that_is_not_four_times_the_input():
    SpaceToDepth(32, 128)  # consistent
    with pytest.raises(ValueError, match=r"c2=96 .* 4 \* c1|scale\^2 \* c1 = 128"):
        SpaceToDepth(32, 96)


@pytest.mark.parametrize("c1,c2,k,s,h,w", [(8, 16, 3, 2, 16, 16), (3, 5, 1, 2, 9, 7), (6, 6, 5, 2, 5, 5), (4, 8, 3, 3, 9, 9)])
def test_spdconv_is_space_to_depth_then_a_non_strided_conv(c1, c2, k, s, h, w):
    m = SPDConv(c1, c2, k, s).eval()
    x = torch.randn(2, c1, h, w)
    conv = m.conv.conv
    assert conv.stride == (1, 1) and conv.in_channels == s * s * c1 and conv.out_channels == c2
    expected = m.conv.act(m.conv.bn(conv(SpaceToDepth(scale=s)(x))))
    assert torch.allclose(m(x), expected)
    assert m(x).shape == (2, c2, -(-h // s), -(-w // s))


def test_spdconv_output_size_equals_the_strided_conv_it_replaces():
    from ultralytics.nn.modules import Conv

    for h, w in [(32, 32), (31, 17), (3, 2)]:
        x = torch.randn(1, 8, h, w)
        assert SPDConv(8, 16)(x).shape == Conv(8, 16, 3, 2)(x).shape


def test_spdconv_gradients_reach_every_parameter():
    m = SPDConv(4, 8)
    m(torch.randn(2, 4, 9, 9)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(c1=0, c2=8), "c1=0"),
        (dict(c1=4, c2=8, k=2), "k=2"),
        (dict(c1=4, c2=8, s=0), "s=0"),
        (dict(c1=4, c2=6, g=4), "g=4"),
    ],
)
def test_spdconv_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SPDConv(**kwargs)


def test_dynamic_onnx_export_handles_odd_sizes_it_was_not_traced_with(tmp_path):
    import numpy as np
    import onnxruntime as ort

    m = SPDConv(3, 8).eval()
    path = tmp_path / "spd.onnx"
    torch.onnx.export(
        m, torch.randn(1, 3, 8, 8), str(path), input_names=["x"], dynamo=False,
        dynamic_axes={"x": {2: "h", 3: "w"}}, opset_version=17,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for h, w in [(8, 8), (7, 9), (5, 5)]:
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            expected = m(x).numpy()
        np.testing.assert_allclose(session.run(None, {"x": x.numpy()})[0], expected, rtol=0, atol=1e-4)


# --- issue 19: the rearrangement as one copy each way ---------------------------------------------------------------

F64 = torch.float64
# even and odd sizes; widths on both sides of the backward's one-pass threshold (W' = 32, i.e. W = 64)
GRADIENT_SIZES = [(8, 8), (7, 9), (6, 10), (1, 1), (5, 4), (4, 62), (3, 64), (6, 65)]


def as_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("h,w", GRADIENT_SIZES)
def test_space_to_depth_output_and_gradient_equal_the_reference_in_float64(scale, channels_last, h, w):
    """Forward (with and without gradients) and the input gradient, against tests/reference.py's slices + cat and
    autograd through them, exactly; without padding, the gradient has the input's memory format."""
    from . import reference

    x = as_layout(torch.randn(2, 5, h, w, dtype=F64), channels_last).requires_grad_(True)
    y = SpaceToDepth(scale=scale)(x)
    expected = reference.space_to_depth(x, scale)
    assert torch.equal(y, expected)
    with torch.no_grad():
        assert torch.equal(SpaceToDepth(scale=scale)(x), expected)
    target = as_layout(torch.randn(expected.shape, dtype=F64), channels_last)
    (grad,) = torch.autograd.grad(y, x, target)
    (grad_expected,) = torch.autograd.grad(expected, x, target)
    assert torch.equal(grad, grad_expected)
    if h % scale == 0 and w % scale == 0 and min(h, w) > scale:  # else F.pad's backward decides the layout
        assert grad.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def depth_to_space_bits(grad: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    """The inverse rearrangement on the raw bits (int32): input (c, s y + i, s x + j) gets output channel
    (j s + i) C + c at (y, x), cropped to the unpadded input."""
    bits = grad.view(torch.int32)
    n, _, hh, ww = bits.shape
    out = torch.empty(n, c, 2 * hh, 2 * ww, dtype=torch.int32)
    for j in range(2):
        for i in range(2):
            block = j * 2 + i
            out[:, :, i::2, j::2] = bits[:, block * c:(block + 1) * c]
    return out[:, :, :h, :w]


@pytest.mark.parametrize("h,w", [(6, 10), (6, 64), (5, 7)])
def test_space_to_depth_gradient_moves_every_bit(h, w):
    """The hand-written NCHW backward copies values, never computes with them: NaN payloads, infinities, -0.0 and
    subnormals in the output gradient arrive bit for bit (an arithmetic formulation would lose -0.0 or NaN bits)."""
    x = torch.randn(2, 3, h, w, requires_grad=True)
    y = SpaceToDepth()(x)
    assert type(y.grad_fn).__name__ == "_SpaceToDepthCopyBackward"  # the path under test, not autograd's
    specials = torch.tensor([0x7FC00123, 0xFFC00001, 0x7F800000, 0xFF800000, 0x80000000, 0x00000001, 0x80000005],
                            dtype=torch.int64).to(torch.int32)
    bits = torch.randint(-(2**31), 2**31 - 1, y.shape, dtype=torch.int32)
    bits.view(-1)[: specials.numel() * 7 : 7] = specials
    target = bits.view(torch.float32)
    (grad,) = torch.autograd.grad(y, x, target)
    assert torch.equal(grad.view(torch.int32), depth_to_space_bits(target, 3, h, w))


def test_space_to_depth_takes_autograds_path_for_channels_last_and_under_no_grad():
    x = torch.randn(2, 3, 8, 8)
    assert SpaceToDepth()(x).grad_fn is None
    with torch.no_grad():
        assert SpaceToDepth()(x.requires_grad_(True)).grad_fn is None
    channels_last = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    assert type(SpaceToDepth()(channels_last).grad_fn).__name__ != "_SpaceToDepthCopyBackward"


@pytest.mark.parametrize("h,w", [(4, 6), (3, 5)])
def test_space_to_depth_second_derivatives(h, w):
    """create_graph: the backward is itself differentiable (gradgradcheck in float64)."""
    x = torch.randn(1, 2, h, w, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(SpaceToDepth(), (x,))
    assert torch.autograd.gradgradcheck(SpaceToDepth(), (x,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_space_to_depth_gradient_in_other_dtypes_and_on_strided_inputs(dtype):
    """Dtypes without the complex fast path, and a non-contiguous input (a channel slice), give autograd's result."""
    from . import reference

    base = torch.randn(2, 6, 6, 8, dtype=dtype)
    for x in (base, base[:, 1:4], base[..., 1:7]):
        leaf = x.detach().requires_grad_(True)  # keeps x's strides
        y = SpaceToDepth()(leaf)
        target = torch.randn(y.shape).to(dtype)
        expected_leaf = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(y, leaf, target)
        (expected,) = torch.autograd.grad(reference.space_to_depth(expected_leaf, 2), expected_leaf, target)
        assert torch.equal(grad, expected)
