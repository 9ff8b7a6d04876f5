"""Small objects at native resolution: train on tiles, score by sliced inference on the full images (issue 13).

    python benchmarks/small_objects_sliced.py                  # the study: 2 models x 3 seeds (hours on a 2-core CPU)
    python benchmarks/small_objects_sliced.py --train-only     # train now, score later (resumes; skips finished runs)
    python benchmarks/small_objects_sliced.py --score-only     # score what has finished, write partial results
    python benchmarks/small_objects_sliced.py --models yolov5nu.yaml yolov5-scconv-n.yaml yolov5-ssdconv-n.yaml
    python benchmarks/small_objects_sliced.py --replot benchmarks/results/small_objects_sliced.json

The first study (``small_objects.py``) downscaled the aerial images, so its 21-36 px cars became 7-19 px at the
network's input and no model learned. Here ``yolo_spd.slicing.tiles`` cuts ``../shared/data/aerial-cars`` into
``--slice``-px tiles at native resolution (overlap 0.2, a box kept when half of it is inside), every model trains from
scratch on the tiled train split with the same seeds and hyper-parameters, and each finished run is scored by
``yolo-spd val ... slice=`` on the FULL val images: tile-by-tile inference, boxes merged, COCO's evaluator at native
resolution, so AP_S is about the objects of the original images.

Runs go seed by seed (seed 0 of every model, then seed 1, ...), so stopping early still leaves paired results. A
finished run is skipped, an interrupted one resumes from its ``last.pt``, an evaluation already on disk is reused, and
``results/small_objects_sliced.{json,md,png}`` are rewritten after every evaluated run (marked partial until the
whole grid is done). The JSON's ``paired`` section gives, per variant, the mean over seeds of (variant - baseline) in
AP_S and AP50 with a Student t 95% interval (see :func:`paired_differences`).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import small_objects  # noqa: E402 - the first study: its resumable train_one, run names and training_minutes

from yolo_spd.markdown import table  # noqa: E402

DEFAULT_DATA = small_objects.DEFAULT_DATA
BASELINE = small_objects.BASELINE
DEFAULT_MODELS = (BASELINE, "yolov5-spd-n.yaml")
METRICS = ("AP", "AP50", "AP_small", "AP_medium", "AR_small")
PAIRED_METRICS = ("AP_small", "AP50")
STEM = "small_objects_sliced"
PAIRED_METHOD = ("per seed, d = variant - baseline (same seed, same tiles, same hyper-parameters); mean of d over the "
                 "n seeds both have, and a two-sided 95% Student t interval mean +- t(0.975, n-1) * sd(d) / sqrt(n) "
                 "(sd with n-1 denominator); no interval with fewer than 2 pairs")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the untiled dataset YAML")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        help=f"model YAMLs; the first is the baseline of the paired differences (default: "
                             f"{' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--slice", type=int, default=320, help="tile size for training and slice size for scoring")
    parser.add_argument("--overlap", type=float, default=0.2)
    parser.add_argument("--min-visible", type=float, default=0.5)
    parser.add_argument("--empty", type=float, default=0.1, help="fraction of tiles without boxes kept for training")
    parser.add_argument("--tiles", type=Path, default=None, help="folder for the tiled dataset (default: the cache)")
    parser.add_argument("--epochs", type=int, default=15,
                        help="15 at 320 px: yolov5nu took about 20 min on 2 idle cores (issue 13's planning run)")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--optimizer", default="AdamW")
    parser.add_argument("--lr0", type=float, default=0.004)
    parser.add_argument("--warmup-epochs", type=float, default=0.0)
    stage = parser.add_mutually_exclusive_group()
    stage.add_argument("--train-only", action="store_true", help="train (or resume) the runs, do not score them")
    stage.add_argument("--score-only", action="store_true",
                       help="score the finished runs and write the (partial) results; train and resume nothing")
    parser.add_argument("--runs", type=lambda p: Path(p).resolve(), default=HERE / "runs" / STEM,
                        help="run folders (an absolute path is used, so sliced val writes into each run folder)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--replot", type=Path, default=None, metavar="JSON",
                        help="rewrite the table and plot from a results JSON (no training)")
    return parser.parse_args(argv)


def model_name(model: str) -> str:
    return Path(model).stem


def run_folder(model: str, seed: int, args: argparse.Namespace) -> Path:
    return args.runs / small_objects.run_name(model, seed)


def eval_name(args: argparse.Namespace) -> str:
    return f"sliced-val-{args.slice}"


def train_args(args: argparse.Namespace, data_yaml: Path) -> argparse.Namespace:
    """The arguments ``small_objects.train_one`` reads, pointing at the tiled dataset."""
    return argparse.Namespace(data=data_yaml, runs=args.runs, tag="", epochs=args.epochs, imgsz=args.imgsz,
                              batch=args.batch, optimizer=args.optimizer, lr0=args.lr0,
                              warmup_epochs=args.warmup_epochs)


def evaluate(model: str, seed: int, args: argparse.Namespace) -> Path:
    """Score a finished run by sliced inference on the full val images (reused when already on disk)."""
    from yolo_spd import cli

    folder = run_folder(model, seed, args)
    result = folder / eval_name(args) / "coco_eval.json"
    if result.is_file():
        return result
    code = cli.main(["val", f"weights={folder / 'weights' / 'best.pt'}", f"data={args.data}", f"slice={args.slice}",
                     f"overlap={args.overlap}", f"imgsz={args.imgsz}", f"project={folder}", f"name={eval_name(args)}",
                     "exist_ok=True"])
    if code != 0 or not result.is_file():
        sys.exit(f"small_objects_sliced.py: sliced val of {folder.name} failed (exit status {code}); see above")
    return result


def run_entry(model: str, seed: int, args: argparse.Namespace) -> dict | None:
    """The results row of one run, or None when it is not finished and scored."""
    folder = run_folder(model, seed, args)
    result = folder / eval_name(args) / "coco_eval.json"
    if not (folder / "done.json").is_file() or not result.is_file():
        return None
    metrics = json.loads(result.read_text())["metrics"]
    return {"model": model_name(model), "seed": seed, **{k: metrics[k] for k in METRICS},
            "AP_large": metrics.get("AP_large", -1.0),
            "train_minutes": round(small_objects.training_minutes(folder), 2),
            "eval": str(result.relative_to(args.runs))}


def t_quantile(p: float, dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(p, dof))


def paired_differences(runs: list[dict], baseline: str, variants: list[str]) -> dict:
    """For each variant and metric: the per-seed differences from ``baseline``, their mean and 95% interval."""
    by = {(r["model"], r["seed"]): r for r in runs}
    paired = {"baseline": baseline, "method": PAIRED_METHOD, "variants": {}}
    for variant in variants:
        seeds = sorted(s for (m, s) in by if m == variant and (baseline, s) in by)
        entry = {}
        for metric in PAIRED_METRICS:
            diffs = [by[(variant, s)][metric] - by[(baseline, s)][metric] for s in seeds]
            n = len(diffs)
            row = {"n": n, "seeds": seeds, "differences": [round(d, 6) for d in diffs],
                   "mean_diff": round(statistics.fmean(diffs), 6) if diffs else None, "ci95": None}
            if n >= 2:
                half = t_quantile(0.975, n - 1) * statistics.stdev(diffs) / math.sqrt(n)
                row["ci95"] = [round(row["mean_diff"] - half, 6), round(row["mean_diff"] + half, 6)]
            else:
                row["note"] = f"{n} paired seed(s): fewer than 2, so no interval"
            entry[metric] = row
        paired["variants"][variant] = entry
    return paired


def summarise(runs: list[dict], models: list[str]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """{model: {metric: (mean, std, n)}} over the seeds each model has."""
    summary = {}
    for model in models:
        rows = [r for r in runs if r["model"] == model]
        if rows:
            summary[model] = {}
            for key in (*METRICS, "AP_large", "train_minutes"):
                values = [r[key] for r in rows]
                summary[model][key] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0,
                                       len(values))
    return summary


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if value < 0 else f"{value:.{digits}f}"


def markdown(results: dict) -> str:
    settings, runs, paired = results["settings"], results["runs"], results["paired"]
    models = [model_name(m) for m in settings["models"]]
    status = (f"**Partial**: {len(runs)} of {results['planned_runs']} runs finished and scored."
              if results["partial"] else f"All {len(runs)} runs finished and scored.")
    tiles, train = settings["tiles"], settings["train"]
    lines = [f"`{settings['command']}`", "",
             f"{status} Trained on {tiles['tile']}-px tiles of {Path(settings['data']).parent.name} "
             f"(overlap {tiles['overlap']}, min_visible {tiles['min_visible']}: {tiles['train_tiles']} train tiles), "
             f"{train['epochs']} epochs at imgsz {train['imgsz']}, batch {train['batch']}, {train['optimizer']} lr0 "
             f"{train['lr0']}, warmup_epochs {train['warmup_epochs']}; scored by sliced inference ({tiles['tile']}-px "
             f"slices, overlap {settings['eval']['overlap']}) on the full val images at native resolution, COCO "
             "size ranges.", "",
             ]
    means = []
    for model, m in summarise(runs, models).items():
        cells = [f"{_fmt(m[k][0])} ± {m[k][1]:.3f}" if m[k][0] >= 0 else "-" for k in METRICS]
        means.append([model, m["AP"][2], *cells, f"{m['train_minutes'][0]:.1f} ± {m['train_minutes'][1]:.1f}"])
    lines.append(table(["model (mean ± std over seeds)", "seeds", *METRICS, "train min/run"], means))
    pairs = []
    for variant, entry in paired["variants"].items():
        cells = []
        for metric in PAIRED_METRICS:
            row = entry[metric]
            if row["mean_diff"] is None:
                cells.append("-")
            elif row["ci95"] is None:
                cells.append(f"{row['mean_diff']:+.3f} (n<2: no interval)")
            else:
                cells.append(f"{row['mean_diff']:+.3f} [{row['ci95'][0]:+.3f}, {row['ci95'][1]:+.3f}]")
        pairs.append([variant, entry[PAIRED_METRICS[0]]["n"], *cells])
    lines += ["", f"Paired differences from {paired['baseline']} ({paired['method']}):", "",
              table(["variant", "seeds", "Δ AP_small (95% CI)", "Δ AP50 (95% CI)"], pairs), ""]
    per_run = [[r["model"], r["seed"], *(_fmt(r[k]) for k in METRICS), f"{r['train_minutes']:.1f}"] for r in runs]
    lines.append(table(["model", "seed", *METRICS, "train min"], per_run))
    return "\n".join(lines)


def plot(results: dict, file: Path) -> None:
    """AP by COCO size range, one bar per model (mean over its seeds), with yolo_spd's compare plot."""
    try:
        from yolo_spd.evaluation.compare import ModelScore, plot_ap_by_size
    except ImportError:  # before compare moved into yolo_spd.evaluation
        from yolo_spd.compare import ModelScore, plot_ap_by_size
    from yolo_spd.evaluation import size_ranges

    settings = results["settings"]
    summary = summarise(results["runs"], [model_name(m) for m in settings["models"]])
    scores = [ModelScore(model, Path(model), 0, {k: m[k][0] for k in ("AP", "AP_small", "AP_medium", "AP_large")})
              for model, m in summary.items()]
    seeds = sorted({r["seed"] for r in results["runs"]})
    title = (f"{Path(settings['data']).parent.name}, {settings['tiles']['tile']}-px tiles / sliced val, "
             f"mean of {len(seeds)} seed(s), {settings['train']['epochs']} epochs"
             + (" (partial)" if results["partial"] else ""))
    plot_ap_by_size(scores, size_ranges("coco"), file, title=title)


