"""The yolo-spd command: argument handling, val on saved detections, and train -> val -> predict -> export end to end."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil

import numpy as np
import pytest

from yolo_spd import cli
from yolo_spd.evaluation import build_ground_truth, evaluate_predictions, resolve_split, run_cocoeval
from yolo_spd.markdown import parse_table

from .conftest import REPO, make_yolo_dataset


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_SPD_CACHE", str(tmp_path / "cache"))


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "text, value",
    [("none", None), ("True", True), ("false", False), ("3", 3), ("0.5", 0.5), ("1e-3", 1e-3), ("[1, 2]", [1, 2]),
     ("runs/x", "runs/x"), ("0,16,32", "0,16,32")],
)
def test_values_parse_like_ultralytics(text, value):
    assert cli.parse_value(text) == value


@pytest.mark.parametrize("tokens, parsed", [
    (["epochs", "=", "3"], {"epochs": 3}), (["epochs", "=3"], {"epochs": 3}), (["epochs=", "3"], {"epochs": 3}),
    (["imgsz=[320,", "256]", "epochs=2"], {"imgsz": [320, 256], "epochs": 2}),
    (["imgsz", "=", "[320,", "256]"], {"imgsz": [320, 256]}),
    (["name=", "save_txt"], {"name": "", "save_txt": True}),  # a bare flag after `k=` is an argument of its own
])
def test_arguments_the_shell_split_are_joined_as_yolo_joins_them(tokens, parsed):
    """``epochs = 3`` and ``imgsz=[320, 256]`` (unquoted) were refused; Ultralytics' ``yolo`` joins them."""
    allowed = set(cli.TRAIN_KEYS) | cli.ultralytics_keys()
    assert cli.parse_pairs(tokens, allowed) == parsed


def test_ultralytics_messages_become_one_line_and_only_the_label_scan_is_cut():
    scan = ("No valid images found in /d/labels/train.cache.\n  \x1b[34m\x1b[1mtrain: \x1b[0m/d/a.jpg: class 5\n"
            "  train: /d/b.jpg: class 5\n  train: /d/c.jpg: class 5\nSee https://docs.ultralytics.com/datasets for "
            "dataset formatting guidance.")
    assert cli.one_line(scan, listed=1) == ("No valid images found in /d/labels/train.cache. train: /d/a.jpg: class 5 "
                                            "(and 2 more)")
    device = "Invalid CUDA 'device=0' requested.\ntorch.cuda.is_available(): False\ntorch.cuda.device_count(): 0\n"
    assert cli.one_line(device) == ("Invalid CUDA 'device=0' requested. torch.cuda.is_available(): False "
                                    "torch.cuda.device_count(): 0")


@pytest.mark.parametrize("mode", ["study", "train"])
def test_ctrl_c_in_a_command_that_continues_says_how_instead_of_a_traceback(monkeypatch, mode):
    def interrupted(tokens):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.RUNNERS, mode, interrupted)
    code, _, err = run(mode, "epochs=1")
    assert code == 130 and err.splitlines() == [f"yolo-spd: interrupted; {cli.CONTINUE_AFTER_INTERRUPT[mode]}"]
    monkeypatch.setitem(cli.RUNNERS, "val", interrupted)
    with pytest.raises(KeyboardInterrupt):  # nothing to continue: as Python ends it
        run("val", "weights=x.pt")


def test_an_unclosed_bracket_is_one_error_not_a_swallowed_command():
    code, _, err = run("train", "imgsz=[320,", "epochs=2")
    assert code == 2 and err.strip() == ("yolo-spd: error: 'imgsz=[320,epochs=2' has an unmatched bracket; give a "
                                         "list as key=[a,b] (quoted if it has spaces)")


@pytest.mark.parametrize("argv", [["help"], ["--help"], [], ["-h"]])
def test_help_names_the_modes_and_which_cfg_is_which(argv):
    code, out, _ = run(*argv)
    assert code == 0
    assert all(mode in out for mode in cli.MODES)
    assert "cfg=MODEL.yaml" in out and "overrides=FILE.yaml" in out


@pytest.mark.parametrize("mode", [m for m in cli.MODES if m != "help"])
def test_mode_help_gives_every_key_of_that_mode_and_no_other_modes_keys(mode):
    """`yolo-spd study help` printed the whole help (as `yolo train help` does), where the study's keys are one
    section among six: now each mode's help has each of its own keys, those of no feature it lacks, its examples and
    its docs page."""
    code, out, _ = run(mode, "help")
    assert code == 0 and out.startswith(f"yolo-spd {mode}: ")
    assert run(mode, "--help")[1] == run("help", mode)[1] == out
    missing = [key for key in cli.mode_keys(mode) if f"{key}=" not in out]
    assert missing == []
    foreign = {"cfg=MODEL.yaml": "train", "latency=False": "info", "slice=640": "val compare predict study",
               "tile=640": "slice study", "models=A,B": "study", "predictions=FILE.json": "val", "out=DIR": "slice"}
    assert [k for k, modes in foreign.items() if (k in out) != (mode in modes.split())] == []
    examples = out.split("Examples:\n", 1)[1].split("\n\n")[0].splitlines()
    assert examples and all(line.lstrip().startswith(f"yolo-spd {mode}") for line in examples)
    assert out.rstrip().endswith(f"More: {cli.MODE_PAGES[mode]}; every mode: yolo-spd help")
    assert (REPO / cli.MODE_PAGES[mode]).is_file()


def test_help_after_a_misspelled_mode_is_the_did_you_mean_error_not_the_help():
    code, out, err = run("stduy", "help")
    assert code == 2 and out == "" and "'stduy' is not a yolo-spd mode" in err and "did you mean study?" in err


