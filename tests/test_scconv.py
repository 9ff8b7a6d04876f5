"""SCConv (CVPR 2023): each equation computed directly on a small tensor and compared with the module."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from yolo_spd import CRU, SRU, SCConv


def randomize(module: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial affine parameters (GroupNorm/BatchNorm start at 1/0, which would hide mistakes)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "gn" in name or "bn" in name:
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.uniform_(-0.3, 0.3)
    return module


def group_norm_by_hand(x, groups, gamma, beta, eps=1e-5):
    """Eq. 1 per sample and group: gamma (x - mu) / sqrt(sigma^2 + eps) + beta."""
    n, c, h, w = x.shape
    xg = x.reshape(n, groups, -1)
    mu = xg.mean(-1, keepdim=True)
    var = xg.var(-1, unbiased=False, keepdim=True)
    normed = ((xg - mu) / torch.sqrt(var + eps)).reshape(n, c, h, w)
    return normed * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)


def test_eq2_importance_weights_are_gamma_over_its_sum_not_a_softmax():
    sru = SRU(8)
    gamma = torch.arange(1.0, 9.0)
    with torch.no_grad():
        sru.gn.weight.copy_(gamma)
    expected = gamma / 36.0
    assert torch.allclose(sru.importance_weights(), expected)
    assert not torch.allclose(sru.importance_weights(), gamma.softmax(0), atol=1e-3)


@pytest.mark.parametrize("variant", ["paper", "release"])
def test_eq3_gate(variant):
    sru = randomize(SRU(8, gn_groups=4, variant=variant))
    x = torch.randn(2, 8, 5, 6)
    gn = group_norm_by_hand(x, 4, sru.gn.weight.detach(), sru.gn.bias.detach())
    w_gamma = sru.gn.weight.detach() / sru.gn.weight.detach().sum()
    reweights = 1.0 / (1.0 + torch.exp(-(gn * w_gamma.view(1, -1, 1, 1))))
    above = reweights > 0.5
    w1, w2 = sru.gates(x)
    if variant == "paper":  # informative -> 1 in W1, 0 in W2; the rest the other way round
        assert torch.equal(w1.detach(), above.float()) and torch.equal(w2.detach(), (~above).float())
    else:  # public code (R1): the thresholded entry becomes 1 / 0, the others keep the sigmoid value
        assert torch.allclose(w1, torch.where(above, torch.ones_like(reweights), reweights), atol=1e-6)
        assert torch.allclose(w2, torch.where(above, torch.zeros_like(reweights), reweights), atol=1e-6)
    assert above.any() and (~above).any()  # the gate separates: both kinds of element exist


def test_eq4_cross_reconstruction_channel_by_channel():
    x1w, x2w = torch.randn(2, 6, 3, 3), torch.randn(2, 6, 3, 3)
    out = SRU.reconstruct(x1w, x2w)
    for c in range(3):  # X^w1 = X11 + X22
        assert torch.equal(out[:, c], x1w[:, c] + x2w[:, c + 3])
    for c in range(3, 6):  # X^w2 = X21 + X12
        assert torch.equal(out[:, c], x2w[:, c - 3] + x1w[:, c])


def test_sru_forward_is_gated_inputs_cross_reconstructed():
    sru = randomize(SRU(8, gn_groups=4))
    x = torch.randn(2, 8, 4, 4)
    w1, w2 = sru.gates(x)
    assert torch.equal(sru(x), SRU.reconstruct(w1 * x, w2 * x))
    assert torch.equal(w1 * x + w2 * x, x)  # hard masks partition every element


def grouped_conv_by_hand(x, weight, groups, stride=1):
    """GWC as `groups` independent dense convolutions on channel slices."""
    cin, cout = x.shape[1] // groups, weight.shape[0] // groups
    pad = weight.shape[-1] // 2
    outs = [
        F.conv2d(x[:, i * cin : (i + 1) * cin], weight[i * cout : (i + 1) * cout], stride=stride, padding=pad)
        for i in range(groups)
    ]
    return torch.cat(outs, 1)


def pointwise_by_hand(x, weight):
    return torch.einsum("oc,nchw->nohw", weight[:, :, 0, 0], x)


def test_eq5_upper_stage_is_gwc_plus_pwc():
    cru = CRU(16, 12)
    x_up = torch.randn(2, 4, 5, 5)
    expected = grouped_conv_by_hand(x_up, cru.gwc.weight, 2) + pointwise_by_hand(x_up, cru.pwc1.weight)
    assert torch.allclose(cru.upper(x_up), expected, atol=1e-5)


def test_eq5_at_stride_2_the_pointwise_path_sees_the_average_pooled_input():
    cru = CRU(16, 12, s=2)
    x_up = torch.randn(1, 4, 6, 6)
    pooled = x_up.reshape(1, 4, 3, 2, 3, 2).mean(dim=(3, 5))
    expected = grouped_conv_by_hand(x_up, cru.gwc.weight, 2, stride=2) + pointwise_by_hand(pooled, cru.pwc1.weight)
    assert torch.allclose(cru.upper(x_up), expected, atol=1e-5)


def test_eq6_lower_stage_is_pwc_concatenated_with_the_reused_features():
    cru = CRU(16, 12)
    x_low = torch.randn(2, 4, 5, 5)
    y2 = cru.lower(x_low)
    assert y2.shape[1] == 12
    assert torch.allclose(y2[:, :8], pointwise_by_hand(x_low, cru.pwc2.weight), atol=1e-5)
    assert torch.equal(y2[:, 8:], x_low)


def test_eqs7_to_9_fuse_is_a_per_channel_softmax_over_the_two_branches():
    y1, y2 = torch.randn(2, 5, 4, 3), torch.randn(2, 5, 4, 3)
    s1 = y1.sum(dim=(2, 3)) / 12.0  # eq. 7
    s2 = y2.sum(dim=(2, 3)) / 12.0
    beta1 = torch.exp(s1) / (torch.exp(s1) + torch.exp(s2))  # eq. 8
    beta2 = torch.exp(s2) / (torch.exp(s1) + torch.exp(s2))
    expected = beta1[..., None, None] * y1 + beta2[..., None, None] * y2  # eq. 9
    assert torch.allclose(CRU.fuse(y1, y2), expected, atol=1e-6)
    assert torch.allclose(beta1 + beta2, torch.ones_like(beta1))


def test_scconv_forward_equals_the_equations_composed_by_hand():
    m = randomize(SCConv(16, 12, bn=False, act=False, gn_groups=4))
    x = torch.randn(2, 16, 6, 5)
    sru, cru = m.sru, m.cru
    gn = group_norm_by_hand(x, 4, sru.gn.weight.detach(), sru.gn.bias.detach())
    gamma = sru.gn.weight.detach()
    w1 = (torch.sigmoid(gn * (gamma / gamma.sum()).view(1, -1, 1, 1)) > 0.5).float()
    x1w, x2w = w1 * x, (1 - w1) * x
    xw = torch.cat([x1w[:, :8] + x2w[:, 8:], x2w[:, :8] + x1w[:, 8:]], 1)
    x_up = pointwise_by_hand(xw[:, :8], cru.squeeze_up.weight)
    x_low = pointwise_by_hand(xw[:, 8:], cru.squeeze_low.weight)
    y1 = grouped_conv_by_hand(x_up, cru.gwc.weight, 2) + pointwise_by_hand(x_up, cru.pwc1.weight)
    y2 = torch.cat([pointwise_by_hand(x_low, cru.pwc2.weight), x_low], 1)
    s1, s2 = y1.mean(dim=(2, 3)), y2.mean(dim=(2, 3))
    b1 = (torch.exp(s1) / (torch.exp(s1) + torch.exp(s2)))[..., None, None]
    assert torch.allclose(m(x), b1 * y1 + (1 - b1) * y2, atol=1e-5)


def test_release_variant_is_the_public_codes_formulas_composed_by_hand():
    """``variant="release"`` (R1-R4 of the module docstring), each step computed here: GroupNorm with 4 groups, the
    gate that keeps sub-threshold sigmoid values, a GWC bias, and one softmax over all 2C pooled channels."""
    m = randomize(SCConv(16, 12, bn=False, act=False, variant="release"))
    with torch.no_grad():
        m.cru.gwc.bias.uniform_(-0.5, 0.5)
    sru, cru = m.sru, m.cru
    assert sru.gn.num_groups == 4  # R2
    x = torch.randn(2, 16, 6, 5)
    gamma = sru.gn.weight.detach()
    gn = group_norm_by_hand(x, 4, gamma, sru.gn.bias.detach())
    reweights = 1.0 / (1.0 + torch.exp(-(gn * (gamma / gamma.sum()).view(1, -1, 1, 1))))
    informative = reweights > 0.5
    w1 = torch.where(informative, torch.ones_like(reweights), reweights)  # R1
    w2 = torch.where(informative, torch.zeros_like(reweights), reweights)
    assert informative.any() and (~informative).any()
    x1w, x2w = w1 * x, w2 * x
    xw = torch.cat([x1w[:, :8] + x2w[:, 8:], x2w[:, :8] + x1w[:, 8:]], 1)  # eq. 4
    x_up = pointwise_by_hand(xw[:, :8], cru.squeeze_up.weight)
    x_low = pointwise_by_hand(xw[:, 8:], cru.squeeze_low.weight)
    gwc = grouped_conv_by_hand(x_up, cru.gwc.weight, 2) + cru.gwc.bias.view(1, -1, 1, 1)  # R3
    y1 = gwc + pointwise_by_hand(x_up, cru.pwc1.weight)
    y2 = torch.cat([pointwise_by_hand(x_low, cru.pwc2.weight), x_low], 1)
    pooled = torch.cat([y1, y2], 1).sum(dim=(2, 3)) / 30.0  # (N, 2C)
    a = torch.exp(pooled) / torch.exp(pooled).sum(dim=1, keepdim=True)  # R4: one softmax over all 24 channels
    a1, a2 = a[:, :12, None, None], a[:, 12:, None, None]
    assert torch.allclose(m(x), a1 * y1 + a2 * y2, atol=1e-5)
    assert float((a1 + a2).detach().max()) < 0.5  # unlike eq. 8, a channel's two weights do not sum to 1


@pytest.mark.parametrize("c,groups", [(16, 4), (24, 4), (64, 4), (18, 2)])
def test_release_variant_groupnorm_asks_for_4_groups_and_the_paper_form_for_16(c, groups):
    assert SCConv(c, c, variant="release").sru.gn.num_groups == groups
    assert SCConv(c, c).sru.gn.num_groups == math.gcd(c, 16)
    assert SCConv(c, c, gn_groups=8, variant="release").sru.gn.num_groups == math.gcd(c, 8)  # explicit count wins


@pytest.mark.parametrize("variant", ["paper", "release"])
def test_the_documented_width_rule_at_the_papers_defaults_is_the_one_scconv_applies(variant):
    """The docstring's rule (deviation 3, Args): at alpha 1/2, r 2, g 2, c1 even, >= 8 and 0 or 2 modulo 8; c2 even
    and above c1 / 4. (It used to say every even channel count works, which holds for SRU alone.)"""
    for c1 in range(1, 41):
        for c2 in range(1, 41):
            documented = c1 % 2 == 0 and c1 >= 8 and c1 % 8 in (0, 2) and c2 % 2 == 0 and c2 > c1 // 4
            try:
                SCConv(c1, c2, variant=variant)
                built = True
            except ValueError:
                built = False
            assert built == documented, (c1, c2)
    assert all(SRU(c).gn.num_groups >= 1 for c in range(2, 41, 2))  # SRU alone: every even width


def eq11_params(c1, c2, alpha=0.5, r=2, g=2, k=3):
    a, b = alpha * c1, (1 - alpha) * c1
    return a * a / r + k * k * (a / (g * r)) * (c2 / g) * g + a / r * c2 + b * b / r + b / r * (c2 - b / r)


@pytest.mark.parametrize("c1,c2", [(64, 64), (32, 64), (64, 48), (128, 256)])
def test_eq11_parameter_count(c1, c2):
    m = SCConv(c1, c2, bn=False, act=False)
    gn_affine = 2 * c1  # eq. 11 counts the transform stage only; SRU's GroupNorm adds gamma and beta
    assert sum(p.numel() for p in m.parameters()) == eq11_params(c1, c2) + gn_affine


def test_release_variant_adds_only_the_gwc_bias_to_the_parameters():
    paper, release = SCConv(64, 48, bn=False, act=False), SCConv(64, 48, bn=False, act=False, variant="release")
    assert sum(p.numel() for p in release.parameters()) == sum(p.numel() for p in paper.parameters()) + 48  # R3


def test_eq11_about_five_times_fewer_parameters_than_a_3x3_conv():
    c = 256
    ratio = 9 * c * c / eq11_params(c, c)
    assert 4.5 < ratio < 5.5  # the paper: P_s / P_sc ~ 5 for alpha = 1/2, r = 2, g = 2, k = 3


def count_torch_calls(fn) -> int:
    class Counter(torch.overrides.TorchFunctionMode):
        calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            Counter.calls += 1
            return func(*args, **(kwargs or {}))

    with Counter():
        fn()
    return Counter.calls


def test_python_sum_pitfall_importance_weights_are_one_reduction_whatever_c():
    """Python's builtin ``sum`` over gamma unrolls into C tensor additions (slow, and C nodes in a trace or export)."""
    small, large = SRU(8), SRU(256)
    assert count_torch_calls(small.importance_weights) == count_torch_calls(large.importance_weights)
    gamma = large.gn.weight
    assert count_torch_calls(lambda: sum(gamma)) > 256 > count_torch_calls(large.importance_weights)


