"""SSDConv (TETCI 2025): the released channel arithmetic, the similarity attention by hand, edge cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from yolo_spd import SSDConv


def randomize_bn(m: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for bn in (x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.3, 0.3)
            bn.running_mean.uniform_(-0.2, 0.2), bn.running_var.uniform_(0.5, 1.5)
    return m


@pytest.mark.parametrize(
    "c1,c2,in_ratio,out_ratio,exp_times",
    [(64, 64, 0.7, 0.5, 2), (64, 128, 0.7, 0.5, 2), (32, 48, 0.5, 0.25, 3), (10, 8, 0.7, 0.5, 3)],
)
def test_channel_arithmetic_matches_the_released_module(c1, c2, in_ratio, out_ratio, exp_times):
    m = SSDConv(c1, c2, in_ratio=in_ratio, out_ratio=out_ratio, exp_times=exp_times)
    base_out = math.ceil(c2 * out_ratio)
    diversity_out = c2 - base_out
    main_in = math.ceil(c1 * in_ratio)
    exp_out = diversity_out * exp_times
    assert (m.base.in_channels, m.base.out_channels) == (main_in, base_out)
    assert (m.expand.in_channels, m.expand.out_channels) == (c1 - main_in, exp_out)
    assert (m.diversity.in_channels, m.diversity.out_channels) == (main_in + exp_out, diversity_out)
    assert m.diversity.groups == math.gcd(diversity_out, main_in)
    assert m.bn_diversity.num_features == main_in + exp_out and m.bn_main.num_features == c2
    assert m.fc[0].out_features == max(2, c2 // 16)
    if exp_out == c2:
        assert m.down is None
    else:  # released: groups = base_out (which divides both here)
        assert (m.down.in_channels, m.down.out_channels, m.down.groups) == (exp_out, c2, base_out)


def attention_by_hand(m: SSDConv, y: torch.Tensor) -> torch.Tensor:
    n, c = y.shape[:2]
    weights = torch.zeros(n, c)
    for b in range(n):
        v = []
        for i in range(c):
            p = torch.exp(y[b, i].flatten()) / torch.exp(y[b, i].flatten()).sum()  # softmax over positions
            v.append(p / torch.sqrt((p * p).sum()))  # L2 normalisation
        s = torch.zeros(c)
        for i in range(c):
            s[i] = sum(((v[i] * v[j]).sum() + 1) / 2 for j in range(c)) / c  # mean similarity in [0, 1]
        z = (1 - s) * y[b].mean(dim=(1, 2))
        hidden = torch.relu(m.fc[0].weight @ z + m.fc[0].bias)
        weights[b] = torch.sigmoid(m.fc[2].weight @ hidden + m.fc[2].bias)
    return weights.view(n, c, 1, 1)


def test_similarity_attention_by_hand():
    m = SSDConv(8, 6)
    y = torch.randn(2, 6, 3, 4)
    assert torch.allclose(m.similarity_attention(y), attention_by_hand(m, y), atol=1e-5)


def test_similarity_attention_is_lower_for_duplicated_channels():
    """Identical channels have similarity 1; the FC input (1 - s) m then shrinks for them."""
    y = torch.randn(1, 4, 5, 5)
    y[:, 1] = y[:, 0]
    v = F.normalize(y.flatten(2).softmax(-1), dim=-1)
    assert torch.allclose(v[0, 0] @ v[0, 1], torch.tensor(1.0), atol=1e-6)


def bn_by_hand(x, bn):
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (x - bn.running_mean.view(1, -1, 1, 1)) * scale.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)


@pytest.mark.parametrize("s", [1, 2])
def test_forward_composed_by_hand(s):
    m = randomize_bn(SSDConv(10, 12, s=s, exp_times=3, bn=False, act=False)).eval()
    x = torch.randn(2, 10, 6, 8)
    x_m, x_e = x[:, :7], x[:, 7:]
    y_base = F.conv2d(x_m, m.base.weight, stride=s, padding=1)
    if s == 2:  # 2 x 2 average pooling, written out
        x_m = x_m.reshape(2, 7, 3, 2, 4, 2).mean(dim=(3, 5))
        x_e = x_e.reshape(2, 3, 3, 2, 4, 2).mean(dim=(3, 5))
    y_e = torch.einsum("oc,nchw->nohw", m.expand.weight[:, :, 0, 0], x_e)  # 6 * 3 = 18 channels
    div_in = bn_by_hand(torch.cat([x_m, y_e], 1), m.bn_diversity)
    y_div = F.conv2d(div_in, m.diversity.weight, padding=1, groups=math.gcd(6, 7))
    y_m = bn_by_hand(torch.cat([y_base, y_div], 1), m.bn_main)
    y = y_m * attention_by_hand(m, y_m)
    down = F.conv2d(y_e, m.down.weight, groups=m.down.groups)  # 18 -> 12, groups = base_out = 6
    assert m.down.groups == 6
    assert torch.allclose(m(x), y + down, atol=1e-4)


@pytest.mark.parametrize("h,w", [(7, 9), (5, 4), (1, 1), (3, 3)])
def test_stride_2_with_odd_sizes(h, w):
    """The released module adds a ceil-sized and a floor-sized tensor here and crashes."""
    y = SSDConv(16, 32, s=2)(torch.randn(2, 16, h, w))
    assert y.shape == (2, 32, -(-h // 2), -(-w // 2)) and torch.isfinite(y).all()


@pytest.mark.parametrize("c1,in_ratio", [(16, 1.0), (1, 0.7)])
def test_no_expansion_channels_gives_the_attended_main_path(c1, in_ratio):
    m = randomize_bn(SSDConv(c1, 8, in_ratio=in_ratio, bn=False, act=False)).eval()
    assert m.expand is None and m.down is None and m.diversity.in_channels == c1
    x = torch.randn(2, c1, 5, 5)
    y_main = m.bn_main(torch.cat([m.base(x), m.diversity(m.bn_diversity(x))], 1))
    assert torch.allclose(m(x), y_main * m.similarity_attention(y_main), atol=1e-6)


@pytest.mark.parametrize("c2,expected_groups", [(9, 1), (15, 1), (7, 1), (33, 1)])
def test_odd_c2_uses_gcd_groups_for_the_down_projection(c2, expected_groups):
    m = SSDConv(16, c2)
    base_out = math.ceil(c2 / 2)
    exp_out = (c2 - base_out) * 2
    assert m.down.groups == math.gcd(exp_out, c2) == expected_groups
    assert m(torch.randn(1, 16, 6, 6)).shape == (1, c2, 6, 6)


def test_gradients_reach_every_parameter():
    m = SSDConv(16, 33, s=2)
    m(torch.randn(2, 16, 9, 9)).square().mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(c1=16, c2=1), "c2=1"),
        (dict(c1=16, c2=16, out_ratio=1.0), "out_ratio=1.0"),
        (dict(c1=16, c2=16, in_ratio=0.0), "in_ratio=0.0"),
        (dict(c1=16, c2=16, k=2), "k=2"),
        (dict(c1=16, c2=16, s=4), "s=4"),
        (dict(c1=16, c2=16, exp_times=0), "exp_times=0"),
        (dict(c1=16, c2=16, reduction=0), "reduction=0"),
    ],
)
def test_bad_arguments_raise_a_value_error_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SSDConv(**kwargs)


# ---------------------------------------------------------------------------------------------------- export form

#: Ops the eager similarity attention uses that export targets cannot take (module docstring, "Export form"):
#: x2paddle has no reciprocal; vector_norm becomes ONNX ReduceL2, whose opset-18 axes input MNN 3.6's converter drops.
EAGER_ONLY_OPS = {"aten::reciprocal", "aten::linalg_vector_norm", "aten::norm", "aten::frobenius_norm"}


def test_eager_inverse_norm_is_unchanged_and_the_export_form_equals_it():
    from yolo_spd.modules.ssdconv import inverse_l2_norm

    e = torch.exp(-30 * torch.rand(2, 5, 300))  # entries from 1 down to ~1e-13, as exp(y - max y) gives
    e[..., 0] = 1.0
    assert torch.equal(inverse_l2_norm(e), torch.linalg.vector_norm(e, dim=-1, keepdim=True).reciprocal())
    traced = torch.jit.trace(inverse_l2_norm, e)
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert "aten::rsqrt" in kinds and not kinds & EAGER_ONLY_OPS
    torch.testing.assert_close(traced(e), inverse_l2_norm(e), rtol=1e-6, atol=0)
    other = torch.rand(2, 5, 300)  # the traced form is not tied to the tracing input
    torch.testing.assert_close(traced(other), torch.linalg.vector_norm(other, dim=-1, keepdim=True).reciprocal(),
                               rtol=1e-6, atol=0)


@pytest.mark.parametrize("s", [1, 2])
@pytest.mark.parametrize("c1,scale", [(16, 1.0), (16, 20.0), (1, 1.0)])  # c1=1: no expansion path
def test_traced_module_has_no_eager_only_op_and_matches_eager(c1, scale, s):
    """Trace = what Ultralytics' TorchScript, Paddle (x2paddle), NCNN (pnnx) and ONNX exports see."""
    m = randomize_bn(SSDConv(c1, 24, s=s)).eval()
    x = scale * torch.randn(2, c1, 9, 7)  # scale 20: peaked softmax maps, most entries of e near 0
    with torch.no_grad():
        expected = m(x)
        traced = torch.jit.trace(m, x, check_trace=False)
        got = traced(x)
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert "aten::rsqrt" in kinds and not kinds & EAGER_ONLY_OPS
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_onnx_export_has_no_reduce_l2_and_matches_eager(tmp_path):
    """MNN converts the ONNX export; ONNX Runtime runs it here exactly (the MNN round trip: tests/test_exports.py)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    m = randomize_bn(SSDConv(16, 24, s=2)).eval()
    x = torch.randn(1, 16, 10, 12)
    path = tmp_path / "ssdconv.onnx"
    with torch.no_grad():
        expected = m(x).numpy()
        torch.onnx.export(m, x, str(path), opset_version=18, input_names=["x"], output_names=["y"], dynamo=False)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "ReduceL2" not in ops and {"ReduceSum", "Sqrt"} <= ops
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    assert abs(got - expected).max() <= 1e-5 * abs(expected).max()