def test_a_bare_boolean_key_means_true_as_in_ultralytics():
    keys = {"per_class", "save_json", "save_txt", "epochs", "slice_full"}
    args = cli.parse_pairs(["per_class", "--save-json", "save_txt", "slice_full=False", "epochs=3"], keys)
    assert args == {"per_class": True, "save_json": True, "save_txt": True, "slice_full": False, "epochs": 3}
    with pytest.raises(cli.UsageError, match=r"^'epochs' needs a value: epochs=VALUE; see yolo-spd help$"):
        cli.parse_pairs(["epochs"], keys)
    with pytest.raises(cli.UsageError, match=r"^'rect' is not a key=value argument"):  # a flag this mode lacks
        cli.parse_pairs(["rect"], keys)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["trian"], "'trian' is not a yolo-spd mode; .* \\(did you mean train\\?\\)"),
        (["train", "epoch=3"], "'epoch' is not a valid yolo-spd argument; similar keys: epochs"),
        (["val", "weights"], "'weights' needs a value: weights=VALUE"),
        (["val", "weightz"], "'weightz' is not a key=value argument"),
        (["train", "cfg=missing.yaml"], "cfg=missing.yaml: no such model YAML"),
        (["train", "cfg=yolov5-spd-n.yaml", "model=yolov5-spd-s.yaml"], "cfg= or model=, not both"),
        (["train", "model=weights-i-do-not-have.pt"], "file not found \\(yolo_spd never downloads weights\\)"),
        # a config's name as `yolo-spd info` lists it: the file name is what YOLO() takes
        (["train", "cfg=yolov5-spd-n"], "^yolo-spd: error: cfg=yolov5-spd-n: not found; the packaged config is "
                                        "cfg=yolov5-spd-n.yaml$"),
        (["predict", "weights=yolo11-spd-s"], "the packaged config is weights=yolo11-spd-s.yaml$"),
        (["train", "cfg=yolov9-spd-n"], "cfg=yolov9-spd-n: not found; expected a model YAML"),  # no such config
        # predict and export name the model model=, as yolo does, and take val's weights= too, under that name
        (["export", "weights=i-do-not-have.pt"], "^yolo-spd: error: weights=i-do-not-have.pt: file not found"),
        (["predict", "weights=a.pt", "model=b.pt"], "give the model once: model= or weights=, not both"),
        (["export", "format=onnx"], "export needs model=PATH.pt"),
        (["val", "weights=x.pt"], "data= is required"),
        (["val", "weights=x.pt", "predictions=p.json"], "not both"),
        (["val", "weights=a.pt", "model=b.pt", "data=coco.yaml"], "give the model once: weights= or model=, not both"),
        (["val", "data=coco.yaml"], "val needs weights="),
        (["val", "sizes=huge", "predictions=p.json", "data=d.yaml"], "no such dataset YAML|sizes=huge"),
    ],
)
def test_bad_arguments_get_one_error_line(argv, message):
    code, out, err = run(*argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("yolo-spd: error: ")
    import re

    assert re.search(message, err), err


def test_cfg_must_be_a_model_yaml_and_overrides_is_ultralytics_cfg(tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text("epochs: 3\nimgsz: 64\n")
    code, _, err = run("train", f"cfg={settings}")
    assert code == 2 and "is not a model YAML" in err and "overrides=" in err
    dataset = tmp_path / "data.yaml"
    dataset.write_text("train: images/train\nval: images/val\nnames: [a]\n")
    code, _, err = run("study", f"models=yolov5nu.yaml,{dataset}", f"data={dataset}")
    assert code == 2 and err.strip().endswith("is not a model YAML (it has no 'backbone:'); a dataset YAML goes in data=")
    code, _, err = run("predict", f"model={settings}")  # overrides= is train's key: not pointed to elsewhere
    assert code == 2 and err.strip().endswith("is not a model YAML (it has no 'backbone:')")
    settings.write_text("epochs: 3\nval: false\n")  # val: a training key here, not a dataset split
    code, _, err = run("train", f"cfg={settings}")
    assert code == 2 and err.strip().endswith("for an Ultralytics settings-override file use overrides=")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    code, _, err = run("train", "cfg=yolov5-spd-n.yaml", f"overrides={bad}")
    assert code == 2 and "unknown Ultralytics keys epochz" in err


def test_val_on_a_predictions_file_writes_the_run_folder(tmp_path):
    data = make_yolo_dataset(tmp_path / "data", n_train=2, n_val=4)
    truth = build_ground_truth(resolve_split(data))
    detections = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.5}
                  for a in truth.coco["annotations"][::2]]
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps(detections))
    code, out, err = run("val", f"predictions={preds}", f"data={data}", f"project={tmp_path / 'runs'}", "name=v",
                         "per_class=True")
    assert code == 0, err
    saved = json.loads((tmp_path / "runs" / "v" / "coco_eval.json").read_text())
    assert saved["metrics"] == pytest.approx(evaluate_predictions(resolve_split(data), preds).metrics)
    assert "<- AP_S" in out and "| red |" in out  # summary and per-class table
    header, values = (tmp_path / "runs" / "v" / "coco_eval.csv").read_text().splitlines()
    assert header.split(",")[2:] == list(saved["metrics"]) and float(values.split(",")[2]) == pytest.approx(
        saved["metrics"]["AP"], abs=1e-6)
    assert not list((tmp_path / "runs" / "v").glob(".*tmp"))  # no temporary files left behind
    assert "note:" not in err
    code, _, err = run("val", f"predictions={preds}", f"data={data}", f"project={tmp_path / 'runs'}", "name=v",
                       "exist_ok", "conf=0.5", "max_det=5", "imgsz=999")  # ignored silently: all detections scored
    assert code == 0 and err.strip() == ("yolo-spd: note: val predictions= scores the file's detections as they are "
                                         "and ignores conf=, imgsz=, max_det= (Ultralytics' keys for running a model)")
    assert json.loads((tmp_path / "runs" / "v" / "coco_eval.json").read_text())["metrics"] == saved["metrics"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """`yolo-spd train` for one epoch on a generated dataset: (data.yaml, runs folder, common val arguments)."""
    root = tmp_path_factory.mktemp("cli")
    data = make_yolo_dataset(root / "data", n_train=8, n_val=4)
    runs = root / "runs"
    common = ["imgsz=64", "batch=4", "workers=0", "device=cpu", f"project={runs}"]
    code, _, err = run("train", "cfg=yolov5-spd-n.yaml", f"data={data}", "epochs=1", "amp=False", "plots=False",
                       "name=train", *common)
    assert code == 0, err
    return data, runs, common


@pytest.mark.slow
def test_train_then_val_predict_export_end_to_end(trained_run, tmp_path, caplog):
    data, runs, common = trained_run
    train_eval = json.loads((runs / "train" / "coco_eval.json").read_text())
    assert train_eval["ground_truth"].startswith("YOLO labels") and "AP_small" in train_eval["metrics"]
    best = runs / "train" / "weights" / "best.pt"

    caplog.clear()
    with caplog.at_level("INFO"):
        code, out, err = run("val", f"weights={best}", f"data={data}", "name=val", "conf=0.001", *common)
    logged = caplog.text  # Ultralytics' logger, not redirected with sys.stdout
    assert code == 0, err
    val_dir = runs / "val"
    saved = json.loads((val_dir / "coco_eval.json").read_text())
    detections = json.loads((val_dir / "coco_predictions.json").read_text())
    assert saved["detections"] == len(detections) > 0
    rescored = run_cocoeval(build_ground_truth(resolve_split(data)), detections)  # the files reproduce the numbers
    assert rescored.metrics == pytest.approx(saved["metrics"], abs=1e-9)
    # Ultralytics' predictions.json (yolo-spd forces save_json on to collect detections) only when asked for; an
    # earlier run's stays where this run wrote none (exist_ok, no detections at conf=1); the log does not say it saves
    # a file the run does not keep
    assert not (val_dir / "predictions.json").exists() and not re.search(r"Saving \S*predictions\.json", logged)
    assert "Results saved to" in logged
    code, _, err = run("val", f"weights={best}", f"data={data}", "name=val", "exist_ok", "save_json", *common)
    assert code == 0 and (val_dir / "predictions.json").is_file(), err
    asked = (val_dir / "predictions.json").read_bytes()
    code, _, err = run("val", f"weights={best}", f"data={data}", "name=val", "exist_ok", "conf=1.0", *common)
    assert code == 0 and (val_dir / "predictions.json").read_bytes() == asked, err

    wrong = tmp_path / "three.yaml"
    wrong.write_text(f"path: {data.parent}\ntrain: images/train\nval: images/val\nnames: [a, b, c]\n")
    code, _, err = run("val", f"weights={best}", f"data={wrong}", *common)
    assert code == 2 and f"detect 2 classes but data={wrong} has 3;" in err  # the whole path: many are data.yaml

    image = next((data.parent / "images" / "val").glob("*.jpg"))
    code, _, err = run("predict", f"model={best}", f"source={image}", "conf=0.0001", "save_txt=True", "name=pred",
                       *common)
    assert code == 0, err
    rows = np.loadtxt(next((runs / "pred" / "labels").glob("*.txt")), ndmin=2)
    assert rows.shape[1] == 5 and set(rows[:, 0]) <= {0, 1}
    code, _, err = run("export", f"weights={best}", "format=onnx", "imgsz=64")  # val's name for it works too
    assert code == 0, err
    assert best.with_suffix(".onnx").stat().st_size > 100_000


@pytest.mark.slow
def test_compare_puts_models_side_by_side_and_refuses_other_class_lists(trained_run, tmp_path):
    import shutil

    import torch

    data, runs, common = trained_run
    best = runs / "train" / "weights" / "best.pt"
    a, b = tmp_path / "a" / "weights" / "best.pt", tmp_path / "b" / "weights" / "best.pt"
    for copy in (a, b):
        copy.parent.mkdir(parents=True)
        shutil.copy(best, copy)
    code, out, err = run("compare", f"weights={a},{b}", f"data={data}", "name=cmp", "sizes=aitod", "conf=0.001",
                         *common)
    assert code == 0, err
    saved = json.loads((runs / "cmp" / "compare.json").read_text())
    assert [m["model"] for m in saved["models"]] == ["a/best", "b/best"]  # same stem: run folder disambiguates
    assert saved["models"][0]["metrics"] == saved["models"][1]["metrics"]  # same weights, same evaluator
    assert "AP_verytiny" in saved["models"][0]["metrics"] and "| a/best |" in out
    header = (runs / "cmp" / "compare.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["model", "weights", "params", "AP"] and "AP_tiny" in header and "AR_small" in header
    tex = (runs / "cmp" / "compare.tex").read_text()  # the screen's table, cell for cell, in LaTeX
    md_rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
               if line.startswith("| a/best |") or line.startswith("| model |")]
    tex_rows = [line.removesuffix(r" \\").replace(r"\_", "_").replace(r"\#", "#").split(" & ")
                for line in tex.splitlines() if " & " in line]
    assert tex_rows[:2] == md_rows and len(tex_rows) == 3 and r"\label{tab:compare}" in tex
    assert f"scored by the same evaluator on {data.parent.name if data.stem == 'data' else data.stem} (val split;" in tex
    assert (runs / "cmp" / "compare_ap_by_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, err = run("compare", f"weights={a},{b}", f"data={data}", "name=cmp", "per_class", "conf=0.001",
                         *common)  # per_class was accepted and printed nothing
    assert code == 0, err
    per_class = out.split("Per class, AP / AP_small of each model:")[1]
    rows = {r["class"]: r for r in parse_table(per_class)}
    saved = json.loads((runs / "cmp-2" / "compare.json").read_text())
    for k, name in enumerate(("red", "green")):
        row = saved["models"][0]["per_class"][k]
        cell = " / ".join("-" if row[m] < 0 else f"{row[m]:.3f}" for m in ("AP", "AP_small"))
        assert rows[name]["a/best"] == rows[name]["b/best"] == cell and rows[name]["instances"] == str(row["instances"])

    checkpoint = torch.load(best, weights_only=False)
    checkpoint["model"].names = {0: "cat", 1: "dog"}
    other = tmp_path / "other.pt"
    torch.save(checkpoint, other)
    code, _, err = run("compare", f"weights={a},{other}", f"data={data}", *common)
    assert code == 2 and "other's class 0 is 'cat' but the data names it 'red'; compare only models trained" in err
    code, _, err = run("val", f"weights={other}", f"data={data}", *common)  # val scored 'cat' boxes as 'red', exit 0
    assert code == 2 and err.strip().splitlines() == [
        f"yolo-spd: error: the weights' class 0 is 'cat' but data={data} names class 0 'red'; evaluate on the dataset "
        "the model was trained for"]
    checkpoint["model"].names = {0: "red"}
    torch.save(checkpoint, other)
    code, _, err = run("compare", f"weights={a},{other}", f"data={data}", *common)
    assert code == 2 and "other detects 1 classes [red] but the data has 2 [red, green]" in err


def test_info_prints_the_model_table_with_baseline_ratios():
    code, out, err = run("info", "yolov5-spd-n")
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("| yolov5-spd-n "))
    assert "| yolov5nu |" in row and "3,038,816" in row and "2,141,152" in row


