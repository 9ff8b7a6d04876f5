"""benchmarks/gpu.py, the prepared GPU benchmark of issue 19, run on the CPU: ``--device cpu --quick`` measures every
part on a tiny generated dataset and writes gpu.json / gpu.md with a row for every module, model pair and trained
model; bad input is refused with one error line before anything is measured."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from types import SimpleNamespace

import pytest

from .conftest import REPO, child_env, load_script, make_yolo_dataset

SCRIPT = REPO / "benchmarks" / "gpu.py"


def run_script(*args, cwd, timeout=600):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """One quick CPU run of all three parts (about 40 s of CPU time on this project's 2-core machine)."""
    root = tmp_path_factory.mktemp("gpu_script")
    data = make_yolo_dataset(root / "data", n_train=4, n_val=2, size=64)
    out = root / "out"
    done = run_script("--device", "cpu", "--quick", "--data", data, "--out", out, cwd=root)
    return done, out


def test_the_cpu_check_writes_every_row(cpu_run):
    done, out = cpu_run
    assert done.returncode == 0, done.stderr[-3000:]
    gpu = load_script("gpu")
    results = json.loads((out / "gpu.json").read_text())
    device = results["device"]
    assert device["type"] == "cpu" and device["name"].startswith("CPU") and device["torch"] and device["ultralytics"]
    precisions = list(gpu.PRECISIONS)

    modules = {(row["module"].split("(")[0], row["precision"]) for row in results["modules"]}
    assert modules == {(name, p) for name in ("SCConv", "SSDConv", "SPDConv", "SpaceToDepth") for p in precisions}
    assert len(results["modules"]) == (len(gpu.module_cases(16)) + 1) * len(precisions)  # per shape: cases + S2D
    pairs = [(row["model"], row["baseline"], row["precision"]) for row in results["models"]]
    assert pairs == [(m, b, p) for p in precisions for m, b in gpu.PAIRS]
    assert [row["model"] for row in results["training"]] == gpu.MODELS
    assert len(gpu.MODELS) == 8 and {"yolov5nu", "yolov8n", "yolo11n"} <= set(gpu.MODELS)

    def positive(value):
        return isinstance(value, float) and math.isfinite(value) and value > 0

    assert all({"train_cl_ratio", "first_step_ms", "first_step_base_ms"} <= set(row) for row in results["models"])
    assert results["settings"]["trainer_channels_last"] is False  # Ultralytics' trainer: channels-last on CUDA only
    for row in results["modules"] + results["models"]:
        assert all(positive(row[key]) for key in row if key.endswith(("_ms", "_ratio"))), row
    for row in results["training"]:
        assert row["status"] == "ok" and row["images"] == 4 and row["batches"] == 2, row
        assert positive(row["epoch_s"]) and positive(row["images_per_s"]) and row["amp"] is False  # no AMP on CPU
        assert row["epochs"] == 2 and positive(row["images_per_s_last_epoch"])  # the steady epoch, after the first

    report = (out / "gpu.md").read_text()
    assert report == gpu.markdown(results) and report.strip() in done.stdout  # stdout is the report alone
    assert report.startswith(f"# benchmarks/gpu.py on {device['name']}")
    for heading in ("## Modules", "## n configs against their baselines", "## 2 training epochs with AMP"):
        assert heading in report
    for name in gpu.MODELS:
        assert f"| {name} | 4 |" in report


@pytest.mark.parametrize("args,message", [
    (["--device", "cuda", "--parts", "modules"], "CUDA is not available"),
    (["--device", "tpu", "--parts", "modules"], "--device 'tpu'"),
    (["--device", "cpu", "--parts", "modules"], "--device cpu needs --out DIR"),
    (["--device", "cpu", "--out", "o", "--data", "missing.yaml"], "--data missing.yaml: no such file"),
    (["--device", "cpu", "--out", "o"], "the train part needs --data"),
    (["--device", "cpu", "--out", "o", "--parts", "modules", "--repeats", "0"], "--repeats: invalid integer >= 1"),
    (["--device", "cpu", "--out", "o", "--parts", "speed"], "--parts: invalid choice: 'speed'"),
])  # fmt: skip
def test_bad_input_is_one_error_line_before_any_measuring(args, message, tmp_path):
    if "cuda" in args and __import__("torch").cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = run_script(*args, cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("gpu.py: error: ") and message in last, done.stderr
    assert not (tmp_path / "o").exists()  # nothing written


def test_results_csv_is_read_without_polars(tmp_path):
    """The stand-in for Ultralytics' polars reader (the GPU machine has no polars) reads results.csv as polars would."""
    gpu = load_script("gpu")
    csv = tmp_path / "results.csv"
    csv.write_text("epoch,time,  train/box_loss,metrics/mAP50(B)\n1,2.5,1.25,0.0\n2,5.0,1.0,nan\n")
    columns = gpu.results_csv_without_polars(SimpleNamespace(csv=csv))
    assert list(columns) == ["epoch", "time", "train/box_loss", "metrics/mAP50(B)"]
    assert columns["epoch"] == [1.0, 2.0] and columns["train/box_loss"] == [1.25, 1.0]
    assert math.isnan(columns["metrics/mAP50(B)"][1])
    assert gpu.results_csv_without_polars(SimpleNamespace(csv=tmp_path / "none.csv")) == {}


def test_from_json_renders_a_run_and_refuses_what_is_not_one(tmp_path):
    """--from-json measures nothing: it writes FILE.md from a run's gpu.json (and the docs block with --write-docs);
    a missing file or another JSON is one error line, and nothing is written."""
    source = REPO / "benchmarks" / "results" / "gpu-models.json"
    run = tmp_path / "gpu-models.json"
    run.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("# p\n\n<!-- BEGIN generated: gpu-models -->\nSTALE-TEXT\n<!-- END generated: gpu-models -->\n")
    done = run_script("--from-json", run, "--write-docs", page, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    gpu = load_script("gpu")
    results = json.loads(source.read_text(encoding="utf-8"))
    assert (tmp_path / "gpu-models.md").read_text(encoding="utf-8") == gpu.markdown(results)
    assert "STALE-TEXT" not in page.read_text() and "| yolo11-spd-n / yolo11n | fp16 |" in page.read_text()
    assert "### n configs against their baselines" in page.read_text()  # a section inside the page's own

    other, empty = tmp_path / "other.json", tmp_path / "empty.json"
    other.write_text('{"rows": []}')
    empty.write_text('{"device": {}, "settings": {}}')
    for args, message in [(["--from-json", tmp_path / "none.json"], "none.json"),
                          (["--from-json", other], "not a gpu.json of benchmarks/gpu.py"),
                          (["--from-json", empty], "not a complete gpu.json of benchmarks/gpu.py (KeyError"),
                          (["--from-json", run, "--write-docs", tmp_path / "nopage.md"], "--write-docs"),
                          (["--device", "cpu", "--out", "o", "--parts", "modules", "--write-docs", page],
                           "--write-docs goes with --from-json")]:
        done = run_script(*args, cwd=tmp_path, timeout=120)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("gpu.py: error: ") and message in last, done.stderr
    assert not any((tmp_path / f"{name}.md").exists() for name in ("other", "empty", "nopage"))
    assert not (tmp_path / "o").exists()
