"""The fast module code paths against the straightforward implementation (tests/reference.py) on the same weights:
outputs in train and eval mode, gradients of input and every parameter, odd sizes, stride 2, c1 != c2 and
channels-last inputs. Tolerances are float32 reassociation levels, far below any real difference (a single wrong
gate, channel or branch weight moves outputs by O(1))."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from yolo_spd import SRU, SCConv, SpaceToDepth, SSDConv

from . import reference

CHANNELS_LAST = torch.channels_last


def randomize_norms(module: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial GroupNorm/BatchNorm affine parameters and running statistics (defaults 1/0 hide mistakes)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.GroupNorm, torch.nn.BatchNorm2d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
    return module


def make_input(c, h, w, channels_last=False):
    x = torch.randn(2, c, h, w)
    return (x.contiguous(memory_format=CHANNELS_LAST) if channels_last else x).requires_grad_(True)


def assert_same_outputs_and_gradients(module, reference_forward, x, atol=1e-5, grad_rtol=1e-4):
    module.train()
    fast, slow = module(x), reference_forward(module, x)
    torch.testing.assert_close(fast, slow, rtol=0, atol=atol)
    target = torch.randn_like(slow)  # a loss whose gradient differs everywhere
    inputs = [x, *module.parameters()]
    fast_grads = torch.autograd.grad((fast * target).sum(), inputs)
    slow_grads = torch.autograd.grad((slow * target).sum(), inputs)
    for name, a, b in zip(["x"] + [n for n, _ in module.named_parameters()], fast_grads, slow_grads):
        # relative to the tensor's largest entry; 1e-5 absolute for gradients that are zero up to rounding (e.g. a
        # BatchNorm bias before a train-mode BatchNorm)
        grad_atol = grad_rtol * float(b.abs().max()) + 1e-5
        torch.testing.assert_close(a, b, rtol=0, atol=grad_atol, msg=f"gradient of {name}")
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(module(x), reference_forward(module, x), rtol=0, atol=atol)


SPD_CASES = [(2, 8, 8, False), (2, 7, 9, False), (3, 9, 6, False), (2, 6, 10, True), (2, 5, 7, True)]


@pytest.mark.parametrize("scale,h,w,channels_last", SPD_CASES)
def test_space_to_depth_is_the_authors_channel_order_bit_for_bit(scale, h, w, channels_last):
    x = make_input(5, h, w, channels_last).detach()
    out = SpaceToDepth(scale=scale)(x)
    assert torch.equal(out, reference.space_to_depth(x, scale))
    assert out.is_contiguous(memory_format=CHANNELS_LAST if channels_last else torch.contiguous_format)


def test_space_to_depth_gradient_is_the_inverse_rearrangement():
    x = make_input(3, 6, 5)
    target = torch.randn(2, 12, 3, 3)
    (fast,) = torch.autograd.grad((SpaceToDepth()(x) * target).sum(), x)
    (slow,) = torch.autograd.grad((reference.space_to_depth(x, 2) * target).sum(), x)
    assert torch.equal(fast, slow)


SCCONV_CASES = [
    # c1, c2, k, s, h, w, extra constructor arguments, channels_last
    (16, 16, 3, 1, 8, 8, {}, False),
    (16, 24, 3, 2, 9, 7, {}, False),
    (24, 40, 3, 1, 5, 6, {}, True),
    (32, 16, 5, 2, 7, 7, {"gn_groups": 8}, True),
    (20, 20, 3, 1, 6, 5, {"alpha": 0.6}, False),  # uneven split: two squeeze convolutions
    (16, 16, 3, 1, 7, 6, {"variant": "release"}, False),
    (16, 24, 3, 2, 9, 7, {"variant": "release"}, True),
    (20, 20, 3, 1, 6, 5, {"variant": "release", "alpha": 0.6, "bn": False, "act": False}, False),
    (16, 12, 3, 1, 6, 6, {"gate_threshold": 0.3, "bn": False, "act": False}, True),
    (16, 24, 3, 2, 8, 6, {}, False),  # even sizes at stride 2: the two-add average pool (_common.average_pool)
    (16, 24, 3, 2, 6, 10, {"variant": "release"}, False),
]


@pytest.mark.parametrize("c1,c2,k,s,h,w,kwargs,channels_last", SCCONV_CASES)
def test_scconv_matches_the_straightforward_implementation(c1, c2, k, s, h, w, kwargs, channels_last):
    m = randomize_norms(SCConv(c1, c2, k, s, **{"gn_groups": 4, **kwargs}))
    assert_same_outputs_and_gradients(m, reference.scconv, make_input(c1, h, w, channels_last))


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_sru_hand_written_backward_is_the_straight_through_gradient(threshold):
    """Gradients of x and of GroupNorm's gamma and beta (which reach the output only through the gate's
    straight-through path) equal autograd's through the reference's step + sigmoid - sigmoid.detach()."""
    sru = randomize_norms(SRU(16, gn_groups=4, gate_threshold=threshold))
    x = make_input(16, 5, 7)
    target = torch.randn(2, 16, 5, 7)
    inputs = [x, sru.gn.weight, sru.gn.bias]
    fast = torch.autograd.grad((sru(x) * target).sum(), inputs)
    slow = torch.autograd.grad((reference.sru(sru, x) * target).sum(), inputs)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4 * float(b.abs().max()) + 1e-6)
    assert float(slow[1].abs().max()) > 1e-3  # gamma does receive a gradient through the gate


def test_sru_gradient_when_only_one_half_is_used():
    sru = randomize_norms(SRU(8, gn_groups=4))
    x = make_input(8, 4, 4)
    (fast,) = torch.autograd.grad(sru(x)[:, :4].sum(), x)
    (slow,) = torch.autograd.grad(reference.sru(sru, x)[:, :4].sum(), x)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-5)


SSDCONV_CASES = [
    (16, 16, 3, 1, 8, 8, {}, False),  # exp_out == c2: no down-projection
    (16, 24, 3, 2, 9, 7, {}, True),
    (16, 12, 3, 1, 7, 6, {"exp_times": 3}, False),  # exp_out 18 != 12: grouped down-projection
    (8, 12, 3, 1, 5, 6, {"in_ratio": 1.0}, True),  # no expansion path at all
    (16, 20, 5, 1, 7, 9, {}, False),
    (12, 12, 3, 1, 2, 3, {}, False),  # map smaller than the kernel's reach
    (64, 64, 3, 2, 11, 12, {}, True),
]


@pytest.mark.parametrize("c1,c2,k,s,h,w,kwargs,channels_last", SSDCONV_CASES)
def test_ssdconv_matches_the_straightforward_implementation(c1, c2, k, s, h, w, kwargs, channels_last):
    m = randomize_norms(SSDConv(c1, c2, k, s, **kwargs))
    assert_same_outputs_and_gradients(m, reference.ssdconv, make_input(c1, h, w, channels_last))


@pytest.mark.parametrize("spread", [1.0, 30.0])
def test_similarity_attention_without_the_channel_matrix_matches_it(spread):
    """Large activations (spread 30) would overflow a naive exp; both forms subtract the maximum."""
    m = SSDConv(16, 16)
    y = torch.randn(3, 16, 7, 5) * spread
    torch.testing.assert_close(m.similarity_attention(y), reference.similarity_attention(m, y), rtol=0, atol=1e-5)


@pytest.mark.parametrize("h,w,channels_last", [(8, 6, False), (2, 2, False), (7, 6, False), (6, 5, False),
                                               (8, 6, True)])
def test_average_pool_is_avg_pool2d_in_float64(h, w, channels_last):
    """The two-add 2 x 2 pool (even sizes, contiguous) and the fallback (odd sizes, channels-last) against
    ``F.avg_pool2d(ceil_mode=True)``: values and gradient."""
    from yolo_spd.modules._common import average_pool

    pool = torch.nn.AvgPool2d(2, 2, ceil_mode=True)
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    x = (x.contiguous(memory_format=CHANNELS_LAST) if channels_last else x).requires_grad_(True)
    fast, slow = average_pool(x, pool), F.avg_pool2d(x, 2, 2, ceil_mode=True)
    fast_path = h % 2 == 0 and w % 2 == 0 and not channels_last
    assert (type(fast.grad_fn).__name__ == "_AveragePool2x2Backward") == fast_path  # the custom Function ran
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-15)
    target = torch.randn_like(slow)
    (a,) = torch.autograd.grad((fast * target).sum(), x)
    (b,) = torch.autograd.grad((slow * target).sum(), x)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-15)
    assert average_pool(x, torch.nn.Identity()) is x


# --- SSDConv's fast paths in float64 (issue 19): forward_train and forward_inference against the reference ----------

SSDCONV_F64_CASES = [
    # c1, c2, k, s, h, w, extra constructor arguments, channels_last
    (16, 16, 3, 1, 8, 8, {}, False),  # exp_out == c2: no down-projection; 4 diversity groups, one reading X_m and X_e
    (16, 24, 3, 2, 8, 6, {}, False),  # stride 2, even sizes: the two-add pool
    (16, 24, 3, 2, 9, 7, {}, True),  # stride 2, odd sizes, channels-last: avg_pool2d
    (16, 12, 3, 1, 7, 6, {"exp_times": 3}, False),  # grouped down-projection composed into the residual map
    (8, 12, 3, 1, 5, 6, {"in_ratio": 1.0}, True),  # no expansion path at all
    (16, 20, 5, 1, 7, 9, {}, False),  # 5 x 5: border bands two wide
    (12, 12, 3, 1, 2, 3, {}, False),  # map smaller than the kernel's reach: every output is a border output
    (20, 9, 3, 1, 6, 6, {}, False),  # odd c2: gcd groups in the down-projection
    (40, 40, 3, 2, 6, 8, {}, False),  # 4 diversity groups, one of them reading both X_m and Y_e channels
    (16, 16, 1, 1, 6, 6, {}, False),  # 1 x 1: no border
    (16, 16, 3, 1, 6, 6, {"bn": False, "act": False}, False),  # the released module's tail
    (16, 16, 3, 2, 6, 6, {"act": torch.nn.ReLU(inplace=True)}, False),  # another (in-place) activation
]


def forbid_step_form(monkeypatch):
    """Make SSDConv's step-by-step form raise, so a test proves the fast path ran (the reference does not use it)."""

    def step_form(self, x):
        raise AssertionError("the step form ran instead of a fast path")

    monkeypatch.setattr(SSDConv, "forward_steps", step_form)


