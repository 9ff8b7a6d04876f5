"""Issue #4 model zoo: the C3/C2f/C3k2 variants, the yolov5-scconv/ssdconv, yolov8-spd and yolo11-spd configs
(layer by layer against their Ultralytics baselines), list_models filters and the info/latency table.

CI time: every config is built and compared with its baseline; forward passes at 640 and 480 x 352 run at n scale;
the training step and ONNX export (``slow``) run at n scale on small inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ultralytics import YOLO
from ultralytics.nn import tasks
from ultralytics.nn.modules import C2f, C3, C3k2, Bottleneck, Conv
from ultralytics.nn.modules.block import C3k

import yolo_spd
from yolo_spd import info
from yolo_spd.configs import baseline, list_models, split_name

NEW_FAMILIES = ("yolov5-scconv", "yolov5-ssdconv", "yolov8-spd", "yolo11-spd")
NEW_CONFIGS = [f"{family}-{scale}" for family in NEW_FAMILIES for scale in "nsml"]
N_CONFIGS = [f"{family}-n" for family in NEW_FAMILIES]
# Rows each family changes, as its YAML header lists them (stride-2 Conv rows of yolov8.yaml / yolo11.yaml, C3 rows
# of yolov5.yaml).
CHANGED_ROWS = {
    "yolov5-scconv": [2, 4, 6, 8, 13, 17, 20, 23],
    "yolov5-ssdconv": [2, 4, 6, 8, 13, 17, 20, 23],
    "yolov8-spd": [0, 1, 3, 5, 7, 16, 19],
    "yolo11-spd": [0, 1, 3, 5, 7, 17, 20],
}
VARIANT_OF = {"scconv": yolo_spd.C3_SCConv23, "ssdconv": yolo_spd.C3_SSDConv}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def legacy_head(detect) -> bool:
    """Whether Detect was built with the legacy (YOLOv8-style) class branch; ``Detect.legacy`` itself is a class
    attribute that every build overwrites, so the built structure is what tells."""
    return type(detect.cv3[0][0]) is Conv


def bottlenecks(block: torch.nn.Module) -> list[Bottleneck]:
    return [m for m in block.modules() if isinstance(m, Bottleneck)]


# --- block variants ------------------------------------------------------------------------------------------------

VARIANTS = [  # (variant, stock, module, args after c1, c2)
    (yolo_spd.C3_SCConv23, C3, yolo_spd.SCConv, (3,)),
    (yolo_spd.C3_SSDConv, C3, yolo_spd.SSDConv, (2, False)),
    (yolo_spd.C2f_SCConv23, C2f, yolo_spd.SCConv, (2, True)),
    (yolo_spd.C2f_SSDConv, C2f, yolo_spd.SSDConv, (1,)),
    (yolo_spd.C3k2_SCConv23, C3k2, yolo_spd.SCConv, (2, False, 0.25)),
    (yolo_spd.C3k2_SSDConv, C3k2, yolo_spd.SSDConv, (1, False, 0.5)),
    (yolo_spd.C3k2_SCConv23, C3k2, yolo_spd.SCConv, (2, True)),  # C3k inner blocks
    (yolo_spd.C3k2_SSDConv, C3k2, yolo_spd.SSDConv, (1, False, 0.5, True)),  # attn: bottleneck + PSABlock
]


@pytest.mark.parametrize("variant,stock,module,args", VARIANTS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_variant_is_the_stock_block_with_each_bottleneck_cv2_replaced(variant, stock, module, args):
    c1, c2 = 64, 128
    ours, ref = variant(c1, c2, *args), stock(c1, c2, *args)
    assert isinstance(ours, stock)
    ours_b, ref_b = bottlenecks(ours), bottlenecks(ref)
    c3k = stock is C3k2 and len(args) > 1 and args[1]
    expected_count = args[0] * (2 if c3k else 1)  # a C3k holds 2 bottlenecks
    assert len(ours_b) == len(ref_b) == expected_count
    for b, r in zip(ours_b, ref_b):
        assert isinstance(b.cv2, module) and type(b.cv1) is Conv and b.add == r.add
    # Parameter count differs by exactly the replaced convs: stock 3x3 Conv out, independently built module in.
    delta = sum(n_params(module(r.cv2.conv.in_channels, r.cv2.conv.out_channels, 3)) - n_params(r.cv2) for r in ref_b)
    assert n_params(ours) == n_params(ref) + delta
    assert n_params(ours) - sum(n_params(b.cv2) for b in ours_b) == n_params(ref) - sum(n_params(r.cv2) for r in ref_b)
    x = torch.randn(2, c1, 20, 14)
    assert ours.eval()(x).shape == ref.eval()(x).shape == (2, c2, 20, 14)


@pytest.mark.parametrize("variant", [yolo_spd.C3_SCConv23, yolo_spd.C2f_SSDConv, yolo_spd.C3k2_SCConv23])
def test_variant_rejects_groups_and_bad_channels_in_one_line(variant):
    with pytest.raises(ValueError, match=rf"^{variant.__name__}: g=2 is not allowed; expected 1 \("):
        variant(32, 32, g=2)
    with pytest.raises(ValueError, match=rf"^{variant.__name__}: c2=0 is not allowed"):
        variant(32, 0)
    with pytest.raises(ValueError, match=rf"^{variant.__name__}: e=0.0 is not allowed for c2=32; .*>= 1$"):
        variant(32, 32, e=0.0)  # before the stock block builds zero-channel layers (torch warned, then it failed)


@pytest.mark.parametrize("variant", [yolo_spd.C3_SCConv23, yolo_spd.C2f_SCConv23])
def test_variant_names_its_bottleneck_width_when_the_module_refuses_it(variant):
    """c2=6 and e=0.5 give 3-channel bottlenecks, which SCConv refuses (odd c1): the message says where the 3
    comes from, as the block's row has no c1=3."""
    with pytest.raises(ValueError, match=rf"^{variant.__name__}: its bottleneck convolution is 3 -> 3 channels \(set "
                                         r"by c2 and e\); SCConv: c1=3 is not allowed; .*even c1$"):
        variant(16, 6)


