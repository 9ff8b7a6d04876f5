"""The ``yolo-spd`` command: Ultralytics' ``yolo`` with yolo_spd's modules registered and COCO AP_S evaluation.

Arguments use Ultralytics' ``key=value`` style. See :data:`HELP` (``yolo-spd help``) for the modes and keys.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path

import yaml

from .errors import UsageError

HELP = """\
yolo-spd: Ultralytics YOLO with SPD-Conv, SCConv and SSDConv, and COCO small-object (AP_S) evaluation.

Usage:  yolo-spd MODE key=value ...

Modes:
  train    train like `yolo train`, then score best.pt with COCO's evaluator
  val      validate weights, or score a saved detections file, with COCO's evaluator (AP_S highlighted)
  compare  validate several checkpoints on the same data: side-by-side table, CSV/JSON, AP-by-size bar plot
  predict  `yolo predict` with the yolo_spd modules registered (all keys as in Ultralytics)
  export   `yolo export` with the yolo_spd modules registered (all keys as in Ultralytics)
  info     table of the packaged model configs: yolo-spd info [pattern] [--latency]
  help     this text

Keys that differ from Ultralytics':
  cfg=MODEL.yaml        train: the MODEL YAML (as in the SPD-Conv authors' scripts); model= works too
  overrides=FILE.yaml   train: an Ultralytics settings-override file (what `yolo train cfg=` means)
  weights=PATH.pt       val: the checkpoint to validate (model= works too); compare: a comma-separated list
  predictions=FILE.json val: score this COCO detections file instead of running a model
  sizes=coco            size ranges: coco (small<32<=medium<96<=large px), aitod (2/8/16/32 px), or bounds: 0,16,32,96
  backend=pycocotools   pycocotools (the numbers papers quote) or faster (faster-coco-eval)
  gt=auto               ground truth: auto (the dataset's COCO JSON if it has one, else its labels), json, labels
  per_class=False       also print a per-class AP table (Markdown)
Every other key is Ultralytics' (epochs, imgsz, batch, device, project, name, ...): https://docs.ultralytics.com/usage/cfg/

Examples:
  yolo-spd train                                   # the offline demo: yolov5-spd-n on synthetic small objects
  yolo-spd train cfg=yolov5-spd-s.yaml data=coco.yaml epochs=300 imgsz=640
  yolo-spd val weights=runs/detect/train/weights/best.pt data=coco.yaml per_class=True
  yolo-spd val predictions=preds.json data=coco.yaml sizes=aitod
  yolo-spd val weights=runs/detect/train/weights/best.pt data=demo   # the built-in demo dataset
  yolo-spd compare weights=yolov5nu.pt,yolov5-spd-n.pt data=aerial.yaml sizes=aitod
  yolo-spd predict model=best.pt source=images/
  yolo-spd export model=best.pt format=onnx
  yolo-spd info yolov5-spd-*

Dataset YAMLs may name the official annotation file with `coco_json: annotations/instances_val2017.json`; COCO's AP_S
is only the official one when scored against it (the packaged `coco.yaml` does this). yolo-spd never downloads data.
"""

MODES = ("train", "val", "compare", "predict", "export", "info", "help")
EVAL_KEYS = {"sizes": "coco", "backend": "pycocotools", "gt": "auto", "per_class": False}
TRAIN_KEYS = {"cfg": None, "overrides": None, **EVAL_KEYS}
VAL_KEYS = {"weights": None, "predictions": None, **EVAL_KEYS}
# About 3 minutes on 2 idle CPU cores. From scratch, 8 epochs never leave Ultralytics' warm-up (at least 100
# iterations) at its default batch 8 and auto-chosen AdamW lr 0.0014: AP stayed 0.000. No warm-up, batch 4 (twice the
# steps) and lr 0.004 reach AP_S about 0.02 in the same time; lr 0.008 and batch 8 did worse (README, Quick start).
DEMO_TRAIN_ARGS = {"epochs": 8, "imgsz": 256, "batch": 4, "optimizer": "AdamW", "lr0": 0.004, "warmup_epochs": 0}
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


def parse_pairs(tokens: list[str], allowed: set[str]) -> dict:
    """``key=value`` tokens -> dict, refusing malformed tokens and unknown keys with a close-match suggestion."""
    args = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
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


def _is_model_yaml(file: Path) -> bool:
    try:
        content = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(content, dict) and "backbone" in content


def resolve_model(model, mode_key: str) -> str:
    """A model YAML, a checkpoint or (except for training) an export; see :mod:`yolo_spd.model_source`."""
    from .model_source import resolve_model

    return resolve_model(model, mode_key, exports=mode_key != "cfg")


def _runs_folder(project, name: str) -> Path:
    from ultralytics.utils import RUNS_DIR

    base = Path(project) if project else Path(RUNS_DIR) / "detect"
    folder, n = base / name, 2
    while folder.exists():
        folder, n = base / f"{name}{n}", n + 1
    return folder


def _print_evaluation(result, folder: Path, per_class: bool) -> None:
    from .evaluation import report

    print(report.header(result))
    print("\n".join(report.summary_lines(result)))
    if per_class:
        print(report.per_class_table(result))
    json_file, csv_file = report.save(result, folder)
    print(f"Saved {json_file.name} and {csv_file.name} to {folder}")


def required_data(args: dict) -> str:
    """Pop ``data`` from ``args`` and resolve it (see :func:`resolve_data`); it must be given."""
    if not args.get("data"):
        raise UsageError("data= is required (a dataset YAML path, a packaged name such as coco.yaml, or demo)")
    return resolve_data(args.pop("data"))


def resolve_data(data) -> str:
    """The dataset YAML file ``data=`` names, checked to exist with its images (``demo``: the built-in dataset)."""
    from .demo import DEMO_DATA_NAME, demo_data_yaml
    from .evaluation.dataset import resolve_split

    if str(data) == DEMO_DATA_NAME:
        return str(demo_data_yaml())
    return str(resolve_split(data, "val").yaml_file)


def run_val(tokens: list[str]) -> None:
    from .evaluation import evaluate_model, evaluate_predictions, save_detections

    args = parse_pairs(tokens, set(VAL_KEYS) | ultralytics_keys())
    mine, rest = split_ours(args, VAL_KEYS)
    weights = mine["weights"] or rest.pop("model", None)
    if mine["predictions"] and weights:
        raise UsageError("give either weights= (run a model) or predictions= (score a file), not both")
    if not (weights or mine["predictions"]):
        raise UsageError("val needs weights=PATH.pt (or predictions=FILE.json)")
    data = required_data(rest)
    split = rest.pop("split", None) or "val"
    eval_args = {k: mine[k] for k in ("sizes", "backend", "gt")}
    if mine["predictions"]:
        result = evaluate_predictions(data, mine["predictions"], split=split, **eval_args)
        folder = _runs_folder(rest.get("project"), rest.get("name") or "val")
        _print_evaluation(result, folder, mine["per_class"])
        return
    from ultralytics import YOLO

    model = YOLO(resolve_model(weights, "weights"))
    evaluation = evaluate_model(model, data, split=split, **eval_args, **rest)
    save_detections(evaluation, evaluation.save_dir)
    _print_evaluation(evaluation.result, evaluation.save_dir, mine["per_class"])


def run_train(tokens: list[str]) -> None:
    from .evaluation import evaluate_model, save_detections

    args = parse_pairs(tokens, set(TRAIN_KEYS) | ultralytics_keys())
    mine, rest = split_ours(args, TRAIN_KEYS)
    if mine["cfg"] and rest.get("model"):
        raise UsageError("give the model once: cfg= or model=, not both")
    model = resolve_model(mine["cfg"] or rest.pop("model", None) or DEFAULT_MODEL, "cfg")
    if mine["overrides"]:
        rest = {**_read_overrides(mine["overrides"]), **rest}
    if not rest.get("resume"):  # a resumed run takes its data and settings from the checkpoint
        rest = _with_training_data(rest, model)
    from ultralytics import YOLO

    yolo = YOLO(model)
    yolo.train(**rest)
    trainer = yolo.trainer
    best = next((p for p in (trainer.best, trainer.last) if Path(p).is_file()), None)
    if best is None:
        return
    print(f"\nScoring {best} with COCO's evaluator")
    val_args = {k: getattr(trainer.args, k) for k in ("imgsz", "batch", "device", "workers")}
    evaluation = evaluate_model(
        YOLO(best), trainer.args.data, sizes=mine["sizes"], backend=mine["backend"], gt=mine["gt"],
        project=str(trainer.save_dir.parent), name=trainer.save_dir.name, exist_ok=True, plots=False, **val_args,
    )
    save_detections(evaluation, trainer.save_dir)
    _print_evaluation(evaluation.result, trainer.save_dir, mine["per_class"])


def _with_training_data(args: dict, model: str) -> dict:
    """``args`` with ``data`` resolved to a checked YAML; without ``data``, the demo dataset and its defaults."""
    from .evaluation.dataset import resolve_split

    if args.get("data"):
        args = {**args, "data": resolve_data(args["data"])}
    else:
        epochs = os.environ.get(DEMO_EPOCHS_ENV)
        demo = {**DEMO_TRAIN_ARGS, **({"epochs": int(epochs)} if epochs else {})}
        args = {**demo, **args, "data": resolve_data("demo")}
        print(f"yolo-spd: no data= given, training {model} on the built-in demo dataset {args['data']}")
    resolve_split(args["data"], "train")  # fail before training, never download
    return args


def _read_overrides(file) -> dict:
    path = Path(str(file))
    if not path.is_file():
        raise UsageError(f"overrides={file}: file not found")
    content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(content, dict):
        raise UsageError(f"overrides={file}: expected a mapping of Ultralytics keys")
    unknown = sorted(set(content) - ultralytics_keys())
    if unknown:
        raise UsageError(f"overrides={file}: unknown Ultralytics keys {', '.join(unknown)}")
    return content


def run_compare(tokens: list[str]) -> None:
    from .compare import compare, markdown_table

    args = parse_pairs(tokens, {"weights", *EVAL_KEYS} | ultralytics_keys())
    mine, rest = split_ours(args, {"weights": None, **EVAL_KEYS})
    files = [w.strip() for w in str(mine["weights"] or "").split(",") if w.strip()]
    if len(files) < 2:
        raise UsageError("compare needs two or more checkpoints: weights=a.pt,b.pt[,...]")
    weights = [Path(resolve_model(w, "weights")) for w in files]
    data = required_data(rest)
    folder = _runs_folder(rest.pop("project", None), rest.pop("name", None) or "compare")
    scores, columns, saved = compare(weights, data, folder, **{k: mine[k] for k in ("sizes", "backend", "gt")}, **rest)
    print(markdown_table(scores, columns))
    print(f"Saved {', '.join(f.name for f in saved)} to {folder}")


def run_predict_or_export(mode: str, tokens: list[str]) -> None:
    """``YOLO(model).predict(...)`` / ``.export(...)``: every key as in Ultralytics, with the modules registered."""
    from ultralytics import YOLO

    args = parse_pairs(tokens, ultralytics_keys())
    if not args.get("model"):
        raise UsageError(f"{mode} needs model=PATH.pt (or a model YAML)")
    model = YOLO(resolve_model(args.pop("model"), "model"))
    getattr(model, mode)(**args)


def run_info(tokens: list[str]) -> None:
    from .info import main as info_main

    info_main(tokens)


def main(argv: list[str] | None = None) -> int:
    """Run one ``yolo-spd`` command; returns the exit status (2 for bad input, with one error line on stderr)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("help", "--help", "-h") or "--help" in argv or "-h" in argv:
        print(HELP)
        return 0
    mode, tokens = argv[0], argv[1:]
    try:
        if mode not in MODES:
            close = difflib.get_close_matches(mode, MODES, n=1)
            suggestion = f" (did you mean {close[0]}?)" if close else ""
            raise UsageError(f"'{mode}' is not a yolo-spd mode; choose from {', '.join(MODES)}{suggestion}")
        import yolo_spd  # noqa: F401 - registers the modules

        RUNNERS.get(mode, lambda t: run_predict_or_export(mode, t))(tokens)
    except UsageError as e:
        print(f"yolo-spd: error: {e}", file=sys.stderr)
        return 2
    except (SyntaxError, TypeError, FileNotFoundError) as e:  # Ultralytics' argument and dataset checks
        if os.environ.get(TRACEBACK_ENV):
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"yolo-spd: error: {message} (set {TRACEBACK_ENV}=1 for the traceback)", file=sys.stderr)
        return 2
    return 0


RUNNERS = {"train": run_train, "val": run_val, "compare": run_compare, "info": run_info}
TRACEBACK_ENV = "YOLO_SPD_TRACEBACK"


def entry() -> None:
    sys.exit(main())
