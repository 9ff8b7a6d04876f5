"""The packaged yolov5-spd configs: the authors' parameter counts, per-scale widths, topology and the info table."""

from __future__ import annotations

import pytest
import torch
from ultralytics import YOLO
from ultralytics.nn.modules import C3, Detect, Focus

import yolo_spd
from yolo_spd.info import markdown_table, model_stats

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
    stats = [model_stats(name) for name in ("yolov5-spd-n", "yolov5-spd-s")]
    assert [s.params_before_detect for s in stats] == [AUTHORS_PARAMS["n"], AUTHORS_PARAMS["s"]]
    assert 0 < stats[0].gflops < stats[1].gflops  # counted, not Ultralytics' silent 0.0 for Focus stems
    table = markdown_table(stats)
    assert "| yolov5-spd-n | 31 | " in table and f"{AUTHORS_PARAMS['s']:,}" in table


def test_list_models_filters_and_orders_small_to_large():
    assert yolo_spd.list_models("yolov5-spd-*") == [f"yolov5-spd-{s}" for s in "nsml"]
    assert yolo_spd.list_models("no-such-*") == []