def yaml_with(row: list, depth: float = 1.0, width: float = 1.0, **extra) -> dict:
    backbone = [[-1, 1, "Conv", [64, 3, 2]], row]
    return {"nc": 1, "depth_multiple": depth, "width_multiple": width, "backbone": backbone, "head": [], **extra}


@pytest.mark.parametrize(
    "row,depth,inner",
    [
        ([-1, 9, "C3_SCConv23", [128]], 0.33, 3),  # round(9 * 0.33) = 3 bottlenecks in one block
        ([-1, 3, "C2f_SSDConv", [128, True]], 1.0, 3),
        ([-1, 2, "C3k2_SSDConv", [128, True, 0.5]], 0.5, 1),  # 1 C3k (2 bottlenecks) after depth scaling
        ([-1, 4, "C3k2_SCConv23", [128, False, 0.25]], 0.5, 2),
    ],
)
def test_yaml_rows_get_the_width_rule_and_the_scaled_repeat_count_inside_one_block(row, depth, inner):
    layer = tasks.parse_model(yaml_with(row, depth=depth, width=0.5), ch=3, verbose=False)[0][1]
    assert type(layer).__name__ == row[2]  # one block, not an nn.Sequential of repeats
    assert len(layer.m) == inner
    assert layer.cv1.conv.in_channels == 32 and layer.f == -1  # c1 from the previous row (64 * 0.5)
    out = layer.cv3 if isinstance(layer, C3) else layer.cv2
    assert out.conv.out_channels == 64  # c2 = 128 * width 0.5


def test_c3k2_variants_do_not_get_parse_models_scale_rules_as_documented():
    """parse_model tests ``m is C3k2`` for c3k at scales m/l/x and for the Detect head's legacy flag; the variants
    are subclasses, so they keep the row's c3k and leave legacy on (blocks.py, deviation 4). If this fails,
    Ultralytics changed that rule and the docstring and README should be updated."""

    def build(module: str):
        d = {
            "nc": 1, "scales": {"m": [1.0, 0.25, 1024]}, "scale": "m",
            "backbone": [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [64, 3, 2]],
                         [-1, 1, module, [128, False]]],
            "head": [[[3], 1, "Detect", ["nc"]]],
        }  # fmt: skip
        return tasks.DetectionModel(d, ch=3, nc=1, verbose=False).model

    stock, ours = build("C3k2"), build("C3k2_SCConv23")
    assert isinstance(stock[3].m[0], C3k) and isinstance(ours[3].m[0], Bottleneck)
    assert not legacy_head(stock[-1]) and legacy_head(ours[-1])


