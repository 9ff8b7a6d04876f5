"""Exports of every yolo_spd family (scale n) to TorchScript, ONNX, OpenVINO and NCNN: Ultralytics exports them, loads
them back with ``YOLO(path)``, their raw output equals PyTorch's, and ``yolo-spd predict/val/compare`` take the export
file or folder as ``model=``/``weights=`` (:mod:`yolo_spd.model_source`). The heavier formats are covered by
``benchmarks/exports.py``, whose helpers these tests share."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from yolo_spd.errors import UsageError
from yolo_spd.model_source import accepted_forms, model_format, resolve_model

from .conftest import child_env, load_script, make_yolo_dataset

FAMILIES = ("yolov5-spd-n.yaml", "yolov8-spd-n.yaml", "yolo11-spd-n.yaml", "yolov5-scconv-n.yaml",
            "yolov5-ssdconv-n.yaml")
#: format -> (the module it needs, the pip package), what the test exports to.
FORMATS = {"torchscript": None, "onnx": ("onnxruntime", "onnxruntime"), "openvino": ("openvino", "openvino"),
           "ncnn": ("pnnx", "pnnx")}
IMGSZ = 64
TOL = 1e-4  # max|export - torch| / max|torch|; measured: at most a few 1e-7 on this machine (benchmarks/exports.md)


bench = load_script("exports")


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "yolo_spd", *args], cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=600)


# ---------------------------------------------------------------------------------------------------- model_source


@pytest.mark.parametrize("name,fmt", [("best.pt", "pt"), ("best.torchscript", "torchscript"), ("best.onnx", "onnx"),
                                      ("best_openvino_model", "openvino"), ("best_ncnn_model", "ncnn"),
                                      ("best.mlpackage", "coreml"), ("best_qnn.onnx", "qnn"),
                                      ("best_edgetpu.tflite", "edgetpu"), ("best.tflite", ("tflite", "litert")),
                                      ("best_paddle_model", "paddle"), ("best.mnn", "mnn"), ("best.bin", None)])
def test_model_format_follows_ultralytics_export_table(name, fmt):
    """The format names are Ultralytics' own: 8.4.67 calls .tflite 'tflite', later 8.4 releases 'litert'."""
    found = model_format(__import__("pathlib").Path("runs/weights") / name)
    assert found in fmt if isinstance(fmt, tuple) else found == fmt


def test_existing_export_files_and_folders_are_accepted_and_training_takes_only_yaml_or_pt(tmp_path):
    folder = tmp_path / "best_openvino_model"
    folder.mkdir()
    onnx = tmp_path / "best.onnx"
    onnx.write_bytes(b"")
    assert resolve_model(folder, "model") == str(folder)
    assert resolve_model(onnx, "weights") == str(onnx)
    with pytest.raises(UsageError, match=r"^cfg=.*best_openvino_model: not an accepted model form \(openvino\); "
                                         r"expected a model YAML .* or a \.pt checkpoint$"):
        resolve_model(folder, "cfg", exports=False)


def test_unknown_or_missing_forms_name_the_value_and_list_the_accepted_ones(tmp_path):
    odd = tmp_path / "weights.bin"
    odd.write_bytes(b"")
    with pytest.raises(UsageError) as error:
        resolve_model(odd, "model")
    message = str(error.value)
    assert message.startswith(f"model={odd}: not an accepted model form (a .bin file); expected ")
    for form in ("*.torchscript", "*.onnx", "*_openvino_model/", "*_ncnn_model/", "*.mlpackage", ".pt checkpoint"):
        assert form in message and form in accepted_forms()
    with pytest.raises(UsageError, match=r"best_ncnn_model: file not found \(yolo_spd never downloads weights\)"):
        resolve_model(tmp_path / "best_ncnn_model", "weights")
    with pytest.raises(UsageError, match=r"^model=.*plain-folder: not found; expected "):
        resolve_model(tmp_path / "plain-folder", "model")
    (tmp_path / "not-a-pt.pt").mkdir()
    with pytest.raises(UsageError, match="not an accepted model form"):
        resolve_model(tmp_path / "not-a-pt.pt", "model")


def test_cli_names_an_unknown_model_form_in_one_line(tmp_path):
    odd = tmp_path / "weights.bin"
    odd.write_bytes(b"")
    done = run_cli("predict", f"model={odd}", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"yolo-spd: error: model={odd}: not an accepted model form (a .bin file); expected {accepted_forms()}"]


# ---------------------------------------------------------------------------------------------------- exports