@pytest.mark.parametrize("c,requested,expected", [(24, 16, 8), (40, 16, 8), (64, 16, 16), (56, 16, 8), (48, 32, 16)])
def test_groupnorm_groups_always_divide_the_channels(c, requested, expected):
    m = SCConv(c, c, gn_groups=requested)
    assert m.sru.gn.num_groups == expected and c % m.sru.gn.num_groups == 0
    assert m(torch.randn(1, c, 4, 4)).shape == (1, c, 4, 4)


@pytest.mark.parametrize(
    "c1,c2,s,h,w", [(16, 16, 1, 8, 8), (16, 32, 1, 7, 5), (32, 16, 2, 8, 8), (16, 24, 2, 7, 9), (8, 8, 2, 1, 1)]
)
def test_c1_ne_c2_and_stride_2_including_odd_sizes(c1, c2, s, h, w):
    y = SCConv(c1, c2, 3, s)(torch.randn(2, c1, h, w))
    assert y.shape == (2, c2, -(-h // s), -(-w // s))
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("variant", ["paper", "release"])
@pytest.mark.parametrize("s", [1, 2])
def test_gradients_reach_every_parameter(variant, s):
    m = randomize(SCConv(16, 24, 3, s, variant=variant))
    m(torch.randn(2, 16, 9, 9)).square().mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing  # including sru.gn.* under the hard gate (straight-through gradient) and the release GWC bias
    assert ("cru.gwc.bias" in dict(m.named_parameters())) == (variant == "release")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(c1=15, c2=16), "c1=15"),
        (dict(c1=16, c2=16, alpha=1.0), "alpha=1.0"),
        (dict(c1=16, c2=16, variant="soft"), "variant='soft'"),
        (dict(c1=16, c2=16, variant="released"), "variant='released'"),
        (dict(c1=16, c2=16, s=3), "s=3"),
        (dict(c1=16, c2=16, k=4), "k=4"),
        (dict(c1=16, c2=15), "g=2"),
        (dict(c1=4, c2=4, r=4), "r=4"),
        (dict(c1=16, c2=16, gate_threshold=1.5), "gate_threshold=1.5"),
    ],
)
def test_bad_arguments_raise_a_value_error_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SCConv(**kwargs)