@pytest.mark.parametrize("argv, request_", [
    (["yolov5-spd-*", "imgsz=320"], {"pattern": "yolov5-spd-*", "imgsz": 320}),
    (["imgsz=320", "yolov5-spd-*", "latency", "repeats=3"], {"pattern": "yolov5-spd-*", "imgsz": 320, "latency": True,
                                                          "repeats": 3}),
    (["pattern=11", "threads=2", "wall_time=True", "cache=False"], {"pattern": "11", "threads": 2, "wall_time": True,
                                                                     "cache": False}),
    (["yolov5-spd-n.yaml"], {"pattern": "yolov5-spd-n"}),  # a config's file name, as train and study take it
    (["pattern=1e3"], {"pattern": "1e3"}),  # as typed: a pattern is text, never read as a number
    # the flags it took before key=value, as `python -m yolo_spd.info` still does
    (["--latency", "--no-cache", "--quiet", "--wall-time", "--imgsz=64"], {"latency": True, "cache": False,
                                                                          "verbose": False, "wall_time": True,
                                                                          "imgsz": 64}),
    # split by the shell, joined as yolo joins them (info took "imgsz" alone as a key without a value)
    (["yolov5-spd-*", "imgsz", "=", "320", "repeats=", "3"], {"pattern": "yolov5-spd-*", "imgsz": 320, "repeats": 3}),
    (["model=my.yaml", "baseline=yolov5nu.yaml"], {"model": "my.yaml", "baseline": "yolov5nu.yaml"}),
], ids=["pattern", "bare-boolean", "keys", "file-name", "as-typed", "old-flags", "shell-split", "model"])
def test_info_reads_key_value_arguments_like_the_other_modes(argv, request_, monkeypatch):
    from yolo_spd import info

    seen = []
    monkeypatch.setattr(info, "run", seen.append)
    code, _, err = run("info", *argv)
    assert code == 0, err
    assert seen == [info.InfoRequest(**request_)]


