"""Issue 19: SPD-Conv is a strided convolution. The weight map both ways (against tests/reference.py's entry-by-entry
oracle), forward equality in float64 on even and odd sizes, the same default initialisation and optimiser steps,
``SPDConv.fuse()`` into that one convolution, the fold of yolov5-spd's SpaceToDepth rows in ``model.fuse()``, and the
exported ONNX graph without space-to-depth."""

from __future__ import annotations

import re
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from yolo_spd import SpaceToDepth, SPDConv, fuse_modules
from yolo_spd.modules import spd as spd_module
from yolo_spd.modules.spd import (
    SPDStridedConv2d,
    spd_to_strided,
    strided_geometry,
    strided_to_spd,
)
from yolo_spd.modules.spd_fold import (
    DeferredConcat,
    FoldedSpaceToDepth,
    SplitConv2d,
    fold_space_to_depth_into_convolutions,
)

from . import reference
from .test_fast_equivalence import randomize_norms

F64 = torch.float64
SPD_CONFIGS = ("yolov5-spd-n.yaml", "yolov8-spd-n.yaml", "yolo11-spd-n.yaml")


def space_to_depth(scale: int, order: str = "authors") -> SpaceToDepth:
    layer = SpaceToDepth(scale=scale)
    if order == "onnx":
        layer.block_order = "onnx"
    return layer