@pytest.mark.parametrize("c1,c2,k,s,h,w,kwargs,channels_last", SSDCONV_F64_CASES)
def test_ssdconv_fast_paths_are_the_reference_in_float64(c1, c2, k, s, h, w, kwargs, channels_last, monkeypatch):
    """Training (forward_train: composed diversity weights from the batch statistics, hand-written backwards) and
    eval (forward_inference: every BatchNorm folded): output, the gradient of the input and of every parameter, and
    the running statistics after two steps, all to float64 rounding (a wrong term moves them by O(1))."""
    m = randomize_norms(SSDConv(c1, c2, k, s, **kwargs)).double()
    ref = copy.deepcopy(m)
    forbid_step_form(monkeypatch)
    x = make_input(c1, h, w, channels_last).double().detach().requires_grad_(True)
    m.train(), ref.train()
    for _ in range(2):  # two steps: the running statistics' update is checked, not only their first value
        fast, slow = m(x), reference.ssdconv(ref, x)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)
    target = torch.randn_like(slow)
    fast_grads = torch.autograd.grad((fast * target).sum(), [x, *m.parameters()])
    slow_grads = torch.autograd.grad((slow * target).sum(), [x, *ref.parameters()])
    names = ["x"] + [name for name, _ in m.named_parameters()]
    for name, a, b in zip(names, fast_grads, slow_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11 * float(b.abs().max()) + 1e-13, msg=f"gradient of {name}")
    for (name, a), b in zip(m.named_buffers(), ref.buffers()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13, msg=name)
    m.eval(), ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(x), reference.ssdconv(ref, x), rtol=0, atol=1e-12)


