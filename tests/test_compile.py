"""``torch.compile`` (Ultralytics' ``compile=True``) on the modules, with dynamic shapes as Ultralytics gets them
after a recompile: forward and backward run and equal eager mode. Two CPU fast paths (the 1 x 1 convolution as a
matrix product, SpaceToDepth's 6-D view chain) met an inductor error under dynamic shapes, "cannot determine truth
value of Relational"; under compilation they step aside for plain ops."""

from __future__ import annotations

import pytest
import torch

from yolo_spd import SCConv, SPDConv, SpaceToDepth


@pytest.fixture(autouse=True)
def needs_inductor():
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as e:  # noqa: BLE001 - no C++ compiler: inductor cannot build CPU kernels here
        pytest.skip(f"torch.compile's CPU backend is unavailable: {e}")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def onnx_order(layer: SpaceToDepth) -> SpaceToDepth:
    layer.block_order = "onnx"
    return layer


@pytest.mark.parametrize("make,c1", [(lambda: SCConv(16, 16, gn_groups=4), 16),
                                     (lambda: SCConv(16, 32, 3, 2, gn_groups=4), 16),
                                     (lambda: torch.nn.Sequential(SPDConv(3, 16), SPDConv(16, 32)), 3),
                                     (lambda: onnx_order(SpaceToDepth()), 8)],
                         ids=["SCConv", "SCConv-s2", "SPDConv", "SpaceToDepth-onnx-order"])
def test_compiled_with_dynamic_shapes_trains_as_eager(make, c1):
    torch.manual_seed(0)
    module = make().train()
    x = torch.randn(2, c1, 12, 12)
    eager_x, compiled_x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    eager = module(eager_x)
    eager.square().sum().backward()
    eager_grads = [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    compiled = torch.compile(module, dynamic=True)(compiled_x)
    compiled.square().sum().backward()
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(compiled_x.grad, eager_x.grad, rtol=1e-4, atol=1e-4)
    for got, want in zip((p.grad for p in module.parameters()), eager_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