def test_default_is_a_conv_row_and_bare_is_the_paper_module():
    from ultralytics.nn.modules import Conv

    row, bare = SCConv(16, 16), SCConv(16, 16, bn=False, act=False)
    assert isinstance(row.bn, torch.nn.BatchNorm2d) and row.act is Conv.default_act
    assert isinstance(bare.bn, torch.nn.Identity) and isinstance(bare.act, torch.nn.Identity)
    assert math.isclose(sum(p.numel() for p in row.parameters()) - sum(p.numel() for p in bare.parameters()), 32)


@pytest.mark.parametrize("gate,variant", [("hard", "paper"), ("released", "release")])
def test_checkpoints_of_the_first_version_load_with_the_same_gate(gate, variant, tmp_path):
    """yolo_spd 0.1.0 pickled SRU with ``gate`` ("hard" or "released", the SRU part of the release form only) and CRU
    without ``variant`` or the release buffers; such a module loads and computes what it computed then."""
    m = randomize(SCConv(16, 16, gn_groups=4)).eval()
    sru = SRU(16, gn_groups=4, variant=variant)
    sru.gn.load_state_dict(m.sru.gn.state_dict())
    x = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        expected = m.act(m.bn(m.cru(sru(x))))  # that gate, then the paper's CRU
    del m.sru.variant, m.cru.variant, m.cru._buffers["out_scale"], m.cru._buffers["out_shift"]
    m.sru.gate = gate
    torch.save(m, tmp_path / "old.pt")
    loaded = torch.load(tmp_path / "old.pt", weights_only=False)
    assert loaded.sru.variant == variant and "gate" not in vars(loaded.sru) and loaded.cru.variant == "paper"
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(loaded.fuse()(x), expected, rtol=0, atol=1e-5)


