"""Inference fuse: exact (float tolerance) per module and on whole models, reached through Ultralytics'
``model.fuse()`` once registered, and visible in the exported ONNX graph."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import yaml

import yolo_spd
from yolo_spd import SCConv, SpaceToDepth, SSDConv, fuse_modules
from yolo_spd.modules.spd import SPDStridedConv2d

from .test_fast_equivalence import randomize_norms

IMGSZ = 64
ALL_MODULES_YAML = {
    "nc": 2,
    "backbone": [
        [-1, 1, "Conv", [16, 3, 2]],  # 0 P1/2
        [-1, 1, "SPDConv", [32, 3]],  # 1 P2/4
        [-1, 1, "SCConv", [32]],  # 2
        [-1, 1, "SSDConv", [32]],  # 3
        [-1, 1, "SCConv", [64, 3, 2]],  # 4 P3/8
        [-1, 1, "SSDConv", [64, 3, 2]],  # 5 P4/16
        [-1, 1, "Conv", [64, 3, 1]],  # 6
        [-1, 1, "SpaceToDepth", [256]],  # 7 P5/32
    ],
    "head": [[[4, 5, 7], 1, "Detect", ["nc"]]],
}


def fused_copy(module):
    return fuse_modules(copy.deepcopy(module))


def batchnorms(model) -> list:
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@pytest.mark.parametrize(
    "c1,c2,k,s,h,w,kwargs",
    [
        (16, 16, 3, 1, 8, 8, {}),
        (16, 24, 3, 2, 9, 7, {}),
        (20, 40, 5, 1, 7, 6, {"alpha": 0.6}),
        (32, 16, 3, 2, 5, 5, {"variant": "release"}),
        (16, 16, 3, 1, 8, 8, {"variant": "release"}),
        (20, 40, 5, 1, 7, 6, {"variant": "release", "alpha": 0.6}),
    ],
)
def test_scconv_fuse_is_exact_and_folds_every_batchnorm(c1, c2, k, s, h, w, kwargs):
    m = randomize_norms(SCConv(c1, c2, k, s, **{"gn_groups": 4, **kwargs})).eval()
    if m.cru.gwc.bias is not None:  # release form: a GWC bias (R3), non-zero so that its folding is checked
        torch.nn.init.uniform_(m.cru.gwc.bias, -0.5, 0.5)
    x = torch.randn(2, c1, h, w)
    fused = fused_copy(m)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), m(x), rtol=0, atol=1e-5)
        channels_last = x.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(fused(channels_last), m(x), rtol=0, atol=1e-5)
    assert not batchnorms(fused)
    if s == 1:  # GWC and PWC1 are one dense convolution
        assert fused.cru.pwc1 is None and fused.cru.gwc.groups == 1 and fused.cru.gwc.kernel_size == (k, k)


@pytest.mark.parametrize("variant", ["paper", "release"])
def test_scconv_fuse_keeps_channels_whose_batchnorm_scale_is_zero(variant):
    m = randomize_norms(SCConv(16, 16, gn_groups=4, variant=variant)).eval()
    with torch.no_grad():
        m.bn.weight[:3] = 0.0  # those output channels are the constant bias whatever the branch weights are
    x = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(fused_copy(m)(x), m(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("variant", ["paper", "release"])
@pytest.mark.parametrize("s", [1, 2])
def test_fused_scconv_runs_under_autocast_as_the_unfused_one_does(variant, s):
    """Under autocast the convolutions give bfloat16 while the reused channels stay float32; the fused paper form's
    in-place ``lerp`` needs one dtype (it raised before)."""
    m = randomize_norms(SCConv(16, 32, s=s, gn_groups=4, variant=variant)).eval()
    x = torch.randn(2, 16, 12, 12)
    with torch.no_grad():
        exact = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            unfused, fused = m(x), fused_copy(m)(x)
    scale = exact.abs().max()
    assert (fused.float() - exact).abs().max() / scale < 0.05  # bfloat16 keeps 8 significant bits
    assert (fused.float() - unfused.float()).abs().max() / scale < 0.05


def test_fuse_is_idempotent():
    m = torch.nn.Sequential(SCConv(16, 16, gn_groups=4), SSDConv(16, 16))
    randomize_norms(m).eval()
    x = torch.randn(1, 16, 7, 7)
    once = fused_copy(m)
    with torch.no_grad():
        first = once(x)
        torch.testing.assert_close(fuse_modules(once)(x), first, rtol=0, atol=0)


@pytest.mark.parametrize("variant", ["paper", "release"])
@pytest.mark.parametrize("s", [1, 2])
def test_a_fused_scconvs_state_dict_restores_it(variant, s):
    """The fold's scale and shift tensors are in a fused module's state dict (they were non-persistent buffers: a fused
    module loaded from it matched every key and was off by up to 0.5), and the unfused module refuses it."""
    m = randomize_norms(SCConv(16, 24, s=s, gn_groups=4, variant=variant)).eval().fuse()
    state = m.state_dict()
    assert {"cru.low_scale", "cru.low_shift", "cru.mean_scale"} <= set(state) if variant == "paper" else (
        {"cru.out_scale", "cru.out_shift"} <= set(state))
    restored = SCConv(16, 24, s=s, gn_groups=4, variant=variant).eval().fuse()
    restored.load_state_dict(state)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(restored(x), m(x), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        SCConv(16, 24, s=s, gn_groups=4, variant=variant).load_state_dict(state)
    assert "cru.low_scale" not in SCConv(16, 24, s=s, gn_groups=4, variant=variant).state_dict()


def build_all_modules_model(tmp_path):
    from ultralytics import YOLO

    cfg = tmp_path / "all-modules.yaml"
    cfg.write_text(yaml.safe_dump(ALL_MODULES_YAML))
    model = YOLO(str(cfg))
    randomize_norms(model.model)
    model.model.eval()
    return model


def test_ultralytics_model_fuse_fuses_our_modules_exactly(tmp_path):
    model = build_all_modules_model(tmp_path).model
    x = torch.rand(2, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        before = model(x)[0]
        model.fuse(verbose=False)
        after = model(x)[0]
    remaining = [bn for m in model.modules() if isinstance(m, SSDConv) for bn in batchnorms(m)]
    assert batchnorms(model) == remaining and len(remaining) == 6  # all but SSDConv's (its fuse keeps its modules)
    assert all(m.export_weights() is not None for m in model.modules() if isinstance(m, SSDConv))
    # SPDConv is one 6 x 6 stride-2 convolution. The SpaceToDepth row Detect reads stays as it is: Detect convolves
    # it with foldable 3 x 3 convolutions, but also sizes its anchor grid from the feature map and returns the map in
    # its raw outputs; the float64 check of the fold (and that of the block-order switch) sees it and undoes it
    assert model.model[1].spd is None and type(model.model[1].conv.conv) is SPDStridedConv2d
    assert type(model.model[7]) is SpaceToDepth and model.model[7].block_order == "authors"
    detect = model.model[-1]
    assert {type(branch[2][0].conv) for branch in (detect.cv2, detect.cv3)} == {torch.nn.Conv2d}
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert float(before.abs().max()) > 1.0


def test_whole_yolov5_spd_n_is_unchanged_by_fuse():
    from ultralytics import YOLO

    model = YOLO("yolov5-spd-n.yaml").model
    randomize_norms(model).eval()
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        before = model(x)[0]
        after = model.fuse(verbose=False)(x)[0]
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_unregistered_ultralytics_fuse_leaves_our_modules_alone(tmp_path):
    model = build_all_modules_model(tmp_path).model
    yolo_spd.unregister()
    try:
        model.fuse(verbose=False)
    finally:
        yolo_spd.register()
    assert {type(bn) for bn in batchnorms(model)} == {torch.nn.BatchNorm2d}
    assert model.model[2].cru.pwc1 is not None


@pytest.mark.slow
def test_exported_onnx_uses_the_fused_form_and_matches_pytorch(tmp_path):
    import onnx
    import onnxruntime as ort

    model = build_all_modules_model(tmp_path)
    weights = tmp_path / "all-modules.pt"
    model.save(str(weights))
    from ultralytics import YOLO

    onnx_file = YOLO(str(weights)).export(format="onnx", imgsz=IMGSZ, simplify=False, dynamic=False)
    node_types = [node.op_type for node in onnx.load(onnx_file).graph.node]
    ssdconv_batchnorms = sum(len(batchnorms(m)) for m in model.model.modules() if isinstance(m, SSDConv))
    assert ssdconv_batchnorms == 6  # kept in the module; its export form is the fold fuse() kept
    assert "BatchNormalization" not in node_types  # SCConv's BN after CRU's mix and SSDConv's three are folded

    reference_model = YOLO(str(weights)).model.float().eval()
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        expected = reference_model(x)[0].numpy()
    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)


def test_fused_ssdconv_traces_after_inference_mode_and_its_torchscript_casts_to_half(tmp_path):
    """The fold fuse() keeps is made outside inference mode (a trace with trainable parameters fails on inference
    tensors), and a TorchScript file of the export form casts with ``.half()`` as Ultralytics' loader does for fp16
    (its constants follow the input's type)."""
    import io

    m = randomize_norms(torch.nn.Sequential(SSDConv(8, 16), SSDConv(16, 16, 3, 2))).eval()
    x = torch.randn(1, 8, 12, 10)
    with torch.inference_mode():
        m(x)
        fuse_modules(m)
    with torch.no_grad():
        expected = m(x)
    torch.onnx.export(m, x, io.BytesIO(), dynamo=False, opset_version=17)  # parameters still require grad
    m.requires_grad_(False)
    traced = torch.jit.trace(m, x)
    assert "aten::batch_norm" not in {node.kind() for node in traced.inlined_graph.nodes()}
    path = tmp_path / "m.torchscript"
    torch.jit.save(traced, str(path))
    loaded = torch.jit.load(str(path)).half()
    with torch.no_grad():
        got = loaded(x.half())
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float(), expected, rtol=0.05, atol=0.05)


