"""benchmarks/model_floor.py: the recorder finds every convolution and matrix product a model runs and counts their
multiply-accumulates right, the replay runs exactly those calls, and the script's tables say which part bounds a
pair."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from yolo_spd.markdown import parse_table

from .conftest import REPO, child_env, load_script

floor = load_script("model_floor")
build = load_script("models").build


class Mixed(nn.Module):
    """Every compute overload the recorder knows, with the arithmetic around them that it must not count."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2)  # 8 * 5 * 5 outputs, 2 * 3 * 3 MACs each
        self.dilated = nn.Conv2d(8, 6, 3, padding=2, dilation=2, bias=False)  # 6 * 5 * 5 outputs, 8 * 9 each
        self.up = nn.ConvTranspose2d(6, 4, 2, stride=2, groups=2)  # 6 * 5 * 5 inputs, each meets 2 * 2 * 2 weights
        self.linear = nn.Linear(4, 3)  # addmm: 100 rows, 4 * 3 each

    def forward(self, x):
        y = self.up(self.dilated(F.silu(self.conv(x))))  # (1, 4, 10, 10)
        rows = y.permute(0, 2, 3, 1).reshape(-1, 4)
        z = self.linear(rows)  # addmm
        w = rows.t() @ rows  # mm: 4 x 100 @ 100 x 4
        b = torch.bmm(y.flatten(2), y.flatten(2).transpose(1, 2))  # 1 x (4 x 100 @ 100 x 4)
        c = torch.baddbmm(b, b, b)  # 1 x (4 x 4 @ 4 x 4)
        return z.sum() + w.sum() + c.sum()


def test_the_recorder_counts_each_compute_call_and_nothing_else():
    model = Mixed().eval()
    x = torch.rand(1, 4, 10, 10)
    calls, macs = floor.record(model, x)
    aten = torch.ops.aten
    assert [func for func, _, _ in calls] == [aten.convolution.default] * 3 + [
        aten.addmm.default, aten.mm.default, aten.bmm.default, aten.baddbmm.default]
    expected = (8 * 5 * 5 * 2 * 9 + 6 * 5 * 5 * 8 * 9 + 6 * 5 * 5 * 2 * 2 * 2 + 100 * 4 * 3 + 4 * 100 * 4
                + 4 * 100 * 4 + 4 * 4 * 4)
    assert macs == expected


def test_the_replay_runs_the_recorded_calls_on_their_inputs():
    """Replayed, the first convolution gives the model's own result: the calls keep their recorded tensors."""
    model = Mixed().eval()
    x = torch.rand(1, 4, 10, 10)
    calls, _ = floor.record(model, x)
    func, args, kwargs = calls[0]
    torch.testing.assert_close(func(*args, **kwargs), model.conv(x), rtol=0, atol=0)
    seen = []
    spy = [(lambda *a, f=f, **k: seen.append(f) or f(*a, **k), a, k) for f, a, k in calls]
    floor.replay(spy)()
    assert seen == [f for f, _, _ in calls]


@pytest.mark.parametrize("name", ["yolov5nu", "yolov8n", "yolov5-scconv-n", "yolov5-ssdconv-n"])
def test_no_convolution_of_a_fused_model_escapes_the_recorder(name):
    """Counted from the other side: every nn.Conv2d module's output size times its weight's fan-in, by forward hooks.
    Stock models are convolution modules only, so the two counts agree exactly; the SCConv and SSDConv configs add
    matrix products and functional convolutions, so theirs is at least the hooks' count."""
    _, model, _ = build(name, None, 128)  # no export, as model_floor.py --no-onnx
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        model(x)  # the modules' lazy caches, as the script does before recording
    hooked = []
    handles = [m.register_forward_hook(lambda m, i, out: hooked.append(out.numel() * m.weight[0].numel()))
               for m in model.modules() if isinstance(m, nn.Conv2d)]
    calls, macs = floor.record(model, x)
    for handle in handles:
        handle.remove()
    if name.startswith("yolov5-"):  # and within a few percent of Ultralytics' count of the unfused model
        assert macs > sum(hooked) and len(calls) > len(hooked)
        assert macs * 2 / 1e9 == pytest.approx(build(name, None, 128)[0], rel=0.05)
    else:
        assert macs == sum(hooked) and len(calls) == len(hooked) > 50


