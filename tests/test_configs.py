"""The packaged yolov5-spd configs: the authors' parameter counts, per-scale widths, topology and the info table."""

from __future__ import annotations

import pytest
import torch
from ultralytics import YOLO
from ultralytics.nn.modules import C3, Detect, Focus

import yolo_spd
from yolo_spd.info import compare, markdown_table

# SPD-Conv authors' space_depth_{n,s,m,l}.yaml, nc=80, all layers before Detect (the acceptance figure).
AUTHORS_PARAMS = {"n": 2_141_152, "s": 8_542_144, "m": 24_303_072, "l": 52_249_984}
WIDTHS = {"n": 0.25, "s": 0.5, "m": 0.75, "l": 1.0}
C3_REPEATS_AT_LAYER_6 = {"n": 2, "s": 2, "m": 4, "l": 6}  # 6 * depth_multiple (0.33, 0.33, 0.67, 1.0)


@pytest.fixture(scope="module", params=list(AUTHORS_PARAMS))
def scale_and_model(request):
    return request.param, YOLO(f"yolov5-spd-{request.param}.yaml").model


def test_parameters_before_detect_equal_the_authors_model(scale_and_model):
    scale, model = scale_and_model
    assert sum(p.numel() for layer in model.model[:-1] for p in layer.parameters()) == AUTHORS_PARAMS[scale]


def test_each_scale_gets_its_own_widths_and_depths(scale_and_model):
    scale, model = scale_and_model
    focus = model.model[0]
    assert isinstance(focus, Focus) and focus.conv.conv.out_channels == int(64 * WIDTHS[scale])
    assert isinstance(model.model[6], C3) and len(model.model[6].m) == C3_REPEATS_AT_LAYER_6[scale]


def test_topology_matches_the_authors_layers_and_from_indices():
    model = YOLO("yolov5-spd-n.yaml").model
    layers = model.model
    assert len(layers) == 31 and isinstance(layers[-1], Detect) and layers[-1].f == [21, 25, 29]
    spd_rows = [i for i, m in enumerate(layers) if isinstance(m, yolo_spd.SpaceToDepth)]
    assert spd_rows == [2, 5, 8, 11, 23, 27]
    assert all(layers[i - 1].conv.stride == (1, 1) for i in spd_rows)  # the Conv before each SPD is non-strided
    assert [layers[i].f for i in (16, 20, 24, 28)] == [[-1, 9], [-1, 6], [-1, 18], [-1, 14]]
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    assert not any(isinstance(m, torch.nn.Conv2d) and m.stride != (1, 1) for m in model.model[:-1].modules())


def test_forward_at_640_gives_the_detect_output_shape():
    model = YOLO("yolov5-spd-n.yaml").model.eval()
    with torch.no_grad():
        y = model(torch.zeros(1, 3, 640, 640))[0]
    assert y.shape == (1, 4 + 80, 80 * 80 + 40 * 40 + 20 * 20)


def test_info_table_reports_the_figures():
    rows = compare(["yolov5-spd-n", "yolov5-spd-s"])
    stats = [row.model for row in rows]
    assert [s.params_before_detect for s in stats] == [AUTHORS_PARAMS["n"], AUTHORS_PARAMS["s"]]
    assert 0 < stats[0].gflops < stats[1].gflops  # counted, not Ultralytics' silent 0.0 for Focus stems
    assert [row.base.name for row in rows] == ["yolov5nu", "yolov5su"]
    table = markdown_table(rows)
    assert "| yolov5-spd-n | yolov5nu | 31 | " in table and f"{AUTHORS_PARAMS['s']:,}" in table


def test_list_models_filters_and_orders_small_to_large():
    assert yolo_spd.list_models("yolov5-spd-*") == [f"yolov5-spd-{s}" for s in "nsml"]
    assert yolo_spd.list_models("no-such-*") == []


MIXED_YAML = {
    "nc": 2,
    "depth_multiple": 0.33,
    "width_multiple": 0.25,
    "backbone": [
        [-1, 1, "Conv", [64, 3, 2]],  # 0-P1/2
        [-1, 1, "SPDConv", [128, 3]],  # 1-P2/4
        [-1, 1, "SCConv", [128]],  # 2
        [-1, 1, "SSDConv", [256, 3, 2]],  # 3-P3/8
        [-1, 1, "SCConv", [256, 3, 2]],  # 4-P4/16
        [-1, 1, "Conv", [256, 3, 1]],  # 5
        [-1, 1, "SpaceToDepth", [1024]],  # 6-P5/32
    ],
    "head": [[[3, 4, 6], 1, "Detect", ["nc"]]],
}


def test_a_model_using_every_module_takes_a_training_step():
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(cfg=MIXED_YAML, ch=3, nc=2, verbose=False)
    model.args = get_cfg()
    model.train()
    batch = {
        "img": torch.rand(2, 3, 64, 64),
        "batch_idx": torch.tensor([0.0, 1.0]),
        "cls": torch.tensor([[0.0], [1.0]]),
        "bboxes": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.6, 0.1, 0.15]]),
    }
    loss, _ = model.loss(batch)
    loss.sum().backward()
    assert torch.isfinite(loss).all()
    ours = (yolo_spd.SPDConv, yolo_spd.SCConv, yolo_spd.SSDConv)
    for layer in model.model:
        if isinstance(layer, ours):
            missing = [n for n, p in layer.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
            assert not missing, f"{type(layer).__name__} (layer {layer.i}) got no gradient in {missing}"
