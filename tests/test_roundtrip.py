"""Round trip: train yolov5-spd-n one epoch, then reload the checkpoint in fresh processes (stock Ultralytics
predict, the plain ``yolo val`` CLI, restricted loading) and export to ONNX."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import child_env, make_yolo_dataset

pytestmark = pytest.mark.slow
IMGSZ = 64


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(best.pt, data.yaml, an image) after one CPU epoch of yolov5-spd-n on a generated 2-class dataset."""
    from ultralytics import YOLO

    import yolo_spd  # noqa: F401  (registers the modules)

    root = tmp_path_factory.mktemp("roundtrip")
    data = make_yolo_dataset(root / "data")
    YOLO("yolov5-spd-n.yaml").train(
        data=str(data), epochs=1, imgsz=IMGSZ, batch=4, workers=0, device="cpu", plots=False,
        project=str(root / "runs"), name="train", exist_ok=True, verbose=False, amp=False, seed=0,
    )
    best = root / "runs" / "train" / "weights" / "best.pt"
    assert best.is_file()
    return best, data, next((root / "data" / "images" / "val").glob("*.jpg"))


def run_python(code: str, cwd: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=child_env(**env), capture_output=True, text=True)


def test_checkpoint_predicts_in_a_fresh_process_without_importing_yolo_spd(trained, tmp_path):
    best, _, image = trained
    code = (
        "import sys\n"
        "from ultralytics import YOLO\n"
        f"model = YOLO({str(best)!r})\n"
        # read before predict, which fuses the model in place in older 8.4 releases
        "loaded = type(model.model.model[2]).__name__\n"
        f"result = model.predict({str(image)!r}, imgsz={IMGSZ}, conf=0.0001, verbose=False)[0]\n"
        "print('yolo_spd' in sys.modules, loaded, len(result.boxes) > 0)\n"
    )
    out = run_python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-3:] == ["True", "SpaceToDepth", "True"]  # unpickling imported and registered it


def yolo_executable() -> str:
    beside_python = Path(sys.executable).with_name("yolo")
    found = str(beside_python) if beside_python.exists() else shutil.which("yolo")
    if found is None:
        pytest.fail("the 'yolo' command from the ultralytics package is not installed")
    return found


def test_plain_yolo_val_cli_validates_the_checkpoint(trained, tmp_path):
    best, data, _ = trained
    cmd = [
        yolo_executable(), "val", f"model={best}", f"data={data}", f"imgsz={IMGSZ}", "batch=4", "workers=0",
        "device=cpu", "plots=False", f"project={tmp_path}", "name=val", "save_json=False",
    ]
    out = subprocess.run(cmd, cwd=tmp_path, env=child_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    summary = [line for line in (out.stdout + out.stderr).splitlines() if line.strip().startswith("all")]
    assert summary, "no 'all' summary row in yolo val output"
    assert len(summary[-1].split()) == 7  # all, images, instances, P, R, mAP50, mAP50-95


def test_checkpoint_loads_under_ultralytics_safe_load(trained, tmp_path):
    best, _, image = trained
    code = (
        "import yolo_spd\n"
        "from ultralytics import YOLO\n"
        "from ultralytics.nn.tasks import _SafeLoad\n"
        "assert _SafeLoad.restricted()\n"
        f"model = YOLO({str(best)!r})\n"
        "loaded = type(model.model.model[2]).__name__\n"
        f"model.predict({str(image)!r}, imgsz={IMGSZ}, verbose=False)\n"
        "print('loaded', loaded)\n"
    )
    out = run_python(code, tmp_path, ULTRALYTICS_SAFE_LOAD="true")  # "1" works only in later 8.4 releases
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["loaded", "SpaceToDepth"]


def test_onnx_export_matches_pytorch(trained, tmp_path):
    """ONNX Runtime vs PyTorch on the same input. Tolerance: boxes are in pixels (0..64) and class scores in
    [0, 1]; float32 reassociation in the exported graph stays well below 1e-3 absolute on both."""
    import onnxruntime as ort
    from ultralytics import YOLO

    best, _, _ = trained
    work = tmp_path / "best.pt"
    shutil.copy(best, work)
    onnx_file = YOLO(str(work)).export(format="onnx", imgsz=IMGSZ, simplify=True, dynamic=False)
    assert Path(onnx_file).is_file()

    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    model = YOLO(str(work)).model.float().eval()
    with torch.no_grad():
        expected = model(x)[0].numpy()
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == expected.shape == (1, 4 + 2, (IMGSZ // 8) ** 2 + (IMGSZ // 16) ** 2 + (IMGSZ // 32) ** 2)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)
    assert float(np.abs(expected).max()) > 1.0  # the comparison is not between two near-zero tensors
