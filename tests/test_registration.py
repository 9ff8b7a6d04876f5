"""Registration into Ultralytics (yolo_spd.integration): channel bookkeeping, idempotence, exact reversal of every part,
version and name guards."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from ultralytics.nn import tasks
from ultralytics.utils import checks
from ultralytics.utils.ops import make_divisible

import yolo_spd
from yolo_spd import integration
from yolo_spd.integration import UnsupportedUltralyticsError, check_ultralytics_version, names

from .conftest import REPO, child_env


def snapshot(module) -> dict:
    return {name: id(value) for name, value in vars(module).items()}


@pytest.fixture
def unregistered():
    """Run a test with yolo_spd unregistered, and re-register afterwards whatever happens."""
    yolo_spd.unregister()
    try:
        yield
    finally:
        yolo_spd.register()


def build(d: dict, ch: int = 3):
    return tasks.parse_model(d, ch=ch, verbose=False)[0]


def test_import_registers_and_registering_again_changes_nothing():
    assert yolo_spd.is_registered()
    before = snapshot(tasks)
    yolo_spd.register()
    assert snapshot(tasks) == before


def callback_snapshot() -> dict:
    from ultralytics.utils.callbacks import base

    return {event: list(functions) for event, functions in base.default_callbacks.items()}


def test_unregister_restores_ultralytics_exactly(unregistered):
    from ultralytics.data import utils as data_utils
    from ultralytics.utils import dist, plotting

    pristine, safe_before = snapshot(tasks), set(torch.serialization.get_safe_globals())
    callbacks_before, ddp_before, font_before = callback_snapshot(), dist.generate_ddp_file, checks.check_font
    pristine_model_class = snapshot(tasks.BaseModel)
    assert not {"SPDConv", "SCConv", "SSDConv", "SpaceToDepth", "frozenset"} & set(vars(tasks))
    assert tasks.check_yaml is checks.check_yaml
    yolo_spd.register()
    assert snapshot(tasks) != pristine and yolo_spd.SPDConv in torch.serialization.get_safe_globals()
    assert callback_snapshot() != callbacks_before and dist.generate_ddp_file is not ddp_before
    assert plotting.check_font is not font_before
    assert snapshot(tasks.BaseModel) != pristine_model_class  # fuse() wrapped
    yolo_spd.unregister()
    yolo_spd.unregister()  # harmless twice
    assert snapshot(tasks) == pristine
    assert snapshot(tasks.BaseModel) == pristine_model_class
    assert set(torch.serialization.get_safe_globals()) == safe_before  # torch keeps them as a set
    assert callback_snapshot() == callbacks_before and dist.generate_ddp_file is ddp_before
    assert plotting.check_font is data_utils.check_font is checks.check_font is font_before  # everywhere


def ultralytics_state() -> dict:
    """Everything any integration part may change, by identity."""
    from ultralytics.utils import dist, torch_utils

    from yolo_spd.integration.fonts import FONT_USERS

    return {
        "tasks": snapshot(tasks),
        "BaseModel": snapshot(tasks.BaseModel),
        "safe_globals": set(torch.serialization.get_safe_globals()),
        "callbacks": callback_snapshot(),
        "ddp": id(dist.generate_ddp_file),
        "fonts": [id(sys.modules[name].check_font) for name in FONT_USERS],
        "flops": id(torch_utils.get_flops),
    }


@pytest.mark.parametrize("part", integration.PARTS, ids=lambda part: part.__name__.rpartition(".")[2])
def test_each_part_changes_ultralytics_and_undoes_exactly_what_it_changed(unregistered, part):
    pristine = ultralytics_state()
    part.apply()
    try:
        applied = ultralytics_state()
    finally:
        part.undo()
    assert applied != pristine
    assert ultralytics_state() == pristine


def test_a_part_that_fails_undoes_the_parts_applied_before_it(unregistered, monkeypatch):
    def fail():
        raise RuntimeError("simulated failure in the last part")

    monkeypatch.setattr(integration.PARTS[-1], "apply", fail)
    pristine = ultralytics_state()
    with pytest.raises(RuntimeError, match="simulated"):
        yolo_spd.register()
    assert ultralytics_state() == pristine and not yolo_spd.is_registered()


def test_unregistered_ultralytics_no_longer_knows_the_modules(unregistered):
    with pytest.raises(KeyError, match="SPDConv"):
        build({"nc": 1, "backbone": [[-1, 1, "SPDConv", [16]]], "head": []})
    with pytest.raises(FileNotFoundError):
        tasks.yaml_model_load("yolov5-spd-n.yaml")


def test_channel_rule_c1_from_the_from_layer_c2_scaled_and_made_divisible():
    d = {
        "nc": 1,
        "depth_multiple": 1.0,
        "width_multiple": 0.25,
        "backbone": [
            [-1, 1, "Conv", [64, 3, 2]],  # 0: 16 ch
            [-1, 1, "Conv", [96, 3, 1]],  # 1: 24 ch
            [[0, 1], 1, "Concat", [1]],  # 2: 40 ch
            [-1, 1, "SPDConv", [100, 3]],  # 3: c1 40, c2 make_divisible(25, 8) = 32
            [-1, 1, "SCConv", [128, 3, 2]],  # 4: c1 32, c2 32, stride 2
            [-1, 1, "SSDConv", [200, 3, 1, 0.5]],  # 5: c1 32, c2 56, in_ratio 0.5
            [-1, 1, "SpaceToDepth", [896]],  # 6: 224 = 4 * 56
            [-1, 1, "Conv", [64, 1, 1]],  # 7: c1 must be 224
        ],
        "head": [],
    }
    layers = build(d)
    assert (layers[3].conv.conv.in_channels, layers[3].conv.conv.out_channels) == (4 * 40, make_divisible(25, 8))
    assert layers[4].cru.gwc.out_channels == 32 and layers[4].cru.gwc.stride == (2, 2)
    assert layers[4].sru.gn.num_channels == 32
    assert layers[5].main_in == 16 and layers[5].bn_main.num_features == 56
    assert layers[7].conv.in_channels == 224
    y = torch.randn(1, 3, 64, 64)
    outputs = []
    for layer in layers:
        x = y if layer.f == -1 else [outputs[j] for j in layer.f]
        y = layer(x)
        outputs.append(y)
    assert y.shape == (1, 16, 4, 4)


def test_max_channels_of_a_scales_yaml_caps_our_modules_like_any_conv():
    d = {"nc": 1, "scales": {"n": [1.0, 0.25, 64]}, "scale": "n", "backbone": [[-1, 1, "SPDConv", [1024, 3]]], "head": []}
    assert build(d)[0].conv.conv.out_channels == 16  # min(1024, 64) * 0.25


def test_a_space_to_depth_row_with_the_wrong_width_fails_with_a_clear_error():
    d = {"nc": 1, "backbone": [[-1, 1, "Conv", [16, 3, 1]], [-1, 1, "SpaceToDepth", [48]]], "head": []}
    with pytest.raises(ValueError, match=r"c2=48 .*64"):
        build(d)


@pytest.mark.parametrize("version", ["8.3.99", "8.4.66", "8.5.0", "9.0.1", "8.4", "garbage"])
def test_versions_outside_the_supported_range_are_refused_with_the_range_named(version):
    with pytest.raises(UnsupportedUltralyticsError, match=rf"ultralytics>=8\.4\.67,<8\.5.*{version}"):
        check_ultralytics_version(version)


def test_supported_versions_pass():
    for version in ("8.4.67", "8.4.190", "8.4.99.dev0", "8.4.120rc1"):
        check_ultralytics_version(version)


def test_register_refuses_an_unsupported_ultralytics_and_changes_nothing(unregistered, monkeypatch):
    import ultralytics

    monkeypatch.setattr(ultralytics, "__version__", "8.5.2")
    pristine = snapshot(tasks)
    with pytest.raises(UnsupportedUltralyticsError, match="8.5.2"):
        yolo_spd.register()
    assert snapshot(tasks) == pristine and not yolo_spd.is_registered()


def test_register_refuses_to_shadow_an_existing_ultralytics_name(unregistered, monkeypatch):
    monkeypatch.setattr(tasks, "SPDConv", object(), raising=False)  # as if Ultralytics shipped its own SPDConv
    with pytest.raises(UnsupportedUltralyticsError, match="SPDConv"):
        yolo_spd.register()


def test_a_failed_self_check_rolls_back(unregistered, monkeypatch):
    monkeypatch.setattr(names, "BASE_MODULES", frozenset())  # channel rule would not apply
    pristine = snapshot(tasks)
    with pytest.raises(UnsupportedUltralyticsError, match="channel rule"):
        yolo_spd.register()
    assert snapshot(tasks) == pristine


def test_bare_names_resolve_from_any_directory_and_a_local_file_wins(tmp_path):
    (tmp_path / "yolov5-spd-s.yaml").write_text((REPO / "cfg" / "yolov5-spd-n.yaml").read_text().replace("nc: 80", "nc: 3"))
    code = (
        "import yolo_spd\n"
        "from ultralytics import YOLO\n"
        "print(YOLO('yolov5-spd-n.yaml').model.yaml['nc'], YOLO('yolov5-spd-s.yaml').model.yaml['nc'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=child_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["80", "3"]


@pytest.mark.parametrize("depth,expected", [(0.33, 1), (1.0, 3)])
def test_repeated_rows_are_depth_scaled(depth, expected):
    d = {"nc": 1, "depth_multiple": depth, "backbone": [[-1, 1, "Conv", [32, 3, 2]], [-1, 3, "SCConv", [32]]], "head": []}
    layer = build(d)[1]
    blocks = list(layer) if isinstance(layer, torch.nn.Sequential) else [layer]
    assert len(blocks) == expected and all(isinstance(b, yolo_spd.SCConv) for b in blocks)


class RepeatBlock(torch.nn.Module):
    """A C3-style block: (c1, c2, n) with n repeats inside."""

    def __init__(self, c1, c2, n=1):
        super().__init__()
        self.c1, self.c2, self.n = c1, c2, n
        self.conv = torch.nn.Conv2d(c1, c2, 1)

    def forward(self, x):
        return self.conv(x)


def test_repeat_modules_get_the_scaled_count_as_their_third_argument(monkeypatch):
    """The hook C3-style variants use: listed in REPEAT_MODULES, parse_model inserts n and builds one block."""
    monkeypatch.setattr(names, "BASE_MODULES", names.BASE_MODULES | {RepeatBlock})
    monkeypatch.setattr(names, "REPEAT_MODULES", frozenset({RepeatBlock}))
    monkeypatch.setattr(tasks, "RepeatBlock", RepeatBlock, raising=False)
    d = {"nc": 1, "depth_multiple": 0.67, "width_multiple": 0.5, "backbone": [[-1, 6, "RepeatBlock", [64]]], "head": []}
    block = build(d, ch=8)[0]
    assert isinstance(block, RepeatBlock) and (block.c1, block.c2, block.n) == (8, 32, 4)  # round(6 * 0.67) = 4


def test_pyproject_declares_the_range_the_integration_supports():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert integration.SUPPORTED_TEXT == "ultralytics>=8.4.67,<8.5"
    assert integration.SUPPORTED_TEXT in dependencies


@pytest.mark.parametrize(
    "d, scale",
    [
        ({"yaml_file": "cfg/yolo11-spd-n.yaml"}, "n"),
        ({"yaml_file": "cfg/yolov5-ssdconv-l.yaml", "scale": ""}, "l"),
        ({"yaml_file": "cfg/yolo11-spd-n.yaml", "scales": {"s": [0.5, 0.5, 1024]}}, None),  # scales: Ultralytics picks
        ({"yaml_file": "my-model.yaml"}, None),
    ],
)
def test_one_scale_yamls_get_their_scale_letter(d, scale):
    """Ultralytics 8.4.67 reads an empty scale guess as m/l/x for C3k2 (found by CI's oldest-version run)."""
    from yolo_spd.integration.yaml_loading import scale_from_file_name

    scale_from_file_name(d)
    assert (d.get("scale") or None) == scale


@pytest.mark.parametrize("cfg", ["yolov5-spd-n.yaml", "yolov8-spd-n.yaml", "yolo11-spd-n.yaml", "yolov5-scconv-n.yaml",
                                 "yolov5nu.yaml"])
def test_the_model_summary_has_the_gflops_of_a_three_channel_image(cfg):
    """Ultralytics' get_flops sized its dummy image by the first weight's input channels: 12 for a Focus stem, so the
    SPD configs' summary line (and yolo train's logged model/GFLOPs) had no GFLOPs. Registered, it profiles the
    3-channel image; other models get exactly what Ultralytics computes."""
    import thop
    from ultralytics import YOLO
    from ultralytics.utils import torch_utils

    model = YOLO(cfg).model
    direct = thop.profile(model, inputs=[torch.empty(1, 3, 640, 640)], verbose=False)[0] * 2 / 1e9  # no proxies
    flops = torch_utils.get_flops(model, 640)  # 8.4.67 extrapolates from one stride-sized image: 0.5% off for some
    assert flops == pytest.approx(direct, rel=0.01) and direct > 1
    assert model.info()[3] == flops  # the summary line: (layers, parameters, gradients, GFLOPs)
    original = torch_utils.get_flops.__wrapped__
    starts_with_space_to_depth = next(model.parameters()).shape[1] != 3
    assert (original(model, 640) == 0.0) == starts_with_space_to_depth  # what the part is there for