def test_pair_row_arithmetic_on_known_rounds():
    """Two rounds of made-up times with known answers: the model 1.2 s (compute 0.9) and 1.0 s (compute 0.8), the
    baseline 1.0 (compute 0.85) and 1.0 (compute 0.8); GFLOPs ratio 0.9."""
    rounds = {"m": [1.2, 1.0], "m compute": [0.9, 0.8], "b": [1.0, 1.0], "b compute": [0.85, 0.8]}
    row = floor.pair_row("m", "b", "", 0.9, rounds)
    cells = dict(zip(floor.PAIR_HEADER, row))
    assert cells["pair"] == "m / b" and cells["runtime"] == "PyTorch"
    assert cells["latency ratio"] == "1.10"  # median of 1.2 and 1.0
    assert cells["compute alone ratio"] == f"{(0.9 / 0.85 + 1.0) / 2:.2f}"
    assert cells["other passes"] == "0.25"  # (0.3 + 0.2) / 2
    assert cells["the target leaves"] == "0.05"  # 0.9 - (0.9 + 0.8) / 2
    assert cells["baseline's other passes"] == "0.17"  # (0.15 + 0.2) / 2: 0.175 in binary is just under it
    assert cells["bound by"] == "compute"  # 0.05 left, below the baseline's own 0.17
    onnx = {f"{key.split()[0]} onnx{' compute' if 'compute' in key else ''}": value for key, value in rounds.items()}
    assert floor.pair_row("m", "b", " onnx", 0.9, onnx)[1:] == ["ONNX Runtime", *row[2:]]


def test_bound_by_names_the_part_that_keeps_a_pair_over_its_target():
    assert floor.bound_by(latency=1.40, flops_ratio=1.56, left=0.3, own=0.1) == "— (met)"
    assert floor.bound_by(latency=1.00, flops_ratio=0.87, left=0.08, own=0.14) == "compute"
    assert floor.bound_by(latency=1.08, flops_ratio=1.02, left=0.15, own=0.14) == "other passes"


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "model_floor.py"), *args], env=child_env(**env),
                          capture_output=True, text=True, timeout=600)


def test_the_script_prints_both_tables_and_a_consistent_pair_row(tmp_path):
    out = run("--quick", "--repeats", "2", "--warmup", "0", "--imgsz", "64")
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert text.startswith("64 x 64, batch 1, fused, PyTorch and ONNX Runtime, 2 interleaved rounds;")
    assert "allocator: glibc's defaults." in text.splitlines()[0]
    models = parse_table(text)
    assert [row["model"] for row in models] == ["yolov5-scconv-n", "yolov5nu"]
    assert list(models[0]) == floor.MODEL_HEADER
    pairs = parse_table(text[text.index("| pair |"):])
    assert list(pairs[0]) == floor.PAIR_HEADER
    assert [(row["pair"], row["runtime"]) for row in pairs] == [
        ("yolov5-scconv-n / yolov5nu", "PyTorch"), ("yolov5-scconv-n / yolov5nu", "ONNX Runtime")]
    for pair in pairs:
        numbers = {key: float(value) for key, value in pair.items() if key not in ("pair", "runtime", "bound by")}
        assert pair["bound by"] == floor.bound_by(numbers["latency ratio"], numbers["GFLOPs ratio"],
                                                  numbers["the target leaves"], numbers["baseline's other passes"])
    for model in models:
        assert 0 < float(model["PyTorch compute share"]) <= 1.5  # a cold replay can outlast the model at 64 px
        assert 0 < float(model["ONNX Runtime compute share"]) < 1


def test_the_allocator_settings_and_no_onnx_are_named_and_choose_the_block(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- BEGIN generated: model-floor -->\n<!-- END generated: model-floor -->\n")
    quick = ("--quick", "--repeats", "1", "--warmup", "0", "--imgsz", "64", "--write-docs", str(page))
    out = run(*quick, "--no-onnx", MALLOC_TRIM_THRESHOLD_="4294967296")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("model_floor.py: error: --write-docs")
    assert "model-floor-pytorch-malloc" in out.stderr
    page.write_text("<!-- BEGIN generated: model-floor-pytorch-malloc -->\n"
                    "<!-- END generated: model-floor-pytorch-malloc -->\n")
    out = run(*quick, "--no-onnx", MALLOC_TRIM_THRESHOLD_="4294967296")
    assert out.returncode == 0, out.stderr[-2000:]
    written = page.read_text()
    assert "PyTorch only" in written and "allocator: MALLOC_TRIM_THRESHOLD_=4294967296." in written.splitlines()[2]
    assert [row["runtime"] for row in parse_table(written[written.index("| pair |"):])] == ["PyTorch"]
    assert {row["ONNX Runtime ms"] for row in parse_table(written)} == {"—"}
    assert floor.block_name(False, False) == "model-floor" and floor.block_name(True, False) == "model-floor-pytorch"
    assert floor.block_name(False, True) == "model-floor-malloc"


def test_an_unknown_model_is_one_error_line():
    out = run("--models", "yolov5-nosuch-n", "yolov5nu", "--repeats", "1", "--imgsz", "64")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "model_floor.py: error: --models yolov5-nosuch-n: no such config; expected a packaged config (yolo-spd info "
        "lists them) or a stock Ultralytics model name such as yolov5nu")