@pytest.mark.parametrize("family,block", [("v8/yolov8.yaml", "C2f"), ("11/yolo11.yaml", "C3k2")])
@pytest.mark.parametrize("module", ["SCConv23", "SSDConv"])
def test_variants_fit_the_narrowest_yolov8_and_yolo11_widths(family, block, module):
    """Every C2f / C3k2 row of Ultralytics' own YAML swapped for the variant builds and runs at scale n, whose
    bottlenecks are the narrowest (8 channels in yolo11n); backbone and neck differ from stock only in those convs.
    The Detect head is the documented exception: with no stock C3k2 row left, the yolo11 one is built legacy."""
    import yaml
    from ultralytics.cfg import ROOT

    def build(name: str):
        d = yaml.safe_load((ROOT / "cfg" / "models" / family).read_text()) | {"scale": "n"}
        for row in d["backbone"] + d["head"]:
            row[2] = name if row[2] == block else row[2]
        return tasks.DetectionModel(d, verbose=False).eval()

    ours, stock = build(f"{block}_{module}"), build(block)
    ours_b, stock_b = bottlenecks(ours), bottlenecks(stock)
    assert len(ours_b) == len(stock_b) > 0 and min(b.cv2.conv.in_channels for b in stock_b) <= 16
    body = n_params(ours.model[:-1]) - sum(n_params(b.cv2) for b in ours_b)
    assert body == n_params(stock.model[:-1]) - sum(n_params(b.cv2) for b in stock_b)
    assert legacy_head(ours.model[-1]) and legacy_head(stock.model[-1]) == (block == "C2f")
    with torch.no_grad():
        assert ours(torch.zeros(1, 3, 64, 96))[0].shape == (1, 84, 8 * 12 + 4 * 6 + 2 * 3)


# --- configs -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def layers():
    """The layers parse_model builds for a config or baseline name (as YOLO(name.yaml) would, minus the stride probe
    forward pass, which costs seconds at l scale), cached per test module."""
    cache: dict[str, torch.nn.Sequential] = {}

    def get(name: str) -> torch.nn.Sequential:
        if name not in cache:
            cache[name] = tasks.parse_model(tasks.yaml_model_load(f"{name}.yaml"), ch=3, verbose=False)[0]
        return cache[name]

    return get


@pytest.fixture(scope="module")
def built():
    cache: dict[str, torch.nn.Module] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = YOLO(f"{name}.yaml").model
        return cache[name]

    return get


@pytest.mark.parametrize("name", NEW_CONFIGS)
def test_config_differs_from_its_baseline_only_in_the_documented_rows(name, layers):
    family, module, scale = split_name(name)
    ours, base = layers(name), layers(baseline(name))
    changed = CHANGED_ROWS[f"{family}-{module}"]
    assert len(ours) == len(base)
    assert [m.f for m in ours] == [m.f for m in base]
    assert [i for i, (a, b) in enumerate(zip(ours, base)) if type(a) is not type(b)] == changed
    for i, (a, b) in enumerate(zip(ours, base)):
        if i not in changed:  # same widths, depths, c3k and head: each scale has the baseline's own numbers
            assert n_params(a) == n_params(b), f"{name} row {i} ({type(a).__name__})"
    expected_delta = 0
    for i in changed:
        a, b = ours[i], base[i]
        if module == "spd":  # SPDConv: the 3x3 conv sees 4x the channels, stride 1
            assert isinstance(a, yolo_spd.SPDConv) and type(b) is Conv and b.conv.stride == (2, 2)
            c1, c2 = b.conv.in_channels, b.conv.out_channels
            assert (a.conv.conv.in_channels, a.conv.conv.out_channels, a.conv.conv.stride) == (4 * c1, c2, (1, 1))
            expected_delta += 3 * 3 * c2 * (4 * c1 - c1)
        else:
            assert type(a) is VARIANT_OF[module] and type(b) is C3 and len(a.m) == len(b.m)
            expected_delta += sum(n_params(x.cv2) - n_params(y.cv2) for x, y in zip(a.m, b.m))
    assert n_params(ours) == n_params(base) + expected_delta
    assert legacy_head(ours[-1]) == legacy_head(base[-1]) == (family != "yolo11")  # YOLO11 keeps its own head


