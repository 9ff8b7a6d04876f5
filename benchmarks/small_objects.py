"""Does SPD help small objects? Train baseline and yolo_spd detectors identically on real aerial data, compare AP by size.

    python benchmarks/small_objects.py                       # the README's study (hours on a 2-core CPU)
    python benchmarks/small_objects.py --epochs 1 --seeds 0  # a smoke run
    python benchmarks/small_objects.py --optimizer AdamW --lr0 0.004 --warmup-epochs 0 --tag adamw
                                                             # the same study with the demo's optimiser
    python benchmarks/small_objects.py --replot benchmarks/results/small_objects.json --write-docs docs/evidence.md
                                                             # table and plot again; the table into the docs

Every model trains from scratch with the same seeds, epochs, image size and hyper-parameters on
``../shared/data/aerial-cars`` (KIT AIS aerial images, 88% of boxes under 32x32 px). Runs are resumable: a run that
finished is skipped, one that was interrupted resumes from its ``last.pt``, so re-running the command after a crash
or a reboot picks up where it stopped. Then ``yolo_spd.evaluation.compare`` scores each seed's models with COCO's
evaluator (COCO and AI-TOD size ranges) and the script writes ``results/small_objects.{md,json,png}``: mean +- std
over seeds. ``--write-docs FILE`` also writes the table into the generated block named like the results
(``small_objects`` or ``small_objects-<tag>``) of each Markdown FILE (:mod:`yolo_spd.markdown`).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "aerial-cars" / "data.yaml"
BASELINE = "yolov5nu.yaml"  # Ultralytics' YOLOv5n (anchor-free head), the same head as the yolo_spd configs
CANDIDATES = ("yolov5-spd-n.yaml", "yolov5-scconv-n.yaml", "yolov5-ssdconv-n.yaml")
AITOD = "aitod:"  # prefix of metrics under the AI-TOD ranges (their "small" is 16-32 px, COCO's is < 32 px)
COLUMNS = ("AP", "AP50", "AP_small", "AP_medium", "AR_small", f"{AITOD}AP_verytiny", f"{AITOD}AP_tiny",
           f"{AITOD}AP_small", "train_minutes")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--models", nargs="+", default=None, help="model YAMLs (default: baseline + packaged n-scale)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20,
                        help="20 at 512 px: about 10-13 min per run on 2 idle cores, so 4 models x 3 seeds take about "
                             "2.5 h (the results table's last column has the measured minutes); --models picks a subset")
    parser.add_argument("--imgsz", type=int, default=512, help="images are 684-1764 px wide: cars shrink, never grow")
    parser.add_argument("--batch", type=int, default=4, help="4: more optimiser steps from 55 images")
    parser.add_argument("--optimizer", default=None, help="Ultralytics' optimizer= (default: its own, 'auto')")
    parser.add_argument("--lr0", type=float, default=None, help="Ultralytics' lr0= (default: its own)")
    parser.add_argument("--warmup-epochs", type=float, default=None, help="Ultralytics' warmup_epochs= (default: 3)")
    parser.add_argument("--tag", default="", help="names a variant: its runs and result files get this suffix")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--replot", type=Path, default=None, metavar="JSON",
                        help="rewrite the table and plot of a finished study from its results JSON (no training)")
    parser.add_argument("--runs", type=Path, default=HERE / "runs" / "small_objects")
    parser.add_argument("--write-docs", nargs="+", type=Path, default=[], metavar="FILE",
                        help="also write the table into the generated block named like the results (small_objects, "
                             "small_objects-<tag>) of each Markdown FILE, e.g. docs/evidence.md")
    return parser.parse_args(argv)


def default_models() -> list[str]:
    from yolo_spd.configs import packaged_config

    return [BASELINE, *(name for name in CANDIDATES if packaged_config(name) is not None)]


def tagged(name: str, tag: str) -> str:
    """A variant's runs, compare folders and result files carry its --tag as a suffix."""
    return f"{name}-{tag}" if tag else name


