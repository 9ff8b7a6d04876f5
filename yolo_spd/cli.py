"""The ``yolo-spd`` command: Ultralytics' ``yolo`` with yolo_spd's modules registered and COCO AP_S evaluation.

Arguments use Ultralytics' ``key=value`` style. See :data:`HELP` (``yolo-spd help``) for the modes and keys.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
import os
import re
import sys
from pathlib import Path

import yaml

from .errors import UsageError
from .slicing.inference import SLICE_KEYS
from .study.control import CONTROL_WIDE

HELP = """\
yolo-spd: Ultralytics YOLO with SPD-Conv, SCConv and SSDConv, and COCO small-object (AP_S) evaluation.

Usage:  yolo-spd MODE key=value ...      (a True/False key given bare means True, as in yolo: per_class, save_txt)

Modes:
  train    train like `yolo train`, then score best.pt with COCO's evaluator
  val      validate weights, or score a saved detections file, with COCO's evaluator (AP_S highlighted)
  compare  validate several checkpoints on the same data: side-by-side table, CSV/JSON, AP-by-size bar plot
  predict  `yolo predict` with the yolo_spd modules registered (all keys as in Ultralytics; saves by default, as it)
  export   `yolo export` with the yolo_spd modules registered (all keys as in Ultralytics)
  study    train every model x every seed alike, score them alike, paired differences with intervals
  slice    cut a YOLO dataset's train/val images into tiles at native resolution: a tiled dataset + its data.yaml
  info     params/GFLOPs table of the packaged configs, or of your model: yolo-spd info [pattern] | model=my.yaml
  help     this text