def test_ssdconv_running_statistics_with_cumulative_momentum(monkeypatch):
    """momentum=None (cumulative average over num_batches_tracked), as nn.BatchNorm2d does it."""
    m = randomize_norms(SSDConv(16, 16, 3, 2)).double()
    for bn in (b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)):
        bn.momentum = None
    ref = copy.deepcopy(m).train()
    forbid_step_form(monkeypatch)
    m.train()
    for _ in range(3):
        x = torch.randn(2, 16, 6, 6, dtype=torch.float64)
        m(x), reference.ssdconv(ref, x)
    for (name, a), b in zip(m.named_buffers(), ref.buffers()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13, msg=name)
    assert int(m.bn_diversity.num_batches_tracked) == 3


def test_ssdconv_hand_written_backwards_pass_gradcheck():
    """Each torch.autograd.Function of the fast paths against finite differences (float64)."""
    from yolo_spd.modules import ssdconv as module

    def leaf(*shape):
        return torch.randn(*shape, dtype=torch.float64, requires_grad=True)

    assert torch.autograd.gradcheck(module._SimilarityFeature.apply, (leaf(2, 5, 3, 4),))
    assert torch.autograd.gradcheck(lambda x: module._ChannelMoments.apply(x, 3), (leaf(2, 5, 3, 4),))
    assert torch.autograd.gradcheck(lambda y, taps: module._AddBorderBias.apply(y.clone(), taps, 2),
                                    (leaf(2, 5, 4, 6), leaf(3, 3, 3)))
    assert torch.autograd.gradcheck(lambda y, w, b: module._BatchNormTrain.apply(y, w, b, 1e-5)[0],
                                    (leaf(3, 4, 3, 3), leaf(4), leaf(4)))
    for silu in (True, False):
        for norm in (True, False):
            args = (leaf(2, 3, 3, 4), leaf(5, 3), leaf(2, 5, 3, 4), leaf(2, 5))
            args += (leaf(5), leaf(5)) if norm else (None, None)

            def tail(*a, silu=silu):
                return module._ResidualNormAct.apply(*a, 1e-5, silu)[0]

            assert torch.autograd.gradcheck(tail, args)
    x = leaf(2, 3, 4, 6)
    assert torch.autograd.gradcheck(lambda x: module.average_pool(x, torch.nn.AvgPool2d(2, 2, ceil_mode=True)), (x,))


