"""The fast module code paths against the straightforward implementation (tests/reference.py) on the same weights:
outputs in train and eval mode, gradients of input and every parameter, odd sizes, stride 2, c1 != c2 and
channels-last inputs. Tolerances are float32 reassociation levels, far below any real difference (a single wrong
gate, channel or branch weight moves outputs by O(1))."""

from __future__ import annotations

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