def spd_then_conv(x, weight, bias, scale, order="authors"):
    """The SPD-Conv definition (Sec. 3.1 + 3.2): space-to-depth, then a stride-1 convolution with 'same' padding."""
    return F.conv2d(space_to_depth(scale, order)(x), weight, bias, padding=(weight.shape[2] // 2, weight.shape[3] // 2))


# ---------------------------------------------------------------------------------------------------- the weight map


@pytest.mark.parametrize("scale,kh,kw", [(2, 3, 3), (2, 1, 1), (2, 5, 3), (3, 3, 3), (3, 1, 5)])
@pytest.mark.parametrize("order", ["authors", "onnx"])
def test_weight_map_is_the_entry_by_entry_oracle_and_inverts(scale, kh, kw, order):
    weight = torch.randn(5, scale * scale * 4, kh, kw, dtype=F64)
    strided = spd_to_strided(weight, scale, order)
    assert strided.shape == (5, 4, scale * kh, scale * kw)
    assert torch.equal(strided, reference.strided_weight(weight, scale, row_major=order == "onnx"))
    assert torch.equal(strided_to_spd(strided, scale, order), weight)
    assert torch.equal(strided.flatten().sort().values, weight.flatten().sort().values)  # a permutation


def test_the_two_block_orders_give_different_maps():
    """The map depends on the block order: the wrong one is a different convolution, which the tests would see."""
    weight = torch.randn(3, 8, 3, 3, dtype=F64)
    assert not torch.equal(spd_to_strided(weight, 2, "authors"), spd_to_strided(weight, 2, "onnx"))
    x = torch.randn(1, 2, 8, 8, dtype=F64)
    wrong = F.conv2d(x, spd_to_strided(weight, 2, "onnx"), stride=2, padding=2)
    assert (wrong - spd_then_conv(x, weight, None, 2)).abs().max() > 0.1


def test_weight_map_refuses_shapes_it_cannot_take():
    with pytest.raises(ValueError, match="cannot follow SpaceToDepth"):
        spd_to_strided(torch.randn(2, 6, 3, 3), 2)
    with pytest.raises(ValueError, match="not a multiple of the stride"):
        strided_to_spd(torch.randn(2, 3, 5, 6), 2)
    with pytest.raises(ValueError, match="block_order"):
        spd_to_strided(torch.randn(2, 8, 3, 3), 2, "columns")


def test_geometry_of_the_kernels_the_configs_use():
    assert strided_geometry(3, 2) == ((6, 6), 2, (2, 2), 1)  # SPDConv rows and the Focus stem: 6 x 6, stride 2, pad 2
    assert strided_geometry(1, 2) == ((2, 2), 2, (0, 0), 1)  # C3's 1 x 1 convolutions after a SpaceToDepth row
    assert strided_geometry((5, 3), 3) == ((15, 9), 3, (6, 3), 2)
    with pytest.raises(ValueError, match="odd kernel"):
        strided_geometry(2, 2)
    for bad in (-1, 3.0, (3,), (3, -3), True):  # -1 % 2 == 1 gave a (-2, -2) kernel; 3.0 a TypeError
        with pytest.raises(ValueError, match=rf"^strided_geometry: kernel_size={re.escape(repr(bad))} is not allowed;"):
            strided_geometry(bad, 2)


# ---------------------------------------------------------------------------------------------------- forward


SIZES = [(12, 12), (13, 11), (7, 8), (1, 1), (2, 5), (9, 9)]


@pytest.mark.parametrize("scale,k", [(2, 3), (2, 1), (2, 5), (3, 3), (3, 1)])
@pytest.mark.parametrize("order", ["authors", "onnx"])
def test_space_to_depth_then_conv_is_one_strided_conv_on_every_size(scale, k, order):
    """float64: equal to rounding on even and odd sizes, as one convolution with the asymmetric padding of
    strided_geometry (what ONNX gets), and as SPDStridedConv2d (nn.Conv2d, padding the odd sides first)."""
    generator = torch.Generator().manual_seed(scale * 10 + k)
    weight = torch.randn(6, scale * scale * 3, k, k, dtype=F64, generator=generator)
    bias = torch.randn(6, dtype=F64, generator=generator)
    geometry = strided_geometry(k, scale)
    strided = spd_to_strided(weight, scale, order)
    module = SPDStridedConv2d.from_spd(weight, bias, scale, order)
    assert (module.kernel_size, module.stride, module.padding) == (geometry.kernel_size, (scale,) * 2,
                                                                  geometry.padding)
    for h, w in SIZES:
        x = torch.randn(2, 3, h, w, dtype=F64, generator=generator)
        expected = spd_then_conv(x, weight, bias, scale, order)
        assert expected.shape[-2:] == (-(-h // scale), -(-w // scale))
        (top, left), extra = geometry.padding, geometry.extra
        one_conv = F.conv2d(F.pad(x, (left, left + extra, top, top + extra)), strided, bias, scale)
        torch.testing.assert_close(one_conv, expected, rtol=0, atol=1e-12)
        with torch.no_grad():
            torch.testing.assert_close(module(x), expected, rtol=0, atol=1e-12)
        if h % scale == 0 and w % scale == 0:  # symmetric nn.Conv2d padding alone suffices
            plain = F.conv2d(x, strided, bias, scale, geometry.padding)
            torch.testing.assert_close(plain, expected, rtol=0, atol=1e-12)


def test_odd_sizes_need_the_extra_bottom_right_padding():
    """Without it a symmetric nn.Conv2d gives floor(H/2), one row short of space-to-depth's ceil(H/2)."""
    weight = torch.randn(4, 8, 3, 3, dtype=F64)
    x = torch.randn(1, 2, 7, 9, dtype=F64)
    assert F.conv2d(x, spd_to_strided(weight), stride=2, padding=2).shape[-2:] == (3, 4)
    assert spd_then_conv(x, weight, None, 2).shape[-2:] == (4, 5)


def test_a_yolov5_v6_stem_is_an_spdconv_convolution():
    """YOLOv5 v6.0 replaced its Focus stem by a 6 x 6, stride-2, padding-2 convolution (ultralytics/yolov5#4825):
    strided_to_spd turns such a convolution into SPDConv(3, c2, 3)'s weights, the same function."""
    stem = nn.Conv2d(3, 16, 6, 2, 2, bias=False).double()
    x = torch.randn(2, 3, 32, 24, dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(spd_then_conv(x, strided_to_spd(stem.weight), None, 2), stem(x), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------------- training


def test_default_initialisations_have_the_same_fan_in_and_distribution():
    """SPDConv's conv (kaiming_uniform, a = sqrt(5), PyTorch's default) against the 6 x 6 stride-2 convolution's: the
    same fan-in and bound, and a two-sample KS test over many draws cannot tell them apart; the same test tells a
    3 x 3 stride-2 convolution's (fan-in 9 C1, bound twice as wide) apart, so it has the power to fail."""
    from scipy.stats import ks_2samp
    from ultralytics.nn.modules import Conv

    fan_in = nn.init._calculate_fan_in_and_fan_out
    c1, c2 = 8, 16
    torch.manual_seed(0)
    spd_draws = [spd_to_strided(SPDConv(c1, c2).conv.conv.weight.detach()) for _ in range(60)]
    strided_draws = [Conv(c1, c2, 6, 2, 2).conv.weight.detach() for _ in range(60)]
    narrow_draws = [Conv(c1, c2, 3, 2).conv.weight.detach() for _ in range(10)]
    assert fan_in(SPDConv(c1, c2).conv.conv.weight)[0] == fan_in(strided_draws[0])[0] == c1 * 36
    bound = 1 / np.sqrt(c1 * 36)  # kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    spd, strided, narrow = (torch.cat([w.flatten() for w in d]).numpy() for d in (spd_draws, strided_draws,
                                                                                  narrow_draws))
    for sample in (spd, strided):
        assert np.abs(sample).max() <= bound and np.abs(sample).max() > 0.999 * bound
        assert abs(sample.var() / (bound**2 / 3) - 1) < 0.01  # the uniform's variance
    assert ks_2samp(spd, strided).pvalue > 0.01
    assert ks_2samp(narrow, strided).pvalue < 1e-10
    # tap by tap too (36 tests; a family-wise 1% level is 0.01 / 36 each): every kernel position of the mapped
    # weights has the strided convolution's distribution, not just the pooled values
    spd_taps, strided_taps = (torch.stack(d).permute(3, 4, 0, 1, 2).reshape(36, -1).numpy()
                              for d in (spd_draws, strided_draws))
    assert min(ks_2samp(a, b).pvalue for a, b in zip(spd_taps, strided_taps)) > 0.01 / 36


def make_pair(c1=3, c2=8, k=3, scale=2):
    """An SPDConv (float64, random norms) and the strided Sequential(conv, BN, SiLU) with mapped weights, BN copied."""
    torch.manual_seed(1)
    spd = randomize_norms(SPDConv(c1, c2, k, scale)).double()
    conv = spd.conv.conv
    strided = SPDStridedConv2d.from_spd(conv.weight, None, scale).requires_grad_(True)
    twin = nn.Sequential(strided, copy.deepcopy(spd.conv.bn), nn.SiLU())
    return spd, twin


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("h,w", [(12, 12), (11, 13)])
def test_optimiser_steps_are_the_same_on_both_forms(optimizer, h, w):
    """SGD (momentum, Nesterov, weight decay) and AdamW (weight decay) are elementwise, and the gradients map like the
    weights, so training either form from mapped weights gives the same weights after every step (train-mode
    BatchNorm, float64)."""
    spd, twin = make_pair()

    def make(params):
        if optimizer == "sgd":
            return torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)
        return torch.optim.AdamW(params, lr=0.02, weight_decay=0.05)

    optimisers = make(spd.parameters()), make(twin.parameters())
    generator = torch.Generator().manual_seed(2)
    for _ in range(6):
        x = torch.randn(4, 3, h, w, dtype=F64, generator=generator)
        target = torch.randn(4, 8, -(-h // 2), -(-w // 2), dtype=F64, generator=generator)
        for model, opt in zip((spd.train(), twin.train()), optimisers):
            opt.zero_grad()
            F.mse_loss(model(x), target).backward()
            opt.step()
        torch.testing.assert_close(strided_to_spd(twin[0].weight.detach()), spd.conv.conv.weight.detach(),
                                   rtol=0, atol=1e-12)
        torch.testing.assert_close(twin[1].weight, spd.conv.bn.weight, rtol=0, atol=1e-12)
        torch.testing.assert_close(twin[1].running_var, spd.conv.bn.running_var, rtol=0, atol=1e-12)
    assert (spd.conv.conv.weight - make_pair()[0].conv.conv.weight).abs().max() > 1e-3  # the steps moved them


# ---------------------------------------------------------------------------------------------------- SPDConv.fuse


@pytest.mark.parametrize("c1,c2,k,s", [(3, 16, 3, 2), (8, 8, 1, 2), (4, 6, 5, 2), (4, 8, 3, 3)])
@pytest.mark.parametrize("order", ["authors", "onnx"])
def test_spdconv_fuse_is_one_strided_convolution_equal_to_the_reference(c1, c2, k, s, order):
    m = randomize_norms(SPDConv(c1, c2, k, s)).eval().double()
    if order == "onnx":  # as after fold_space_to_depth_order: block order switched, conv input channels permuted
        m.spd.block_order = "onnx"
        index = spd_module._row_major_channel_index(s, c1 * s * s)
        with torch.no_grad():
            m.conv.conv.weight.copy_(m.conv.conv.weight[:, index])
    oracle = copy.deepcopy(m)
    m.fuse()
    assert m.spd is None and not hasattr(m.conv, "bn")
    conv = m.conv.conv
    assert type(conv) is SPDStridedConv2d and conv.kernel_size == (s * k, s * k) and conv.stride == (s, s)
    assert conv.padding == (s * (k // 2),) * 2 and conv.in_channels == c1 and conv.bias is not None
    for h, w in SIZES:
        x = torch.randn(2, c1, h, w, dtype=F64)
        with torch.no_grad():
            expected = reference.spdconv(oracle, x) if order == "authors" else oracle(x)
            torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-10)
    assert m.fuse() is m and m.conv.conv is conv  # idempotent


def test_spdconv_fuse_rounds_once_to_float32_and_matches_closely():
    m = randomize_norms(SPDConv(16, 32)).eval()
    x = torch.randn(2, 16, 21, 20)
    with torch.no_grad():
        expected = reference.spdconv(copy.deepcopy(m).double(), x.double())
        got = m.fuse()(x)
    assert m.conv.conv.weight.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=1e-5)


def test_grouped_spdconv_is_left_as_it_was():
    """With groups the strided equivalent is a dense convolution (g times the arithmetic): no fold."""
    m = randomize_norms(SPDConv(4, 8, g=2)).eval()
    before = copy.deepcopy(m)
    m.fuse()
    assert isinstance(m.spd, SpaceToDepth) and hasattr(m.conv, "bn") and m.conv.conv.groups == 2
    x = torch.randn(1, 4, 9, 9)
    with torch.no_grad():
        assert torch.equal(m(x), before(x))


def test_spdconv_fuse_undoes_a_fold_that_fails_its_float64_check(monkeypatch):
    """A wrong weight map (here: the ONNX order's for an authors'-order layer) fails the probe: the module stays."""
    m = randomize_norms(SPDConv(3, 8)).eval()
    monkeypatch.setattr(spd_module, "spd_to_strided", lambda w, s, order: spd_to_strided(w, s, "onnx"))
    m.fuse()
    assert isinstance(m.spd, SpaceToDepth) and hasattr(m.conv, "bn") and type(m.conv.conv) is nn.Conv2d


# ---------------------------------------------------------------------------------------------------- whole models


def unfused(name: str):
    from ultralytics import YOLO

    torch.manual_seed(0)
    return randomize_norms(YOLO(name).model).eval()


def fuse_in_float64(model):
    """yolo_spd's fuse with a float64 probe, then Ultralytics' own BatchNorm fold (``model.fuse()`` minus its
    float32-only probe), all in float64, so fused and unfused can be compared to float64 rounding."""
    from ultralytics.nn.tasks import BaseModel

    fuse_modules(model, example=torch.rand(1, 3, 64, 64, dtype=F64))
    return BaseModel.fuse.__wrapped__(model, verbose=False)


@pytest.mark.parametrize("name", SPD_CONFIGS)
def test_fused_spd_models_equal_unfused_in_float64_and_keep_no_space_to_depth(name):
    model = unfused(name).double()
    reference_model = copy.deepcopy(model)
    fuse_in_float64(model)
    x = torch.rand(2, 3, 96, 64, dtype=F64)
    with torch.no_grad():
        expected, got = reference_model(x)[0], model(x)[0]
    assert (got - expected).abs().max() <= 1e-9 * expected.abs().max()
    assert not [m for m in model.modules() if isinstance(m, SpaceToDepth)]  # every one folded; none needs to stay
    assert not [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    spdconvs = [m for m in model.modules() if isinstance(m, SPDConv)]
    assert spdconvs and all(m.spd is None and type(m.conv.conv) is SPDStridedConv2d for m in spdconvs)


def test_yolov5_spd_n_folds_every_row_into_the_next_c3():
    """Backbone rows 2, 5, 8, 11 feed C3 3, 6, 9, 12 directly: their 1 x 1 cv1/cv2 become 2 x 2 stride-2 convs.
    Head rows 23, 27 reach C3 25, 29 through Concat 24, 28: the Concat hands its inputs on, cv1/cv2 become the sum of
    a 2 x 2 stride-2 conv of the full-resolution part and a 1 x 1 conv of the other. Through Ultralytics' model.fuse()
    (float32 probe), outputs stay equal to float32 rounding."""
    model = unfused("yolov5-spd-n.yaml")
    before = copy.deepcopy(model)
    x = torch.rand(1, 3, 128, 96)
    model.fuse(verbose=False)
    layers = model.model
    assert [i for i, m in enumerate(layers) if isinstance(m, FoldedSpaceToDepth)] == [2, 5, 8, 11, 23, 27]
    assert [i for i, m in enumerate(layers) if isinstance(m, DeferredConcat)] == [24, 28]
    assert all(layers[i].i == i for i in (2, 24)) and layers[24].f == [-1, 18]  # parse_model's attributes kept
    for i in (3, 6, 9, 12):
        for conv in (layers[i].cv1.conv, layers[i].cv2.conv):
            assert type(conv) is SPDStridedConv2d and conv.kernel_size == (2, 2) and conv.stride == (2, 2)
    for i in (25, 29):
        for split in (layers[i].cv1.conv, layers[i].cv2.conv):
            assert isinstance(split, SplitConv2d)
            full, low = split.parts
            assert type(full) is SPDStridedConv2d and full.kernel_size == (2, 2) and type(low) is nn.Conv2d
    assert layers[0].spd is None and layers[0].conv.conv.kernel_size == (6, 6)  # the Focus stem, as an SPDConv
    with torch.no_grad():
        expected, got = before(x)[0], model(x)[0]
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()
    assert model.fuse(verbose=False) is model  # idempotent


def test_a_model_saved_after_fuse_loads_back_with_restricted_loading(tmp_path):
    """``YOLO.predict`` fuses the model in place, so a later ``YOLO.save`` pickles the folded classes: they are on the
    checkpoint allow-list, and the loaded model still computes the same outputs."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import _SafeLoad, torch_safe_load

    stock = YOLO("yolov5nu.yaml")
    stock.model.fuse(verbose=False)
    stock.save(str(tmp_path / "stock.pt"))
    try:
        torch_safe_load(str(tmp_path / "stock.pt"), safe_only=getattr(_SafeLoad, "SUPPORTED", True))
    except TypeError:  # 8.4.67's allow-list lacks the getattr a fused Conv's forward pickles as
        pytest.skip("this Ultralytics cannot restrict-load a fused stock model either")
    yolo = YOLO("yolov5-spd-n.yaml")
    randomize_norms(yolo.model).eval()
    x = torch.rand(1, 3, 64, 64)
    yolo.model.fuse(verbose=False)
    with torch.no_grad():
        expected = yolo.model(x)[0]
    yolo.save(str(tmp_path / "fused.pt"))
    # safe_only=True: restricted loading (Ultralytics 8.4.190 only offers it where torch can list a checkpoint's
    # globals, its _SafeLoad.SUPPORTED; 8.4.67 has no such flag and always can)
    checkpoint, _ = torch_safe_load(str(tmp_path / "fused.pt"), safe_only=getattr(_SafeLoad, "SUPPORTED", True))
    model = checkpoint["model"].float().eval()
    assert type(model.model[2]) is FoldedSpaceToDepth and type(model.model[24]) is DeferredConcat
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], expected, rtol=1e-2, atol=1e-2)  # saved in float16


class Reads(nn.Module):
    """A stride-1 Conv, a SpaceToDepth, and readers of its output chosen by ``reader``."""

    def __init__(self, reader: str):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.spd = SpaceToDepth()
        self.other = nn.Conv2d(3, 5, 3, 2, 1)
        self.concat = _Concat()
        self.reader = reader
        groups = 2 if reader == "grouped" else 1
        stride = 2 if reader == "strided" else 1
        self.conv = nn.Conv2d(21 if "concat" in reader else 16, 8, 3, stride, padding=1, groups=groups)
        self.pool = nn.MaxPool2d(3, 1, 1)

    def forward(self, x):
        y = self.spd(self.stem(x))
        if "concat" in self.reader:
            y = self.concat([y, self.other(x)])
        out = self.conv(y)
        if self.reader == "conv and residual":
            out = out + y[:, :8]  # a reader the hooks cannot see
        if self.reader == "concat and pool":
            out = out + self.pool(y)[:, :8]  # a concatenation also read by a non-convolution
        return out


class _Concat(nn.Module):
    def forward(self, xs):
        return torch.cat(xs, 1)


@pytest.mark.parametrize("reader,folded", [("conv", 1), ("concat", 1), ("conv and residual", 0), ("grouped", 0),
                                           ("strided", 0), ("concat and pool", 0)])
def test_space_to_depth_folds_only_where_exact_and_what_stays_says_why(reader, folded):
    """Stays a SpaceToDepth: a residual read (the float64 check undoes the fold), a grouped or strided reader (no
    strided equivalent with the same arithmetic), a concatenation that a pooling also reads."""
    model = Reads(reader).eval()
    x = torch.randn(2, 3, 10, 14)
    with torch.no_grad():
        before = model(x)
    assert fold_space_to_depth_into_convolutions(model, x) == folded
    assert isinstance(model.spd, FoldedSpaceToDepth if folded else SpaceToDepth)
    if folded and "concat" in reader:
        assert isinstance(model.concat, DeferredConcat) and isinstance(model.conv, SplitConv2d)
    with torch.no_grad():
        for size in [(10, 14), (9, 7)]:  # odd sizes too: the strided convs pad like space-to-depth
            odd = torch.randn(2, 3, *size)
            assert model(odd).shape == Reads(reader).eval()(odd).shape
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------- export


def exported_yolov5_spd_n_nodes(tmp_path, **export_keys) -> list:
    """yolov5-spd-n with random norm statistics, saved and exported to ONNX at imgsz 64 by Ultralytics (whose export
    runs ``model.fuse()``); checks ONNX Runtime computes what the PyTorch model did before export, returns the nodes."""
    import onnx
    import onnxruntime as ort
    from ultralytics import YOLO

    yolo = YOLO("yolov5-spd-n.yaml")
    randomize_norms(yolo.model)
    reference_model = copy.deepcopy(yolo.model).eval()
    weights = tmp_path / "spd-n.pt"
    yolo.save(str(weights))
    onnx_file = YOLO(str(weights)).export(format="onnx", imgsz=64, dynamic=False, **export_keys)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference_model(x)[0].numpy()
    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)  # box coordinates reach hundreds of px
    return list(onnx.load(onnx_file).graph.node)


def test_exported_onnx_of_fused_yolov5_spd_n_has_no_space_to_depth_and_matches_pytorch(tmp_path):
    """Ultralytics' ONNX export (it runs model.fuse()): no SpaceToDepth, DepthToSpace, 6-D Transpose or 1 x 1
    max-pool crops; each folded row is 2 x 2 stride-2 Conv nodes (8 in the backbone C3s, 4 in the head's split
    convs), the stem one 6 x 6 stride-2 Conv; ONNX Runtime computes PyTorch's output."""
    nodes = exported_yolov5_spd_n_nodes(tmp_path)
    ops = [node.op_type for node in nodes]
    assert "SpaceToDepth" not in ops and "DepthToSpace" not in ops
    attributes = [(node, {a.name: list(a.ints) for a in node.attribute}) for node in nodes]
    assert not [n for n, a in attributes if n.op_type == "Transpose" and len(a["perm"]) > 4]
    assert not [n for n, a in attributes if n.op_type == "MaxPool" and a["kernel_shape"] == [1, 1]]
    strided = [(a["kernel_shape"], a["pads"]) for n, a in attributes if n.op_type == "Conv" and a["strides"] == [2, 2]]
    assert strided.count(([2, 2], [0, 0, 1, 1])) == 12 and strided.count(([6, 6], [2, 2, 3, 3])) == 1
    assert len(strided) == 13


#: Explicit padding ops. At the sizes Ultralytics exports (multiples of the model stride) no folded convolution needs
#: one, so none may reach the converters that read a trace or a torch.export program.
PAD_OPS = {"constant_pad_nd", "pad", "reflection_pad2d", "replication_pad2d", "zero_pad2d"}


@pytest.mark.parametrize("name", SPD_CONFIGS)
def test_fused_spd_models_reach_trace_and_torch_export_converters_as_plain_convolutions(name):
    """What the converters that do not read ONNX get from the fold, at imgsz 64 as Ultralytics exports it: x2paddle
    (Paddle), coremltools (CoreML) and pnnx (NCNN) read a ``torch.jit.trace``; ExecuTorch, Core AI and litert-torch
    (TFLite) a ``torch.export`` program. Both hold the folded strided convolutions with their symmetric padding only
    (no pad op, no size arithmetic left behind, no op x2paddle or pnnx lacks), and compute the unfused model's output.
    MNN, onnx2tf (SavedModel, pb) and AMD Quark (Xilinx) read the ONNX export, whose asymmetric ``pads`` the ONNX
    test above checks (and tests/test_exports.py runs through MNN)."""
    from .test_exports import UNSUPPORTED, X2PADDLE_UNSUPPORTED

    model = unfused(name)
    reference_model = copy.deepcopy(model)
    model.fuse(verbose=False)  # what Ultralytics' exporter runs (float32)
    folded = [m for m in model.modules() if type(m) is SPDStridedConv2d]
    assert folded and {m.kernel_size for m in folded} <= {(6, 6), (2, 2)}
    for m in (model, reference_model):
        m.model[-1].export = True  # as exported: the raw output tensor only
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference_model(x)
        model(x)  # Detect's anchors for this size, computed eagerly (as the exporter's dry run does)
        program = torch.export.export(model, (x,))  # before the trace, which leaves traced sizes in Detect.shape
        traced = torch.jit.trace(model, x, check_trace=False, strict=False)
        graphs = {"trace": traced(x), "torch.export": program.module()(x)}
    for form, got in graphs.items():
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3, msg=form)  # boxes reach tens of px

    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert not {f"aten::{op}" for op in PAD_OPS} & kinds
    assert not (set(UNSUPPORTED) | set(X2PADDLE_UNSUPPORTED) | {"aten::remainder", "aten::neg"}) & kinds
    targets = {str(node.target).split(".")[1] for node in program.graph.nodes
               if node.op == "call_function" and str(node.target).startswith("aten.")}
    assert not PAD_OPS & targets, sorted(targets)
    convs = [conv2d_arguments(node) for node in program.graph.nodes
             if node.op == "call_function" and str(node.target).startswith("aten.conv2d")]
    folded_convs = {(tuple(c["weight"].meta["val"].shape[-2:]), c["padding"]) for c in convs if c["stride"] == (2, 2)
                    and c["weight"].meta["val"].shape[-1] in (6, 2)}
    assert folded_convs and folded_convs <= {((6, 6), (2, 2)), ((2, 2), (0, 0))}  # symmetric s (k // 2) padding


def conv2d_arguments(node) -> dict:
    """The arguments of a torch.export ``aten.conv2d`` node by name, defaults filled in, sizes as pairs."""
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    found = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1, **dict(zip(names, node.args)),
             **node.kwargs}
    for key in ("stride", "padding", "dilation"):
        value = found[key]
        found[key] = tuple(value) * (2 if len(value) == 1 else 1) if isinstance(value, (list, tuple)) else (value,) * 2
    return found


def test_dynamic_onnx_export_of_the_folded_form_is_exact_on_sizes_it_was_not_traced_with(tmp_path):
    """One Conv node with the asymmetric pads of strided_geometry: odd sizes come out as space-to-depth's
    ceil(H/2) without any Pad node."""
    import onnx
    import onnxruntime as ort

    model = Reads("concat").eval()
    unfolded = copy.deepcopy(model)
    assert fold_space_to_depth_into_convolutions(model, torch.randn(1, 3, 8, 8)) == 1
    path = tmp_path / "folded.onnx"
    torch.onnx.export(model, torch.randn(1, 3, 8, 8), str(path), input_names=["x"], dynamo=False, opset_version=17,
                      dynamic_axes={"x": {2: "h", 3: "w"}})
    assert {n.op_type for n in onnx.load(str(path)).graph.node} == {"Conv", "Add"}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for h, w in [(8, 8), (7, 9), (5, 12), (1, 3)]:
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            expected = unfolded(x).numpy()
        np.testing.assert_allclose(session.run(None, {"x": x.numpy()})[0], expected, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------------- the benchmark


def test_benchmark_counts_only_data_movement_and_its_committed_table_is_its_json():
    """benchmarks/spd_fold.py: a 1 x 1 max pool (space-to-depth's traced crop) counts as rearranging, SPPF's 5 x 5 pool
    does not; node names give the layer; the committed Markdown is what the script renders from the committed JSON."""
    import json

    from .conftest import REPO, load_script

    bench = load_script("spd_fold")
    nodes = [("MaxPool", "/model.2/MaxPool_1", {"kernel_shape": [1, 1]}), ("MaxPool", "/model.9/m/MaxPool",
             {"kernel_shape": [5, 5]}), ("SpaceToDepth", "/model.5/SpaceToDepth", {}), ("Conv", "/model.3/Conv", {}),
             ("Concat", "cat_7", {})]
    assert bench.rearranging("onnx", nodes) == [("MaxPool", "model.2"), ("SpaceToDepth", "model.5"), ("Concat", "-")]
    results = REPO / "benchmarks" / "results"
    payload = json.loads((results / "spd_fold.json").read_text())
    assert bench.markdown(payload) == (results / "spd_fold.md").read_text()
    assert set(payload["results"]) == {name.removesuffix(".yaml") for name in SPD_CONFIGS}
    space_to_depth = {"SpaceToDepth", "DepthToSpace", "Reorg", "MaxPool", "Pooling", "Crop"}  # 1 x 1 pools only
    for result in payload["results"].values():  # no space-to-depth form is left in any folded graph
        assert {fmt for fmt, graph in result["graphs"].items() if space_to_depth & set(graph["kept"]["counts"])} == {
            "onnx", "openvino", "ncnn"}
        assert not [fmt for fmt, graph in result["graphs"].items() if space_to_depth & set(graph["folded"]["counts"])]