@pytest.mark.parametrize("k,h,w", [(3, 6, 7), (5, 9, 8), (3, 2, 1), (5, 3, 4), (1, 4, 4)])
def test_border_bias_is_the_convolution_of_a_constant_map(k, h, w):
    """border_bias(taps) + sum(taps) = conv(ones, taps) with zero padding: what a per-channel constant before the
    diversity convolution contributes at each output position."""
    from yolo_spd.modules.ssdconv import add_border_bias, border_bias

    taps = torch.randn(3, k, k, dtype=torch.float64)
    ones = torch.ones(1, 3, h, w, dtype=torch.float64)
    expected = F.conv2d(ones, taps.unsqueeze(1), padding=k // 2, groups=3)[0] - taps.sum(dim=(1, 2)).view(3, 1, 1)
    torch.testing.assert_close(border_bias(taps, h, w), expected, rtol=0, atol=1e-13)
    y = torch.zeros(2, 5, h, w, dtype=torch.float64)
    add_border_bias(y, taps, 2)  # only channels 2: and only the border bands change
    torch.testing.assert_close(y[:, 2:], expected.expand(2, -1, -1, -1), rtol=0, atol=1e-13)
    assert not y[:, :2].any()


@pytest.mark.parametrize("training", [False, True])
def test_ssdconv_keeps_the_step_form_under_autocast_and_in_half_precision(training, monkeypatch):
    """Mixed precision and float16/bfloat16 inputs use the step form (its BatchNorms keep float32 statistics)."""
    calls = []
    step_form = SSDConv.forward_steps
    monkeypatch.setattr(SSDConv, "forward_steps", lambda self, x: calls.append(x.dtype) or step_form(self, x))
    m = SSDConv(8, 8).train(training)
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        m(x)
    with torch.no_grad():
        m.bfloat16()(x.bfloat16())
    assert len(calls) == 2


def exporting_forms(monkeypatch):
    """Make ``is_exporting()`` true for SSDConv and count which form each call runs: ['steps'] or ['export']."""
    from yolo_spd.modules import ssdconv as module

    monkeypatch.setattr(module, "is_exporting", lambda: True)
    calls = []
    steps, export = SSDConv.forward_steps, SSDConv.forward_export
    monkeypatch.setattr(SSDConv, "forward_steps", lambda self, x: calls.append("steps") or steps(self, x))
    monkeypatch.setattr(SSDConv, "forward_export", lambda self, x, f: calls.append("export") or export(self, x, f))
    return calls


@pytest.mark.parametrize("layout", ["split", "merged"])
@pytest.mark.parametrize("c1,c2,k,s,h,w,kwargs,channels_last", SSDCONV_F64_CASES)
def test_ssdconv_export_form_after_fuse_is_the_reference_in_float64(c1, c2, k, s, h, w, kwargs, channels_last, layout,
                                                                    monkeypatch):
    """While exporting, an unfused SSDConv runs the step form and a fused one the folded export form (either
    convolution layout, the border bias as a convolution of a ones map): both give the reference's output to float64
    rounding, at the size it was fused at and at others (the ones map follows the input)."""
    from yolo_spd.modules import ssdconv as module

    monkeypatch.setattr(module, "EXPORT_SPLIT_MIN_CHANNELS", 0 if layout == "split" else float("inf"))
    m = randomize_norms(SSDConv(c1, c2, k, s, **kwargs)).double().eval()
    calls = exporting_forms(monkeypatch)
    with torch.no_grad():
        for fused in (False, True):
            if fused:
                m.fuse()
            for size in ((h, w), (h + 3, w + 1), (1, 2)):
                x = make_input(c1, *size, channels_last).double()
                torch.testing.assert_close(m(x), reference.ssdconv(m, x), rtol=0, atol=1e-12)
    assert calls == ["steps"] * 3 + ["export"] * 3


def test_ssdconv_export_layout_follows_the_channel_counts():
    """Merged below 128 output channels (where it measured faster in ONNX Runtime), split from there on, unless a split
    convolution would be narrower than 32 channels; the layout depends on nothing else."""
    def layout(c1, c2, **kwargs):
        folded = SSDConv(c1, c2, **kwargs).eval().inference_weights()
        return "split" if folded.export_convolutions() is folded.split else "merged"

    assert [layout(c, c) for c in (16, 32, 64, 128, 256, 512)] == ["merged"] * 3 + ["split"] * 3
    assert layout(64, 128, s=2) == "split" and layout(128, 128, out_ratio=0.875) == "merged"  # a 16-channel branch


def test_ssdconv_fuse_keeps_the_module_and_its_eager_forward():
    """fuse() changes no parameter, buffer or BatchNorm and no eager output, training or eval; Ultralytics' and
    yolo_spd's fuse call it, and fuse again is the same."""
    from yolo_spd import fuse_modules

    m = randomize_norms(torch.nn.Sequential(SSDConv(16, 16), SSDConv(16, 24, 3, 2))).eval()
    x = torch.randn(2, 16, 9, 7)
    state = copy.deepcopy(m.state_dict())
    with torch.no_grad():
        expected = m(x)
        fuse_modules(fuse_modules(m))
        torch.testing.assert_close(m(x), expected, rtol=0, atol=0)
    assert all("_export" in block.__dict__ for block in m)
    assert m.state_dict().keys() == state.keys()
    assert all(torch.equal(m.state_dict()[key], value) for key, value in state.items())
    trained, fused = copy.deepcopy(m).train(), m.train()
    torch.testing.assert_close(fused(x), trained(x), rtol=0, atol=0)


def test_ssdconv_export_fold_is_dropped_or_refused_whenever_it_could_be_stale(monkeypatch):
    """The fold fuse() kept is what a trace uses only while it is the module's current function: kept through eval()
    (torch.onnx.export calls it) and a no-grad or frozen-parameter forward (Ultralytics' export dry run), dropped by
    train(), a forward that can train, pickle and deepcopy, refused after a weight or statistics change and while hooks
    watch the module's convolutions; nothing is kept for half-precision weights or BatchNorms without running
    statistics. Each stale case would move the output by O(1)."""
    x = torch.randn(1, 16, 6, 6)

    def fused():
        return randomize_norms(SSDConv(16, 24)).eval().fuse()

    def form(m):
        calls = exporting_forms(monkeypatch)
        with torch.no_grad():
            out = m(x.to(m.base.weight.dtype))
            torch.testing.assert_close(out.float(), reference.ssdconv(m.float(), x).float(), rtol=1e-3, atol=1e-3)
        monkeypatch.undo()
        return calls[0]

    m = fused()
    m.eval()
    m.requires_grad_(False)
    m(x)  # grad mode on, nothing can train: the export dry run
    assert form(m) == "export"
    m.requires_grad_(True)
    with torch.no_grad():
        m(x)
    assert form(m) == "export"
    m(x)  # a forward that can train
    assert form(m) == "steps"
    m = fused()
    m.train().eval()
    assert form(m) == "steps"
    for change in (lambda m: m.diversity.weight.mul_(2.0), lambda m: m.bn_diversity.running_mean.add_(1.0),
                   lambda m: m.load_state_dict(randomize_norms(SSDConv(16, 24)).state_dict())):
        m = fused()
        with torch.no_grad():
            change(m)
        assert form(m) == "steps"
    import pickle

    for copied in (copy.deepcopy(fused()), pickle.loads(pickle.dumps(fused()))):
        assert "_export" not in copied.__dict__ and form(copied) == "steps"
    m = fused()
    handle = m.diversity.register_forward_hook(lambda *_: None)  # a watcher (or a hook-based reparametrization)
    assert form(m) == "steps"
    handle.remove()
    assert form(m) == "export"
    assert "_export" not in fused().half().fuse().__dict__
    m = randomize_norms(SSDConv(16, 24))
    m.bn_main.track_running_stats, m.bn_main.running_mean, m.bn_main.running_var = False, None, None
    assert "_export" not in m.eval().fuse().__dict__


@pytest.mark.parametrize("training", [False, True])
def test_ssdconv_runs_its_modules_while_hooks_watch_them(training):
    """A FLOP counter (thop: Ultralytics' and yolo_spd's GFLOPs) hooks the leaf modules; the fast paths use their
    weights without calling them, so with a hook set the step form runs and the counter sees every convolution."""
    import thop

    m = randomize_norms(SSDConv(16, 24, 3, 2)).train(training)
    x = torch.randn(2, 16, 8, 8)
    calls = []
    handle = m.diversity.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        watched = m(x)
    handle.remove()
    with torch.no_grad():
        fast = m(x)
    assert calls == [1]
    if not training:
        torch.testing.assert_close(watched, fast, rtol=0, atol=1e-5)
    macs = thop.profile(m.eval(), inputs=(x,), verbose=False)[0]
    outputs = 2 * 12 * 4 * 4  # base and diversity: 12 channels each at 4 x 4, batch 2
    convolutions = sum(conv.weight[0].numel() * outputs for conv in (m.base, m.diversity))
    assert macs >= convolutions > macs - convolutions  # both counted; the BatchNorms, pool and FC add the rest


# --- SSDConv's eval path: folded once, kept while the weights are unchanged, two equal convolution layouts ------------


@pytest.mark.parametrize("layout", ["split", "merged"])
@pytest.mark.parametrize("c1,c2,k,s,h,w,kwargs,channels_last", SSDCONV_F64_CASES)
def test_ssdconv_eval_layouts_are_the_reference_in_float64(c1, c2, k, s, h, w, kwargs, channels_last, layout,
                                                          monkeypatch):
    """Both ways the eval path runs its convolutions (the base and one per diversity group, or fewer larger ones; the
    input size picks, SPLIT_MIN_SAVED_MACS) give the reference's output to float64 rounding, and the one asked for
    ran."""
    from yolo_spd.modules import ssdconv as module

    monkeypatch.setattr(module, "SPLIT_MIN_SAVED_MACS", 0 if layout == "split" else float("inf"))
    m = randomize_norms(SSDConv(c1, c2, k, s, **kwargs)).double().eval()
    forbid_step_form(monkeypatch)
    x = make_input(c1, h, w, channels_last).double().detach()
    with torch.no_grad():
        torch.testing.assert_close(m(x), reference.ssdconv(m, x), rtol=0, atol=1e-12)
    folded = m.inference_weights()
    used = folded.convolutions(x.shape[0], *m.pooled(x).shape[-2:])
    assert used is (folded.split if layout == "split" else folded.merged)
    assert len(folded.merged) == (1 if s == 1 else 2) and len(folded.split) == 1 + m.diversity.groups


def test_ssdconv_eval_layout_follows_the_saved_multiply_adds():
    """The merged layout at scale n's batch-1 shapes (16-128 channels at 640 px input), the split one at the per-module
    benchmark's batch 8 with 128-256 channels, where it measured faster."""
    def layout(c, px, n):
        folded = SSDConv(c, c).eval().inference_weights()
        return "split" if folded.convolutions(n, px, px) is folded.split else "merged"

    assert [layout(c, px, 1) for c, px in [(16, 160), (32, 80), (64, 40), (128, 20)]] == ["merged"] * 4
    assert [layout(c, px, 8) for c, px in [(128, 40), (256, 20)]] == ["split"] * 2


def test_ssdconv_eval_folds_once_and_again_after_every_kind_of_weight_change(monkeypatch):
    """The folded tensors are kept between eval calls and folded again after an optimizer step, load_state_dict, a
    training step's running statistics, a dtype change and a plain in-place edit; each time the output is the
    reference's (a kept stale fold would miss by O(1))."""
    from yolo_spd.modules import ssdconv as module

    m = randomize_norms(SSDConv(16, 24)).eval()
    folds = []
    fold = module.InferenceWeights.__init__
    monkeypatch.setattr(module.InferenceWeights, "__init__", lambda self, *a: folds.append(1) or fold(self, *a))
    x = torch.randn(2, 16, 6, 6)

    outputs = []

    def check(expected_folds, dtype=torch.float32):
        with torch.no_grad():
            out = m(x.to(dtype))
            torch.testing.assert_close(out, reference.ssdconv(m, x.to(dtype)), rtol=1e-5, atol=1e-5)
        assert len(folds) == expected_folds
        outputs.append(out.double())

    check(1)
    check(1)  # kept
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    m(x).mean().backward()  # a training step also moves the running statistics
    opt.step()
    m.eval()
    check(2)
    m.load_state_dict(randomize_norms(SSDConv(16, 24)).state_dict())
    check(3)
    with torch.no_grad():
        m.bn_main.running_var.mul_(3.0)
    check(4)
    m.double()
    check(5, torch.float64)
    check(5, torch.float64)
    for before, after in zip(outputs[1:4], outputs[2:5]):  # each change moved the output: a stale fold would show
        assert (after - before).abs().max() > 1e-2


def test_ssdconv_eval_refolds_after_a_fused_optimizer_step_and_keeps_nothing_for_parametrized_weights():
    """A fused optimizer changes weights without bumping their version counters: training with the module left in
    eval mode (frozen BatchNorms) and no-grad validation between steps still gets the current weights, as the
    gradient-enabled forward drops the kept fold. ``eval()`` refolds after ``.data`` writes. A parametrized weight
    (weight norm) is a new tensor on every access, so nothing is kept for it."""
    m = randomize_norms(SSDConv(16, 24)).eval()
    opt = torch.optim.AdamW(m.parameters(), lr=0.05, fused=True)
    x = torch.randn(2, 16, 6, 6)
    outputs = []
    for _ in range(3):
        with torch.no_grad():
            out = m(x)
            torch.testing.assert_close(out, reference.ssdconv(m, x), rtol=1e-5, atol=1e-5)
            outputs.append(out)
        m(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
    assert (outputs[2] - outputs[1]).abs().max() > 1e-2
    with torch.no_grad():
        m.diversity.weight.data.mul_(2.0)
        m.eval()
        torch.testing.assert_close(m(x), reference.ssdconv(m, x), rtol=1e-5, atol=1e-5)
    torch.nn.utils.parametrizations.weight_norm(m.diversity)
    with torch.no_grad():
        for scale in (1.0, 2.0, 0.5):
            m.diversity.parametrizations.weight.original0.fill_(scale)
            torch.testing.assert_close(m(x), reference.ssdconv(m, x), rtol=1e-5, atol=1e-5)
    assert "_inference" not in m.__dict__


@pytest.mark.parametrize("optimizer", [torch.optim.Adam, torch.optim.SGD])
def test_ssdconv_folds_kept_between_backward_and_a_fused_step_are_refolded(optimizer):
    """A no-grad forward between ``backward()`` and a fused optimizer's step (a logging pass) keeps a fold of the
    weights before the step; the step does not bump the weights' version counters, so the count of optimizer steps in
    the folds' key is what refolds the eval path and drops the fold ``fuse()`` keeps for an export (both were stale:
    off by 0.2-1.3)."""
    m = randomize_norms(SSDConv(16, 24)).eval()
    opt = optimizer(m.parameters(), lr=0.1, fused=True)
    x = torch.randn(2, 16, 6, 6)
    m(x).square().mean().backward()
    with torch.no_grad():
        before = m(x)
        m.fuse()
    assert m.export_weights() is not None
    opt.step()
    with torch.no_grad():
        after = m(x)
        torch.testing.assert_close(after, reference.ssdconv(m, x), rtol=1e-5, atol=1e-5)
    assert (after - before).abs().max() > 1e-2
    assert m.export_weights() is None  # a trace now takes the step form, or a fuse() folds afresh


def test_ssdconv_fold_is_not_pickled_and_works_under_inference_mode():
    """Checkpoints and Ultralytics' EMA copy (pickle, deepcopy) carry no folded tensors; under torch.inference_mode
    (Ultralytics' predictor) the output is the same, also for a module built there (no version counters: nothing
    kept)."""
    import pickle

    m = randomize_norms(SSDConv(16, 24)).eval()
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        expected = m(x)
    assert "_inference" in m.__dict__
    for copied in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert "_inference" not in copied.__dict__
        with torch.no_grad():
            torch.testing.assert_close(copied(x), expected, rtol=0, atol=0)
    with torch.inference_mode():
        torch.testing.assert_close(m(x), expected, rtol=0, atol=0)
        built = randomize_norms(SSDConv(16, 24)).eval()
        built.load_state_dict(m.state_dict())
        torch.testing.assert_close(built(x), expected, rtol=0, atol=0)
        assert "_inference" not in built.__dict__


# --- Second-order gradients: the hand-written backwards under create_graph ------------------------------------------

SECOND_ORDER_CASES = [
    ("scconv", SCConv, (16, 16, 3, 1), {}),  # paper form: the gated cross-reconstruction and the branch mix
    ("scconv", SCConv, (16, 24, 3, 2), {}),  # stride 2: the two-add average pool
    ("scconv", SCConv, (16, 16, 3, 1), {"variant": "release"}),
    ("ssdconv", SSDConv, (16, 24, 3, 1), {}),  # moments, BN_main, similarity feature, residual + BN + SiLU
    ("ssdconv", SSDConv, (16, 24, 3, 2), {}),
    ("ssdconv", SSDConv, (16, 16, 3, 1), {"bn": False, "act": False}),  # the tail without BatchNorm and SiLU
    ("ssdconv", SSDConv, (8, 12, 3, 1), {"in_ratio": 1.0}),  # no expansion path
]


def penalty_gradients(forward, module, x):
    """The gradients of a gradient penalty |d<f(x), r>/dx|^2 (weighted) with respect to x and every parameter: what
    WGAN-GP-style regularisers and higher-order methods compute, through each backward pass differentiated again."""
    x = x.detach().requires_grad_(True)
    out = forward(module, x)
    target = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
    (grad_x,) = torch.autograd.grad((out * target).sum(), x, create_graph=True)
    weights = torch.linspace(0.5, 1.5, grad_x.numel(), dtype=grad_x.dtype).view_as(grad_x)
    penalty = (grad_x.square() * weights).sum()
    return torch.autograd.grad(penalty, [x, *module.parameters()], allow_unused=True)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name,cls,args,kwargs", SECOND_ORDER_CASES)
def test_second_order_gradients_are_the_references(name, cls, args, kwargs, training):
    """A gradient of a gradient through the fast paths equals the reference's, where plain autograd differentiates
    twice: the hand-written backwards (``out=`` writes, forward results kept as constants) fall back to autograd's
    under ``create_graph`` (``_common.differentiable_backward``). Before, SCConv's paper form and SSDConv in training
    raised, and the branch mix alone (CRU) was silently wrong."""
    m = randomize_norms(cls(*args, **kwargs)).double().train(training)
    ref = copy.deepcopy(m)
    x = torch.randn(2, args[0], 6, 8, dtype=torch.float64)
    fast = penalty_gradients(lambda module, t: module(t), m, x)
    slow = penalty_gradients(getattr(reference, name), ref, x)
    names = ["x"] + [n for n, _ in m.named_parameters()]
    for label, a, b in zip(names, fast, slow):
        assert (a is None) == (b is None), label
        if b is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10 * float(b.abs().max()) + 1e-13, msg=label)


def test_hand_written_backwards_pass_gradgradcheck():
    """Second derivatives of each smooth torch.autograd.Function against finite differences of its backward."""
    from yolo_spd.modules import scconv, ssdconv

    def leaf(*shape):
        return torch.randn(*shape, dtype=torch.float64, requires_grad=True)

    assert torch.autograd.gradgradcheck(scconv._BranchMix.apply, (leaf(2, 3, 3, 4), leaf(2, 3, 3, 4)))
    assert torch.autograd.gradgradcheck(ssdconv._SimilarityFeature.apply, (leaf(2, 5, 3, 4),))
    assert torch.autograd.gradgradcheck(lambda x: ssdconv._ChannelMoments.apply(x, 3), (leaf(2, 5, 3, 4),))
    assert torch.autograd.gradgradcheck(lambda y, w, b: ssdconv._BatchNormTrain.apply(y, w, b, 1e-5)[0],
                                        (leaf(3, 4, 3, 3), leaf(4), leaf(4)))
    args = (leaf(2, 3, 3, 4), leaf(5, 3), leaf(2, 5, 3, 4), leaf(2, 5), leaf(5), leaf(5))
    assert torch.autograd.gradgradcheck(lambda *a: ssdconv._ResidualNormAct.apply(*a, 1e-5, True)[0], args)
