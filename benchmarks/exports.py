"""Export parity: every Ultralytics export format that runs on a CPU-only Linux machine, for stock yolov8n and each
yolo_spd family at scale n.

For each (model, format) the model (built from its YAML with a fixed seed and randomised normalisation statistics,
so nothing is downloaded) is saved as a checkpoint, exported with Ultralytics' ``YOLO(pt).export(format=...)``,
loaded back with ``YOLO(exported)`` and run on one fixed random image through the loaded backend; its raw output
(boxes + class scores before NMS, shape (1, 4 + nc, anchors)) is compared with PyTorch's. A cell is ``ok`` with the
max relative difference max|export - torch| / max|torch|, or ``FAIL`` with the difference when it exceeds
``--tol``, or the error in one line (``missing: ...`` when the format's optional package is not installed). CoreML
is conversion only: its runtime does not exist on Linux. Core AI is run by its own Linux runtime (Ultralytics' loader
for it works on macOS only, :data:`OWN_RUNTIME`). AMD Xilinx quantizes to int8, calibrated on ``--data`` (default: a
small set made from the photos Ultralytics ships), with its own tolerance (:data:`QUANTIZED_TOL`).

Each cell runs in its own subprocess (a converter that crashes or hangs costs one cell, not the run).

    python benchmarks/exports.py                       # all formats x all models, imgsz 64
    python benchmarks/exports.py --formats ncnn,onnx --models yolov8n.yaml,yolov5-spd-n.yaml
    ../venv-tf/bin/python benchmarks/exports.py --formats tflite,saved_model,pb,coreml --merge  # their own venv

Writes benchmarks/results/exports.md and exports.json (a filtered run writes exports-<formats>.md/.json instead;
``--out STEM`` names the files). TFLite (LiteRT), TensorFlow SavedModel and GraphDef (pb) need packages that cannot
share an environment with the other formats (numpy < 2.2, protobuf < 6), CoreML an older numpy than 2.4, and AMD
Xilinx an older onnx than 1.23 (see :data:`OWN_ENV`): run them from their own venv with ``--merge``, which replaces
just their rows in the existing table and records that venv's package versions for them (docs/export.md has the
recipe).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

#: Stock yolov8n is the reference of what works here; stock yolo11n shows what yolo11-spd inherits from YOLO11.
MODELS = ("yolov8n.yaml", "yolo11n.yaml", "yolov5-spd-n.yaml", "yolov8-spd-n.yaml", "yolo11-spd-n.yaml",
          "yolov5-scconv-n.yaml", "yolov5-ssdconv-n.yaml")
#: format -> the modules its export (and load-back) imports, with the pip package that provides each.
FORMATS = {
    "torchscript": {},
    "onnx": {"onnx": "onnx", "onnxruntime": "onnxruntime"},
    "openvino": {"openvino": "openvino"},
    "ncnn": {"ncnn": "ncnn", "pnnx": "pnnx"},
    "mnn": {"MNN": "MNN"},
    "tflite": {"litert_torch": "litert-torch", "ai_edge_litert": "ai-edge-litert"},  # Ultralytics >= 8.4.83: LiteRT
    # The onnx2tf route (also .pb, edgetpu): the ONNX export (simplified), then onnx2tf with everything it imports.
    "saved_model": {"tensorflow": "tensorflow", "tf_keras": "tf_keras", "onnx2tf": "onnx2tf", "sng4onnx": "sng4onnx",
                    "onnx_graphsurgeon": "onnx_graphsurgeon", "ai_edge_litert": "ai-edge-litert", "onnx": "onnx",
                    "onnxruntime": "onnxruntime", "onnxslim": "onnxslim"},
    "pb": {},  # filled in below: saved_model's packages (Ultralytics freezes the SavedModel's Keras model)
    "paddle": {"paddle": "paddlepaddle", "x2paddle": "x2paddle", "six": "six"},  # x2paddle imports six undeclared
    "executorch": {"executorch": "executorch"},
    "coreml": {"coremltools": "coremltools"},
    "coreai": {"coreai_torch": "coreai-torch", "coreai": "coreai-core"},  # Apple Core AI: converter and runtime
    # AMD Xilinx (Vitis AI): AMD Quark quantizes the ONNX export to int8; ONNX Runtime runs it on a CPU.
    "xilinx": {"quark": "amd-quark", "onnx": "onnx", "onnxruntime": "onnxruntime", "onnxslim": "onnxslim"},
}
FORMATS["pb"] = dict(FORMATS["saved_model"])
CONVERSION_ONLY = {"coreml": "converted (no CoreML runtime on Linux)"}
#: Formats whose export Ultralytics cannot load back here, run by their own runtime instead
#: (:func:`own_runtime_output`): format -> why, as the table says it. Ultralytics 8.4.190's Core AI backend opens the
#: .aimodel with ``AIModel.load``, which on Linux finds no program in it ("No such file or directory": the Linux
#: runtime in coreai-core runs the ODIX form that ``AIModelAsset.executable()`` lowers the asset to; on macOS the OS
#: specialises the asset itself).
OWN_RUNTIME = {"coreai": "Ultralytics' Core AI loader works on macOS only; the cell runs the Linux runtime "
                         "coreai-core ships"}
#: Formats that quantize to int8, calibrated on ``data`` (Ultralytics' default is coco128, a download; offline the run
#: makes a small set from the photos Ultralytics ships, see calibration_dataset), with their own tolerance: int8 of a
#: float model is off by a few int8 steps (1/255) of the output's range at most (stock yolov8n is the reference).
QUANTIZED_TOL = {"xilinx": 1e-2}
#: Formats measured in a venv of their own, with this extra installed; ``--merge`` puts their rows into the main
#: table (docs/export.md). TFLite and SavedModel: TensorFlow 2.19 needs numpy < 2.2 and protobuf < 6, and the other
#: formats here are tested with numpy 2.4 and protobuf 7. CoreML: Ultralytics asks for numpy <= 2.3.5 (coremltools
#: 9.0 fails on YOLO11's attention block under numpy 2.4 with "only 0-dimensional arrays can be converted to Python
#: scalars"; it converts under the venv's numpy 2.1). AMD Xilinx: AMD Quark 0.13 needs onnx <= 1.22, and the other
#: formats here are tested with onnx 1.23.
OWN_ENV = {"tflite": "export-tf", "saved_model": "export-tf", "pb": "export-tf", "coreml": "export-tf",
           "xilinx": "export-xilinx"}
#: Packages that matter to every format (CoreML's converter, for one, depends on the numpy release).
COMMON_PACKAGES = ("torch", "ultralytics", "numpy")
#: The formats Ultralytics converts through onnx2tf (a SavedModel first), which reads its sample file
#: (:func:`onnx2tf_sample_images`).
ONNX2TF_FORMATS = ("saved_model", "pb")
SEED = 0
TOL = 1e-3
#: Formats whose Ultralytics runtime may compute in reduced precision. OpenVINO's CPU plugin runs bfloat16 on CPUs
#: with AMX or AVX512-BF16 (Ultralytics forces float32 only on ARM64 and Windows): about 3 significant digits.
REDUCED_PRECISION_TOL = {"openvino": 1e-2}


def missing_packages(fmt: str) -> list[str]:
    """The pip packages ``fmt`` needs that are not importable here (checked without importing them)."""
    return [pip for module, pip in FORMATS[fmt].items() if importlib.util.find_spec(module) is None]


def build_checkpoint(model: str, folder: Path, seed: int = SEED, names: list[str] | None = None) -> Path:
    """``model`` built from its YAML with seeded random weights and randomised norm statistics, saved as a .pt
    (detecting the classes ``names`` instead of the YAML's when given)."""
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    import yolo_spd  # noqa: F401  (registers the modules)

    torch.manual_seed(seed)
    yolo = YOLO(model)
    if names is not None:
        torch.manual_seed(seed)
        yolo.model = DetectionModel({**yolo.model.yaml, "nc": len(names)}, nc=len(names), verbose=False)
        yolo.model.names = dict(enumerate(names))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in yolo.model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=generator) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=generator) * 0.6 - 0.3)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=generator) * 0.6 - 0.3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + 0.5)
    path = folder / model.replace(".yaml", ".pt")
    yolo.save(str(path))
    return path


