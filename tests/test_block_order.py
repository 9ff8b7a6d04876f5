"""SpaceToDepth's ONNX block order: the row-major order itself, the exact fold that switches a model to it during
``fuse()``, and the single native ``SpaceToDepth`` node it puts in an exported ONNX graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from yolo_spd import SpaceToDepth, SPDConv, fold_space_to_depth_order, fuse_modules

from .test_fast_equivalence import randomize_norms


def row_major_by_slicing(x: torch.Tensor, s: int) -> torch.Tensor:
    """ONNX's SpaceToDepth order written as the paper's slices: f_{i,j} = x[..., i::s, j::s], i outer, j inner."""
    return torch.cat([x[..., i::s, j::s] for i in range(s) for j in range(s)], 1)


def onnx_order(layer: SpaceToDepth) -> SpaceToDepth:
    layer.block_order = "onnx"
    return layer


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_onnx_block_order_is_row_major_over_the_block_grid(scale, channels_last):
    x = torch.randn(2, 5, 4 * scale, 3 * scale)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(onnx_order(SpaceToDepth(scale=scale))(x), row_major_by_slicing(x, scale))


def test_onnx_block_order_pads_odd_sizes_like_the_authors_order():
    x = torch.randn(1, 3, 5, 7) + 10.0
    padded = torch.nn.functional.pad(x, (0, 1, 0, 1))
    assert torch.equal(onnx_order(SpaceToDepth())(x), row_major_by_slicing(padded, 2))


class ConvThenSpaceToDepth(nn.Module):
    """A Conv, SpaceToDepth, and a reader of its output chosen by ``reader``."""

    def __init__(self, reader: str):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.spd = SpaceToDepth()
        groups = 2 if reader == "grouped" else 1
        self.conv = nn.Conv2d(16, 8, 3, padding=1, groups=groups)
        self.reader = reader

    def forward(self, x):
        y = self.spd(self.stem(x))
        out = self.conv(y)
        if self.reader == "conv and residual":
            out = out + y[:, :8]  # a second reader that is not a convolution
        return out


@pytest.mark.parametrize("reader,switched", [("conv", 1), ("conv and residual", 0), ("grouped", 0)])
def test_fold_switches_only_where_exact_and_never_changes_outputs(reader, switched):
    model = ConvThenSpaceToDepth(reader).eval()
    x = torch.randn(2, 3, 10, 14)
    with torch.no_grad():
        before = model(x)
    weight = model.conv.weight.detach().clone()
    assert fold_space_to_depth_order(model, x) == switched
    assert model.spd.block_order == ("onnx" if switched else "authors")
    assert torch.equal(model.conv.weight, weight) != bool(switched)  # permuted when switched, restored when not
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


def test_fold_leaves_a_model_that_cannot_run_the_example_alone():
    model = ConvThenSpaceToDepth("conv").eval()
    assert fold_space_to_depth_order(model, torch.randn(1, 5, 8, 8)) == 0  # 5 channels into a 3-channel stem
    assert model.spd.block_order == "authors"


def test_fold_restores_training_mode():
    model = ConvThenSpaceToDepth("conv").train()
    fold_space_to_depth_order(model, torch.randn(1, 3, 8, 8))
    assert model.training and model.spd.block_order == "onnx"


def yolov5_spd_n():
    from ultralytics import YOLO

    return randomize_norms(YOLO("yolov5-spd-n.yaml").model).eval()


def test_fuse_switches_every_space_to_depth_of_yolov5_spd_n_including_those_read_through_concat(monkeypatch):
    """With the space-to-depth fold off (``fold_spd=False``; by default ``model.fuse()`` folds every one of these
    layers into convolutions, tests/test_spd_fold.py), each is switched to ONNX's order instead."""
    import functools

    from yolo_spd.integration import fuse as registered

    monkeypatch.setattr(registered, "fuse_modules", functools.partial(fuse_modules, fold_spd=False))
    model = yolov5_spd_n()
    x = torch.rand(1, 3, 96, 64)
    with torch.no_grad():
        before = model(x)[0]
        model.fuse(verbose=False)
        after = model(x)[0]
        model.fuse(verbose=False)  # idempotent: a switched layer is not permuted again
        again = model(x)[0]
    layers = [m for m in model.modules() if isinstance(m, SpaceToDepth)]
    assert len(layers) == 7 and {m.block_order for m in layers} == {"onnx"}  # 6 rows + the Focus stem as SPDConv
    assert isinstance(model.model[0], SPDConv) and model.model[0].i == 0 and model.model[0].f == -1
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(again, before, rtol=1e-4, atol=1e-4)