def test_every_yolo_spd_class_in_the_models_is_allowed_for_restricted_checkpoint_loading(layers):
    from yolo_spd.integration.checkpoints import PICKLED_CLASSES

    ours = {type(m) for name in N_CONFIGS + ["yolo11-spd-m"] for m in layers(name).modules()}
    ours = {cls for cls in ours if cls.__module__.startswith("yolo_spd")}
    assert {"C3_SCConv23", "C3_SSDConv", "SCConv", "SRU", "CRU", "SSDConv", "SPDConv"} <= {c.__name__ for c in ours}
    assert ours <= set(PICKLED_CLASSES) and set(PICKLED_CLASSES) <= set(torch.serialization.get_safe_globals())


def test_spd_configs_keep_no_strided_convolution_and_the_baseline_strides(built):
    for name in ("yolov8-spd-n", "yolo11-spd-n"):
        model = built(name)
        strided = [m for m in model.model[:-1].modules() if isinstance(m, torch.nn.Conv2d) and m.stride != (1, 1)]
        assert not strided, name
        assert model.stride.tolist() == [8.0, 16.0, 32.0]


@pytest.mark.parametrize("name", N_CONFIGS)
@pytest.mark.parametrize("height,width", [(640, 640), (352, 480)])
def test_forward_gives_the_detect_output_shape(name, height, width, built):
    model = built(name).eval()
    with torch.no_grad():
        y = model(torch.zeros(1, 3, height, width))[0]
    cells = sum((height // s) * (width // s) for s in (8, 16, 32))
    assert y.shape == (1, 4 + 80, cells) and torch.isfinite(y).all()


def test_list_models_filters_like_timm():
    assert set(NEW_CONFIGS) | {f"yolov5-spd-{s}" for s in "nsml"} <= set(list_models())
    assert list_models(module="spd", pattern="*-n") == ["yolo11-spd-n", "yolov5-spd-n", "yolov8-spd-n"]
    assert list_models(["*-n", "*-l"], family="yolov5", exclude="*spd*") == [
        "yolov5-scconv-n", "yolov5-scconv-l", "yolov5-ssdconv-n", "yolov5-ssdconv-l",
    ]  # fmt: skip
    assert list_models("yolov8-*", exclude=["*-s", "*-m"]) == ["yolov8-spd-n", "yolov8-spd-l"]
    with pytest.raises(ValueError, match="module='SPD' is not allowed; expected one of spd, scconv, ssdconv"):
        list_models(module="SPD")
    with pytest.raises(ValueError, match="family='yolov9' is not allowed"):
        list_models(family="yolov9")


def test_baselines_are_ultralytics_models_of_the_same_scale():
    assert [baseline(f"yolov5-ssdconv-{s}") for s in "nsml"] == ["yolov5nu", "yolov5su", "yolov5mu", "yolov5lu"]
    assert baseline("yolov8-spd-m") == "yolov8m" and baseline("yolo11-spd-l") == "yolo11l"
    with pytest.raises(ValueError, match="'yolov5-spd' is not allowed"):
        baseline("yolov5-spd")


# --- info table ----------------------------------------------------------------------------------------------------


def test_info_divides_each_config_by_its_own_baseline_and_times_each_group_together(monkeypatch):
    built_names, timed = [], []
    fake_params = {"yolov8-spd-n": 300, "yolov8-spd-s": 900, "yolov8n": 100, "yolov8s": 600, "yolo11-spd-n": 50,
                   "yolo11n": 200}  # fmt: skip

    def fake_build(name):
        built_names.append(name)
        return name

    def fake_stats_of(name, imgsz, yolo):
        return info.ModelStats(name, 23, fake_params[name], fake_params[name] - 1, fake_params[name] / 10)

    def fake_latency(yolos, imgsz, **kwargs):
        timed.append((list(yolos), imgsz, kwargs))
        # three rounds; the ratio columns must be the medians of the per-round ratios, not ratios of the medians
        torch_factors = {name: (1, 2, 3) if "spd" in name else (1, 4, 1) for name in yolos}
        return {name: info.Latency(tuple(fake_params[name] / 5 * f for f in torch_factors[name]),
                                   tuple(fake_params[name] / 50 * f for f in (2, 1, 1))) for name in yolos}

    monkeypatch.setattr(info, "build", fake_build)
    monkeypatch.setattr(info, "model_stats", fake_stats_of)
    monkeypatch.setattr(info, "measure_latency", fake_latency)
    names = ["yolo11-spd-n", "yolov8-spd-n", "yolov8-spd-s"]
    rows = info.compare(names, imgsz=64, latency=True, repeats=3)
    assert sorted(built_names) == sorted([*names, "yolo11n", "yolov8n", "yolov8s"])  # each built once
    # one round-robin group per baseline, the baseline first
    groups = [["yolo11n", "yolo11-spd-n"], ["yolov8n", "yolov8-spd-n"], ["yolov8s", "yolov8-spd-s"]]
    assert timed == [(group, 64, {"repeats": 3}) for group in groups]
    table = info.markdown_table(rows, imgsz=64).splitlines()
    assert table[0].startswith("| model | baseline | layers | params |") and "ONNX RT / base" in table[0]
    assert [line.split(" | ")[0] for line in table[2:]] == ["| " + name for name in names]  # the order asked for
    # PyTorch: spd rounds (t, 2t, 3t) against base rounds (b, 4b, b): per-round ratios t/b, t/2b, 3t/b, median t/b
    # (the params ratio), where the ratio of the medians would be 2t/b; ONNX: both (2, 1, 1), ratio t/b again
    assert table[2] == "| yolo11-spd-n | yolo11n | 23 | 50 | 49 | 5.0 | 0.25 | 0.25 | 20.0 | 0.25 | 1.0 | 0.25 |"
    assert table[3] == "| yolov8-spd-n | yolov8n | 23 | 300 | 299 | 30.0 | 3.00 | 3.00 | 120.0 | 3.00 | 6.0 | 3.00 |"
    assert table[4] == "| yolov8-spd-s | yolov8s | 23 | 900 | 899 | 90.0 | 1.50 | 1.50 | 360.0 | 1.50 | 18.0 | 1.50 |"
    pairs = info.Latency((1.0, 1.0, 9.0), (1.0,) * 3).ratios_to(info.Latency((1.0, 2.0, 9.0), (1.0,) * 3))
    assert pairs == (1.0, 1.0)  # per-round ratios 1, 0.5, 1 (median 1); the medians' ratio would be 0.5
    assert "PyTorch" not in info.markdown_table(info.compare(["yolov8-spd-n"], imgsz=64))
    # below 1 GFLOP (a small imgsz) three significant digits, not a 0.0 beside a ratio
    assert [info.gflops_cell(v) for v in (0.0312, 0.2, 0.999, 1.0, 12.25)] == ["0.0312", "0.2", "0.999", "1.0", "12.2"]


def test_info_main_prints_ratios_measured_by_ultralytics_counter(capsys):
    info.main(["yolov8-spd-n"])
    header, _, row = capsys.readouterr().out.strip().splitlines()
    cells = [c.strip() for c in row.strip("|").split("|")]
    ours, base = YOLO("yolov8-spd-n.yaml").model, YOLO("yolov8n.yaml").model
    assert cells[:4] == ["yolov8-spd-n", "yolov8n", "23", f"{n_params(ours):,}"]
    assert float(cells[6]) == pytest.approx(n_params(ours) / n_params(base), abs=0.005)
    assert float(cells[7]) == pytest.approx(info.gflops(ours) / info.gflops(base), abs=0.005) and float(cells[7]) > 1


@pytest.mark.parametrize("argv,message", [(["--imgsz", "100"], "multiple of 32"), (["--repeats", "0"], ">= 1"),
                                          (["no-such-*"], "no packaged config matches")])  # fmt: skip
def test_info_main_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        info.main(argv)
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_latency_times_every_model_in_both_runtimes_and_leaves_no_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    yolos = {"yolov8-spd-n": YOLO("yolov8-spd-n.yaml")}  # grouping and ratios: the monkeypatched test above
    lat = info.measure_latency(yolos, imgsz=32, repeats=2, warmup=1, threads=threads % 2 + 1)
    assert list(lat) == list(yolos) and all(v.torch_ms > 0 and v.onnx_ms > 0 for v in lat.values())
    assert torch.get_num_threads() == threads and list(tmp_path.iterdir()) == []


# --- training step and ONNX export at n scale ----------------------------------------------------------------------

OURS = (yolo_spd.SPDConv, yolo_spd.SCConv, yolo_spd.SSDConv)


@pytest.mark.slow
@pytest.mark.parametrize("name", N_CONFIGS)
def test_one_training_step_is_finite_and_reaches_every_new_module(name):
    from ultralytics.cfg import get_cfg

    model = YOLO(f"{name}.yaml").model
    model.args = get_cfg()
    model.train()
    batch = {
        "img": torch.rand(2, 3, 64, 96),
        "batch_idx": torch.tensor([0.0, 1.0, 1.0]),
        "cls": torch.tensor([[0.0], [5.0], [79.0]]),
        "bboxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.6, 0.1, 0.15], [0.7, 0.2, 0.3, 0.2]]),
    }
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss, _ = model.loss(batch)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and loss.sum() > 0
    new_modules = [m for m in model.modules() if isinstance(m, OURS)]
    # 7 stride-2 rows; or one module per C3 bottleneck: repeats 3, 6, 9, 3, 3, 3, 3, 3 at depth 0.33 -> 11
    assert len(new_modules) == {"spd": 7, "scconv": 11, "ssdconv": 11}[split_name(name)[1]]
    for m in new_modules:  # every parameter is in the graph, and every convolution kernel gets a non-zero gradient
        missing = [n for n, p in m.named_parameters() if p.grad is None]
        zero = [n for n, p in m.named_parameters() if p.dim() == 4 and not p.grad.abs().sum() > 0]
        assert not missing and not zero, f"{type(m).__name__}: no gradient in {missing}, zero gradient in {zero}"
    # (SSDConv's attention FC has max(2, c2 // 16) hidden ReLU units - 2 at n-scale widths - which can all be inactive
    # for a given batch, giving that FC an exactly zero gradient; that is the module's design, so the FC is only
    # required to be in the graph.)
    before = new_modules[0].state_dict()["conv.conv.weight" if "spd" in name else "bn.weight"].clone()
    optimizer.step()
    after = new_modules[0].state_dict()["conv.conv.weight" if "spd" in name else "bn.weight"]
    assert not torch.equal(before, after)


@pytest.mark.slow
@pytest.mark.parametrize("name", N_CONFIGS)
def test_onnx_export_matches_pytorch(name, tmp_path, monkeypatch):
    """Tolerance as in test_roundtrip: boxes in pixels, scores in [0, 1]; float32 reassociation stays below 1e-3."""
    import onnxruntime as ort

    monkeypatch.chdir(tmp_path)  # the exporter writes <yaml stem>.onnx into the working directory
    yolo = YOLO(f"{name}.yaml")
    onnx_file = Path(yolo.export(format="onnx", imgsz=(64, 96), simplify=True, dynamic=False, verbose=False))
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        expected = yolo.model.float().eval()(x)[0].numpy()
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == expected.shape == (1, 84, 8 * 12 + 4 * 6 + 2 * 3)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)
    assert float(np.abs(expected).max()) > 1.0


def test_the_docs_yaml_examples_build_in_order():
    """The "after" rows of docs/modules.md's "Using the modules in your own YAML" guide, stacked into one backbone,
    then its standalone rows (SCConv's c2 must exceed c1 / 4 there: the example once broke that rule)."""
    import yaml

    from .conftest import REPO

    page = (REPO / "docs" / "modules.md").read_text()
    rows = [yaml.safe_load(line.split("#")[0])[0] for line in page.splitlines()
            if line.startswith("- [") and "# after" in line]  # fmt: skip
    assert [row[2] for row in rows] == ["SPDConv", "C2f_SCConv23", "C3_SSDConv"]
    standalone = page.split("can also stand alone in a row", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    alone = [yaml.safe_load(line.split("#")[0])[0] for line in standalone.strip().splitlines()]
    assert [row[2] for row in alone] == ["SCConv", "SSDConv", "Conv", "SpaceToDepth"]
    d = {"nc": 1, "depth_multiple": 0.33, "width_multiple": 0.25, "backbone": [[-1, 1, "Conv", [64, 3, 2]], *rows]}
    built_layers = tasks.parse_model({**d, "head": []}, ch=3, verbose=False)[0]
    assert [type(m).__name__ for m in built_layers[1:]] == ["SPDConv", "C2f_SCConv23", "C3_SSDConv"]
    assert [len(m.m) for m in built_layers[2:]] == [2, 3]  # round(6 * 0.33), round(9 * 0.33)
    y = built_layers[3](built_layers[2](built_layers[1](built_layers[0](torch.zeros(1, 3, 64, 64)))))
    assert y.shape == (1, 128, 16, 16)
    for width in (0.25, 1.0):
        layers = tasks.parse_model({**d, "width_multiple": width, "backbone": [*d["backbone"], *alone], "head": []},
                                   ch=3, verbose=False)[0]
        y = torch.zeros(1, 3, 64, 64)
        for layer in layers:
            y = layer(y)
        assert y.shape == (1, int(512 * width), 4, 4)