def example_image(imgsz: int, seed: int = SEED):
    """The fixed (1, 3, imgsz, imgsz) input in [0, 1] every format is compared on."""
    import torch

    return torch.rand(1, 3, imgsz, imgsz, generator=torch.Generator().manual_seed(seed))


def torch_output(weights: Path, x):
    """The PyTorch reference: the checkpoint's model in eval mode (unfused, as trained), first output."""
    import torch
    from ultralytics import YOLO

    model = YOLO(str(weights)).model.float().eval()
    with torch.no_grad():
        return first_tensor(model(x))


def first_tensor(output):
    import numpy as np
    import torch

    while isinstance(output, (list, tuple)):
        output = output[0]
    return output.detach().cpu().float() if isinstance(output, torch.Tensor) else torch.from_numpy(np.asarray(output))


def loaded_output(exported: str, x, imgsz: int):
    """Load ``exported`` through Ultralytics (``YOLO(path)``) and return its backend's raw output on ``x``."""
    import numpy as np
    from ultralytics import YOLO

    yolo = YOLO(exported, task="detect")
    yolo.predict(np.zeros((imgsz, imgsz, 3), np.uint8), imgsz=imgsz, device="cpu", verbose=False)  # sets up backend
    return first_tensor(yolo.predictor.model(x))