Keys that differ from Ultralytics':
  cfg=MODEL.yaml        train: the MODEL YAML (as in the SPD-Conv authors' scripts); model= works too
  overrides=FILE.yaml   train: an Ultralytics settings-override file (what `yolo train cfg=` means)
  weights=PATH.pt       val: the checkpoint to validate; compare: a comma-separated list (model= works too in
                        both); predict, export: model= as in yolo (weights= works too)
  predictions=FILE.json val: score this COCO detections file instead of running a model
  sizes=coco            size ranges: coco (small<32<=medium<96<=large px), aitod (2/8/16/32 px), or bounds: 0,16,32,96
  backend=pycocotools   pycocotools (the numbers papers quote) or faster (faster-coco-eval)
  gt=auto               ground truth: auto (the dataset's COCO JSON if it has one, else its labels), json, labels
  max_dets=100          detections scored per image (COCO 100; dense scenes: VisDrone 500, AI-TOD 1500)
  per_class=False       also print a per-class AP table (Markdown)
Tiled training data (yolo-spd slice data=X.yaml ...):
  tile=640              tile side in px (>= 32); overlap=0.2 shared fraction in [0, 1)
  out=DIR               slice: the folder to write (default: yolo_spd's cache, $YOLO_SPD_CACHE)
  min_visible=0.5       keep a box cut by a tile border when this fraction of its area is inside
  empty=0.1             fraction of tiles without boxes to keep (deterministic); format=png (lossless) or jpg
Sliced inference (val, compare, predict), after SAHI; val and compare score the merged boxes on the full images:
  slice=640             predict each image window by window, 640 px windows at imgsz=640 (imgsz= overrides)
  overlap=0.2           fraction of a window shared with its neighbour, in [0, 1)
  slice_full=False      also predict the whole image once (SAHI's perform_standard_pred)
  postprocess_type=     merge across windows: GREEDYNMM, NMM or NMS (unset: GREEDYNMM; NMS under conf=0.1, as SAHI)
  postprocess_match_metric=IOS  IOS (intersection over the smaller box) or IOU; with NMS unset: IOU
  postprocess_match_threshold=0.5  overlap at which two boxes are one object; postprocess_class_agnostic=False
A study (yolo-spd study models=a.yaml,b.yaml seeds=0,1,2 data=X.yaml [train keys]); reruns continue it:
  models=A,B[,...]      model YAMLs (or .pt to fine-tune); the first is the baseline of every paired difference
  seeds=0,1,2           one run per model and seed; tile=320 trains on tiles (yolo-spd slice; overlap= shared)
  control=C             one of models= (not the first): also every other variant's paired difference from C;
                        control=wide makes C: the baseline widened to the costliest variant's GFLOPs
  checkpoint=best       score each run's best.pt (picked by Ultralytics on the val split) or last (last.pt)
  resamples=1000        paired bootstrap over val images (bootstrap_seed=0); results in study.json/.md/.tex/.csv/.png
  contrast=DIR          also contrast this study's paired difference with the study in DIR (scored alike: same
                        val data, slice=, checkpoint=): does it move between them? contrast_variants=A,B: A of
                        DIR's study, B of this one (default: each study's first variant)
Every other key is Ultralytics' (epochs, imgsz, batch, device, project, name, ...): https://docs.ultralytics.com/usage/cfg/
Each run writes into one folder named as Ultralytics names its own: runs/detect/MODE, MODE-2, ... (project=, name=)
The model table (yolo-spd info [pattern] key=value; no Ultralytics keys):
  pattern=*             shell-style filter on the packaged config names, e.g. yolov5-spd-* (a bare first word works too)
  model=                instead: your model YAML or .pt; baseline= what it is compared with (unset: a packaged
                        config's own baseline, else none), e.g. model=my-spd.yaml baseline=yolov5nu.yaml
  latency=False         add CPU latency at batch 1, PyTorch and ONNX Runtime (repeats=10 threads=1 wall_time=False)
  imgsz=640             input size, a multiple of 32; cache=True reuses earlier rows; verbose=False hides the bar

Examples:
  yolo-spd train                                   # the offline demo: yolov5-spd-n on synthetic small objects
  yolo-spd train cfg=yolov5-spd-s.yaml data=coco.yaml epochs=300 imgsz=640
  yolo-spd val weights=runs/detect/train/weights/best.pt data=coco.yaml per_class=True
  yolo-spd val predictions=preds.json data=coco.yaml sizes=aitod
  yolo-spd val weights=runs/detect/train/weights/best.pt data=demo   # the built-in demo dataset
  yolo-spd compare weights=yolov5nu.pt,yolov5-spd-n.pt data=aerial.yaml sizes=aitod
  yolo-spd predict model=best.pt source=images/
  yolo-spd val weights=best.pt data=aerial.yaml slice=320 overlap=0.2   # small objects at native resolution
  yolo-spd predict model=best.pt source=images/ slice=640 save_txt=True
  yolo-spd export model=best.pt format=onnx
  yolo-spd info yolov5-spd-* latency=True
  yolo-spd info model=my-spd.yaml baseline=yolov5nu.yaml imgsz=320
  yolo-spd slice data=aerial.yaml tile=320 overlap=0.2   # prints where the tiled data.yaml is
  yolo-spd study models=yolov5nu.yaml,yolov5-spd-n.yaml seeds=0,1,2 data=aerial.yaml tile=320 slice=320 epochs=15

Dataset YAMLs may name the official annotation file with `coco_json: annotations/instances_val2017.json`; COCO's AP_S
is only the official one when scored against it (the packaged `coco.yaml` does this). yolo-spd never downloads data.
"""

MODES = ("train", "val", "compare", "predict", "export", "info", "slice", "study", "help")
EVAL_KEYS = {"sizes": "coco", "backend": "pycocotools", "gt": "auto", "max_dets": 100, "per_class": False}
TRAIN_KEYS = {"cfg": None, "overrides": None, **EVAL_KEYS}
VAL_KEYS = {"weights": None, "predictions": None, **EVAL_KEYS, **SLICE_KEYS}
COMPARE_KEYS = {"weights": None, **EVAL_KEYS, **SLICE_KEYS}
STUDY_KEYS = {"models": None, "seeds": "0,1,2", "control": None, "checkpoint": "best", "resamples": 1000,
              "contrast": None, "contrast_variants": None,
              "bootstrap_seed": 0, "tile": None, "min_visible": None, "empty": None, "format": None, **EVAL_KEYS,
              **SLICE_KEYS}
STUDY_TILE_KEYS = ("min_visible", "empty", "format")  # tile='s own (None: not given; TileSettings' defaults)
# Keys the study sets per run (or for the whole study), not the user: they would make runs differ or collide.
STUDY_OWN_TRAIN_KEYS = ("model", "data", "seed", "project", "name", "exist_ok", "resume")
STUDY_VAL_KEYS = ("imgsz", "batch", "device", "workers")  # training keys scoring reuses, as train does
# The demo trains yolov5-spd-n from scratch on the synthetic data (yolo_spd/demo.py): about 5 minutes on 2 idle CPU
# cores. No warm-up, batch 4 (more steps) and AdamW at lr 0.004: on the first demo data, Ultralytics' defaults (batch
# 8, auto-chosen lr 0.0014, at least 100 warm-up iterations) left AP at 0.000 after 8 epochs, and lr 0.008 or batch 8
# did worse than these. Mosaic is off: close_mosaic=10 would leave it on for only the first 2 of 12 epochs, and the
# images already hold 8-16 objects each. weights/yolov5-spd-n-demo.pt is this run's output (weights/README.md);
# tests/test_demo.py checks that it still matches these settings and detects what the README says it does.
DEMO_TRAIN_ARGS = {
    "epochs": 12, "imgsz": 256, "batch": 4, "optimizer": "AdamW", "lr0": 0.004, "warmup_epochs": 0, "mosaic": 0.0,
}
DEFAULT_MODEL = "yolov5-spd-n.yaml"
DEMO_EPOCHS_ENV = "YOLO_SPD_DEMO_EPOCHS"  # shortens the demo (tests); an explicit epochs= wins


def parse_value(text: str):
    """Ultralytics-style value: none/true/false, numbers, YAML lists, else the string itself."""
    lowered = text.lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if text.startswith(("[", "{")):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError:
            pass
    return text


#: yolo_spd's own True/False keys (their defaults are None where "not given" differs from False).
BOOLEAN_KEYS = frozenset({"per_class", "slice_full", "postprocess_class_agnostic"})


def boolean_keys() -> frozenset[str]:
    """The keys a bare word sets to True: Ultralytics' True/False keys (``yolo val save_json``) and yolo_spd's."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return BOOLEAN_KEYS | {key for key, value in DEFAULT_CFG_DICT.items() if isinstance(value, bool)}


def key_name(text: str) -> str:
    """The key a token's text before ``=`` names: ``--save-txt`` and ``save_txt`` are ``save_txt``."""
    return text.strip().lstrip("-").replace("-", "_")


def _current_keys(key: str, value, allowed: set[str]) -> dict | None:
    """Ultralytics' current keys for one of its deprecated keys (:mod:`yolo_spd.integration.deprecated_keys`)."""
    from .integration.deprecated_keys import current_keys

    return current_keys(key, value, allowed)


def joined_tokens(tokens: list[str], allowed: set[str]) -> list[str]:
    """The arguments as Ultralytics' ``yolo`` joins what the shell split: ``k = v``, ``k =v`` and ``k= v`` are
    ``k=v`` (``k= v`` only where ``v`` is no argument itself: ``resume= save_txt`` stays two), and a list split at
    its spaces (``imgsz=[320,`` ``256]``) is one argument. An unclosed ``[`` is an error, not a swallowed command."""
    out, i = [], 0
    while i < len(tokens):
        token, following = tokens[i], tokens[i + 1:]
        if "=" not in token and following[:1] == ["="] and len(following) > 1:  # k = v
            token, i = f"{token}={following[1]}", i + 3
        elif "=" not in token and following and following[0].startswith("=") and following[0] != "=":  # k =v
            token, i = token + following[0], i + 2
        elif (token.endswith("=") and token.count("=") == 1 and following and "=" not in following[0]
              and key_name(following[0]) not in allowed):  # k= v
            token, i = token + following[0], i + 2
        else:
            i += 1
        while token.count("[") > token.count("]") and i < len(tokens):  # imgsz=[320, 256]
            token, i = token + tokens[i], i + 1
        if token.count("[") != token.count("]"):
            raise UsageError(f"'{token}' has an unmatched bracket; give a list as key=[a,b] (quoted if it has spaces)")
        out.append(token)
    return out


def parse_pairs(tokens: list[str], allowed: set[str], flags: frozenset[str] | None = None) -> dict:
    """``key=value`` tokens -> dict, refusing malformed tokens and unknown keys with a close-match suggestion. A bare
    key among ``flags`` (default :func:`boolean_keys`) means ``key=True``, as Ultralytics' ``yolo`` reads it."""
    flags = boolean_keys() if flags is None else flags
    args = {}
    for token in joined_tokens(tokens, allowed):
        key, sep, value = token.partition("=")
        key = key_name(key)
        if not sep and key in flags and key in allowed:
            sep, value = "=", "True"
        if not sep and key in allowed:
            raise UsageError(f"'{token}' needs a value: {key}=VALUE; see yolo-spd help")
        current = None if key in allowed or not key else _current_keys(
            key, parse_value(value.strip()) if sep else True, allowed)
        if current is not None:  # a deprecated key (half=True), mapped as `yolo` maps it
            for name, mapped in current.items():  # a current key given too wins, as in Ultralytics (quantize=8 half)
                args.setdefault(name, mapped)
            continue
        if not sep or not key:
            raise UsageError(f"'{token}' is not a key=value argument; see yolo-spd help")
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=3)
            hint = f"; similar keys: {', '.join(close)}" if close else "; see yolo-spd help"
            raise UsageError(f"'{key}' is not a valid yolo-spd argument{hint}")
        args[key] = parse_value(value.strip())
    return args


def ultralytics_keys() -> set[str]:
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return set(DEFAULT_CFG_DICT) - {"cfg"}


def split_ours(args: dict, ours: dict) -> tuple[dict, dict]:
    """(yolo_spd's keys with defaults filled in, the rest for Ultralytics)."""
    mine = {key: args.pop(key, default) for key, default in ours.items()}
    return mine, args


def given_once(names: dict) -> tuple[str, object]:
    """(name, value) of the one argument given among ``names`` (name -> value or None), which name one thing (the
    model: ``cfg=`` or ``model=``); the first name and None when none is given; two given is a UsageError."""
    given = [(name, value) for name, value in names.items() if value is not None]
    if len(given) > 1:
        raise UsageError(f"give the model once: {' or '.join(f'{name}=' for name, _ in given)}, not both")
    return given[0] if given else (next(iter(names)), None)


#: Counts Ultralytics 8.4.67 takes below their meaningful range (``epochs=0`` trained 100 epochs, ``max_det=0`` keeps
#: no box); later releases refuse them (``CFG_INT_MIN``), so every supported release does here.
COUNT_MINIMUMS = {"epochs": 1, "patience": 0, "nbs": 1, "max_det": 1, "mask_ratio": 1, "vid_stride": 1, "seed": 0}


def check_ultralytics_values(keys: dict) -> None:
    """Ultralytics' own type and range checks of its keys (``check_cfg``: ``conf=2``, ``lr0=abc``; 8.4.190 also refuses
    ``epochs=0``, 8.4.67 does not) and ``imgsz`` in a form Ultralytics reads with sizes > 0, before a model is loaded or
    a folder made, in every mode: train would raise the same after creating its run folder, a study would have
    recorded a run that cannot train, and Ultralytics 8.4.67 fails on ``imgsz=abc`` inside ``ast`` with a message that
    names nothing. (A size <= 0 is no image size; Ultralytics would turn it into 32 with a warning.)"""
    from ultralytics.cfg import check_cfg

    try:
        check_cfg(dict(keys), hard=True)
    except (TypeError, ValueError, SyntaxError) as e:
        raise UsageError(str(e)) from None
    for key, least in COUNT_MINIMUMS.items():  # 8.4.190 checks these itself, in the same words; 8.4.67 does not
        value = keys.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < least:
            raise UsageError(f"'{key}={value}' is an invalid value. '{key}' must be >= {least}.")
    if "optimizer" in keys:
        from .integration.training import unknown_optimizer

        problem = unknown_optimizer(keys["optimizer"])
        if problem:
            raise UsageError(problem)
    imgsz = keys.get("imgsz")
    sizes = image_sizes(imgsz)
    if "imgsz" in keys and not (sizes and len(sizes) <= 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in sizes)):
        raise UsageError(f"imgsz={imgsz}: expected a positive image size in pixels, or height,width (e.g. imgsz=640, "
                         "imgsz=640,480)")


def image_sizes(imgsz) -> list | None:
    """``imgsz`` as the list of sizes Ultralytics' ``check_imgsz`` reads from it (an int, a list or tuple, or a string
    of either: ``"640"``, ``"640,480"``, ``"[640,480]"``), or None where it reads none."""
    if isinstance(imgsz, str):
        try:
            imgsz = int(imgsz) if imgsz.strip().isnumeric() else ast.literal_eval(imgsz)
        except (ValueError, SyntaxError):
            return None
    if isinstance(imgsz, int) and not isinstance(imgsz, bool):
        return [imgsz]
    return list(imgsz) if isinstance(imgsz, (list, tuple)) else None


def training_imgsz(imgsz) -> int:
    """The one size Ultralytics' trainer turns ``imgsz`` (checked by :func:`check_ultralytics_values`) into for a
    stride-32 model: the larger side of ``h,w``, rounded up to a multiple of 32, with Ultralytics' own warning when it
    changes (``check_imgsz``, as the trainer calls it; a stride-64 P6 model rounds again to 64 when it trains)."""
    from ultralytics.utils.checks import check_imgsz

    return int(check_imgsz(image_sizes(imgsz), stride=32, min_dim=1, max_dim=1, floor=32))


def resolve_model(model, mode_key: str, exports: bool | None = None) -> str:
    """A model YAML, a checkpoint or (except for training: ``cfg``, or ``exports=False``) an export; see
    :mod:`yolo_spd.model_source`. Errors name ``mode_key=``."""
    from .model_source import resolve_model

    return resolve_model(model, mode_key, exports=mode_key != "cfg" if exports is None else exports)


def load_model(model, mode_key: str, exports: bool | None = None):
    """``YOLO(model)`` for a value :func:`resolve_model` accepts; a .pt that is no Ultralytics checkpoint is a
    UsageError naming it (:func:`yolo_spd.model_source.load_model`)."""
    from .model_source import load_model

    return load_model(model, mode_key, exports=mode_key != "cfg" if exports is None else exports)


def is_inference_batch(batch) -> bool:
    """A ``batch=`` that val, compare, predict and export take: a whole number of images >= 1. Training also takes -1
    (AutoBatch) and a fraction of GPU memory; Ultralytics' inference paths do not, and failed late (a DataLoader
    error, a division by zero, an export's reshape) or, sliced, scored nothing (a negative step)."""
    return isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1


def check_inference_batch(keys: dict) -> None:
    """Refuse a ``batch=`` in ``keys`` that is not :func:`is_inference_batch`."""
    batch = keys.get("batch")
    if "batch" in keys and not is_inference_batch(batch):
        raise UsageError(f"batch={batch}: expected a whole number of images >= 1 (batch=-1, AutoBatch, is for train)")


def output_folder(args: dict, default_name: str, task: str = "detect"):
    """The run folder (:func:`yolo_spd.run_folders.run_output`, a context) from the ``project``, ``name`` and
    ``exist_ok`` in ``args``, which are taken out of ``args``: Ultralytics gets the folder itself (``save_dir``)."""
    from .run_folders import run_output

    return run_output(args.pop("project", None), args.pop("name", None), default_name, args.pop("exist_ok", False),
                      task=task)


def _print_evaluation(result, folder: Path, per_class: bool) -> None:
    from .evaluation import report

    print(report.header(result))
    print("\n".join(report.summary_lines(result)))
    if per_class:
        print(report.per_class_table(result))
    json_file, csv_file = report.save(result, folder)
    print(f"Saved {json_file.name} and {csv_file.name} to {folder}")
    print(f"Results saved to {folder}")  # the run's folder, last, as every mode ends (sliced val has no Ultralytics')


def required_split(args: dict):
    """Pop ``data`` and ``split`` from ``args`` and resolve them, once, into a
    :class:`~yolo_spd.evaluation.DatasetSplit` (``data=demo``: the built-in dataset); ``data`` must be given."""
    from .evaluation.dataset import resolve_split

    if not args.get("data"):
        raise UsageError("data= is required (a dataset YAML path, a packaged name such as coco.yaml, or demo)")
    return resolve_split(named_data(args.pop("data")), args.pop("split", None) or "val")


def eval_settings(mine: dict):
    """The :class:`~yolo_spd.evaluation.EvalSettings` the CLI keys in ``mine`` describe (checked there)."""
    from .evaluation.settings import KEYS, EvalSettings

    if not isinstance(mine.get("per_class", False), bool):  # printing, not scoring: checked here with the rest
        raise UsageError(f"per_class={mine['per_class']}: expected True or False")
    return EvalSettings.from_keys(**{key: mine[key] for key in KEYS if key in mine})


def named_data(data):
    """``data=`` as the user typed it (so errors name what they wrote), or for ``demo`` the built-in dataset's YAML
    (generated on first use)."""
    from .demo import DEMO_DATA_NAME, demo_data_yaml

    return demo_data_yaml() if str(data) == DEMO_DATA_NAME else data


def resolve_data(data) -> str:
    """The dataset YAML file ``data=`` names: a path, a packaged name, or ``demo``."""
    from .evaluation.dataset import load_yaml

    return str(load_yaml(named_data(data))[0])


def run_val(tokens: list[str]) -> None:
    from .evaluation import evaluate_model, evaluate_predictions, save_detections

    args = parse_pairs(tokens, set(VAL_KEYS) | ultralytics_keys())
    mine, rest = split_ours(args, VAL_KEYS)
    check_ultralytics_values(rest)
    check_inference_batch(rest)
    key, weights = given_once({"weights": mine["weights"], "model": rest.pop("model", None)})
    if mine["predictions"] and weights:
        raise UsageError("give either weights= (run a model) or predictions= (score a file), not both")
    if not (weights or mine["predictions"]):
        raise UsageError("val needs weights=PATH.pt (or predictions=FILE.json)")
    settings = eval_settings(mine)
    if mine["predictions"] and settings.slicing:
        raise UsageError("slice= runs a model window by window; give weights=, not predictions=")
    split = required_split(rest)
    if mine["predictions"]:
        ignored = sorted(k for k in rest if k not in ("project", "name", "exist_ok"))
        if ignored:  # they set how a model runs; the file's detections are scored as they are
            print(f"yolo-spd: note: val predictions= scores the file's detections as they are and ignores "
                  f"{', '.join(f'{k}=' for k in ignored)} (Ultralytics' keys for running a model)", file=sys.stderr)
        result = evaluate_predictions(split, mine["predictions"], settings)
        with output_folder(rest, "val") as folder:
            _print_evaluation(result, folder, mine["per_class"])
        return
    model = load_model(weights, key)
    with output_folder(rest, "val", task=model.task) as folder:
        evaluation = evaluate_model(model, split, settings, save_dir=str(folder), **rest)
        save_detections(evaluation, evaluation.save_dir)
        _print_evaluation(evaluation.result, evaluation.save_dir, mine["per_class"])


def run_train(tokens: list[str]) -> None:
    from .evaluation import check_ground_truth, evaluate_model, resolve_split, save_detections

    args = parse_pairs(tokens, set(TRAIN_KEYS) | ultralytics_keys())
    mine, rest = split_ours(args, TRAIN_KEYS)
    settings = eval_settings(mine)  # refuse bad evaluation keys before training
    key, model = given_once({"cfg": mine["cfg"], "model": rest.pop("model", None)})
    typed = "resume" in rest
    if mine["overrides"]:  # before resume=, which the file may hold
        rest = {**_read_overrides(mine["overrides"], given=rest), **rest}
    resume = rest.get("resume")
    model = _resumed_model(rest, model)
    if isinstance(resume, str) and resume.strip() and model == resume:
        # the checkpoint came from resume=PATH, typed or in the overrides file: errors name where it was given
        key = "resume" if typed else f"overrides={mine['overrides']}: resume"
    model = resolve_model(model or DEFAULT_MODEL, key or "cfg")
    check_ultralytics_values(rest)
    val_split = None
    if not rest.get("resume"):  # a resumed run takes its data and settings from the checkpoint
        rest = _with_training_data(rest, model)
        val_split = resolve_split(rest["data"], "val")  # fail before training; scored after it
        check_ground_truth(val_split, settings.gt)
    from ultralytics import YOLO

    yolo = load_model(model, key or "cfg")
    if rest.get("resume"):  # the checkpoint names its run folder and its data
        from .model_source import is_resumable

        if str(model).lower().endswith((".yaml", ".yml")):  # a new model: nothing to continue
            raise UsageError(f"resume: {model} is a model YAML, which starts a new run; give an interrupted run's "
                             "last.pt (runs/detect/NAME/weights/last.pt), or train without resume")
        if not is_resumable(yolo):  # Ultralytics would train anew on coco8 or assert, after making a folder
            raise UsageError(f"resume: {model} is no unfinished run's checkpoint (it has no epoch and optimizer state: "
                             "a finished run's weights, or not written by training); give an interrupted run's "
                             "last.pt, or train without resume")
        resumed = {}

        def check_resumed_data(trainer) -> None:
            """Once Ultralytics has read the checkpoint's arguments (the data it trains on, which depends on its
            version when data= is also given) and before it resumes: the same refusals a new run gets up front."""
            resumed["split"] = resolve_split(trainer.args.data, "val")
            check_ground_truth(resumed["split"], settings.gt)

        yolo.add_callback("on_pretrain_routine_start", check_resumed_data)
        yolo.train(**rest)
        val_split = resumed.get("split")
    else:  # project/name/exist_ok stay in the recorded arguments (args.yaml) as given
        with output_folder(dict(rest), "train", task=yolo.task) as folder:
            yolo.train(**rest, save_dir=str(folder))
    trainer = yolo.trainer
    best = next((p for p in (trainer.best, trainer.last) if Path(p).is_file()), None)
    if best is None:
        return
    print(f"\nScoring {best} with COCO's evaluator")
    val_args = {k: getattr(trainer.args, k) for k in ("imgsz", "batch", "device", "workers")}
    evaluation = evaluate_model(YOLO(best), val_split or resolve_split(trainer.args.data, "val"), settings,
                                save_dir=str(trainer.save_dir), plots=False, **val_args)
    save_detections(evaluation, trainer.save_dir)
    _print_evaluation(evaluation.result, trainer.save_dir, mine["per_class"])


def _resumed_model(args: dict, model):
    """The model of a training command whose ``resume`` is in ``args`` (set to True there): ``resume=PATH``, as
    Ultralytics takes it, names the checkpoint (the same file as ``model=`` or instead of it); resume needs one, as the
    default config has no run to continue. Without resume, ``model`` as given."""
    resume = args.get("resume")
    if isinstance(resume, str) and resume.strip():
        if model is not None and Path(str(model)).resolve() != Path(resume).resolve():
            given_once({"model": model, "resume": resume})  # two different checkpoints: refused
        model, args["resume"] = resume, True
    elif resume == "":  # resume= with no value: a flag, as Ultralytics reads it
        args["resume"] = True
    if args.get("resume") and model is None:
        raise UsageError("resume=True needs model=PATH/weights/last.pt, the checkpoint of the run to continue")
    return model


def _with_training_data(args: dict, model: str) -> dict:
    """``args`` with ``data`` resolved to a checked YAML; without ``data`` (or with ``data=demo``), the demo dataset
    and its recipe (:data:`DEMO_TRAIN_ARGS`; a key given wins)."""
    from .demo import DEMO_DATA_NAME
    from .evaluation.dataset import check_train_labels, resolve_split

    if args.get("data") and str(args["data"]) != DEMO_DATA_NAME:
        args = {**args, "data": resolve_data(args["data"])}
    else:  # Ultralytics' defaults (100 epochs at 640) would take hours on these 256-px images for nothing
        epochs = os.environ.get(DEMO_EPOCHS_ENV)
        demo = {**DEMO_TRAIN_ARGS, **({"epochs": int(epochs)} if epochs else {})}
        how = "data=demo" if args.get("data") else "no data= given"
        kept = ", ".join(f"{k}={v}" for k, v in demo.items() if k not in args)
        args = {**demo, **args, "data": resolve_data(DEMO_DATA_NAME)}
        print(f"yolo-spd: {how}, training {model} on the built-in demo dataset {args['data']}"
              + (f" with the demo's settings ({kept})" if kept else ""))
    check_train_labels(resolve_split(args["data"], "train"))  # fail before training, never download
    return args


def _read_overrides(file, given: dict) -> dict:
    """The Ultralytics keys of an ``overrides=`` file, checked as command-line values are; a bad value is named
    with the file (where the command line does not set the same key, which wins)."""
    path = Path(str(file))
    if not path.is_file():
        raise UsageError(f"overrides={file}: file not found")
    from .model_source import read_yaml

    content = read_yaml(path, f"overrides={file}") or {}
    if not isinstance(content, dict):
        raise UsageError(f"overrides={file}: expected a mapping of Ultralytics keys")
    unknown = sorted(set(content) - ultralytics_keys())
    if unknown:
        raise UsageError(f"overrides={file}: unknown Ultralytics keys {', '.join(unknown)}")
    try:
        check_ultralytics_values({k: v for k, v in content.items() if k not in given})
    except UsageError as e:
        raise UsageError(f"overrides={file}: {e}") from None
    return content


def run_compare(tokens: list[str]) -> None:
    from .evaluation.compare import compare, markdown_table, per_class_table

    args = parse_pairs(tokens, set(COMPARE_KEYS) | ultralytics_keys())
    mine, rest = split_ours(args, COMPARE_KEYS)
    check_ultralytics_values(rest)
    check_inference_batch(rest)
    key, listed = given_once({"weights": mine["weights"], "model": rest.pop("model", None)})  # model= as in val
    files = _listed(listed, key)
    if len(files) < 2:
        raise UsageError("compare needs two or more checkpoints: weights=a.pt,b.pt[,...]")
    weights = [Path(resolve_model(w, key)) for w in files]
    resolved = [w.resolve() for w in weights]
    same = next((w for k, w in enumerate(weights) if resolved[k] in resolved[:k]), None)
    if same is not None:
        raise UsageError(f"{key}={','.join(files)}: {same} is listed twice; give each checkpoint once")
    settings = eval_settings(mine)
    split = required_split(rest)
    with output_folder(rest, "compare") as folder:
        scores, columns, saved = compare(weights, split, folder, settings, **rest)
    print(markdown_table(scores, columns))
    if mine["per_class"]:
        print(per_class_table(scores, settings.sizes.labels))
    print(f"Saved {', '.join(f.name for f in saved)} to {folder}")
    print(f"Results saved to {folder}")  # after each model's own line for its subfolder


def _listed(value, key: str) -> list[str]:
    """A comma-separated value (or a YAML list) of ``key=`` as a list of strings; an empty item (``a,,b``, a trailing
    comma) is refused, as it is most likely a name left out."""
    if value is None:
        return []
    items = [str(item).strip() for item in (value if isinstance(value, list) else str(value).split(","))]
    if "" in items:
        shown = ",".join(items)
        raise UsageError(f"{key}={shown}: item {items.index('') + 1} is empty; give a comma-separated list without "
                         "empty items")
    return items


def study_plan(tokens: list[str]):
    """The :class:`~yolo_spd.study.plan.StudyPlan` the ``yolo-spd study`` arguments describe, every value checked."""
    from .evaluation import check_ground_truth
    from .evaluation.dataset import check_train_labels, resolve_split
    from .run_folders import created_run_folder, remove_created
    from .slicing.tiles import TileSettings
    from .study.plan import StudyPlan

    args = parse_pairs(tokens, set(STUDY_KEYS) | ultralytics_keys())
    mine, rest = split_ours(args, STUDY_KEYS)
    models_key, listed = given_once({"models": mine["models"], "model": rest.pop("model", None)})
    models = _listed(listed, models_key)
    if not models:
        raise UsageError("study needs models=A.yaml,B.yaml[,...] (the first is the baseline)")
    control, wide = None, str(mine["control"]) == CONTROL_WIDE
    if mine["control"] is not None and not wide:
        given_control = str(mine["control"])
        if given_control not in models[1:]:
            raise UsageError(f"control={given_control}: name one of models= other than the first (the baseline), "
                             f"as written there ({', '.join(models[1:]) or 'none'}), or control=wide")
        control = models.index(given_control)
    models = [resolve_model(m, models_key, exports=False) for m in models]
    seeds = []
    for seed in _listed(mine["seeds"], "seeds"):
        try:
            seeds.append(int(seed))
        except ValueError:
            raise UsageError(f"seeds={mine['seeds']}: '{seed}' is not a whole number; give e.g. seeds=0,1,2") from None
    for key in ("resamples", "bootstrap_seed"):
        if isinstance(mine[key], bool) or not isinstance(mine[key], int):
            raise UsageError(f"{key}={mine[key]}: give a whole number")
    if "split" in rest:  # Ultralytics' val split key: a study's runs train on train and are scored on val
        raise UsageError(f"split={rest['split']}: a study trains on data='s train split and scores every run on its val "
                         "split; point the YAML's val: at the images to score")
    given = sorted(k for k in STUDY_OWN_TRAIN_KEYS if k in rest and k not in ("data", "project", "name"))
    if given:
        raise UsageError(f"{given[0]}= is set by the study for each run; give models=, seeds= and data= instead")
    if not rest.get("data"):
        raise UsageError("study needs data=DATASET.yaml (its val split scores every run)")
    check_ultralytics_values(rest)
    if "imgsz" in rest:  # what the runs train and are scored at, so the spec and the report say the size used
        rest["imgsz"] = training_imgsz(rest["imgsz"])
    data = named_data(rest.pop("data"))
    val, train_split = resolve_split(data, "val"), resolve_split(data, "train")
    check_ground_truth(val, mine["gt"])
    check_train_labels(train_split)
    tiles = None
    if mine["tile"] is not None:  # overlap= is shared with slice=
        given = {key: mine[key] for key in ("overlap", *STUDY_TILE_KEYS) if mine[key] is not None}
        tiles = TileSettings(tile=mine["tile"], **given)
        tiles.check()
    else:
        stray = next((key for key in STUDY_TILE_KEYS if mine[key] is not None), None)
        if stray:
            raise UsageError(f"{stray}= applies to the tiles only; add tile=SIZE (e.g. tile=640)")
    # overlap= with tile= and without slice= is the tiles' alone; without either, slicing refuses it
    settings = eval_settings({**mine, "overlap": None} if tiles and mine["slice"] is None else mine)
    val_keys = {k: rest[k] for k in STUDY_VAL_KEYS if k in rest}
    if "batch" in val_keys and not is_inference_batch(val_keys["batch"]):  # AutoBatch (-1), a memory fraction: they
        del val_keys["batch"]  # train; scoring takes Ultralytics' default batch
    project, name = rest.pop("project", None), rest.pop("name", None)
    if wide:  # the baseline widened to the costliest variant's GFLOPs, made in the study folder below
        from .study.control import control_file, single_scale
        from .study.runs import model_stem

        stem = f"{model_stem(models[0])}-wide"
        if stem in map(model_stem, models):
            raise UsageError(f"control=wide: makes {stem}.yaml, and models= already has a {stem}; name it control= "
                             "instead, or rename it")
        single_scale(models[0])  # a baseline it cannot widen is refused before the folder is made
    contrast_dir, contrast_variants = None, None
    if mine["contrast"] is not None:
        contrast_dir = Path(str(mine["contrast"]))
    if mine["contrast_variants"] is not None:
        if contrast_dir is None:
            raise UsageError(f"contrast_variants={mine['contrast_variants']}: names the variants of a contrast; add "
                             "contrast=DIR (the other study's folder)")
        names = _listed(mine["contrast_variants"], "contrast_variants")
        if len(names) != 2:
            raise UsageError(f"contrast_variants={','.join(names)}: give two, A (a variant of the contrast= study) "
                             "and B (one of models=), e.g. contrast_variants=yolov5-scconv-n.yaml,yolov5-scconv-s.yaml")
        contrast_variants = (names[0], names[1])
    plan = StudyPlan(models=tuple(models), seeds=tuple(seeds), data=str(data), val=val, train=rest, tiles=tiles,
                     evaluation=settings, folder=Path(), resamples=mine["resamples"],
                     bootstrap_seed=mine["bootstrap_seed"], command=" ".join(["yolo-spd study", *tokens]),
                     val_keys=val_keys, control=None if control is None else models[control],
                     train_split=train_split, checkpoint=str(mine["checkpoint"]), contrast=contrast_dir,
                     contrast_variants=contrast_variants)
    # every value is checked above, before the folder is made
    # exist_ok: the folder is the study's state, so the same name continues it (a study resumes; it never numbers)
    folder, created = created_run_folder(project, name, "study", exist_ok=True)
    if wide:
        try:
            file = control_file(folder, models, len(val.names), int(rest.get("imgsz", 640)))
        except BaseException:
            remove_created(created)  # nothing of a study that never started is left behind
            raise
        return dataclasses.replace(plan, models=(*models, str(file)), control=str(file), folder=folder,
                                   created=created)
    return dataclasses.replace(plan, folder=folder, created=created)


def run_study(tokens: list[str]) -> None:
    """``yolo-spd study models=... seeds=... data=... [keys]``: see :mod:`yolo_spd.study`."""
    from .run_folders import remove_created
    from .study.plan import run_study as run

    plan = study_plan(tokens)
    try:
        run(plan)
    except BaseException:
        # a new study that stopped before any run trained (device=3, unlabelled data for tile=) leaves no folder
        new = plan.created[:1] == (plan.folder,)
        if new and not any(plan.folder.glob("*/results.csv")) and not any(plan.folder.glob("*/weights/*.pt")):
            remove_created(plan.created)
        raise
    print(f"Study results saved to {plan.folder} (study.json, study.md, study.tex, study.csv, study_paired.csv, "
          f"study.png{', contrast.json, contrast.md, contrast.tex' if plan.contrast is not None else ''})")

#: Ultralytics' predict keys that write into the run folder; with none of them set, predict creates no folder.
PREDICT_OUTPUT_KEYS = ("save", "save_txt", "save_crop", "save_frames", "visualize")
#: The keys sliced predict takes besides Ultralytics' prediction keys (slicing.inference.PREDICT_KEYS).
SLICED_PREDICT_KEYS = ("source", "project", "name", "exist_ok", "save", "save_txt", "save_conf", "line_width",
                       "show_labels", "show_conf", "verbose")


def run_predict_or_export(mode: str, tokens: list[str]) -> None:
    """``YOLO(model).predict(...)`` / ``.export(...)``: every key as in Ultralytics, with the modules registered;
    ``predict slice=...`` predicts window by window (:func:`yolo_spd.slicing.inference.predict_sliced`).

    predict saves what ``yolo predict`` saves, where it saves it: ``save`` defaults to True as on Ultralytics' command
    line (its Python ``predict()`` defaults to False), into the run folder :func:`yolo_spd.run_folders.run_folder`
    picks (``runs/detect/predict``, ``predict-2``, ...); results are streamed, not collected, as ``yolo predict``
    does."""
    allowed = ultralytics_keys() | {"weights"} | (set(SLICE_KEYS) if mode == "predict" else set())
    args = parse_pairs(tokens, allowed)
    slice_keys, args = split_ours(args, SLICE_KEYS) if mode == "predict" else ({}, args)
    # weights=: val's and compare's name, taken here too
    key, args["model"] = given_once({"model": args.pop("model", None), "weights": args.pop("weights", None)})
    check_ultralytics_values(args)
    check_inference_batch(args)
    if not args.get("model"):
        raise UsageError(f"{mode} needs model=PATH.pt (or a model YAML)")
    from .slicing.inference import PREDICT_KEYS, SliceSettings

    slicing = SliceSettings.from_keys(**slice_keys) if slice_keys else None
    if slicing is not None:
        unsupported = sorted(set(args) - {"model"} - set(PREDICT_KEYS) - set(SLICED_PREDICT_KEYS))
        if unsupported:
            raise UsageError(f"{unsupported[0]}= is not supported with slice=; sliced predict takes "
                             f"{', '.join(SLICED_PREDICT_KEYS)}, {', '.join(PREDICT_KEYS)}")
    if mode == "export" and args.get("data"):  # INT8 calibration images, resolved here so nothing downloads them
        from .evaluation.dataset import resolve_split

        args["data"] = str(resolve_split(named_data(args["data"]), args.get("split") or "val").yaml_file)
    model = load_model(args.pop("model"), key, exports=mode != "export")  # an export is exported from its .pt
    if mode == "export":
        from .integration.exporting import ExportGuard

        check_offline_export(str(args.get("format", "torchscript")))
        guard = ExportGuard(data_given=bool(args.get("data")))
        model.add_callback("on_export_start", guard.on_export_start)
        with guard:  # a failed export leaves no files, and the earlier ones as they were
            model.export(**args)
        return
    args.setdefault("save", True)  # as `yolo predict`
    if not any(args.get(key) for key in PREDICT_OUTPUT_KEYS):
        _predict(model, slicing, args)
        return
    with output_folder(args, "predict", task=model.task) as folder:
        _predict(model, slicing, {**args, "save_dir": folder})


def _predict(model, slicing, args: dict) -> None:
    from .integration.predictor import announcing_predictor

    if slicing is not None:
        from .slicing.inference import predict_sliced

        predict_sliced(model, slicing, predictor=announcing_predictor(model), **args)
        return
    if args.get("save_dir"):
        args = {**args, "save_dir": str(args["save_dir"])}
    # consumed, not kept, as `yolo predict` does; with its device line and model summary first
    try:
        for _ in model.predict(stream=True, predictor=announcing_predictor(model), **args):
            pass
    except FileNotFoundError as error:  # Ultralytics' loaders name the path but not the key ("nope/ does not exist")
        if "source" not in args or not _raised_checking_user_input(error) or os.environ.get(TRACEBACK_ENV):
            raise
        raise UsageError(f"source={args['source']}: {' '.join(str(error).split())}") from error


#: ``yolo-spd info`` flags from before it took ``key=value`` (its ``python -m yolo_spd.info`` form keeps them), read as
#: the keys they stand for.
INFO_FLAGS = {"--latency": "latency=True", "--wall-time": "wall_time=True", "--no-cache": "cache=False",
              "--quiet": "verbose=False"}


def run_info(tokens: list[str]) -> None:
    """``yolo-spd info [pattern] latency=True imgsz=640 ...``: the model table (:class:`yolo_spd.info.InfoRequest`
    names the keys). A bare word is the pattern, as in ``yolo-spd info yolov5-spd-*``; a bare boolean key means
    True (``yolo-spd info latency``), as a bare boolean key does for Ultralytics' ``yolo`` (``yolo predict save``)."""
    from .info import InfoRequest, run

    keys = {field.name: field.default for field in dataclasses.fields(InfoRequest)}
    booleans = frozenset(key for key, default in keys.items() if isinstance(default, bool))
    pairs, patterns, unknown = [], [], []
    for token in joined_tokens(tokens, set(keys)):  # imgsz = 320, as yolo joins it
        token = INFO_FLAGS.get(token, token)
        key, sep, value = token.partition("=")
        name = key_name(key)
        if sep and name == "pattern":
            patterns.append(value.strip())
        elif sep or name in booleans:
            (pairs if name in keys else unknown).append(token)
        elif name in keys:
            raise UsageError(f"'{token}' needs a value: {name}=VALUE (yolo-spd info)")
        elif not token.startswith("-"):
            patterns.append(token)
        else:
            raise UsageError(f"'{token}' is not a key=value argument of yolo-spd info; keys: {', '.join(keys)} "
                             "(e.g. yolo-spd info yolov5-spd-* latency=True)")
    if len(patterns) > 1:
        raise UsageError(f"yolo-spd info: {len(patterns)} patterns given ({', '.join(patterns)}); give one, e.g. "
                         "yolo-spd info 'yolov5-*-n'")
    if unknown:  # the generic message would point at yolo-spd help, whose keys are mostly not info's
        raise UsageError(f"'{unknown[0].partition('=')[0]}' is not a yolo-spd info key; keys: {', '.join(keys)} "
                         "(no Ultralytics keys)")
    args = parse_pairs(pairs, set(keys), flags=booleans)
    if patterns:  # as typed, text (not read as a number); a config's file name names the config too
        args["pattern"] = patterns[0].removesuffix(".yaml")
    run(InfoRequest(**args))


def run_slice(tokens: list[str]) -> None:
    """``yolo-spd slice data=X.yaml tile=640 overlap=0.2 ...``: write (or reuse) a tiled copy of the dataset
    (``data=demo``: the built-in one)."""
    from .slicing.tiles import CLI_KEYS, TileSettings, slice_dataset, summary_lines

    mine, _ = split_ours(parse_pairs(tokens, set(CLI_KEYS)), CLI_KEYS)
    if not mine["data"]:
        raise UsageError("slice needs data=DATASET.yaml (a labelled YOLO dataset)")
    settings = TileSettings(**{k: v for k, v in mine.items() if k not in ("data", "out")})
    print("\n".join(summary_lines(slice_dataset(named_data(mine["data"]), settings, out=mine["out"]))))


#: The file onnx2tf checks its conversion on; Ultralytics downloads it before its onnx2tf exports, into the working
#: directory, unless it is there.
ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def check_offline_export(fmt: str) -> None:
    """Offline (``YOLO_OFFLINE``), an export that would download onnx2tf's sample file stops here, before any
    connection attempt: SavedModel, GraphDef, Edge TPU and TF.js, and TFLite where Ultralytics (8.4.67) still converts
    it through onnx2tf rather than LiteRT."""
    from ultralytics.engine.exporter import export_formats

    names = set(export_formats()["Argument"])
    onnx2tf = {"saved_model", "pb", "edgetpu", "tfjs"} | ({"tflite"} if "litert" not in names else set())
    offline = os.environ.get("YOLO_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on", "y", "t")
    installed = importlib.util.find_spec("tensorflow") is not None  # else the missing package is the first error
    if fmt.lower() in onnx2tf and offline and installed and not Path(ONNX2TF_SAMPLE).is_file():
        raise UsageError(f"format={fmt} needs {ONNX2TF_SAMPLE} in the working directory, which Ultralytics downloads "
                         f"before converting, and YOLO_OFFLINE is set; copy the file here or export online")


#: Each mode's docs page (``yolo-spd MODE help`` ends with it).
MODE_PAGES = {"train": "docs/cli.md", "val": "docs/evaluation.md", "compare": "docs/evidence.md",
              "predict": "docs/cli.md", "export": "docs/export.md", "info": "docs/models.md",
              "slice": "docs/small-objects.md", "study": "docs/study.md"}


def mode_keys(mode: str) -> set[str]:
    """The keys ``mode`` takes besides Ultralytics' own (those :data:`HELP` documents)."""
    from .info import InfoRequest
    from .slicing.tiles import CLI_KEYS

    return set({"train": TRAIN_KEYS, "val": VAL_KEYS, "compare": COMPARE_KEYS, "study": STUDY_KEYS,
                "predict": {"weights": None, **SLICE_KEYS}, "export": {"weights": None}, "slice": CLI_KEYS,
                "info": {f.name: None for f in dataclasses.fields(InfoRequest)}}[mode])


def mode_help(mode: str) -> str:
    """``yolo-spd MODE help``: the mode's line of :data:`HELP`, the entries of its keys (each under its section's
    title), its examples, and its docs page. (``yolo train help`` prints Ultralytics' whole help; one mode's keys are
    what its reader is after, and ``yolo-spd help`` still prints all.) A section after the first lists the keys of
    one feature, shown to the modes that take its first key (``slice=`` for sliced inference, ``tile=`` for tiles)."""
    keys, lines = mode_keys(mode), HELP.splitlines()
    summary = next(line.strip() for line in lines if line.startswith(f"  {mode} "))
    out = [f"yolo-spd {summary.split(None, 1)[0]}: {summary.split(None, 1)[1]}", "",
           f"Usage:  yolo-spd {mode} key=value ...", ""]
    title, entry, shown_titles, first = None, [], set(), None

    def flush():
        nonlocal first
        key = re.match(r"\s*(\w+)", entry[0]).group(1) if entry else None
        first = first or key
        if key in keys and (title == "Keys that differ from Ultralytics':" or first in keys):
            if title not in shown_titles:
                out.append(title)
                shown_titles.add(title)
            out.extend(entry)

    examples = [line for line in lines if line.lstrip().startswith(f"yolo-spd {mode}")]
    for line in lines[lines.index("Keys that differ from Ultralytics':"):lines.index("Examples:")]:
        if line.startswith("    "):  # an entry's continuation
            entry.append(line)
            continue
        flush()
        entry = []
        if line.startswith("  "):
            entry = [line]
        elif line.endswith(":"):
            title, first = line, None
        elif line.startswith("Every other key is Ultralytics'") and mode not in ("info", "slice"):
            out.append(line)  # the mode takes Ultralytics' keys too
    flush()
    return "\n".join([*out, "Examples:", *examples, "", f"More: {MODE_PAGES[mode]}; every mode: yolo-spd help"])


def main(argv: list[str] | None = None) -> int:
    """Run one ``yolo-spd`` command; returns the exit status (2 for bad input, with one error line on stderr)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    helps = {"help", "--help", "-h"}
    asked = [a for a in argv if a in MODE_PAGES][:1] if argv and argv[0] in helps else argv[:1]
    if not argv or argv[0] in helps or (helps & set(argv[1:]) and argv[0] in MODE_PAGES):
        print(mode_help(asked[0]) if asked and asked[0] in MODE_PAGES else HELP)  # `yolo-spd study help`: its keys
        return 0
    mode, tokens = argv[0], argv[1:]
    try:
        try:
            if mode not in MODES:
                close = difflib.get_close_matches(mode, MODES, n=1)
                suggestion = f" (did you mean {close[0]}?)" if close else ""
                raise UsageError(f"'{mode}' is not a yolo-spd mode; choose from {', '.join(MODES)}{suggestion}")
            import yolo_spd  # noqa: F401 - registers the modules
            from .integration.autoinstall import without_autoinstall

            with without_autoinstall():  # a missing package is named below, never pip-installed
                RUNNERS.get(mode, lambda t: run_predict_or_export(mode, t))(tokens)
        except ModuleNotFoundError as error:
            raise _missing_package(error, mode, tokens) from error
        except Exception as error:
            unparsable, shape = _unparsable_onnx(error), _onnx_input_shape(error)
            if unparsable is not None and not os.environ.get(TRACEBACK_ENV):
                raise UsageError(f"{unparsable}: not an ONNX model ONNX Runtime can read (empty, truncated or not "
                                 f"ONNX); export it again from its .pt (set {TRACEBACK_ENV}=1 for the traceback)"
                                 ) from error
            if shape is not None and not os.environ.get(TRACEBACK_ENV):
                raise UsageError(f"a static ONNX export was given another input shape than it was exported for "
                                 f"({shape}); give the imgsz= (and batch=) it was exported at, or export it with "
                                 f"dynamic=True (set {TRACEBACK_ENV}=1 for the traceback)") from error
            if not isinstance(error, USER_ERROR_TYPES) or not _raised_checking_user_input(error):
                raise
            if os.environ.get(TRACEBACK_ENV):
                raise
            message = one_line(str(error), listed=1 if _raised_in(error, "ultralytics/data/dataset.py") else None)
            message = message or type(error).__name__
            message = re.sub(r"^ERROR\W*", "", message)  # Ultralytics' "ERROR ❌️ " prefix: the line says error once
            given = next((t.split("=", 1)[1] for t in tokens if t.startswith("device=")), None)
            if given and "'device=" in message and f"'device={given}'" not in message:  # select_device rewrote it
                message = f"device={given}: {message}"  # (cuda:0 -> 0): name the value as the user gave it
            data = next((t.split("=", 1)[1] for t in tokens if t.startswith("data=")), None)
            if data and _raised_in(error, "ultralytics/data/dataset.py"):  # the label scan: name the dataset
                message = f"data={data}: {message}"
            raise UsageError(f"{message} (set {TRACEBACK_ENV}=1 for the traceback)") from error
    except UsageError as e:  # includes yolo_spd.model_yaml.ModelYAMLError
        print(f"yolo-spd: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: no bug, so no traceback where the command says how to go on
        if mode not in CONTINUE_AFTER_INTERRUPT:
            raise
        print(f"yolo-spd: interrupted; {CONTINUE_AFTER_INTERRUPT[mode]}", file=sys.stderr)
        return 130  # the shell's status for SIGINT
    return 0


#: What to do after Ctrl-C, for the commands that can continue where they stopped.
CONTINUE_AFTER_INTERRUPT = {
    "study": "run the same command again to continue: finished runs are kept and the interrupted one resumes from its "
             "last.pt",
    "train": "continue with yolo-spd train resume=True model=RUN/weights/last.pt (RUN: the run folder printed above)",
}


RUNNERS = {"train": run_train, "val": run_val, "compare": run_compare, "info": run_info, "slice": run_slice,
           "study": run_study}
TRACEBACK_ENV = "YOLO_SPD_TRACEBACK"
# Where Ultralytics checks the user's arguments, files and datasets, and the exceptions it raises there: check_cfg
# (TypeError) and check_dict_alignment (SyntaxError) in ultralytics/cfg, check_file/check_yaml in utils/checks.py and
# check_det_dataset in data/ (FileNotFoundError), the dataset's label scan (data/dataset.py: RuntimeError "No valid
# images found" when every image or label is corrupt, ValueError "No labels found" for a train split without labels,
# 8.4.190), select_device (ValueError: device=0 without that GPU), the
# exporter's argument checks in Exporter.__call__ (ValueError: an unknown format, an option a format lacks) and
# validate_args (AssertionError: a key the format does not take, such as data= for TorchScript); and its downloader,
# offline (ConnectionError: e.g. the sample-image file its TensorFlow exports fetch before converting). A place is a
# file, or FILE:FUNCTION where the file also raises that exception elsewhere. The same exception raised anywhere else
# is a bug: traceback.
USER_INPUT_CHECKS = {
    SyntaxError: ("ultralytics/cfg/",),
    TypeError: ("ultralytics/cfg/",),
    FileNotFoundError: ("ultralytics/cfg/", "ultralytics/utils/checks.py", "ultralytics/data/"),
    ValueError: ("ultralytics/utils/torch_utils.py:select_device", "ultralytics/engine/exporter.py:__call__",
                 "ultralytics/data/dataset.py:cache_labels"),
    RuntimeError: ("ultralytics/data/dataset.py:get_labels",),
    ConnectionError: ("ultralytics/utils/downloads.py:safe_download",),
    AssertionError: ("ultralytics/engine/exporter.py:validate_args",),
}
USER_ERROR_TYPES = tuple(USER_INPUT_CHECKS)
# Export packages tested together in an extra that pins numpy, protobuf or onnx below what the rest is tested with, so
# a plain `pip install tensorflow` (or quark: an unrelated PyPI package) here would not give a working set:
# import name -> (the extra, why it needs a venv of its own).
_TF = ("export-tf", "TensorFlow 2.19 needs numpy < 2.2")
OWN_VENV_EXTRAS = {**dict.fromkeys(("tensorflow", "tf_keras", "onnx2tf", "sng4onnx", "onnx_graphsurgeon",
                                    "litert_torch", "ai_edge_litert"), _TF),
                   "coremltools": ("export-tf", "coremltools fails on YOLO11 models under numpy 2.4; that venv has "
                                   "numpy <= 2.3.5"),
                   "quark": ("export-xilinx", "AMD Quark needs onnx <= 1.22")}
# Import names whose pip package is named differently (pip normalises '_' and '-', so litert_torch needs no entry).
PIP_NAMES = {"paddle": "paddlepaddle", "rknn": "rknn-toolkit2", "cv2": "opencv-python", "PIL": "pillow",
             "coreai": "coreai-torch",
             "sklearn": "scikit-learn", "yaml": "pyyaml"}


def one_line(message: str, listed: int | None = None) -> str:
    """An Ultralytics error message as one line: colour codes and help links dropped; with ``listed``, of a message
    that lists one issue per line after its first (the label scan's corrupt images) the first ``listed`` issues and a
    count of the others."""
    lines = [" ".join(line.split()) for line in re.sub(r"\x1b\[[0-9;]*m", "", message).splitlines()]
    lines = [re.sub(r"\s*See https?://\S+[^.]*\.?", "", line) for line in lines]  # Ultralytics' help links
    lines = [line for line in lines if line]
    if listed is not None and len(lines) > 1 + listed:
        lines = [*lines[:1 + listed], f"(and {len(lines) - 1 - listed} more)"]
    return " ".join(lines)


def _unparsable_onnx(error: BaseException) -> str | None:
    """The file named by ONNX Runtime's InvalidProtobuf (an .onnx it cannot parse), raised itself (Ultralytics 8.4.67)
    or as the cause of Ultralytics' TypeError (8.4.190); None for any other error."""
    for e in (error, error.__cause__):
        if type(e).__name__ == "InvalidProtobuf" and type(e).__module__.startswith("onnxruntime"):
            found = re.search(r"Load model from (.+?) failed", str(e))
            return found.group(1) if found else "the ONNX model"
    return None


def _onnx_input_shape(error: BaseException) -> str | None:
    """ONNX Runtime's InvalidArgument for an input of another shape than a static export's (Ultralytics 8.4.67 runs
    one at imgsz=, 8.4.190 at its own size), as "index 2: 320, expected 256; ..."; None for any other error."""
    if type(error).__name__ != "InvalidArgument" or not type(error).__module__.startswith("onnxruntime"):
        return None
    found = re.findall(r"index: (\d+) Got: (\d+) Expected: (\d+)", str(error))
    if "Got invalid dimensions for input" not in str(error) or not found:
        return None
    return "; ".join(f"dimension {i}: {got}, expected {want}" for i, got, want in found)


def _innermost_frame(error: BaseException):
    traceback = error.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    return traceback


def _raised_in(error: BaseException, path: str) -> bool:
    """Was ``error`` raised (innermost frame) in the file ``path`` (a suffix, such as ``ultralytics/data/x.py``)?"""
    traceback = _innermost_frame(error)
    return traceback is not None and path in Path(traceback.tb_frame.f_code.co_filename).as_posix()


def _raised_checking_user_input(error: BaseException) -> bool:
    """Was ``error`` raised (innermost frame) by one of Ultralytics' argument, file or dataset checks?"""
    places = next((p for kind, p in USER_INPUT_CHECKS.items() if isinstance(error, kind)), ())
    traceback = _innermost_frame(error)
    if traceback is None:
        return False
    if isinstance(error, ConnectionError) and not isinstance(error.__cause__, (OSError, type(None))):
        return False  # safe_download wraps whatever failed; only a network failure is the user's situation
    if isinstance(error, AssertionError) and "is not supported" not in str(error):
        return False  # validate_args also asserts that its own table lists the format: a gap there is no user error
    code = traceback.tb_frame.f_code
    file = Path(code.co_filename).as_posix()
    for place in places:
        path, _, function = place.partition(":")
        if path in file and function in ("", code.co_name):
            return True
    return False


def _missing_package(error: ModuleNotFoundError, mode: str, tokens: list[str]) -> BaseException:
    """A UsageError naming the package an optional feature (an export format, an exported model's runtime) needs and
    the pip command; ``error`` itself when the missing module is part of yolo_spd, Ultralytics or torch (a bug)."""
    package = (error.name or "").partition(".")[0]
    if not package or package in ("yolo_spd", "ultralytics", "torch", "_yolo_spd_autoload"):
        return error
    given = dict(token.partition("=")[::2] for token in tokens if "=" in token)
    what = f"format={given['format']}" if given.get("format") else f"model={given['model']}" if given.get(
        "model") else mode
    if package in OWN_VENV_EXTRAS:
        extra, reason = OWN_VENV_EXTRAS[package]
        how = f"install the {extra} extra in a venv of its own ({reason}; docs/export.md): "
        command = f"pip install 'yolo_spd[{extra}]'"
    else:
        how, command = "install it with: ", f"pip install {PIP_NAMES.get(package, package)}"
    return UsageError(f"{what} needs the Python package '{package}', which is not installed (yolo_spd never installs "
                      f"packages at run time); {how}{command}")


def entry() -> None:
    """The console script. Output piped into a reader that stops early (``yolo-spd info | head``) ends the command
    quietly, as the Python docs advise for SIGPIPE, instead of a BrokenPipeError traceback."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # some other pipe: a bug, with its traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        code = 1
    sys.exit(code)


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (poll reports an error on it). Without ``select.poll``
    (Windows) it cannot tell, and says yes, as the Python docs' SIGPIPE recipe assumes."""
    import select

    if not hasattr(select, "poll"):
        return True
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))
    except (OSError, ValueError):  # no file descriptor behind stdout
        return True