def run_name(model: str, seed: int, tag: str = "") -> str:
    return tagged(f"{Path(model).stem}-seed{seed}", tag)


def result_stem(args: argparse.Namespace) -> str:
    return tagged("small_objects", args.tag)


OPTIMISER_KEYS = ("optimizer", "lr0", "warmup_epochs")  # Ultralytics' keys for --optimizer/--lr0/--warmup-epochs


def optimiser_args(args: argparse.Namespace) -> dict:
    """The optimiser settings given on the command line; the rest stay Ultralytics' defaults."""
    return {key: getattr(args, key) for key in OPTIMISER_KEYS if getattr(args, key) is not None}


def optimiser_label(args: argparse.Namespace) -> str:
    """', AdamW, lr0=0.004, warmup_epochs=0' for a plot title; empty for Ultralytics' defaults."""
    return "".join(f", {key}={value:g}" if isinstance(value, float) else f", {value}"
                   for key, value in optimiser_args(args).items())


def train_one(model: str, seed: int, args: argparse.Namespace) -> Path:
    """Train (or resume, or skip) one run; returns its best.pt."""
    from ultralytics import YOLO

    from yolo_spd.paths import write_atomic

    folder = args.runs / run_name(model, seed, args.tag)
    done, last = folder / "done.json", folder / "weights" / "last.pt"
    if done.is_file():
        print(f"[skip] {folder.name}: finished earlier")
        return folder / "weights" / "best.pt"
    start = time.time()
    if last.is_file():
        print(f"[resume] {folder.name} from {last}")
        YOLO(str(last)).train(resume=True)
    else:
        print(f"[train] {folder.name}")
        YOLO(model).train(
            data=str(args.data), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, seed=seed, deterministic=True,
            device="cpu", workers=2, amp=False, project=str(args.runs), name=folder.name, exist_ok=True, plots=True,
            **optimiser_args(args),
        )
    write_atomic(done, json.dumps({"model": model, "seed": seed, "epochs": args.epochs, "imgsz": args.imgsz,
                                   "seconds_this_session": round(time.time() - start)}))
    return folder / "weights" / "best.pt"


def training_minutes(folder: Path) -> float:
    """Wall-clock minutes of a run's epochs, from its results.csv. Ultralytics restarts the ``time`` column when a
    run resumes, so this sums the last value of each segment."""
    with open(folder / "results.csv", newline="") as f:
        times = [float(row["time"]) for row in csv.DictReader(f, skipinitialspace=True)]
    return sum(t for t, following in zip(times, times[1:] + [0.0]) if following < t) / 60


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(per_seed: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, tuple[float, float]]]:
    """{seed: {model: metrics}} -> {model: {metric: (mean, std)}}."""
    first = next(iter(per_seed.values()))
    return {m: {k: mean_std([per_seed[s][m][k] for s in per_seed]) for k in first[m]} for m in first}


def markdown(summary: dict, seeds: list[int]) -> str:
    from yolo_spd.markdown import table

    header = [f"model ({len(seeds)} seeds, mean ± std)"]
    header += [c.replace(AITOD, "AI-TOD ").replace("train_minutes", "train min/run") for c in COLUMNS]
    rows = [[model, *(cell(column, *metrics[column]) for column in COLUMNS)] for model, metrics in summary.items()]
    return table(header, rows)