def test_checkpoints_pickled_before_block_order_existed_load_with_the_authors_order(tmp_path):
    layer = SpaceToDepth()
    assert "block_order" not in vars(layer)  # the default lives on the class, so old pickles need no migration
    path = tmp_path / "layer.pt"
    torch.save(onnx_order(SpaceToDepth()), path)
    assert torch.load(path, weights_only=False).block_order == "onnx"


def test_export_writes_one_native_node_that_onnx_runtime_runs_like_pytorch(tmp_path):
    import onnx
    import onnxruntime as ort

    model = nn.Sequential(SPDConv(3, 8), SPDConv(8, 16, s=3)).eval()
    x = torch.randn(1, 3, 12, 12)
    with torch.no_grad():
        expected = model(x).numpy()
    assert fold_space_to_depth_order(model, x) == 2
    path = tmp_path / "spd.onnx"
    torch.onnx.export(model, x, str(path), input_names=["x"], dynamo=False, opset_version=17,
                      dynamic_axes={"x": {2: "h", 3: "w"}})
    nodes = onnx.load(str(path)).graph.node
    assert [node.op_type for node in nodes].count("SpaceToDepth") == 2
    assert not [node for node in nodes if node.op_type == "Transpose" and len(node.attribute[0].ints) > 2]  # only
    # the 2-D transposes of the dynamic pad-amount arithmetic are left, no tensor transpose
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x.numpy()})[0], expected, rtol=0, atol=1e-4)
    for h, w in [(7, 9), (13, 12)]:  # sizes it was not traced with, odd ones padded before the native op
        odd = torch.randn(1, 3, h, w)
        with torch.no_grad():
            np.testing.assert_allclose(session.run(None, {"x": odd.numpy()})[0], model(odd).numpy(), rtol=0, atol=1e-4)


@pytest.mark.slow
def test_ultralytics_export_of_yolov5_spd_n_uses_the_native_op_and_matches_pytorch(tmp_path, monkeypatch):
    """The space-to-depth fold off, as in the test above (with it, no SpaceToDepth is left to export)."""
    import functools

    from yolo_spd.integration import fuse as registered

    from .test_spd_fold import exported_yolov5_spd_n_nodes

    monkeypatch.setattr(registered, "fuse_modules", functools.partial(fuse_modules, fold_spd=False))
    nodes = exported_yolov5_spd_n_nodes(tmp_path, simplify=False)
    assert [node.op_type for node in nodes].count("SpaceToDepth") == 7  # 6 rows + the Focus stem (fuse: SPDConv)
    assert not [node for node in nodes if node.op_type == "Transpose" and len(node.attribute[0].ints) == 6]


def test_fuse_turns_ultralytics_focus_stem_into_the_same_spdconv():
    """Focus's four step-2 slices are SpaceToDepth's authors' order; as an SPDConv the stem gets its export forms."""
    from ultralytics.nn.modules.conv import Focus

    from yolo_spd.modules.spd import replace_focus

    focus = Focus(3, 8, 3).eval()
    focus.i, focus.f, focus.type, focus.np = 0, -1, "Focus", 99
    model = nn.Sequential(focus, nn.Conv2d(8, 4, 1))
    x = torch.randn(2, 3, 10, 14)
    with torch.no_grad():
        before = model(x)
    assert replace_focus(model) == 1 and replace_focus(model) == 0
    stem = model[0]
    assert isinstance(stem, SPDConv) and stem.conv is focus.conv
    assert (stem.i, stem.f, stem.type, stem.np) == (0, -1, "Focus", 99)
    with torch.no_grad():
        assert torch.equal(model(x), before)