def test_strict_torch_export_of_a_fused_ssdconv_takes_the_step_form():
    """torch.export with Dynamo (strict) cannot compare storage: the kept fold is not consulted at all."""
    m = fused_copy(randomize_norms(torch.nn.Sequential(SSDConv(8, 16))).eval())
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        program = torch.export.export(m, (x,), strict=True)
        torch.testing.assert_close(program.module()(x), m(x), rtol=1e-5, atol=1e-5)
    assert "aten.batch_norm.default" in {str(node.target) for node in program.graph.nodes}


def test_static_simplified_onnx_export_of_ssdconv_stores_no_map_of_the_input_size(tmp_path):
    """Ultralytics' ONNX export is static and simplified (onnxslim folds constant subgraphs): SSDConv's border bias,
    built per input from the input, must not become a stored C x H x W constant per layer (it made the file of
    yolov5-ssdconv-n about 60% larger); the folded graph still matches eager."""
    import onnx
    import onnxruntime as ort
    import onnxslim

    m = fused_copy(randomize_norms(torch.nn.Sequential(SSDConv(8, 16), SSDConv(16, 16, 3, 2))).eval())
    x = torch.randn(2, 8, 24, 20)
    path = tmp_path / "static.onnx"
    torch.onnx.export(m, x, str(path), input_names=["x"], dynamo=False, opset_version=17)
    model = onnxslim.slim(onnx.load(str(path)))
    assert "BatchNormalization" not in {node.op_type for node in model.graph.node}
    sizes = {(24, 20), (12, 10)}  # the two modules' output maps
    stored = [(t.name, list(t.dims)) for t in model.graph.initializer if tuple(t.dims[-2:]) in sizes]
    assert not stored and len(model.graph.initializer) > 10
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = m(x).numpy()
    np.testing.assert_allclose(session.run(None, {"x": x.numpy()})[0], expected, rtol=0, atol=1e-4)


def test_dynamic_onnx_export_of_the_inference_form_handles_sizes_it_was_not_traced_with(tmp_path):
    """Fused SCConv and SSDConv in a dynamic-shape graph: every size-dependent step follows the input (SSDConv's border
    bias too, from a ones map of the input's size)."""
    import onnxruntime as ort

    m = torch.nn.Sequential(SSDConv(8, 8), SCConv(8, 8, gn_groups=4), SSDConv(8, 8, 3, 2))
    m = fused_copy(randomize_norms(m).eval())
    path = tmp_path / "fused.onnx"
    torch.onnx.export(
        m, torch.randn(1, 8, 8, 8), str(path), input_names=["x"], dynamo=False,
        dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}}, opset_version=17,
    )
    import onnx

    assert "BatchNormalization" not in {node.op_type for node in onnx.load(str(path)).graph.node}  # the folded forms
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n, h, w in [(1, 8, 8), (2, 13, 6), (1, 2, 5)]:
        x = torch.randn(n, 8, h, w) + 0.5
        with torch.no_grad():
            expected = m(x).numpy()
        np.testing.assert_allclose(session.run(None, {"x": x.numpy()})[0], expected, rtol=0, atol=1e-4)
