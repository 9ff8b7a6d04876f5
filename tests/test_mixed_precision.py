"""Mixed-precision training as Ultralytics runs it on a GPU (``amp=True``: ``torch.autocast("cuda")``), on the CPU.

CUDA's autocast runs some ops in float32 whatever their input (its "fp32" list: group_norm, softmax, sum, exp, pow,
...), while CPU's autocast leaves them in the input's dtype. So a layer can meet a float16 tensor beside a float32
one on a GPU and never on this machine: yolov5-scconv-n's SRU got float16 X from a convolution and float32 gate
logits from GroupNorm, and its hand-written backward failed ("Found dtype Half but expected Float") in the first
training step on the lent H200. ``cuda_autocast_policy`` adds CUDA's float32 list to CPU autocast, so these tests run
the GPU's dtype mix here.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from yolo_spd import SCConv, SPDConv, SRU, SSDConv

#: Ops CUDA autocast runs in float32 (PyTorch's "CUDA Ops that can autocast to float32"), by the names the Python
#: API calls them (functions, Tensor methods and operators).
CUDA_FP32_OPS = {
    "pow", "__pow__", "__rpow__", "__rdiv__", "__rtruediv__", "acos", "asin", "cosh", "erfinv", "exp", "expm1",
    "log", "log10", "log2", "log1p", "reciprocal", "rsqrt", "sinh", "tan", "softplus", "layer_norm", "group_norm",
    "norm", "normalize", "softmax", "log_softmax", "softmin", "cumsum", "cumprod", "prod", "sum", "dist", "cdist",
    "pdist", "renorm", "mse_loss", "l1_loss", "smooth_l1_loss", "cross_entropy", "nll_loss", "kl_div",
    "binary_cross_entropy_with_logits", "cosine_similarity",
}  # fmt: skip


class cuda_autocast_policy(TorchFunctionMode):
    """CPU autocast plus CUDA's float32 list: inside, those ops get their floating tensors as float32."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.autocast = torch.autocast("cpu", dtype=dtype)
        self.cast = 0

    def __enter__(self):
        self.autocast.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        return self.autocast.__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in CUDA_FP32_OPS:
            def up(value):
                if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float32:
                    self.cast += 1
                    return value.float()
                return value

            args, kwargs = [up(a) for a in args], {k: up(v) for k, v in kwargs.items()}
        return func(*args, **kwargs)


def test_the_policy_makes_group_norm_float32_as_cuda_does():
    x = torch.randn(2, 8, 4, 4)
    gn = torch.nn.GroupNorm(2, 8)
    with torch.autocast("cpu", dtype=torch.float16):
        assert gn(x.half()).dtype == torch.float16  # CPU autocast: the input's dtype
    with cuda_autocast_policy(torch.float16) as policy:
        assert gn(x.half()).dtype == torch.float32  # CUDA autocast: float32
        assert F.conv2d(x, torch.randn(8, 8, 1, 1)).dtype == torch.float16  # convolutions still in half
    assert policy.cast > 0


def parameter_gradients(module) -> torch.Tensor:
    return torch.cat([p.grad.flatten().float() for p in module.parameters() if p.grad is not None])


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0).item()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("make", [lambda: SRU(16, gn_groups=4), lambda: SCConv(16, 32, gn_groups=4),
                                  lambda: SCConv(16, 32, 3, 2, gn_groups=4),
                                  lambda: SCConv(16, 32, gn_groups=4, variant="release"),
                                  lambda: SSDConv(16, 32), lambda: SPDConv(16, 32)],
                         ids=["SRU", "SCConv", "SCConv-s2", "SCConv-release", "SSDConv", "SPDConv"])
def test_a_half_input_trains_under_cudas_autocast_with_the_float32_gradients(make, dtype):
    """A half-precision input (what the layer before gives under autocast): forward and backward run, and the
    gradients of the input and the parameters point where float32's do."""
    torch.manual_seed(0)
    module = make().train()
    x = torch.randn(2, 16, 12, 12)
    target = torch.randn_like(module(x))
    module.zero_grad()
    exact_x = x.clone().requires_grad_(True)
    (module(exact_x) * target).sum().backward()
    exact = parameter_gradients(module)

    module.zero_grad()
    low = x.to(dtype).requires_grad_(True)
    with cuda_autocast_policy(dtype) as policy:
        y = module(low)
    (y.float() * target).sum().backward()
    assert policy.cast > 0 or isinstance(module, SPDConv)  # SPD-Conv calls none of CUDA's float32 ops
    assert torch.isfinite(low.grad).all()
    assert cosine(low.grad, exact_x.grad) > 0.98
    assert cosine(parameter_gradients(module), exact) > 0.98


@pytest.mark.parametrize("channels_last", [False, True], ids=["NCHW", "channels-last"])
@pytest.mark.parametrize("name", ["yolov5-scconv-n", "yolov5-ssdconv-n", "yolov5-spd-n", "yolov8-spd-n",
                                  "yolo11-spd-n"])
def test_every_n_config_takes_a_training_step_under_cudas_autocast(name, channels_last):
    """Ultralytics' AMP step on a GPU, here: forward under the CUDA policy, Ultralytics' detection loss, backward,
    an SGD step; every gradient is finite and the step moves the weights. Also in channels-last, the memory format
    Ultralytics 8.4's trainer gives the model on CUDA."""
    from ultralytics import YOLO
    from ultralytics.cfg import DEFAULT_CFG, get_cfg

    torch.manual_seed(0)
    model = YOLO(f"{name}.yaml").model.float().train()
    model.args = get_cfg(DEFAULT_CFG)  # the loss reads its gains (box, cls, dfl) from here, as a trainer sets them
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    images = torch.rand(2, 3, 64, 64)
    batch = {"batch_idx": torch.tensor([0.0, 1.0]), "cls": torch.tensor([[0.0], [0.0]]),
             "bboxes": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.4, 0.1, 0.15]]), "img": images}
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with cuda_autocast_policy(torch.float16) as policy:
        loss, _ = model.loss(batch)
    loss.sum().backward()
    assert policy.cast > 0  # the policy met float16 tensors on CUDA's float32 ops
    gradients = [p.grad for p in model.parameters() if p.grad is not None]
    assert gradients and all(torch.isfinite(g).all() for g in gradients)
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
