"""Property tests (issue 7, item 1): over random shapes and arguments every module either returns the right output
shape with finite values and gradients, or raises one ValueError naming the argument and the allowed values."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolo_spd import SCConv, SPDConv, SpaceToDepth, SSDConv

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
channels = st.integers(1, 40)
kernels = st.sampled_from([1, 2, 3, 5])  # 2 is not allowed: it must be refused clearly
strides = st.sampled_from([0, 1, 2, 3, 2.0])  # 1 and 2 are the allowed strides of SCConv / SSDConv (2.0 failed late)
sides = st.integers(1, 11)  # odd and even, down to 1
NAMED_ARGUMENT = re.compile(r"\b(c1|c2|k|s|g|scale|alpha|r|gn_groups|gate_threshold|variant|in_ratio|out_ratio|"
                            r"exp_times|reduction)=")


def check(build, c2: int, stride: int, h: int, w: int) -> None:
    """Either a clear ValueError at construction, or correct, finite outputs and gradients."""
    try:
        module = build()
    except ValueError as error:
        message = str(error)
        assert "\n" not in message and NAMED_ARGUMENT.search(message), message
        assert re.search(r"not allowed|expected|must", message), message
        return
    module.train()
    x = torch.randn(2, module_input_channels(module), h, w, requires_grad=True)  # batch 2: BatchNorm needs >1 value
    y = module(x)
    assert y.shape == (2, c2, math.ceil(h / stride), math.ceil(w / stride))
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all()
    for name, parameter in module.named_parameters():
        assert parameter.grad is None or torch.isfinite(parameter.grad).all(), name


def module_input_channels(module) -> int:
    return module.c1


@SETTINGS
@given(c1=channels, c2=channels, k=kernels, s=st.sampled_from([1, 2, 3]), g=st.integers(1, 4), h=sides, w=sides)
def test_spdconv(c1, c2, k, s, g, h, w):
    check(lambda: with_c1(SPDConv(c1, c2, k, s, g), c1), c2, s, h, w)


@SETTINGS
@given(c1=channels, scale=st.integers(0, 3), h=sides, w=sides)
def test_space_to_depth(c1, scale, h, w):
    check(lambda: with_c1(SpaceToDepth(c1, c1 * scale * scale, scale), c1), c1 * scale * scale, max(scale, 1), h, w)


@SETTINGS
@given(c1=channels, c2=channels, k=kernels, s=strides, alpha=st.floats(0.0, 1.0), r=st.integers(1, 4),
       g=st.integers(1, 4), gn_groups=st.none() | st.integers(1, 32),
       variant=st.sampled_from(["paper", "release", "soft"]), h=sides, w=sides)
def test_scconv(c1, c2, k, s, alpha, r, g, gn_groups, variant, h, w):
    check(lambda: with_c1(SCConv(c1, c2, k, s, alpha, r, g, gn_groups, variant=variant), c1), c2, s, h, w)


@SETTINGS
@given(c1=channels, c2=channels, k=kernels, s=strides, in_ratio=st.floats(0.0, 1.0), out_ratio=st.floats(0.0, 1.0),
       exp_times=st.integers(0, 3), reduction=st.integers(1, 32), h=sides, w=sides)
def test_ssdconv(c1, c2, k, s, in_ratio, out_ratio, exp_times, reduction, h, w):
    check(lambda: with_c1(SSDConv(c1, c2, k, s, in_ratio, out_ratio, exp_times, reduction), c1), c2, s, h, w)


def with_c1(module, c1: int):
    module.c1 = c1
    return module


@pytest.mark.parametrize("bad", [True, 2.0, "3", None])
def test_non_integer_channels_are_refused_by_name(bad):
    for build in (lambda: SPDConv(bad, 8), lambda: SCConv(8, bad), lambda: SSDConv(bad, 8)):
        with pytest.raises(ValueError, match=r"c[12]="):
            build()


def test_numpy_integers_are_integers():
    """NumPy integers (a config computed with numpy) pass as integers, as they did before the checks named ints."""
    import numpy as np

    from yolo_spd.modules.spd import strided_geometry

    assert SpaceToDepth(np.int64(4), np.int64(16)).scale == 2 and strided_geometry((np.int64(3), 3)).stride == 2
    x = torch.randn(2, 16, 8, 8)
    for module in (SCConv(16, 16, 3, np.int64(2)), SSDConv(16, 16, 3, np.int64(2)), SPDConv(np.int64(16), 16)):
        assert module(x).shape == (2, 16, 4, 4)


@pytest.mark.parametrize("c1,c2", [(0, 0), (-2, -8), (-2, None), (None, 0), (2.0, 8.0), (True, 4)])
def test_space_to_depth_refuses_channel_counts_that_are_not_integers_from_one(c1, c2):
    """c2 = 4 c1 held for (0, 0), (-2, -8) and (2.0, 8.0), and a lone c1 was not checked at all (None: not given)."""
    with pytest.raises(ValueError, match=r"^SpaceToDepth: c[12]=\S+ is not allowed; expected an integer >= 1$"):
        SpaceToDepth(c1, c2)


@pytest.mark.parametrize("bad", ["0.5", None, True, float("nan")])
@pytest.mark.parametrize("name,build", [
    ("alpha", lambda v: SCConv(8, 8, alpha=v)),
    ("gate_threshold", lambda v: SCConv(8, 8, gate_threshold=v)),
    ("in_ratio", lambda v: SSDConv(8, 8, in_ratio=v)),
    ("out_ratio", lambda v: SSDConv(8, 8, out_ratio=v)),
])
def test_ratios_that_are_not_numbers_are_refused_by_name(name, build, bad):
    """A string ratio (a YAML row with a quoted number) raised TypeError from the comparison."""
    with pytest.raises(ValueError, match=rf"^(SCConv|SSDConv): {name}=.* is not allowed; expected "):
        build(bad)


@pytest.mark.parametrize("build,c2,stride", [
    (lambda: SCConv(8, 16), 16, 1), (lambda: SCConv(8, 16, 3, 2, variant="release"), 16, 2),
    (lambda: SSDConv(8, 16), 16, 1), (lambda: SSDConv(8, 16, 3, 2), 16, 2),
    (lambda: SPDConv(8, 16), 16, 2), (lambda: SpaceToDepth(), 32, 2),
])
def test_an_empty_batch_gives_an_empty_output_as_a_convolution_does(build, c2, stride):
    """N = 0 (as nn.Conv2d and BatchNorm take it): SCConv and SSDConv raised "cannot reshape tensor of 0 elements"
    from a view with -1; eval, fused and training with gradients."""
    x = torch.randn(0, 8, 10, 6)
    module = build().eval()
    with torch.no_grad():
        assert module(x).shape == (0, c2, 10 // stride, 6 // stride)
        if hasattr(module, "fuse"):
            assert module.fuse()(x).shape == (0, c2, 10 // stride, 6 // stride)
    module = build().train()
    x.requires_grad_(True)
    module(x).sum().backward()
    assert x.grad.shape == x.shape