@pytest.mark.parametrize("argv, message", [
    (["imgsz=100"], r"imgsz=100 is not allowed; expected a multiple of 32"),
    (["imgsz=abc"], r"imgsz=abc is not allowed; expected an integer >= 1"),
    (["repeats=0", "latency=True"], r"repeats=0 is not allowed; expected an integer >= 1"),
    (["latency=maybe"], r"latency=maybe: expected True or False"),
    (["no-such-*"], r"no packaged config matches 'no-such-\*'; available: yolo11-spd-n, "),
    (["yolov5-spd-n", "yolov8-spd-n"], r"2 patterns given \(yolov5-spd-n, yolov8-spd-n\); give one"),
    (["yolov5-spd-n", "pattern=yolov8-spd-n"], r"2 patterns given \(yolov5-spd-n, yolov8-spd-n\); give one"),
    (["--imgsz", "64"], r"'--imgsz' needs a value: imgsz=VALUE \(yolo-spd info\)$"),
    (["imgsz", "320"], r"'imgsz' needs a value: imgsz=VALUE \(yolo-spd info\)$"),
    (["--bogus"], r"'--bogus' is not a key=value argument of yolo-spd info; keys: pattern, "),
    (["epochs=3"], r"'epochs' is not a yolo-spd info key; keys: pattern, model, baseline, latency, .* \(no Ultralytics "
                   r"keys\)$"),
    (["baseline=yolov5nu.yaml"], r"baseline=yolov5nu.yaml needs model=: the packaged configs have their own"),
    (["yolov5-*", "model=yolov5-spd-n.yaml"], r"give a pattern \(yolov5-\*\) or model=yolov5-spd-n.yaml, not both"),
    (["model=missing.yaml"], r"model=missing.yaml: no such model YAML here"),
    (["model=yolov5-spd-n.yaml", "baseline=best.onnx"], r"baseline=best.onnx: file not found"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_info_bad_arguments_are_one_error_line_from_the_command(argv, message, tmp_path):
    """As typed in a shell: exit 2, one line naming the value, before any model is built (nothing in the cache)."""
    import re

    from .test_reliability import one_error_line, yolo_spd_command

    out = yolo_spd_command(["info", *argv], tmp_path, YOLO_SPD_CACHE=str(tmp_path / "cache"))
    line = one_error_line(out)
    assert re.search(message, line), line
    assert out.stdout == "" and list(tmp_path.iterdir()) == []


# --- bad weights, output folders and model YAMLs: one error line from a new process (issue 21) -----------------------

BAD_MODEL_YAML = "nc: 2\nbackbone:\n  - [-1, 1, Conv, [16, 3, 2]\n  - [-1, 1, Conv, [32, 3, 2]]\nhead: []\n"


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    """A folder with a dataset, a real 2-class checkpoint (ok.pt, and a copy ok2.pt) and the bad inputs: a text file
    named x.pt, a PyTorch file holding only a state_dict (state.pt), a TorchScript archive (script.pt), a model YAML
    with a syntax error (bad.yaml)."""
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    import yolo_spd  # noqa: F401

    root = tmp_path_factory.mktemp("bad")
    make_yolo_dataset(root / "data", n_train=1, n_val=2, size=64)
    model = YOLO("yolov5-spd-n.yaml")
    model.model = DetectionModel("yolov5-spd-n.yaml", nc=2, verbose=False)
    model.model.names = {0: "red", 1: "green"}
    model.save(root / "ok.pt")
    model.save(root / "ok2.pt")
    (root / "x.pt").write_text("these are not weights\n")
    torch.save(model.model.state_dict(), root / "state.pt")
    torch.jit.trace(torch.nn.Identity(), torch.zeros(1)).save(root / "script.pt")  # an export renamed .pt
    (root / "bad.yaml").write_text(BAD_MODEL_YAML)
    (root / "binary.yaml").write_bytes(b"\xff\xfe\x00lr0: 0.01\n")
    (root / "exported.onnx").write_bytes(b"")  # refused by name before anything reads it
    (root / "resume.yaml").write_text("resume: ok.pt\n")  # resume=PATH from an overrides= file
    (root / "gone.yaml").write_text("resume: gone.pt\n")  # a missing checkpoint, named by the file that gave it
    (root / "values.yaml").write_text("epochs: abc\noptimizer: Foo\n")  # values Ultralytics refuses, in a file
    other = {"images": [{"id": 7, "file_name": "elsewhere.jpg", "width": 64, "height": 64}], "annotations": [],
             "categories": [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}]}
    (root / "data" / "other.json").write_text(json.dumps(other))  # a COCO JSON of other images
    (root / "data" / "cocojson.yaml").write_text((root / "data" / "data.yaml").read_text() + "coco_json: other.json\n")
    for sub in ("a", "b"):  # two val images with the same file name, in different folders
        (root / "dup" / "images" / "val" / sub).mkdir(parents=True)
        (root / "dup" / "labels" / "val" / sub).mkdir(parents=True)
        image = next((root / "data" / "images" / "val").glob("*.jpg"))
        shutil.copy(image, root / "dup" / "images" / "val" / sub / "im.jpg")
        (root / "dup" / "labels" / "val" / sub / "im.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "dup" / "data.yaml").write_text(f"path: {root / 'dup'}\ntrain: images/val\nval: images/val\n"
                                            "names:\n  0: red\n  1: green\n")
    (root / "broken.onnx").write_bytes(b"\x08\x07" + bytes(range(256)) * 4)  # a truncated or corrupt export
    (root / "bad.onnx.bak").write_bytes(b"")  # a backup copy: no model form
    good_val = root / "data" / "images" / "val"
    for name, split, label in (("nolabels", "val", None), ("badclass", "val", "5 0.5 0.5 0.2 0.2\n"),
                               ("trainbad", "train", "5 0.5 0.5 0.2 0.2\n"), ("trainnolabels", "train", None)):
        shutil.copytree(good_val, root / name / "images" / split)  # a split with no labels, or only refused ones
        if label:
            (root / name / "labels" / split).mkdir(parents=True)
            for image in good_val.glob("*.jpg"):
                (root / name / "labels" / split / f"{image.stem}.txt").write_text(label)
        # the other split is the labelled one of data/
        train, val = ("images/train", good_val) if split == "train" else (root / "data" / "images" / "train", "images/val")
        (root / name / "data.yaml").write_text(f"path: {root / name}\ntrain: {train}\nval: {val}\n"
                                               "names:\n  0: red\n  1: green\n")
    return root


DATA = ["data=data/data.yaml", "imgsz=64"]
SOURCE = ["source=data/images/val", "imgsz=64"]
NOT_TORCH = r"not a PyTorch checkpoint \(not written by torch.save\); expected a \.pt checkpoint written by Ultralytics"
NO_FOLDER = r"project=/dev/null/x: cannot create the output folder /dev/null/x/{} \(Not a directory\)"


@pytest.mark.parametrize("argv, message", [
    (["val", "weights=x.pt", *DATA], "weights=x.pt: " + NOT_TORCH),
    (["val", "weights", "=", "x.pt", *DATA], "weights=x.pt: " + NOT_TORCH),  # spaced, as `yolo` takes it
    (["predict", "model=x.pt", *SOURCE], "model=x.pt: " + NOT_TORCH),
    (["predict", "model=x.pt", *SOURCE, "slice=32"], "model=x.pt: " + NOT_TORCH),
    (["export", "model=x.pt", "format=onnx"], "model=x.pt: " + NOT_TORCH),
    (["export", "model=ok.pt", "format=torchscript", *DATA], r"^yolo-spd: error: argument 'data' is not supported for "
                                                             r"format='torchscript' \(set YOLO_SPD_TRACEBACK=1 for "),
    (["compare", "weights=ok.pt,x.pt", *DATA], "weights=x.pt: " + NOT_TORCH),
    (["val", "weights=state.pt", *DATA], r"weights=state.pt: a PyTorch file but not an Ultralytics checkpoint \(.+\); "
                                         r"expected a \.pt checkpoint written by Ultralytics"),
    # torch.load of a TorchScript archive printed two torch warnings before the error line
    (["val", "weights=script.pt", *DATA], r"weights=script.pt: not a PyTorch checkpoint \(a TorchScript archive, "
                                          r"which torch.jit.save writes: an export, read under its .torchscript "
                                          r"name\)"),
    (["val", "weights=ok.pt", *DATA, "project=/dev/null/x"], NO_FOLDER.format("val")),
    (["val", "weights=ok.pt", *DATA, "project=/dev/null/x", "slice=32"], NO_FOLDER.format("val")),
    (["predict", "model=ok.pt", *SOURCE, "project=/dev/null/x"], NO_FOLDER.format("predict")),
    # a source that is not there: Ultralytics' loader named the path, not the key
    (["predict", "model=ok.pt", "source=nope/", "imgsz=64"], r"^yolo-spd: error: source=nope/: nope/ does not exist$"),
    (["predict", "model=ok.pt", *SOURCE, "project=/dev/null/x", "slice=32"], NO_FOLDER.format("predict")),
    (["compare", "weights=ok.pt,ok2.pt", *DATA, "project=/dev/null/x"], NO_FOLDER.format("compare")),
    (["compare", "weights=ok.pt,ok2.pt,./ok.pt", *DATA], r"weights=ok.pt,ok2.pt,./ok.pt: ok.pt is listed twice; give "
                                                        r"each checkpoint once$"),
    # model=, as val takes it, is the same list; both given is refused (it reached the validator: a TypeError)
    (["compare", "model=ok.pt,ok2.pt,ok.pt", *DATA], r"model=ok.pt,ok2.pt,ok.pt: ok.pt is listed twice; give each "),
    (["compare", "weights=ok.pt,ok2.pt", "model=ok.pt", *DATA], r"give the model once: weights= or model=, not both$"),
    (["compare", "weights=ok.pt,,ok2.pt", *DATA], r"weights=ok.pt,,ok2.pt: item 2 is empty; give a comma-separated "
                                                  r"list without empty items$"),
    (["study", "models=yolov5nu.yaml,yolov5-spd-n.yaml,", *DATA], r"models=yolov5nu.yaml,yolov5-spd-n.yaml,: item 3 "
                                                                  r"is empty"),
    (["train", "model=ok.pt", *DATA, "epochs=1", "project=/dev/null/x"], NO_FOLDER.format("train")),
    (["train", "cfg=bad.yaml", *DATA], r"cfg=bad.yaml: not valid YAML: bad.yaml, line 4, column 3: expected ',' or "
                                       r"']', but got '-' \(while parsing a flow sequence at line 3, column 5\)$"),
    (["predict", "model=bad.yaml", *SOURCE], r"model=bad.yaml: not valid YAML: bad.yaml, line 4, column 3: "),
    # overrides= and data= read YAML as cfg= does (a broken overrides= file ended in a ScannerError or
    # UnicodeDecodeError traceback; a binary data= file in a UnicodeDecodeError)
    (["train", "cfg=yolov5-spd-n.yaml", *DATA, "overrides=bad.yaml"], r"overrides=bad.yaml: not valid YAML: bad.yaml, "
                                                                      r"line 4, column 3: expected ',' or "),
    (["train", "cfg=yolov5-spd-n.yaml", *DATA, "overrides=binary.yaml"],
     r"overrides=binary.yaml: binary.yaml is not a text file \(not UTF-8\), so not a YAML file$"),
    (["val", "weights=ok.pt", "data=binary.yaml"], r"data=binary.yaml: binary.yaml is not a text file \(not UTF-8\)"),
    # a value Ultralytics refuses says it came from the overrides= file (it named only the key); one the command line
    # sets is not read from the file
    (["train", "cfg=yolov5-spd-n.yaml", *DATA, "overrides=values.yaml"],
     r"error: overrides=values.yaml: 'epochs=abc' is of invalid type str"),
    (["train", "cfg=yolov5-spd-n.yaml", *DATA, "overrides=values.yaml", "epochs=1"],
     r"error: overrides=values.yaml: optimizer=Foo: not an optimizer Ultralytics' trainer knows"),
    (["train", "cfg=yolov5-spd-n.yaml", *DATA, "overrides=values.yaml", "epochs=1", "optimizer=Bar"],
     r"error: optimizer=Bar: not an optimizer "),
    # Ultralytics refuses an unknown optimizer only after writing the run folder and args.yaml (a traceback)
    (["train", "cfg=yolov5-spd-n.yaml", *DATA, "optimizer=Foo"],
     r"^yolo-spd: error: optimizer=Foo: not an optimizer Ultralytics' trainer knows; choose from Adam, .*SGD"),
    (["study", "models=yolov5nu.yaml,yolov5-spd-n.yaml", *DATA, "optimizer=Foo"], r"optimizer=Foo: not an optimizer "),
    # batch outside training: a DataLoader error, a division by zero, an export's reshape, and sliced val scored
    # nothing (AP 0, exit 0) with batch=-1
    (["val", "weights=ok.pt", *DATA, "batch=-1"], r"batch=-1: expected a whole number of images >= 1 \(batch=-1, "
                                                  r"AutoBatch, is for train\)$"),
    (["val", "weights=ok.pt", *DATA, "batch=-1", "slice=32"], r"batch=-1: expected a whole number of images >= 1"),
    (["compare", "weights=ok.pt,ok2.pt", *DATA, "batch=2.5"], r"batch=2.5: expected a whole number of images >= 1"),
    (["predict", "model=ok.pt", *SOURCE, "batch=0"], r"batch=0: expected a whole number of images >= 1"),
    (["predict", "model=ok.pt", *SOURCE, "batch=0", "slice=32"], r"batch=0: expected a whole number of images >= 1"),
    (["export", "model=ok.pt", "format=onnx", "batch=0"], r"batch=0: expected a whole number of images >= 1"),
    # resume with a finished run's weights: 8.4.190 started a new run on coco8 (an error about data=coco8.yaml the user
    # never gave) and left a run folder; 8.4.67 asserted after making one
    (["train", "model=ok.pt", "resume=True"], r"resume: ok.pt is no unfinished run's checkpoint \(it has no epoch and "
                                              r"optimizer state: .*\); give an interrupted run's last.pt, or train "),
    (["train", "resume=ok.pt"], r"resume: ok.pt is no unfinished run's checkpoint"),
    (["train", "resume=True"], r"resume=True needs model=PATH/weights/last.pt, the checkpoint of the run to continue$"),
    (["train", "model=ok2.pt", "resume=ok.pt"], r"give the model once: model= or resume=, not both$"),
    (["train", "model=ok.pt", "resume=ok.pt"], r"resume: ok.pt is no unfinished run's checkpoint"),  # the same file
    (["train", "overrides=resume.yaml"], r"resume: ok.pt is no unfinished run's checkpoint"),  # named yolov5-spd-n.yaml
    # a deprecated key a mode does not take: no Ultralytics deprecation warning before the line; a deprecated key's
    # value Ultralytics refuses (8.4.190: "Deprecated 'end2end' must be a bool." with no value; 8.4.67 lists the key)
    (["slice", "data=data/data.yaml", "tile=32", "hide_labels=True"], r"'hide_labels' is not a valid yolo-spd "),
    (["predict", "model=ok.pt", *SOURCE, "end2end=3"], r"end2end=3.* must be a bool"),
    # a coco_json that does not describe the split: refused before validating or training (val found it after the
    # whole validation, leaving a run folder of plots; train after training)
    (["val", "weights=ok.pt", "data=data/cocojson.yaml", "imgsz=64"], r"error: coco_json=.*other.json does not "
                                                                       r"describe 2 image\(s\) of the split, e.g. "),
    (["train", "cfg=yolov5-spd-n.yaml", "data=data/cocojson.yaml", "imgsz=64", "epochs=1"],
     r"error: coco_json=.*other.json does not describe 2 image"),
    # two val images with one file name: their detections were scored on one image (AP 0.18 for 0.57), also sliced
    (["val", "weights=ok.pt", "data=dup/data.yaml", "imgsz=64"], r"error: data=.*dup/data.yaml: the val split has two "
                                                                 r"images named im.jpg \(.*a/im.jpg and .*b/im.jpg\); "
                                                                 r"COCO evaluation names each image by its file name"),
    (["val", "weights=ok.pt", "data=dup/data.yaml", "imgsz=64", "slice=32"], r"the val split has two images named "),
    (["train", "cfg=yolov5-spd-n.yaml", "data=dup/data.yaml", "imgsz=64", "epochs=1"], r"two images named im.jpg"),
    # a val split with nothing to score: no labels (val exited 0 with -1 for every metric), or every label refused
    # (Ultralytics' RuntimeError traceback); refused before validating or training
    (["val", "weights=ok.pt", "data=nolabels/data.yaml", "imgsz=64"], r"error: data=.*nolabels/data.yaml: the val "
     r"split has no labelled object: none of the 2 images Ultralytics would load has a label row in "
     r".*nolabels/labels/val; there is nothing to score \(COCO gives -1 for every metric\): point 'val:' at labelled "
     r"images \(`val save_json=True` runs an unlabelled split for its detections alone\)$"),
    (["val", "weights=ok.pt", "data=nolabels/data.yaml", "imgsz=64", "slice=32"], r"val split has no labelled object"),
    (["compare", "weights=ok.pt,ok2.pt", "data=nolabels/data.yaml", "imgsz=64"], r"val split has no labelled object"),
    (["study", "models=yolov5nu.yaml,yolov5-spd-n.yaml", "data=nolabels/data.yaml", "imgsz=64"],
     r"val split has no labelled object"),
    (["train", "cfg=yolov5-spd-n.yaml", "data=nolabels/data.yaml", "imgsz=64", "epochs=1"],
     r"val split has no labelled object"),
    (["val", "weights=ok.pt", "data=badclass/data.yaml", "imgsz=64"], r"error: data=.*badclass/data.yaml: the val split "
     r"has no image Ultralytics would load: every one is skipped, e.g. .*badclass/images/val/\d+.jpg: class 5 is out "
     r"of range for 2 classes \(0-1\) \(and 1 more\); fix the labels or the images$"),
    # a train split with no labels (8.4.190: a ValueError traceback once training was set up, leaving a run folder
    # with args.yaml; 8.4.67 trained on nothing), or with every label refused (a RuntimeError traceback)
    (["train", "cfg=yolov5-spd-n.yaml", "data=trainnolabels/data.yaml", "imgsz=64", "epochs=1"],
     r"error: data=.*trainnolabels/data.yaml: the train split has no labelled image: none of its 2 images has a label "
     r"row in .*trainnolabels/labels/train; there is nothing to train on$"),
    (["study", "models=yolov5nu.yaml,yolov5-spd-n.yaml", "data=trainnolabels/data.yaml", "imgsz=64"],
     r"the train split has no labelled image"),
    (["train", "cfg=yolov5-spd-n.yaml", "data=trainbad/data.yaml", "imgsz=64", "epochs=1"],
     r"^yolo-spd: error: data=trainbad/data.yaml: No valid images found in \S+trainbad/labels/train.cache\. train: "
     r"\S+trainbad/images/train/\d+.jpg: ignoring corrupt image/label: .*class 5 .*\(and 1 more\) \(set "
     r"YOLO_SPD_TRACEBACK=1 for the traceback\)$"),
    # a dataset folder for its YAML, and a missing checkpoint named by the key that gave it (it said cfg=)
    (["val", "weights=ok.pt", "data=data", "imgsz=64"], r"error: data=data is a folder; give the dataset YAML file "
                                                        r"\(train:, val:, names:\); it holds cocojson.yaml, data.yaml$"),
    (["train", "model=gone.pt", "resume=True"], r"error: model=gone.pt: file not found"),
    (["train", "resume=gone.pt"], r"error: resume=gone.pt: file not found"),
    (["train", "overrides=gone.yaml"], r"error: overrides=gone.yaml: resume=gone.pt: file not found"),  # from the file
    # a model YAML to resume (it said "a finished run's weights"), a folder for a model (it said "(unknown)")
    (["train", "model=yolov5-spd-n.yaml", "resume=True"], r"error: resume: yolov5-spd-n.yaml is a model YAML, which "
                                                          r"starts a new run; give an interrupted run's last.pt"),
    (["predict", "model=data", *SOURCE], r"error: model=data: a folder that is no export \(an export folder's name "
                                         r"ends as listed\); expected a model YAML"),
    (["predict", "model=bad.onnx.bak", *SOURCE], r"error: model=bad.onnx.bak: not an accepted model form \(a .bak "
                                                 r"file\); expected a model YAML"),
    # a device this machine lacks, named as given (Ultralytics' line says device=7 for cuda:7)
    pytest.param(["val", "weights=ok.pt", *DATA, "device=cuda:7"], r"error: device=cuda:7: Invalid CUDA 'device=7' ",
                 marks=pytest.mark.skipif(__import__("torch").cuda.device_count() > 7, reason="8 GPUs here")),
    # an ONNX file ONNX Runtime cannot parse (a TypeError traceback from 8.4.190, InvalidProtobuf from 8.4.67)
    (["val", "weights=broken.onnx", *DATA], r"error: broken.onnx: not an ONNX model ONNX Runtime can read \(empty, "
                                            r"truncated or not ONNX\); export it again from its .pt "),
    (["compare", "weights=ok.pt,broken.onnx", *DATA], r"error: broken.onnx: not an ONNX model ONNX Runtime can "),
    (["predict", "model=broken.onnx", *SOURCE], r"error: broken.onnx: not an ONNX model ONNX Runtime can read"),
    # an export is exported from its .pt (Ultralytics raised a TypeError traceback)
    (["export", "model=exported.onnx", "format=onnx"], r"model=exported.onnx: not an accepted model form \(onnx\); "
                                                       r"expected a model YAML .* or a \.pt checkpoint$"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_weights_folders_and_model_yamls_are_one_error_line(bad_inputs, tmp_path, argv, message):
    """Exit 2, one stderr line naming the value, no traceback and nothing written: a text file named .pt or a bare
    state_dict as weights, an output folder that cannot be created, a model YAML that does not parse."""
    import re
    import subprocess
    import sys

    from ultralytics.utils import SettingsManager

    from .conftest import child_env

    config = tmp_path / "config"  # Ultralytics' settings, private: a run that wrongly went ahead writes into tmp_path
    SettingsManager(config / "Ultralytics" / "settings.json").update(runs_dir=str(tmp_path / "runs"))
    before = sorted(bad_inputs.rglob("*"))
    out = subprocess.run([sys.executable, "-m", "yolo_spd", *argv], cwd=bad_inputs, capture_output=True, text=True,
                         env=child_env(YOLO_CONFIG_DIR=str(config), YOLO_SPD_CACHE=str(tmp_path / "cache")),
                         timeout=600)
    lines = out.stderr.splitlines()
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("yolo-spd: error: "), out.stderr[-3000:]
    assert re.search(message, lines[0]), lines[0]
    assert "is deprecated" not in out.stdout  # Ultralytics' logger writes its warnings there
    assert not (tmp_path / "runs").exists() and sorted(bad_inputs.rglob("*")) == before


@pytest.mark.parametrize("extra", [[], ["slice=32"]])
def test_an_unlabelled_split_is_run_for_its_detections_with_save_json(bad_inputs, tmp_path, monkeypatch, extra):
    """A test split without labels (COCO test-dev) is run for a benchmark server's file: with save_json=True it is not
    refused; a note says nothing is scored."""
    monkeypatch.chdir(bad_inputs)
    code, _, err = run("val", "weights=ok.pt", "data=nolabels/data.yaml", "imgsz=64", "save_json=True",
                       f"project={tmp_path}", "name=v", *extra)
    assert code == 0, err
    assert "yolo-spd: note: the val split of data.yaml has no labelled object: nothing is scored" in err
    saved = json.loads((tmp_path / "v" / "coco_eval.json").read_text())
    assert saved["annotations"] == 0 and saved["metrics"]["AP_small"] == -1
    assert (tmp_path / "v" / "coco_predictions.json").is_file()
    assert (tmp_path / "v" / "predictions.json").is_file() == (not extra)  # Ultralytics' file, from its validator


def test_a_pt_is_checked_to_be_what_torch_save_writes_before_anything_unpickles_it(tmp_path):
    """Both of torch.save's formats pass (the zip archive and the legacy pickle); other files are named and refused."""
    import zipfile

    import torch

    from yolo_spd.errors import UsageError
    from yolo_spd.model_source import check_torch_file

    torch.save({"model": None}, tmp_path / "zip.pt")
    torch.save({"model": None}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name in ("zip.pt", "legacy.pt"):
        check_torch_file(tmp_path / name, f"weights={name}")
    (tmp_path / "empty.pt").write_bytes(b"")
    with zipfile.ZipFile(tmp_path / "other.pt", "w") as archive:
        archive.writestr("other/readme.txt", "not torch")
    (tmp_path / "pickle.pt").write_bytes(__import__("pickle").dumps({"model": None}))  # a pickle, not torch's
    for name, problem in (("empty.pt", "an empty file"), ("other.pt", "a zip archive without torch.save's data.pkl"),
                          ("pickle.pt", "not written by torch.save")):
        with pytest.raises(UsageError, match=rf"^weights={name}: not a PyTorch checkpoint \({problem}\); expected "):
            check_torch_file(tmp_path / name, f"weights={name}")


def test_output_into_a_closed_pipe_ends_quietly():
    """``yolo-spd help | head -1``: the reader is gone before the command writes; no BrokenPipeError traceback."""
    import os
    import subprocess
    import sys

    from .conftest import child_env

    read_end, write_end = os.pipe()
    os.close(read_end)  # as if the reader had already exited
    try:
        out = subprocess.run([sys.executable, "-m", "yolo_spd", "help"], stdout=write_end, stderr=subprocess.PIPE,
                             text=True, env=child_env(), timeout=120)
    finally:
        os.close(write_end)
    assert out.returncode == 1 and out.stderr == "", out.stderr[-3000:]


def test_only_the_exporters_not_supported_assertions_are_user_input():
    """validate_args asserts twice: a key the format does not take (bad input: one error line) and that Ultralytics'
    own table lists the format (its gap: a traceback)."""
    from ultralytics.cfg import DEFAULT_CFG, get_cfg
    from ultralytics.engine.exporter import validate_args

    with pytest.raises(AssertionError, match="is not supported") as users:
        validate_args("torchscript", get_cfg(DEFAULT_CFG, {"data": "x.yaml"}), ["batch", "device"])
    with pytest.raises(AssertionError, match="not listed") as theirs:
        validate_args("torchscript", get_cfg(DEFAULT_CFG, {}), None)
    assert cli._raised_checking_user_input(users.value) and not cli._raised_checking_user_input(theirs.value)


def test_a_broken_pipe_other_than_stdout_keeps_its_traceback(tmp_path):
    """Only a closed stdout ends the command quietly; a BrokenPipeError from any other pipe is a bug."""
    import subprocess
    import sys

    from .conftest import child_env

    code = ("import sys, yolo_spd.cli as cli\n"
            "def main():\n    raise BrokenPipeError(32, 'an internal pipe')\n"
            "cli.main = main\ncli.entry()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=120)
    assert out.returncode == 1 and "Traceback" in out.stderr and "an internal pipe" in out.stderr, out.stderr[-2000:]


def test_the_optimizer_check_takes_every_name_ultralytics_takes_and_lists_them_for_others():
    """optimizer= is checked by Ultralytics' own build_optimizer (on a one-layer model), so the names follow its
    version (RMSProp in 8.4.67, RMSprop later; case-insensitive in both). The probe leaves torch's random numbers and
    Ultralytics' log level as they were."""
    import logging

    import torch
    from ultralytics.utils import LOGGER

    from yolo_spd.integration.training import unknown_optimizer

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    level = LOGGER.level
    assert unknown_optimizer("SGD") is None and unknown_optimizer("Foo") is not None
    assert torch.equal(torch.rand(3), expected) and LOGGER.level == level != logging.WARNING

    for name in ("SGD", "sgd", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "rmsprop", "auto", "AUTO", None):
        assert unknown_optimizer(name) is None, name
    message = unknown_optimizer("Adamm")
    assert message.startswith("optimizer=Adamm: not an optimizer Ultralytics' trainer knows; choose from Adam, AdamW, ")
    assert "SGD" in message and "\n" not in message


@pytest.mark.parametrize("extra", [["half=True"], ["half"], ["half=True", "slice=32"], ["hide_labels=True"]])
def test_deprecated_ultralytics_keys_are_read_as_yolo_reads_them(bad_inputs, tmp_path, extra):
    """half= and hide_labels= left Ultralytics' key list (8.4.190 reads them as quantize=16 and show_labels=False, with
    a deprecation warning, in its own `yolo` command); yolo-spd refused them as unknown keys. On an Ultralytics that
    still lists them they are ordinary keys."""
    import subprocess
    import sys

    from ultralytics.cfg import DEFAULT_CFG_DICT

    from .conftest import child_env

    out = subprocess.run([sys.executable, "-m", "yolo_spd", "predict", "model=ok.pt", *SOURCE, "save=False", *extra],
                         cwd=bad_inputs, capture_output=True, text=True, timeout=600,
                         env=child_env(YOLO_CONFIG_DIR=str(tmp_path / "config")))
    assert out.returncode == 0, out.stderr[-2000:]
    key = extra[0].partition("=")[0]
    deprecated = key not in DEFAULT_CFG_DICT
    assert (f"'{key}' is deprecated" in out.stderr + out.stdout) == deprecated
    assert "image 1/2 " in out.stdout and "image 2/2 " in out.stdout


def test_a_current_key_wins_over_the_deprecated_one_in_either_order():
    from ultralytics.cfg import DEFAULT_CFG_DICT

    from yolo_spd.cli import parse_pairs, ultralytics_keys

    if "half" in DEFAULT_CFG_DICT:
        pytest.skip("this Ultralytics still lists half= as a key of its own")
    keys = ultralytics_keys()
    assert parse_pairs(["quantize=8", "half=True"], keys) == parse_pairs(["half=True", "quantize=8"], keys) == {
        "quantize": 8}
    assert parse_pairs(["half"], keys) == {"quantize": 16} and parse_pairs(["half=False"], keys) == {"quantize": None}