def results_dict(runs: list[dict], settings: dict) -> dict:
    models = [model_name(m) for m in settings["models"]]
    planned = len(settings["models"]) * len(settings["seeds"])
    return {"partial": len(runs) < planned, "planned_runs": planned, "settings": settings, "runs": runs,
            "paired": paired_differences(runs, models[0], models[1:])}


def write_results(results: dict, out: Path, stem: str = STEM) -> None:
    from yolo_spd.paths import write_atomic

    table = markdown(results)
    write_atomic(out / f"{stem}.json", json.dumps(results, indent=2) + "\n")
    write_atomic(out / f"{stem}.md", table + "\n")
    if results["runs"]:
        plot(results, out / f"{stem}.png")
    print(table)


def settings_dict(args: argparse.Namespace, command: str, tiled) -> dict:
    train = tiled.manifest["splits"]["train"]
    return {
        "command": command,
        "data": str(args.data),
        "models": list(args.models),
        "seeds": list(args.seeds),
        "tiles": {"tile": args.slice, "overlap": args.overlap, "min_visible": args.min_visible, "empty": args.empty,
                  "data_yaml": str(tiled.data_yaml), "train_tiles": train["tiles"], "train_boxes": train["tile_boxes"]},
        "train": {"epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch, "optimizer": args.optimizer,
                  "lr0": args.lr0, "warmup_epochs": args.warmup_epochs, "device": "cpu", "workers": 2,
                  "deterministic": True, "amp": False},
        "eval": {"slice": args.slice, "overlap": args.overlap, "imgsz": args.imgsz, "sizes": "coco",
                 "images": "the full val images at native resolution"},
    }