def test_yaml_row_builds_the_release_variant(tmp_path):
    """The release form from a model YAML, through Ultralytics' parse_model (positional arguments, as for any row)."""
    import yaml
    from ultralytics import YOLO

    cfg = {
        "nc": 2,
        "backbone": [
            [-1, 1, "Conv", [16, 3, 2]],
            [-1, 1, "SCConv", [32, 3, 2, 0.5, 2, 2, None, 0.5, "release"]],
            [-1, 1, "SCConv", [64, 3, 2]],
        ],
        "head": [[[1, 2], 1, "Detect", ["nc"]]],
    }
    path = tmp_path / "scconv-release.yaml"
    path.write_text(yaml.safe_dump(cfg))
    model = YOLO(str(path)).model
    release, paper = model.model[1], model.model[2]
    assert (release.sru.variant, release.cru.variant, release.sru.gn.num_groups) == ("release", "release", 4)
    assert release.cru.gwc.bias is not None and paper.cru.gwc.bias is None
    assert (paper.sru.variant, paper.sru.gn.num_groups) == ("paper", 16)


# ---------------------------------------------------------------------------------------------------- export forms

#: Gate inputs at the edges of float32: signed zeros, the smallest subnormal (2^-149) and normal (2^-126), the
#: largest finite value and infinities, on both sides of 0.
EDGE_VALUES = [0.0, -0.0, 2.0**-149, -(2.0**-149), 2.0**-126, -(2.0**-126), 1e-30, -1e-30, 2.0**-22, 0.5, 1.0, -1.0,
               3.4028234663852886e38, -3.4028234663852886e38, math.inf, -math.inf]