def cell(column: str, mean: float, std: float) -> str:
    """'mean ± std' (3 decimals, minutes 1); '-' for a size range with no objects (the evaluator's -1)."""
    if mean < 0:
        return "-"
    digits = 1 if column == "train_minutes" else 3
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def score_seed(models: list[str], seed: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Both size-range presets for one seed's models: {model: metrics}."""
    from yolo_spd.evaluation import EvalSettings, resolve_split
    from yolo_spd.evaluation.compare import compare

    folders = [args.runs / run_name(m, seed, args.tag) for m in models]
    weights = [folder / "weights" / "best.pt" for folder in folders]
    metrics = {Path(m).stem: {"train_minutes": training_minutes(folder)} for m, folder in zip(models, folders)}
    split = resolve_split(args.data)
    for sizes in ("coco", "aitod"):
        folder = args.runs / tagged(f"compare-seed{seed}-{sizes}", args.tag)
        scores, _, _ = compare(weights, split, folder, EvalSettings.from_keys(sizes=sizes), imgsz=args.imgsz,
                               batch=args.batch, device="cpu", workers=0)
        prefix = AITOD if sizes == "aitod" else ""
        for model, score in zip(models, scores):
            metrics[Path(model).stem] |= {prefix + key: value for key, value in score.metrics.items()}
    return metrics


def write_results(summary: dict, per_seed: dict, args: argparse.Namespace, command: str) -> None:
    from yolo_spd.evaluation.compare import ModelScore, plot_ap_by_size
    from yolo_spd.evaluation import size_ranges
    from yolo_spd.markdown import write_blocks
    from yolo_spd.paths import write_atomic

    table = markdown(summary, sorted(per_seed))
    stem = result_stem(args)
    write_atomic(args.out / f"{stem}.md", f"`{command}`\n\n{table}\n")
    write_atomic(args.out / f"{stem}.json", json.dumps(
        {"command": command, "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch,
         "optimiser": optimiser_args(args) or "Ultralytics defaults", "seeds": sorted(per_seed),
         "per_seed": per_seed, "mean_std": summary}, indent=2) + "\n")
    aitod = size_ranges("aitod")
    keys = ["AP", *(f"AP_{label}" for label in aitod.labels)]
    means = [ModelScore(Path(model).stem, Path(model), 0, {k: metrics[k if k == "AP" else AITOD + k][0] for k in keys})
             for model, metrics in summary.items()]
    plot_ap_by_size(means, aitod, args.out / f"{stem}.png",
                    title=f"aerial-cars, mean of {len(per_seed)} seeds, {args.epochs} epochs{optimiser_label(args)}")
    print(table)
    if args.write_docs:
        write_blocks(args.write_docs, stem, table)


def replot(args: argparse.Namespace) -> None:
    """Table and plot again from a results JSON, with the settings it records."""
    saved = json.loads(args.replot.read_text())
    args.epochs, args.imgsz, args.batch = saved["epochs"], saved["imgsz"], saved.get("batch", args.batch)
    optimiser = saved.get("optimiser")
    if isinstance(optimiser, dict):  # else Ultralytics' defaults
        for key in OPTIMISER_KEYS:
            setattr(args, key, optimiser.get(key))
    args.out, args.tag = args.replot.parent, args.replot.stem.removeprefix("small_objects").removeprefix("-")
    per_seed = {int(seed): metrics for seed, metrics in saved["per_seed"].items()}  # JSON keys are strings
    write_results(saved["mean_std"], per_seed, args, saved["command"])


def check_docs(args: argparse.Namespace) -> None:
    """Fail before hours of training when a --write-docs file lacks the block the results go to."""
    if not args.write_docs:
        return
    from yolo_spd.errors import UsageError
    from yolo_spd.markdown import read_block

    for file in args.write_docs:
        try:
            read_block(file, result_stem(args))
        except (UsageError, OSError) as e:
            sys.exit(f"small_objects.py: error: --write-docs {file}: {e}")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.write_docs and args.replot:
        args.tag = args.replot.stem.removeprefix("small_objects").removeprefix("-")  # the block is named by the JSON
    check_docs(args)
    if args.replot:
        return replot(args)
    if not args.data.is_file():
        sys.exit(f"small_objects.py: --data {args.data} not found (the study uses ../shared/data/aerial-cars)")
    import yolo_spd  # noqa: F401 - registers the modules

    models = args.models or default_models()
    for seed in args.seeds:
        for model in models:
            train_one(model, seed, args)
    per_seed = {seed: score_seed(models, seed, args) for seed in args.seeds}
    command = "python benchmarks/small_objects.py " + " ".join(sys.argv[1:] if argv is None else argv)
    write_results(aggregate(per_seed), per_seed, args, command.strip())


if __name__ == "__main__":
    main()