def replot(args: argparse.Namespace) -> None:
    saved = json.loads(args.replot.read_text())
    write_results(results_dict(saved["runs"], saved["settings"]), args.replot.parent, args.replot.stem)


def study_command(argv: list[str]) -> str:
    """The command that reproduces the results: ``argv`` without what only chooses what runs now or where files go
    (``--train-only``, ``--score-only``, ``--runs DIR``, ``--out DIR``)."""
    given, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--runs", "--out"):
            skip = True
        elif arg not in ("--train-only", "--score-only") and not arg.startswith(("--runs=", "--out=")):
            given.append(arg)
    return " ".join(["python benchmarks/small_objects_sliced.py", *given])


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.replot:
        return replot(args)
    if not args.data.is_file():
        sys.exit(f"small_objects_sliced.py: --data {args.data} not found (the study uses ../shared/data/aerial-cars)")
    import yolo_spd  # noqa: F401 - registers the modules
    from yolo_spd.slicing.tiles import TileSettings, slice_dataset, summary_lines

    tiled = slice_dataset(args.data, TileSettings(tile=args.slice, overlap=args.overlap, min_visible=args.min_visible,
                                                  empty=args.empty), out=args.tiles)
    print("\n".join(summary_lines(tiled)))
    command = study_command(sys.argv[1:] if argv is None else argv)
    settings = settings_dict(args, command, tiled)
    score = not args.train_only
    for seed in args.seeds:  # seed by seed, so a stopped study still has paired runs
        for model in args.models:
            if not args.score_only:
                small_objects.train_one(model, seed, train_args(args, tiled.data_yaml))
            elif not (run_folder(model, seed, args) / "done.json").is_file():
                continue
            if score:
                evaluate(model, seed, args)
                runs = [e for s in args.seeds for m in args.models if (e := run_entry(m, s, args))]
                write_results(results_dict(runs, settings), args.out)
    if args.train_only:
        print(f"small_objects_sliced.py: --train-only: {len(args.models) * len(args.seeds)} runs trained in "
              f"{args.runs}")


if __name__ == "__main__":
    main()