@pytest.fixture(scope="module", params=FAMILIES, ids=[f.replace(".yaml", "") for f in FAMILIES])
def family(request, tmp_path_factory):
    """One checkpoint per family (seeded, randomised norms), its PyTorch output on the fixed image, and an image."""
    folder = tmp_path_factory.mktemp(request.param.replace(".yaml", ""))
    weights = bench.build_checkpoint(request.param, folder)
    x = bench.example_image(IMGSZ)
    image = folder / "image.jpg"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (80, 96, 3), dtype=np.uint8))
    return {"weights": weights, "expected": bench.torch_output(weights, x), "x": x, "image": image, "exports": {}}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_export_loads_back_matches_pytorch_and_predicts_through_the_cli(family, fmt, tmp_path):
    if FORMATS[fmt]:
        pytest.importorskip(FORMATS[fmt][0], reason=f"pip install {FORMATS[fmt][1]} (in the dev extra)")
    if fmt == "ncnn" and importlib.util.find_spec("ultralytics.utils.export.ncnn") is None:
        pytest.skip("this Ultralytics fetches a pnnx binary for NCNN export (no download offline); 8.4.190 uses pip's")
    from ultralytics import YOLO

    exported = YOLO(str(family["weights"])).export(format=fmt, imgsz=IMGSZ, device="cpu")
    family["exports"][fmt] = exported
    got = bench.loaded_output(str(exported), family["x"], IMGSZ)
    assert bench.relative_difference(got, family["expected"]) <= bench.format_tolerance(fmt, TOL)
    if fmt == "openvino":  # Ultralytics' OpenVINO runs bfloat16 on AMX CPUs; the IR itself is exact at float32
        assert bench.relative_difference(bench.openvino_f32_output(exported, family["x"]), family["expected"]) <= TOL
    done = run_cli("predict", f"model={exported}", f"source={family['image']}", f"imgsz={IMGSZ}", "save=True",
                   "conf=0.0", "max_det=5", f"project={tmp_path}", "name=predict", "device=cpu", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = cv2.imread(str(tmp_path / "predict" / "image.jpg"))
    assert saved is not None and saved.shape == (80, 96, 3)  # the source image, with its boxes drawn
    counts = re.search(r"image 1/1 .*?: \d+x\d+ (.*?), [\d.]+ms", done.stdout + done.stderr)
    assert counts and sum(int(n) for n in re.findall(r"(\d+) \w", counts.group(1))) == 5  # conf=0: max_det boxes


@pytest.fixture(scope="module")
def tiny_exports(tmp_path_factory):
    """yolov5-spd-n with the tiny dataset's two classes, as a .pt and exported to every CI format, and that dataset."""
    pytest.importorskip("openvino")
    pytest.importorskip("pnnx")
    from ultralytics import YOLO

    folder = tmp_path_factory.mktemp("tiny_exports")
    weights = bench.build_checkpoint("yolov5-spd-n.yaml", folder, names=["red", "green"])
    data = make_yolo_dataset(tmp_path_factory.mktemp("tiny"), size=IMGSZ)
    exports = [YOLO(str(weights)).export(format=fmt, imgsz=IMGSZ, device="cpu") for fmt in FORMATS]
    return weights, exports, data


@pytest.mark.slow
def test_val_takes_every_export_file_and_folder(tiny_exports, tmp_path):
    """val on each export form (a folder used to answer 'file not found'), scored with COCO's evaluator."""
    _, exports, data = tiny_exports
    for exported in exports:
        name = f"val_{exported.rstrip('/').rsplit('/', 1)[-1]}"
        done = run_cli("val", f"weights={exported}", f"data={data}", f"imgsz={IMGSZ}", "batch=1", "device=cpu",
                       f"project={tmp_path}", f"name={name}", cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"Saved coco_eval.json and coco_eval.csv to {tmp_path / name}" in done.stdout, done.stdout[-1500:]
        assert "small" in (tmp_path / name / "coco_eval.json").read_text()  # the AP_S entry


@pytest.mark.slow
def test_compare_takes_exports(tiny_exports, tmp_path):
    weights, exports, data = tiny_exports
    done = run_cli("compare", "weights=" + ",".join(map(str, [weights, *exports])), f"data={data}", f"imgsz={IMGSZ}",
                   "batch=1", "device=cpu", f"project={tmp_path}", "name=compare", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in done.stdout.splitlines()
            if line.startswith("| yolov5-spd-n")}
    for name in ("yolov5-spd-n.torchscript", "yolov5-spd-n.onnx", "yolov5-spd-n_openvino_model",
                 "yolov5-spd-n_ncnn_model"):
        assert rows[name] == "-"  # an export's parameters are not known: left blank, not counted as 0
    assert rows["yolov5-spd-n.pt"].replace(",", "").isdigit()


@pytest.mark.slow
def test_compare_says_when_a_static_export_ran_at_another_size(tiny_exports, tmp_path):
    """Static exports at imgsz=64 compared at imgsz=96: each runs at its own size, as Ultralytics 8.4.178+ runs it
    (8.4.67 fed them 96: ONNX Runtime refused, TorchScript and OpenVINO raised), and compare records each model's
    size and says they differ (compare.json claimed 96 for all)."""
    weights, exports, data = tiny_exports
    done = run_cli("compare", "weights=" + ",".join(map(str, [weights, *exports])), f"data={data}",
                   f"imgsz={IMGSZ + 32}", "batch=1", "device=cpu", f"project={tmp_path}", "name=compare", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = json.loads((tmp_path / "compare" / "compare.json").read_text())
    assert [m["imgsz"] for m in saved["models"]] == [IMGSZ + 32] + [IMGSZ] * len(exports)
    assert (f"note: the models ran at different input sizes (yolov5-spd-n.pt at {IMGSZ + 32}, yolov5-spd-n.torchscript "
            f"at {IMGSZ}, ") in done.stderr
    assert "Note: the models ran at different input sizes" in (tmp_path / "compare" / "compare.tex").read_text()
    assert not (tmp_path / "compare" / "yolov5-spd-n.pt" / "predictions.json").exists()  # save_json not asked


@pytest.mark.slow
def test_a_static_onnx_without_its_size_given_another_size_is_one_error_line(tiny_exports, tmp_path):
    """An ONNX export whose metadata lacks imgsz (another exporter's, or edited) runs at imgsz= on every release;
    ONNX Runtime refuses a 96-px input to a 64-px graph, which is one error line naming both sizes (a traceback)."""
    import onnx

    weights, exports, data = tiny_exports
    graph = onnx.load(str(next(e for e in exports if str(e).endswith(".onnx"))))
    kept = [p for p in graph.metadata_props if p.key != "imgsz"]
    assert len(kept) == len(graph.metadata_props) - 1
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    onnx.save(graph, str(tmp_path / "sizeless.onnx"))
    done = run_cli("val", "weights=sizeless.onnx", f"data={data}", f"imgsz={IMGSZ + 32}", "batch=1", "device=cpu",
                   f"project={tmp_path}", "name=val", cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and lines[-1].startswith(
        f"yolo-spd: error: a static ONNX export was given another input shape than it was exported for "
        f"(dimension 2: {IMGSZ + 32}, expected {IMGSZ}; dimension 3: {IMGSZ + 32}, expected {IMGSZ}); "), lines
    assert "Traceback" not in done.stderr


def top_detections(run) -> dict:
    """image_id -> the highest-scoring detection of a val run folder's coco_predictions.json."""
    best = {}
    for det in json.loads((run / "coco_predictions.json").read_text()):
        if det["image_id"] not in best or det["score"] > best[det["image_id"]]["score"]:
            best[det["image_id"]] = det
    return best


@pytest.mark.slow
def test_val_runs_a_static_export_at_its_own_size_without_imgsz(tiny_exports, tmp_path):
    """val of a 64-px export with no imgsz= finds what the .pt finds at imgsz=64. Ultralytics 8.4.67 ran it at 640:
    the NCNN export scored near AP 0 with exit 0, and TorchScript and OpenVINO ended in a traceback."""
    weights, exports, data = tiny_exports
    runs = {}
    for model, size in [(weights, [f"imgsz={IMGSZ}"]), *((e, []) for e in exports)]:
        name = str(model).rstrip("/").rsplit("/", 1)[-1]
        done = run_cli("val", f"weights={model}", f"data={data}", *size, "batch=1", "device=cpu",
                       f"project={tmp_path}", f"name={name}", cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[name] = top_detections(tmp_path / name)
    expected = runs.pop(weights.name)
    for name, found in runs.items():
        assert found.keys() == expected.keys(), name
        for image_id, det in found.items():
            assert det["category_id"] == expected[image_id]["category_id"], name
            assert np.allclose(det["bbox"], expected[image_id]["bbox"], atol=0.5), (name, det, expected[image_id])


# ---------------------------------------------------------------------------------------------------- export forms

#: aten ops NCNN's converter cannot translate (it wrote them into its generated Python: 'invalid syntax') or that
#: need a >4-D tensor; none may appear in a traced yolo_spd module.
UNSUPPORTED = ("aten::addcmul", "aten::lerp", "aten::gt", "aten::baddbmm", "aten::pixel_shuffle")


def traced_ops(module, x) -> list[str]:
    with torch.no_grad():
        traced = torch.jit.trace(module, x, check_trace=False)
    return [node.kind() for node in traced.inlined_graph.nodes()], traced


def assert_traced_form_matches(module, x, rtol=1e-5, atol=1e-5):
    module = module.eval()
    with torch.no_grad():
        expected = module(x)
    kinds, traced = traced_ops(module, x)
    assert not [k for k in kinds if k in UNSUPPORTED]
    with torch.no_grad():
        torch.testing.assert_close(traced(x), expected, rtol=rtol, atol=atol)
    return kinds


@pytest.mark.parametrize("row_major", [False, True])
def test_space_to_depth_traces_to_crops_poolings_and_a_concat_only(row_major):
    """No step-2 slice (NCNN), no tensor above 4-D (NCNN, CoreML), no pixel_unshuffle (x2paddle, CoreML iOS 15)."""
    from yolo_spd import SpaceToDepth

    layer = SpaceToDepth()
    if row_major:
        layer.block_order = "onnx"
    x = torch.randn(1, 6, 10, 14)
    with torch.no_grad():
        traced = torch.jit.trace(layer, x)
    nodes = list(traced.inlined_graph.nodes())
    kinds = [node.kind() for node in nodes]
    assert kinds.count("aten::max_pool2d") == 4 and "aten::pixel_unshuffle" not in kinds
    assert not {"aten::permute", "aten::reshape", "aten::view"} & set(kinds)
    steps = [node.inputsAt(4).toIValue() for node in nodes if node.kind() == "aten::slice"]
    assert steps and set(steps) == {1}
    with torch.no_grad():
        assert torch.equal(traced(x), layer(x))  # selection only: bit-exact
        assert torch.equal(traced(x), torch.cat([x[..., i::2, j::2] for i, j in
                                                 ([(0, 0), (0, 1), (1, 0), (1, 1)] if row_major else
                                                  [(0, 0), (1, 0), (0, 1), (1, 1)])], 1))


@pytest.mark.parametrize("stride", [1, 2])
def test_scconv_and_ssdconv_trace_without_ops_ncnn_lacks_and_match_eager(stride):
    from tests.test_fast_equivalence import randomize_norms
    from yolo_spd import SCConv, SSDConv, fuse_modules

    x = torch.randn(1, 32, 12, 10)
    for module in (SCConv(32, 48, s=stride), SSDConv(32, 48, s=stride)):
        randomize_norms(module).eval()
        assert_traced_form_matches(module, x)  # unfused (SSDConv: the step form)
        wrapped = fuse_modules(torch.nn.Sequential(module))  # as Ultralytics' export traces it
        kinds = assert_traced_form_matches(wrapped, x)
        if isinstance(module, SSDConv):  # the folded export form, with no op x2paddle lacks either
            assert "aten::batch_norm" not in kinds and not [k for k in kinds if k in X2PADDLE_UNSUPPORTED]
            assert kinds.count("aten::_convolution") == (3 if stride == 1 else 4)  # merged, border, residual


#: aten ops that x2paddle 1.6 (Ultralytics' Paddle export) cannot convert: no mapper ("Model is not supported yet"),
#: or, for floor, a mapper that writes ``math.floor(tensor)`` into its generated code.
X2PADDLE_UNSUPPORTED = ("aten::ceil", "aten::floor", "aten::block_diag", "aten::addcmul", "aten::lerp", "aten::sign",
                        "aten::heaviside", "aten::baddbmm")


def scconv_cases():
    return [pytest.param(variant, stride, fused, id=f"{variant}-s{stride}-{'fused' if fused else 'unfused'}")
            for variant in ("paper", "release") for stride in (1, 2) for fused in (False, True)]


def scconv_for_export(variant, stride, fused, alpha=0.5):
    """SCConv(32, 48) with random norms in eval mode; fused as Ultralytics' export fuses it (model.fuse())."""
    from tests.test_fast_equivalence import randomize_norms
    from yolo_spd import SCConv, fuse_modules

    torch.manual_seed(0)
    module = randomize_norms(SCConv(32, 48, s=stride, alpha=alpha, variant=variant)).eval()
    return fuse_modules(_Block(module)) if fused else module


class _Block(torch.nn.Module):
    """A named parent, as in a YOLO model (x2paddle names parameters after their path; a bare '0.' is no name)."""

    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, x):
        return self.block(x)


@pytest.mark.parametrize("variant,stride,fused", scconv_cases())
def test_scconv_export_form_has_only_ops_ncnn_and_x2paddle_convert_and_matches_eager(variant, stride, fused):
    """Both variants, fused and unfused: no op NCNN or x2paddle lacks; GroupNorm's affine straight from its
    parameters and every sum over explicit dims (x2paddle's mappers need both); the same outputs as eager."""
    x = torch.randn(1, 32, 12, 10)
    for alpha in (0.5, 0.25):  # 0.25: CRU's split is not SRU's halves, so CRU squeezes the whole input itself
        module = scconv_for_export(variant, stride, fused, alpha)
        kinds = assert_traced_form_matches(module, x)
        assert not [k for k in kinds if k in X2PADDLE_UNSUPPORTED]
        _, graph = traced_ops(module, x)
        for node in graph.inlined_graph.nodes():
            if node.kind() == "aten::group_norm":
                assert [node.inputsAt(i).node().kind() for i in (2, 3)] == ["prim::GetAttr"] * 2
            if node.kind() == "aten::sum":
                assert node.inputsAt(1).type().kind() == "ListType"  # sum(x, dims, keepdim, dtype)


@pytest.mark.slow
@pytest.mark.parametrize("variant,stride,fused", scconv_cases())
def test_scconv_paddle_export_matches_eager(variant, stride, fused, tmp_path, monkeypatch):
    """x2paddle converts the module as Ultralytics calls it (trace) and Paddle Inference, the runtime Ultralytics loads
    a Paddle export with, computes the eager outputs."""
    for module, pip in (("paddle", "paddlepaddle"), ("x2paddle", "x2paddle")):
        pytest.importorskip(module, reason=f"pip install {pip}")
    import paddle.inference as pdi
    import x2paddle.convert

    monkeypatch.setattr(x2paddle.convert, "ConverterCheck", bench._NoFeedback)  # no telemetry post
    module, x = scconv_for_export(variant, stride, fused), torch.randn(1, 32, 12, 10)
    with torch.no_grad():
        expected = module(x)
    x2paddle.convert.pytorch2paddle(module=module, save_dir=str(tmp_path), jit_type="trace", input_examples=[x])
    config = pdi.Config(str(next(tmp_path.rglob("*.json"))), str(next(tmp_path.rglob("*.pdiparams"))))
    predictor = pdi.create_predictor(config)
    predictor.get_input_handle(predictor.get_input_names()[0]).copy_from_cpu(x.numpy())
    predictor.run()
    got = torch.from_numpy(predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu())
    assert bench.relative_difference(got, expected) <= TOL


@pytest.mark.slow
def test_scconv_yolo_paddle_export_loads_back_through_ultralytics_and_matches_pytorch(tmp_path):
    """yolov5-scconv-n through Ultralytics' own Paddle export and loader (benchmarks/exports.py's cell, in its
    subprocess: offline, no auto-install, x2paddle's telemetry blocked)."""
    missing = bench.missing_packages("paddle")
    if missing:
        pytest.skip(f"pip install {' '.join(missing)}")
    weights = bench.build_checkpoint("yolov5-scconv-n.yaml", tmp_path)
    result = bench.run_cell(weights, "paddle", IMGSZ, 600, tmp_path)
    assert result["status"] == "ok", result
    assert result["rel"] <= TOL


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["paddle", "mnn"])
def test_ssdconv_exports_to_paddle_and_mnn_load_back_and_match_pytorch(fmt, tmp_path):
    """SSDConv's export form (yolo_spd/modules/ssdconv.py): x2paddle has no reciprocal ('Model is not supported
    yet'); MNN 3.6 reduced ReduceL2 over every axis and its loaded model returned no output. One benchmark cell: the
    export in a subprocess with the converters' telemetry blocked, loaded back with YOLO(path), compared with torch."""
    missing = bench.missing_packages(fmt)
    if missing:
        pytest.skip(f"pip install {' '.join(missing)} (the export extra)")
    weights = bench.build_checkpoint("yolov5-ssdconv-n.yaml", tmp_path)
    result = bench.run_cell(weights, fmt, IMGSZ, 900, tmp_path)
    assert result["status"] == "ok", result.get("error")
    assert result["rel"] <= TOL


# ---------------------------------------------------------------------------------------------------- the SPD fold
# model.fuse() folds SPD-Conv's space-to-depth into strided convolutions (yolo_spd/modules/spd_fold.py): in ONNX each
# is one Conv with asymmetric pads, which MNN, onnx2tf (SavedModel, pb) and AMD Quark (Xilinx) read; traced or
# torch.export-ed at the export size it is a plain convolution (tests/test_spd_fold.py checks those graphs).

#: The formats the CI tests above do not export, each run as one benchmarks/exports.py cell; a format whose packages
#: are not installed here (the export extra, or its own venv: benchmarks.exports.OWN_ENV) is skipped.
HEAVY_FORMATS = ("mnn", "paddle", "executorch", "coreai", "tflite", "saved_model", "pb", "coreml", "xilinx")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", HEAVY_FORMATS)
def test_folded_yolov5_spd_exports_load_back_and_match_pytorch(fmt, tmp_path):
    """yolov5-spd-n holds every fold kind (the 6 x 6 stem, 2 x 2 convolutions after a SpaceToDepth row, and the
    head's split convolutions): Ultralytics exports it, loads it back (Core AI: its own runtime; CoreML: converts
    only) and computes PyTorch's output."""
    missing = bench.missing_packages(fmt)
    if missing:
        pytest.skip(f"pip install {' '.join(missing)}" + (f' (its own venv: ".[{bench.OWN_ENV[fmt]}]")'
                                                           if fmt in bench.OWN_ENV else " (the export extra)"))
    weights = bench.build_checkpoint("yolov5-spd-n.yaml", tmp_path)
    result = bench.run_cell(weights, fmt, IMGSZ, 900, tmp_path)
    if fmt in bench.CONVERSION_ONLY:
        assert result["status"] == "converted", result.get("error")
        return
    assert result["status"] == "ok", result.get("error")
    assert result["rel"] <= bench.format_tolerance(fmt, TOL)


@pytest.mark.parametrize("k", [1, 3])
def test_mnn_keeps_the_asymmetric_pads_of_a_folded_convolution(k, tmp_path, monkeypatch):
    """MNN's converter takes the folded Conv's asymmetric ONNX pads (bottom/right one more than top/left) as they
    are: on odd sizes, where that extra row and column is read, MNN computes PyTorch's output, as on even ones."""
    pytest.importorskip("MNN", reason="pip install MNN (the export extra)")
    monkeypatch.setitem(sys.modules, "MNN.tools.utils.log", None)  # bench.block_converter_telemetry: no SDK install
    import MNN
    from MNN.tools import mnnconvert

    from yolo_spd.modules.spd import SPDStridedConv2d

    generator = torch.Generator().manual_seed(k)
    conv = SPDStridedConv2d.from_spd(torch.randn(8, 12, k, k, generator=generator), torch.randn(8, generator=generator),
                                     2).eval()
    for h, w in [(7, 9), (8, 8)]:
        x = torch.randn(1, 3, h, w, generator=generator)
        onnx_file, mnn_file = tmp_path / f"conv{h}x{w}.onnx", tmp_path / f"conv{h}x{w}.mnn"
        torch.onnx.export(conv, x, str(onnx_file), input_names=["x"], output_names=["y"], dynamo=False,
                          opset_version=18)
        import onnx

        pads = [list(a.ints) for n in onnx.load(str(onnx_file)).graph.node for a in n.attribute if a.name == "pads"]
        assert pads == [[k - 1, k - 1, k, k]]  # s (k // 2) top/left, one more bottom/right
        mnnconvert.convert(["mnnconvert", "-f", "ONNX", "--modelFile", str(onnx_file), "--MNNModel", str(mnn_file),
                            "--bizCode", "MNN"])
        net = MNN.nn.load_module_from_file(str(mnn_file), ["x"], ["y"])
        out = net.forward([MNN.expr.const(x.numpy(), [1, 3, h, w], MNN.expr.NCHW)])[0]
        got = torch.from_numpy(np.array(MNN.expr.convert(out, MNN.expr.NCHW).read()))
        with torch.no_grad():
            expected = conv(x)
        assert got.shape == expected.shape == (1, 8, -(-h // 2), -(-w // 2))
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("k", [1, 3])
def test_onnx2tf_keeps_the_asymmetric_pads_of_a_folded_convolution(k, tmp_path, monkeypatch):
    """The same for onnx2tf (Ultralytics' SavedModel and GraphDef route; its venv: the export-tf extra): the Keras
    model it converts the folded Conv to computes PyTorch's output on odd sizes as on even ones."""
    missing = [pip for module, pip in bench.FORMATS["saved_model"].items() if importlib.util.find_spec(module) is None]
    if missing:
        pytest.skip(f"pip install {' '.join(missing)} (its own venv: \".[export-tf]\")")
    import onnx2tf

    from yolo_spd.modules.spd import SPDStridedConv2d

    monkeypatch.chdir(tmp_path)
    bench.onnx2tf_sample_images(tmp_path)  # onnx2tf reads it from the working directory (else: a download)
    generator = torch.Generator().manual_seed(k)
    conv = SPDStridedConv2d.from_spd(torch.randn(8, 12, k, k, generator=generator), torch.randn(8, generator=generator),
                                     2).eval()
    for h, w in [(7, 9), (8, 8)]:
        x = torch.randn(1, 3, h, w, generator=generator)
        onnx_file = tmp_path / f"conv{h}x{w}.onnx"
        torch.onnx.export(conv, x, str(onnx_file), input_names=["x"], output_names=["y"], dynamo=False,
                          opset_version=18)
        keras_model = onnx2tf.convert(input_onnx_file_path=str(onnx_file), output_folder_path=str(tmp_path / "tf"),
                                      not_use_onnxsim=True, verbosity="error", disable_group_convolution=True)
        got = torch.from_numpy(np.asarray(keras_model(x.permute(0, 2, 3, 1).numpy()))).permute(0, 3, 1, 2)
        with torch.no_grad():
            expected = conv(x)
        assert got.shape == expected.shape == (1, 8, -(-h // 2), -(-w // 2))
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------------------------------------------- merged tables
# benchmarks/exports.py --merge: TFLite and SavedModel run in their own venv (numpy < 2.2, protobuf < 6) and their rows
# go into the table the main environment wrote, each row with the package versions it was measured with.

MODELS2 = ["yolov8n.yaml", "yolov5-spd-n.yaml"]
MAIN_VERSIONS = {"torch": "2.14.1", "ultralytics": "8.4.190", "numpy": "2.4.6", "onnx": "1.23.2",
                 "onnxruntime": "1.32.0", "litert-torch": None, "ai-edge-litert": None, "tensorflow": None}
TF_VERSIONS = {"torch": "2.14.1", "ultralytics": "8.4.190", "numpy": "2.1.3", "litert-torch": "0.10.0",
               "ai-edge-litert": "2.3.0", "tensorflow": "2.19.1", "onnx": "1.21.0"}


def cells(status, **fields):
    return {model: {"status": status, **fields} for model in MODELS2}


def main_table():
    results = {"onnx": cells("ok", rel=1.9e-7, format="onnx"),
               "tflite": cells("missing", error="missing: litert-torch", format="tflite"),
               "coreml": cells("converted", format="coreml")}
    return bench.run_payload("python benchmarks/exports.py", 64, 1e-3, MODELS2, list(results), results, MAIN_VERSIONS)


def test_merge_replaces_only_the_run_rows_and_each_row_keeps_its_own_versions():
    run = bench.run_payload("python benchmarks/exports.py --formats saved_model,tflite --merge", 64, 1e-3,
                            MODELS2[::-1], ["saved_model", "tflite"],
                            {"saved_model": cells("error", error="ValueError: bad op", format="saved_model"),
                             "tflite": cells("ok", rel=2.5e-7, format="tflite")}, TF_VERSIONS)
    table = main_table()
    merged = bench.merge_payload(table, run)
    assert table == main_table()  # the inputs are left as they were
    assert merged["formats"] == ["onnx", "tflite", "saved_model", "coreml"]  # the script's format order
    assert merged["models"] == MODELS2  # the table's model order, whatever the run's
    assert merged["results"]["onnx"] == table["results"]["onnx"]
    assert merged["results"]["coreml"] == table["results"]["coreml"]
    assert merged["results"]["tflite"] == run["results"]["tflite"]
    assert [env["formats"] for env in merged["environments"]] == [["onnx", "coreml"], ["saved_model", "tflite"]]

    text = bench.render_markdown(merged)
    main_line, tf_line = (line for line in text.splitlines() if line.startswith("- "))
    assert main_line.startswith("- onnx, coreml: `python benchmarks/exports.py`;")
    assert "numpy 2.4.6" in main_line and "onnx 1.23.2" in main_line
    assert "litert-torch" not in main_line and "tensorflow" not in main_line  # no longer this environment's rows
    assert tf_line.startswith('- saved_model, tflite: `python benchmarks/exports.py --formats saved_model,tflite '
                              '--merge`, in a venv with `pip install -e ".[export-tf]"`;')
    assert "numpy 2.1.3" in tf_line and "litert-torch 0.10.0" in tf_line and "tensorflow 2.19.1" in tf_line
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    assert rows["tflite"] == "| tflite | ok 2.5e-07 | ok 2.5e-07 |"
    assert rows["saved_model"] == "| saved_model | ValueError: bad op | ValueError: bad op |"
    assert rows["onnx"] == "| onnx | ok 1.9e-07 | ok 1.9e-07 |"

    again = bench.merge_payload(merged, {**run, "environments": [{**run["environments"][0], "formats": ["tflite"]}],
                                         "formats": ["tflite"]})
    # a second merge of one of them moves just that row to the newer environment
    assert [env["formats"] for env in again["environments"]] == [["onnx", "coreml"], ["saved_model"], ["tflite"]]


def test_merge_upgrades_a_table_written_with_one_versions_entry():
    legacy = {"imgsz": 64, "tol": 1e-3, "versions": MAIN_VERSIONS, "results": main_table()["results"]}
    run = bench.run_payload("cmd", 64, 1e-3, MODELS2, ["tflite"], {"tflite": cells("ok", rel=1e-7, format="tflite")},
                            TF_VERSIONS)
    merged = bench.merge_payload(legacy, run)
    assert merged["models"] == MODELS2
    assert merged["environments"][0] == {"command": "python benchmarks/exports.py", "formats": ["onnx", "coreml"],
                                         "versions": MAIN_VERSIONS}


def test_merge_of_some_models_replaces_just_their_cells_and_lists_their_environment():
    """A column measured again (after a change to one model's modules): its cells in the run's rows change, every
    other cell and environment stays; a second such run supersedes the first, a whole-row run supersedes both."""
    column = {f: {"yolov5-spd-n.yaml": {"status": "ok", "rel": 2.5e-7, "format": f}} for f in ("onnx", "coreml")}
    run = bench.run_payload("python benchmarks/exports.py --formats onnx,coreml --models yolov5-spd-n.yaml --merge",
                            64, 1e-3, ["yolov5-spd-n.yaml"], ["onnx", "coreml"], column, MAIN_VERSIONS)
    table = main_table()
    merged = bench.merge_payload(table, run)
    assert table == main_table()
    assert merged["formats"] == table["formats"] and merged["models"] == MODELS2
    for fmt in ("onnx", "coreml"):
        assert merged["results"][fmt] == {"yolov8n.yaml": table["results"][fmt]["yolov8n.yaml"],
                                          "yolov5-spd-n.yaml": column[fmt]["yolov5-spd-n.yaml"]}
    assert merged["results"]["tflite"] == table["results"]["tflite"]

    def cells_of(payload):  # (formats, models) per environment
        return [(env["formats"], env.get("models")) for env in payload["environments"]]

    assert cells_of(merged) == [(["tflite"], None), (["onnx", "coreml"], ["yolov8n.yaml"]),
                                (["onnx", "coreml"], ["yolov5-spd-n.yaml"])]
    assert merged["environments"][1]["versions"] == table["environments"][0]["versions"]
    text = bench.render_markdown(merged)
    lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert lines[0].startswith("- tflite: `python benchmarks/exports.py`, in a venv")
    assert lines[1].startswith("- yolov8n in onnx, coreml: `python benchmarks/exports.py`;")
    assert lines[2].startswith("- yolov5-spd-n in onnx, coreml: `python benchmarks/exports.py --formats onnx,coreml "
                               "--models yolov5-spd-n.yaml --merge`;")
    assert "| onnx | ok 1.9e-07 | ok 2.5e-07 |" in text
    assert "| coreml | converted (no CoreML runtime on Linux) | ok 2.5e-07 |" in text

    again = bench.merge_payload(merged, {**run, "formats": ["onnx"], "results": {"onnx": column["onnx"]},
                                         "environments": [{**run["environments"][0], "formats": ["onnx"]}]})
    assert cells_of(again) == [(["tflite"], None), (["coreml"], ["yolov8n.yaml"]), (["onnx"], ["yolov8n.yaml"]),
                               (["coreml"], ["yolov5-spd-n.yaml"]), (["onnx"], ["yolov5-spd-n.yaml"])]
    rows = bench.run_payload("cmd", 64, 1e-3, MODELS2, ["onnx", "coreml"],
                             {f: cells("ok", rel=1e-7, format=f) for f in ("onnx", "coreml")}, MAIN_VERSIONS)
    assert cells_of(bench.merge_payload(again, rows)) == [(["tflite"], None), (["onnx", "coreml"], None)]


@pytest.mark.parametrize("change,message", [
    ({"imgsz": 32}, "--merge: this run's --imgsz 32 differs from the table's 64; run it with --imgsz 64"),
    ({"tol": 1e-4}, "--merge: this run's --tol 0.0001 differs from the table's 0.001; run it with --tol 0.001"),
    ({"models": ["yolo11n.yaml"]}, "--merge: --models yolo11n.yaml is not a column of the table; its models are "
                                   "yolov8n.yaml,yolov5-spd-n.yaml"),
    ({"models": MODELS2[:1]}, "--merge: saved_model has no row in the table yet, so it needs every model: run it with "
                              "the table's models (--models yolov8n.yaml,yolov5-spd-n.yaml)"),
])
def test_merge_refuses_a_run_that_cannot_be_merged(change, message):
    run = bench.run_payload("cmd", 64, 1e-3, MODELS2, ["saved_model"], {"saved_model": cells("ok", rel=1e-7)}, {})
    with pytest.raises(ValueError) as raised:
        bench.merge_payload(main_table(), {**run, **change})
    assert str(raised.value) == message


def run_exports_script(*args, cwd):
    return subprocess.run([sys.executable, str(bench.REPO / "benchmarks" / "exports.py"), *args], cwd=cwd,
                          env=child_env(), capture_output=True, text=True, timeout=600)


def test_merge_cli_checks_the_table_before_exporting_anything(tmp_path):
    """Errors in one line, exit 2, before any model is built (a model build would print Ultralytics' summary)."""
    done = run_exports_script("--formats", "torchscript", "--merge", "--out", str(tmp_path / "none"), cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1] == (
        f"exports.py: error: --merge: no table {tmp_path / 'none.json'} to merge into; run "
        f"`python benchmarks/exports.py` first (or name one with --out)")
    bench.write_table(tmp_path / "table", main_table())
    done = run_exports_script("--formats", "torchscript", "--models", ",".join(MODELS2), "--imgsz", "32", "--merge",
                              "--out", str(tmp_path / "table"), cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1] == (
        "exports.py: error: --merge: this run's --imgsz 32 differs from the table's 64; run it with --imgsz 64")


@pytest.mark.slow
def test_merge_cli_adds_a_measured_row_to_an_existing_table(tmp_path):
    """A real run merged through the CLI: its row (measured here) lands in the table, the others are untouched."""
    import importlib.metadata
    import json

    table = main_table()
    table["models"] = ["yolov8n.yaml"]
    table["results"] = {f: {"yolov8n.yaml": row["yolov8n.yaml"]} for f, row in table["results"].items()}
    bench.write_table(tmp_path / "table", table)
    done = run_exports_script("--formats", "torchscript", "--models", "yolov8n.yaml", "--merge", "--out",
                              str(tmp_path / "table"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    merged = json.loads((tmp_path / "table.json").read_text())
    assert merged["formats"] == ["torchscript", "onnx", "tflite", "coreml"]
    cell = merged["results"]["torchscript"]["yolov8n.yaml"]
    assert cell["status"] == "ok" and cell["rel"] <= TOL
    assert {f: merged["results"][f] for f in table["formats"]} == table["results"]
    env = merged["environments"][-1]
    assert env["command"] == "python benchmarks/exports.py --formats torchscript --models yolov8n.yaml --merge"
    assert env["versions"]["numpy"] == np.__version__  # this environment's, recorded for its row
    assert env["versions"]["torch"] == importlib.metadata.version("torch")
    text = (tmp_path / "table.md").read_text()
    assert f"| torchscript | ok {cell['rel']:.1e} |" in text and "| onnx | ok 1.9e-07 |" in text
    assert (tmp_path / "table.md").stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob("*.tmp"))


# -------------------------------------------------------------------------------------------- int8 and own runtimes
# AMD Xilinx quantizes to int8 and calibrates on a data set (Ultralytics' default, coco128, is a download); Core AI's
# export runs on Linux only through its own runtime (Ultralytics' loader for it needs macOS).


def test_int8_formats_get_a_calibration_set_and_the_others_none():
    assert bench.export_arguments("onnx", 64, "calib.yaml") == {"format": "onnx", "imgsz": 64, "device": "cpu"}
    assert bench.export_arguments("xilinx", 64, "calib.yaml") == {"format": "xilinx", "imgsz": 64, "device": "cpu",
                                                                  "int8": True, "data": "calib.yaml"}
    with pytest.raises(ValueError, match="format xilinx quantizes to int8 and needs a calibration data set"):
        bench.export_arguments("xilinx", 64, None)


def test_calibration_set_is_a_dataset_ultralytics_reads_offline(tmp_path, monkeypatch):
    """The stand-in for coco128: real photos (crops of the two Ultralytics ships), read by Ultralytics' own dataset
    check and loader the way its int8 exporters read them, with no download."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    monkeypatch.setenv("YOLO_OFFLINE", "true")
    names = {0: "person", 1: "bus"}
    path = bench.calibration_dataset(tmp_path, names, count=6, size=96)
    images = sorted((tmp_path / "calibration" / "images").glob("*.jpg"))
    assert len(images) == 6
    pixels = [cv2.imread(str(f)) for f in images]
    assert all(p.shape == (96, 96, 3) for p in pixels)
    assert len({p.tobytes() for p in pixels}) == 6 and min(float(p.std()) for p in pixels) > 10  # distinct, not flat
    data = check_det_dataset(str(path))
    assert data["names"] == names and data["nc"] == 2
    dataset = build_yolo_dataset(get_cfg(overrides={"imgsz": 64}), data["val"], 2, data, mode="val")
    assert len(dataset) == 6
    assert bench.calibration_dataset(tmp_path, {0: "other"}) == path  # an existing set is kept
    assert check_det_dataset(str(path))["names"] == names


def test_int8_and_own_runtime_cells_say_what_they_are():
    ok = {"status": "ok", "rel": 5e-3}
    assert bench.cell_text({**ok, "format": "xilinx"}, 1e-3) == "ok 5.0e-03"  # int8: within a few int8 steps
    assert bench.cell_text({**ok, "format": "xilinx", "rel": 2e-2}, 1e-3) == "FAIL 2.0e-02"
    assert bench.cell_text({**ok, "format": "onnx"}, 1e-3) == "FAIL 5.0e-03"  # a float format keeps --tol
    assert bench.cell_text({"status": "ok", "rel": 1.3e-7, "runtime": "own", "format": "coreai"}, 1e-3) == (
        "ok 1.3e-07 (own runtime)")
    results = {"coreai": cells("ok", rel=1.3e-7, runtime="own", format="coreai"),
               "xilinx": cells("ok", rel=1.6e-5, format="xilinx")}
    text = bench.render_markdown(bench.run_payload("cmd", 64, 1e-3, MODELS2, list(results), results, {}))
    assert "int8 formats, calibrated on `--data`" in text and "ok at <= xilinx 0.01" in text
    assert "'(own runtime)'" in text and "coreai: Ultralytics' Core AI loader works on macOS only" in text
    plain = bench.render_markdown(main_table())
    assert "int8" not in plain and "own runtime" not in plain  # notes only for the rows that need them


def test_every_own_venv_format_names_an_extra_of_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    extras = tomllib.loads((bench.REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(bench.OWN_ENV) <= set(bench.FORMATS)
    for fmt, extra in bench.OWN_ENV.items():
        listed = {re.split(r"[<>=\[ ;]", requirement)[0].lower().replace("_", "-") for requirement in extras[extra]}
        wanted = {pip.lower().replace("_", "-") for pip in bench.FORMATS[fmt].values()}
        assert wanted <= listed, (fmt, extra, wanted - listed)


# ---------------------------------------------------------------------------------------------------- torch.export
# ExecuTorch and Core AI export through torch.export. Under it the modules take their export forms too: the eager
# inference paths write into torch.empty_like buffers through out= arguments, which Core AI's converter cannot lower
# (aten.empty_permuted: "The exported program contains unsupported ATen ops").


@pytest.mark.parametrize("variant", ["paper", "release"])
@pytest.mark.parametrize("stride", [1, 2])
def test_torch_export_takes_the_export_forms_and_matches_eager(variant, stride):
    from tests.test_fast_equivalence import randomize_norms
    from yolo_spd import SCConv, SSDConv, fuse_modules

    x = torch.randn(1, 32, 12, 10)
    for module in (SCConv(32, 48, s=stride, variant=variant), SSDConv(32, 48, s=stride)):
        randomize_norms(module).eval()
        model = fuse_modules(torch.nn.Sequential(module)).eval()  # as Ultralytics exports it
        with torch.no_grad():
            expected = model(x)
            program = torch.export.export(model, (x,))
        ops = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
        names = {op.split(".")[1] for op in ops if op.startswith("aten.")}
        assert not names & {"empty_like", "empty", "empty_permuted", "gt", "lerp", "addcmul", "baddbmm"}, sorted(ops)
        if isinstance(module, SSDConv):  # fake tensors: the fold fuse() kept cannot be checked, so the step form
            assert "batch_norm" in names
        with torch.no_grad():
            torch.testing.assert_close(program.module()(x), expected, rtol=1e-5, atol=1e-5)