def traced(fn, *inputs):
    """``fn`` as torch.jit.trace records it: the export form (``is_exporting()`` is true while tracing)."""
    with torch.no_grad():
        return torch.jit.trace(fn, inputs, check_trace=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_export_form_of_the_hard_gate_is_bit_exact_0_or_1_at_every_edge(dtype):
    """E1: clamp(sqrt^4(clamp(z, 0, 1)) 2^15, 0, 1) is exactly step(z), even for the smallest positive z, in float32
    and in half precision (a half-precision export), with no NaN: every constant of the traced form is a float16
    number (2^127 was not: 0 * inf)."""
    from yolo_spd.modules.scconv import step

    z = torch.cat([torch.tensor(EDGE_VALUES), torch.randn(10_000) * 10.0 ** torch.randint(-40, 38, (10_000,))])
    z = torch.cat([z.to(dtype), torch.tensor([torch.finfo(dtype).tiny]).to(dtype) * 2.0 ** -10])  # a subnormal
    eager, exported = step(z), traced(step, z)(z)
    assert torch.equal(eager, (z > 0).to(dtype))
    assert torch.equal(exported, eager) and set(exported.abs().unique().float().tolist()) == {0.0, 1.0}
    graph = traced(step, z).inlined_graph
    kinds = {node.kind() for node in graph.nodes()}
    assert {"aten::sqrt", "aten::mul", "aten::clamp"} <= kinds and not kinds & {"aten::gt", "aten::ceil", "aten::floor"}
    constants = [node.output().toIValue() for node in graph.nodes() if node.kind() == "prim::Constant"
                 and isinstance(node.output().toIValue(), float)]
    assert constants and all(abs(c) <= torch.finfo(torch.float16).max for c in constants)


def test_export_form_of_the_release_gate_is_bit_exact_at_and_around_the_threshold():
    """E2: R1's masked_fill by r > t as multiplies and adds of the 0/1 step(r - t): the same bits, including r = t."""
    from yolo_spd.modules.scconv import release_gate

    for threshold in (0.5, 0.3):
        t = torch.tensor(threshold)  # float32, as the threshold is when compared with or subtracted from r
        edges = torch.stack([t, torch.nextafter(t, torch.tensor(1.0)), torch.nextafter(t, torch.tensor(0.0))])
        r = torch.cat([edges, torch.tensor([0.0, 1.0, 1e-30, 2.0**-149]), torch.rand(10_000)])
        (w1, w2), (e1, e2) = release_gate(r, threshold), traced(lambda x: release_gate(x, threshold), r)(r)
        above = r > threshold
        assert torch.equal(w1, torch.where(above, 1.0, r)) and torch.equal(w2, torch.where(above, 0.0, r))
        assert torch.equal(e1, w1) and torch.equal(e2, w2)


@pytest.mark.parametrize("variant", ["paper", "release"])
def test_export_form_of_the_gate_logits_is_groupnorm_then_the_importance_weights(variant):
    """E3: z = W_gamma GN(X) - logit(t) with GroupNorm's own parameters (x2paddle takes GroupNorm's affine only from
    parameters) equals the eager form, which folds W_gamma and the shift into GroupNorm's affine."""
    sru = randomize(SRU(16, gn_groups=4, gate_threshold=0.3, variant=variant)).eval()
    x = torch.randn(2, 16, 7, 5)
    with torch.no_grad():
        logits = torch.jit.trace_module(sru, {"gate_logits": (x,)}, check_trace=False).gate_logits
        torch.testing.assert_close(logits(x), sru.gate_logits(x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(traced(sru, x)(x), sru(x), rtol=1e-5, atol=1e-6)