def relative_difference(got, expected) -> float:
    """max|got - expected| / max|expected|: the error relative to the output's scale (boxes in px, scores in [0,1])."""
    if tuple(got.shape) != tuple(expected.shape):
        raise ValueError(f"output shape {tuple(got.shape)} != PyTorch's {tuple(expected.shape)}")
    return float((got - expected).abs().max() / expected.abs().max().clamp(min=1e-12))


def export_arguments(fmt: str, imgsz: int, data: str | None = None) -> dict:
    """The keyword arguments of ``YOLO.export`` for one cell: a quantized format (:data:`QUANTIZED_TOL`) also gets
    its calibration set ``data`` (required for those)."""
    arguments = {"format": fmt, "imgsz": imgsz, "device": "cpu"}
    if fmt in QUANTIZED_TOL:
        if not data:
            raise ValueError(f"format {fmt} quantizes to int8 and needs a calibration data set (data=)")
        arguments.update(int8=True, data=str(data))
    return arguments


def photo_crops(count: int, size: int, seed: int = SEED) -> list:
    """``count`` seeded square crops (BGR, uint8, ``size`` x ``size``) of the photos Ultralytics ships (bus.jpg,
    zidane.jpg), taken in turn: each a random square of half to all of the photo's shorter side."""
    import cv2
    import numpy as np
    from ultralytics.utils import ASSETS

    rng = np.random.default_rng(seed)
    photos = [cv2.imread(str(f)) for f in sorted(ASSETS.glob("*.jpg"))]
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crops.append(cv2.resize(photo[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA))
    return crops


def calibration_dataset(folder: Path, names: dict, count: int = 16, size: int = 160, seed: int = SEED) -> Path:
    """A small calibration set for the int8 formats in ``folder`` (its data YAML's path): ``count`` seeded square
    crops, ``size`` px, of the photos Ultralytics ships (bus.jpg, zidane.jpg), unlabelled, as the val (and train)
    split, with the model's class ``names``. Ultralytics' default calibration set (coco128) is a download; real
    photos give the activation ranges a real image has, which random noise does not. An existing YAML is kept."""
    import cv2
    import yaml

    path = folder / "calibration.yaml"
    if path.exists():
        return path
    images = folder / "calibration" / "images"
    images.mkdir(parents=True, exist_ok=True)
    for i, crop in enumerate(photo_crops(count, size, seed)):
        cv2.imwrite(str(images / f"{i:03d}.jpg"), crop)
    spec = {"path": str(images.parent), "train": "images", "val": "images", "names": dict(names)}
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(yaml.safe_dump(spec, sort_keys=False))
    temporary.replace(path)
    return path


def own_runtime_output(fmt: str, exported: str, x):
    """``exported`` run by its format's own runtime (:data:`OWN_RUNTIME`), first output."""
    if fmt != "coreai":
        raise ValueError(f"no own runtime for {fmt}")
    import asyncio

    import torch
    from coreai.authoring.asset import AIModelAsset
    from coreai.runtime import NDArray

    async def run():
        async with AIModelAsset.load(exported).executable() as model:  # lowers the asset to ODIX, as Linux needs
            function = model.load_function("main")
            if asyncio.iscoroutine(function):
                function = await function
            names = function.desc
            outputs = await function({names.input_names[0]: NDArray(x.numpy())})
            first = outputs[names.output_names[0]] if isinstance(outputs, dict) else outputs[0]
            return torch.from_numpy(first.numpy() if hasattr(first, "numpy") else first)

    return first_tensor(asyncio.run(run()))


def export_and_compare(weights: Path, fmt: str, imgsz: int, data: str | None = None) -> dict:
    """Export ``weights`` to ``fmt``, load it back and compare with PyTorch; the result cell as a dict."""
    from ultralytics import YOLO

    x = example_image(imgsz)
    expected = torch_output(weights, x)
    exported = YOLO(str(weights)).export(**export_arguments(fmt, imgsz, data))
    if not exported:
        raise RuntimeError("export returned nothing")
    if fmt in CONVERSION_ONLY:
        return {"status": "converted", "path": str(exported)}
    if fmt in OWN_RUNTIME:
        got = own_runtime_output(fmt, str(exported), x)
        return {"status": "ok", "rel": relative_difference(got, expected), "path": str(exported), "runtime": "own"}
    got = loaded_output(str(exported), x, imgsz)
    result = {"status": "ok", "rel": relative_difference(got, expected), "path": str(exported)}
    if fmt == "openvino":
        result["rel_f32"] = relative_difference(openvino_f32_output(str(exported), x), expected)
    return result


class _NoFeedback:
    """Stands in for x2paddle's ``ConverterCheck`` thread, which posts each conversion to a server."""

    def __init__(self, *args, **kwargs):
        pass

    def start(self):
        pass


def block_converter_telemetry(fmt: str) -> None:
    """Keep converters from phoning home. MNN's converter imports ``MNN.tools.utils.log``, which pip-installs
    aliyun-log-python-sdk when missing (downgrading protobuf under onnx) and posts each conversion to a server;
    x2paddle posts each conversion too. Both are optional telemetry: blocked, the conversions are unchanged."""
    if fmt == "mnn":
        sys.modules.setdefault("MNN.tools.utils.log", None)  # mnnconvert's `except:` then sets mnn_logger = None
    if fmt == "paddle":
        import x2paddle.convert

        x2paddle.convert.ConverterCheck = _NoFeedback


def onnx2tf_sample_images(folder: Path, seed: int = SEED) -> Path:
    """onnx2tf's sample-image file (``yolo_spd.cli.ONNX2TF_SAMPLE``) in ``folder``, made from the two photos
    Ultralytics ships (bus.jpg, zidane.jpg): 20 seeded square crops resized to 128 x 128, RGB, float32 in [0, 1],
    NHWC. onnx2tf runs its converted graph on them; Ultralytics downloads the original (real photos of the same
    layout) before converting, so offline the cell writes this one first. An existing file is kept."""
    import numpy as np

    from yolo_spd.cli import ONNX2TF_SAMPLE  # the cell runs with this checkout on its path

    path = folder / ONNX2TF_SAMPLE
    if path.exists():
        return path
    rgb = [crop[..., ::-1] for crop in photo_crops(20, 128, seed)]
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        np.save(file, np.stack(rgb).astype(np.float32) / 255.0)
    temporary.replace(path)
    return path


def _worker(weights: str, fmt: str, imgsz: int, data: str = "") -> None:
    """Subprocess entry: one cell, printed as a JSON line after a marker (Ultralytics logs to stdout too)."""
    try:
        block_converter_telemetry(fmt)
        if fmt in ONNX2TF_FORMATS:
            onnx2tf_sample_images(Path.cwd())  # where Ultralytics and onnx2tf look for it
        if fmt in QUANTIZED_TOL and not data:
            import torch

            names = torch.load(weights, map_location="cpu", weights_only=False)["model"].names
            data = str(calibration_dataset(Path.cwd(), names))
        result = export_and_compare(Path(weights), fmt, imgsz, data or None)
    except BaseException as error:  # noqa: BLE001  (any failure is this cell's result)
        result = {"status": "error", "error": one_line(error)}
    print("\n@@CELL@@" + json.dumps(result), flush=True)


def one_line(error: BaseException) -> str:
    """The error as one table cell: its first line that says what is unsupported, else its first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = next((line for line in lines if "not supported" in line), lines[0] if lines else type(error).__name__)
    return (text if text.startswith(type(error).__name__) else f"{type(error).__name__}: {text}")[:160]


def run_cell(weights: Path, fmt: str, imgsz: int, timeout: int, workdir: Path, data: str | None = None) -> dict:
    missing = missing_packages(fmt)
    if missing:
        if fmt in OWN_ENV:  # installed here, they would downgrade numpy (and protobuf) under the other formats
            return {"status": "missing", "error": f"missing: {', '.join(missing)}; run it in its own venv with "
                                                  f'pip install -e ".[{OWN_ENV[fmt]}]" (docs/export.md)'}
        return {"status": "missing", "error": f"missing: pip install {' '.join(missing)}"}
    env = dict(os.environ, YOLO_OFFLINE="true", YOLO_AUTOINSTALL="false")  # never pip-install from inside a cell
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(weights), fmt, str(imgsz), data or ""]
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": f"timed out after {timeout} s"}
    seconds = round(time.perf_counter() - start, 1)
    marker = proc.stdout.rfind("@@CELL@@")
    if marker < 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return {"status": "error", "error": f"crashed (exit {proc.returncode}): {tail[0][:160]}", "seconds": seconds}
    result = json.loads(proc.stdout[marker + len("@@CELL@@"):].strip().splitlines()[0])
    result.pop("path", None)
    return {**result, "seconds": seconds}


def format_tolerance(fmt: str, tol: float = TOL) -> float:
    return max(tol, REDUCED_PRECISION_TOL.get(fmt, 0.0), QUANTIZED_TOL.get(fmt, 0.0))


def openvino_f32_output(exported: str, x):
    """The OpenVINO export run by OpenVINO itself at float32 inference precision (the parity of the IR itself,
    without the bfloat16 the CPU plugin picks on AMX CPUs)."""
    import openvino as ov
    import torch

    xml = next(Path(exported).glob("*.xml"))
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": ov.Type.f32})
    return torch.from_numpy(compiled(x.numpy())[0])


def cell_text(result: dict, tol: float) -> str:
    if result["status"] == "ok":
        tol = format_tolerance(result.get("format", ""), tol)
        text = f"{'ok' if result['rel'] <= tol else 'FAIL'} {result['rel']:.1e}"
        if result.get("runtime") == "own":
            text += " (own runtime)"
        return text + (f" (f32 {result['rel_f32']:.1e})" if "rel_f32" in result else "")
    if result["status"] == "converted":
        return CONVERSION_ONLY.get(result.get("format", ""), "converted")
    return result["error"].replace("|", "/")


def table(results: dict, models: list[str], formats: list[str], tol: float) -> str:
    lines = ["| format | " + " | ".join(m.replace(".yaml", "") for m in models) + " |",
             "|---" * (len(models) + 1) + "|"]
    for fmt in formats:
        lines.append(f"| {fmt} | " + " | ".join(cell_text(results[fmt][m], tol) for m in models) + " |")
    return "\n".join(lines)


def environment_packages(formats: list[str]) -> list[str]:
    """The packages whose versions a row of ``formats`` depends on: the common ones, then each format's own."""
    return list(COMMON_PACKAGES) + sorted({pip for f in formats for pip in FORMATS[f].values()})


def versions(formats: list[str]) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in environment_packages(formats):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def run_payload(command: str, imgsz: int, tol: float, models: list[str], formats: list[str], results: dict,
                found: dict) -> dict:
    """What a run writes to its .json: the cells, and the environment (command, package versions) that made them."""
    return {"imgsz": imgsz, "tol": tol, "models": list(models), "formats": list(formats), "results": results,
            "environments": [{"command": command, "formats": list(formats), "versions": found}]}


def upgrade_payload(payload: dict) -> dict:
    """A table written before runs could be merged (one ``versions`` for the whole table) in today's layout."""
    if "environments" in payload:
        return payload
    formats = list(payload["results"])
    models = list(payload["results"][formats[0]]) if formats else []
    return {"imgsz": payload["imgsz"], "tol": payload["tol"], "models": models, "formats": formats,
            "results": payload["results"],
            "environments": [{"command": "python benchmarks/exports.py", "formats": formats,
                              "versions": payload["versions"]}]}


def check_mergeable(table: dict, imgsz: int, tol: float, models: list[str], formats: list[str]) -> None:
    """Raise ValueError, naming the option to change, unless a run with these settings can be merged into ``table``:
    the table's image size and tolerance, and either all its models (whole rows) or some of them in rows the table
    already has (those cells only)."""
    table = upgrade_payload(table)
    for key, value in (("imgsz", imgsz), ("tol", tol)):
        if value != table[key]:
            raise ValueError(f"--merge: this run's --{key} {value:g} differs from the table's {table[key]:g}; "
                             f"run it with --{key} {table[key]:g}")
    unknown = [m for m in models if m not in table["models"]]
    if unknown:
        raise ValueError(f"--merge: --models {','.join(unknown)} is not a column of the table; its models are "
                         f"{','.join(table['models'])}")
    new_rows = [f for f in formats if f not in table["formats"]]
    if sorted(models) != sorted(table["models"]) and new_rows:
        raise ValueError(f"--merge: {','.join(new_rows)} has no row in the table yet, so it needs every model: run it "
                         f"with the table's models (--models {','.join(table['models'])})")


def merge_payload(table: dict, run: dict) -> dict:
    """``table`` with what ``run`` measured put in; everything else, and the package versions it was measured with,
    stays as it was. A run of all the table's models replaces the rows of its formats (a new one added in the usual
    format order, and their old environments dropped); a run of some of them (a column re-measured after a change to
    one model's modules) replaces just those cells. Each environment lists the cells it measured that the table still
    shows: its formats, and its models where it no longer holds every model of them. Either run must use the table's
    image size and tolerance (:func:`check_mergeable`)."""
    table = upgrade_payload(table)
    check_mergeable(table, run["imgsz"], run["tol"], run["models"], run["formats"])
    merged = set(run["formats"])
    whole_rows = sorted(run["models"]) == sorted(table["models"])
    if whole_rows:
        formats = [f for f in FORMATS if f in merged or f in table["formats"]]
        results = {f: run["results"][f] if f in merged else table["results"][f] for f in formats}
        environments = run["environments"]
    else:
        formats = table["formats"]
        results = {f: {m: run["results"][f].get(m, cell) for m, cell in table["results"][f].items()} if f in merged
                   else table["results"][f] for f in formats}
        environments = [{**env, "models": list(run["models"])} for env in run["environments"]]

    def remaining(env: dict) -> list[dict]:
        """An earlier environment less the cells this run measured again: its other formats as they were, and in
        this run's formats the models this run did not measure (listed with their models)."""
        models = [m for m in env.get("models", table["models"]) if m not in run["models"]]
        untouched = [f for f in env["formats"] if f not in merged]
        touched = [f for f in env["formats"] if f in merged]
        parts = [{**env, "formats": untouched}] if untouched else []
        if touched and models:
            parts.append({**env, "formats": touched, "models": models})
        return parts

    kept = [part for env in table["environments"] for part in remaining(env)]
    environments = [env for env in kept if env["formats"]] + environments
    return {**table, "formats": formats, "results": results, "environments": environments}


def render_markdown(payload: dict) -> str:
    """The table as benchmarks/results/exports.md: what a cell means, the package versions of each environment that
    measured rows of it, then the format x model table."""
    tol, formats, environments = payload["tol"], payload["formats"], payload["environments"]
    loose = [f"{f} {format_tolerance(f, tol):g}" for f in REDUCED_PRECISION_TOL if f in formats]
    quantized = [f"{f} {format_tolerance(f, tol):g}" for f in QUANTIZED_TOL if f in formats]
    own = [f"{f}: {OWN_RUNTIME[f]}" for f in OWN_RUNTIME if f in formats]
    source = f", from `{environments[0]['command']}`" if len(environments) == 1 else ""
    text = (
        f"Export parity at imgsz {payload['imgsz']}{source}: each cell is max|export - torch| / max|torch| of the "
        f"raw output (boxes and scores before NMS) on one random image, with the export loaded back through "
        f"Ultralytics (`YOLO(path)`); ok at <= {tol:g}"
        + (f" ({', '.join(loose)}: its runtime computes in bfloat16 on CPUs with AMX or AVX512-BF16; '(f32 ...)' is "
           "the same export run by its own runtime at float32)" if loose else "")
        + (f"; int8 formats, calibrated on `--data` (default: 16 crops of the photos Ultralytics ships), ok at "
           f"<= {', '.join(quantized)}" if quantized else "")
        + (f". '(own runtime)': the export run by its format's own runtime, not `YOLO(path)` ({'; '.join(own)})"
           if own else "")
        + ".\n\n"
    )

    def listed(env: dict) -> str:
        names = [n for n in environment_packages(env["formats"]) if n in env["versions"]]
        return ", ".join(f"{n} {env['versions'][n] or 'not installed'}" for n in names)

    if len(environments) == 1:
        text += f"Versions: {listed(environments[0])}\n\n"
    else:
        text += "Rows by environment (each with its own package versions):\n\n"
        for env in environments:
            extras = {OWN_ENV.get(f, "") for f in env["formats"]}
            own = extras.pop() if len(extras) == 1 else ""  # every row of this environment needs the same extra
            venv = f', in a venv with `pip install -e ".[{own}]"`' if own else ""
            cells = env.get("models")  # some models' cells of these rows
            rows = ", ".join(env["formats"])
            what = rows if cells is None else f"{', '.join(m.replace('.yaml', '') for m in cells)} in {rows}"
            text += f"- {what}: `{env['command']}`{venv}; {listed(env)}\n"
        text += "\n"
    return text + table(payload["results"], payload["models"], formats, tol) + "\n"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.chmod(temporary, 0o644)
    temporary.replace(path)


def write_table(stem: Path, payload: dict) -> None:
    """``payload`` as ``stem``.json and its rendering as ``stem``.md."""
    write_atomic(stem.with_suffix(".json"), json.dumps(payload, indent=2) + "\n")
    write_atomic(stem.with_suffix(".md"), render_markdown(payload))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model YAMLs")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, from {', '.join(FORMATS)}")
    parser.add_argument("--imgsz", type=int, default=64)
    parser.add_argument("--tol", type=float, default=TOL, help="max relative difference counted as ok")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--out", default=None, help="result file stem (default: results/exports[-formats]; with "
                                                    "--merge: the table to merge into, default results/exports)")
    parser.add_argument("--merge", action="store_true",
                        help="replace the measured formats' rows in the existing table (--out) instead of writing a "
                             "new one, or with --models naming some of its models just those cells; for formats run "
                             "in another environment, or a column re-measured after a change (docs/export.md)")
    parser.add_argument("--data", default=None, help="calibration data YAML for the int8 formats (default: a small "
                                                      "set made from the photos Ultralytics ships)")
    parser.add_argument("--worker", nargs=4, metavar=("WEIGHTS", "FORMAT", "IMGSZ", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker[0], args.worker[1], int(args.worker[2]), args.worker[3])
        return 0
    models, formats = args.models.split(","), args.formats.split(",")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        parser.error(f"--formats {','.join(unknown)}: unknown; choose from {', '.join(FORMATS)}")
    full = args.models == ",".join(MODELS) and args.formats == ",".join(FORMATS)
    stem_name = "exports" if full or args.merge else "exports-" + "-".join(formats)
    stem = Path(args.out) if args.out else RESULTS / stem_name
    table_payload = None
    if args.merge:  # checked before the run, not after it
        if not stem.with_suffix(".json").is_file():
            parser.error(f"--merge: no table {stem.with_suffix('.json')} to merge into; run "
                         f"`python benchmarks/exports.py` first (or name one with --out)")
        table_payload = json.loads(stem.with_suffix(".json").read_text())
        try:
            check_mergeable(table_payload, args.imgsz, args.tol, models, formats)
        except ValueError as error:
            parser.error(str(error))
    if args.data:  # each cell runs in its own folder
        args.data = str(Path(args.data).resolve())
    if str(REPO) not in sys.path:  # build the checkpoints with this checkout's yolo_spd, as the cells export with it
        sys.path.insert(0, str(REPO))  # (run_cell puts it on their PYTHONPATH), whatever the venv has installed
    results = {fmt: {} for fmt in formats}
    with tempfile.TemporaryDirectory(prefix="yolo_spd_exports_") as tmp:
        for model in models:
            folder = Path(tmp) / Path(model).stem  # a YAML given by path: its name only, inside tmp
            folder.mkdir()
            weights = build_checkpoint(model, folder)
            for fmt in formats:
                result = {**run_cell(weights, fmt, args.imgsz, args.timeout, folder, args.data), "format": fmt}
                results[fmt][model] = result
                print(f"{fmt:12s} {model:24s} {cell_text(result, args.tol)}", flush=True)
    print("\n" + table(results, models, formats, args.tol))
    command = "python benchmarks/exports.py" + "".join(
        f" --{name} {value}" for name, value, default in (("formats", args.formats, ",".join(FORMATS)),
                                                          ("models", args.models, ",".join(MODELS)),
                                                          ("imgsz", args.imgsz, 64), ("tol", args.tol, TOL),
                                                          ("data", args.data, None))
        if value != default) + (" --merge" if args.merge else "")
    payload = run_payload(command, args.imgsz, args.tol, models, formats, results, versions(formats))
    if table_payload is not None:
        payload = merge_payload(table_payload, payload)
    write_table(stem, payload)
    print(f"\nwrote {stem.with_suffix('.md')} and .json" + (" (merged)" if args.merge else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
