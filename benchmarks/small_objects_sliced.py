"""The published aerial study: ``yolo-spd study`` with the recipe below, then its results copied into the docs.

    python benchmarks/small_objects_sliced.py                # train or resume every run, score, publish (hours)
    python benchmarks/small_objects_sliced.py --score-only   # score the finished runs, publish partial results
    python benchmarks/small_objects_sliced.py --runs DIR     # the folder that holds the study (default benchmarks/runs)
    python benchmarks/small_objects_sliced.py --score-only --checkpoint last   # score last.pt: results/<stem>-last.*

It runs exactly ``yolo-spd study`` (:data:`STUDY`, on ``../shared/data/aerial-cars``): yolov5nu, the three yolo_spd
n configs and a compute-matched control (``yolov5nu-wide.yaml``: yolov5nu at width 0.32, within 5% of yolov5-spd-n's
GFLOPs) train from scratch on 320-px tiles at native resolution, 5 seeds each, and every run is scored by sliced
inference on the full val images. Then ``study.{json,md,tex,csv,png}`` and ``study_paired.csv`` are copied to
``results/small_objects_sliced*`` and the table into the ``small_objects_sliced`` block of ``docs/evidence.md``. The
study resumes run by run, so the command is the same for a first start, after a stop, and to publish partial
results; they say they are partial.

Run folders hold checkpoints and are not committed, so each finished run's record is archived beside the results
(``results/small_objects_sliced-runs/<run>/``: its spec, done marker, ``results.csv`` and scoring, about 0.3 MB, no
weights). A study folder without a run gets it back from there before the study starts, so a fresh clone continues
the study instead of training finished runs again; the study's own spec check still decides whether a run is reused.

``--checkpoint last`` scores each run's ``last.pt`` instead of ``best.pt`` (``yolo-spd study checkpoint=last``: the
final epoch, not the one Ultralytics picked on the same val images). That scoring needs the weights once; its record
is archived with the run's, and it is published as ``results/<stem>-last.*``, without a docs block.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO.parent / "shared" / "data" / "aerial-cars" / "data.yaml"
STEM = "small_objects_sliced"
SUFFIXES = (".json", ".md", ".tex", ".csv", "_paired.csv", ".png")  # the study's files, as report.save names them
MODELS = ("yolov5nu.yaml", "yolov5-spd-n.yaml", "yolov5-scconv-n.yaml", "yolov5-ssdconv-n.yaml",
          "benchmarks/yolov5nu-wide.yaml")
# 15 epochs, AdamW lr 0.004, no warm-up: the recipe that learns on these tiles (issue 13's planning runs);
# workers=2 is recorded because Ultralytics seeds its loader workers by index.
RECIPE = ("seeds=0,1,2,3,4", "tile=320", "overlap=0.2", "slice=320", "epochs=15", "imgsz=320", "batch=16",
          "optimizer=AdamW", "lr0=0.004", "warmup_epochs=0", "device=cpu", "workers=2")
STUDY = (f"models={','.join(MODELS)}", "control=benchmarks/yolov5nu-wide.yaml",
         "data=../shared/data/aerial-cars/data.yaml", *RECIPE)


#: A finished run's record: enough for the study to reuse it (spec, done marker, epoch times) and to compute its
#: statistics again (its scoring in the evaluation folder), without the checkpoints.
RUN_RECORD = ("study_run.json", "done.json", "results.csv")
RUN_RECORD_IF_ANY = ("resumed_at.json",)  # a resumed run's sessions, for its training minutes
EVAL_RECORD = ("coco_eval.json", "coco_predictions.json", "study_eval.json")


def archive_runs(folder: Path, archive: Path, eval_name: str) -> list[str]:
    """Copy the record of every finished, scored run in the study ``folder`` into ``archive``; returns their names."""
    from yolo_spd.paths import atomic_target

    names = []
    for run in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = [run / name for name in RUN_RECORD] + [run / eval_name / name for name in EVAL_RECORD]
        if not all(f.is_file() for f in files):
            continue
        for f in files + [run / name for name in RUN_RECORD_IF_ANY if (run / name).is_file()]:
            target = archive / f.relative_to(folder)
            if not target.is_file() or target.read_bytes() != f.read_bytes():
                with atomic_target(target) as tmp:
                    shutil.copyfile(f, tmp)
        names.append(run.name)
    return names


def restore_runs(archive: Path, folder: Path) -> list[str]:
    """Copy each archived run into the study ``folder`` where that run has no folder yet; returns their names."""
    names = []
    for run in sorted(p for p in archive.iterdir() if p.is_dir()) if archive.is_dir() else []:
        if (folder / run.name).exists():
            continue
        build = folder / f".{run.name}.restoring"
        shutil.rmtree(build, ignore_errors=True)
        shutil.copytree(run, build)
        build.rename(folder / run.name)
        names.append(run.name)
    return names


def build_parser(stem: str = STEM, doc: str = __doc__) -> argparse.ArgumentParser:
    """The options every study script takes (a script may add its own)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--score-only", action="store_true", help="train and resume nothing; score what has finished")
    parser.add_argument("--runs", type=lambda p: Path(p).resolve(), default=HERE / "runs",
                        help=f"the study folder's parent (the study is <runs>/{stem})")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "evidence.md")
    parser.add_argument("--archive", type=Path, default=HERE / "results" / f"{stem}-runs",
                        help="where finished runs' records (no weights) are kept and restored from")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="score best.pt (published as <stem>.*, and the docs block) or last.pt (<stem>-last.*)")
    return parser


def parse_args(argv=None, stem: str = STEM, doc: str = __doc__) -> argparse.Namespace:
    return build_parser(stem, doc).parse_args(argv)


def plan_for(runs: Path, study: tuple[str, ...] = STUDY, stem: str = STEM, checkpoint: str = "best"):
    """The plan of ``study`` (default :data:`STUDY`), as ``yolo-spd study`` builds it (paths resolved from the repo
    root), in ``runs/stem``, scoring each run's ``checkpoint`` (``best`` or ``last``)."""
    from yolo_spd.cli import study_plan

    last = ("checkpoint=last",) if checkpoint == "last" else ()
    tokens = [token.replace("data=../shared/data/aerial-cars/data.yaml", f"data={DATA}")
              .replace("benchmarks/yolov5nu-wide.yaml", str(HERE / "yolov5nu-wide.yaml")) for token in study]
    plan = study_plan([*tokens, *last, f"project={runs}", f"name={stem}"])
    command = (f"yolo-spd study {' '.join((*study, *last))} (python benchmarks/{stem}.py"
               f"{' --checkpoint last' if last else ''})")
    return dataclasses.replace(plan, command=command)


def publish(folder: Path, out: Path, docs: Path | None, stem: str = STEM) -> None:
    """Copy the study's files to ``out/<stem>.*`` and its table into ``docs``' generated block ``stem`` (if
    ``docs``)."""
    from yolo_spd.markdown import write_blocks
    from yolo_spd.paths import atomic_target

    for suffix in SUFFIXES:
        source = folder / f"study{suffix}"
        if source.is_file():
            with atomic_target(out / f"{stem}{suffix}") as tmp:
                shutil.copyfile(source, tmp)
    if docs is not None:
        write_blocks([docs], stem, (out / f"{stem}.md").read_text(encoding="utf-8").strip("\n"))


def main(argv=None, study: tuple[str, ...] = STUDY, stem: str = STEM, doc: str = __doc__,
         args: argparse.Namespace | None = None) -> None:
    """Train or resume, score and publish ``study`` (default: this page's) as ``stem``, its report also into
    ``--docs``' block ``stem``; ``args``: already parsed options (else parsed from ``argv``)."""
    args = parse_args(argv, stem, doc) if args is None else args
    script = f"{stem}.py"
    if not DATA.is_file():
        sys.exit(f"{script}: {DATA} not found (the study trains on ../shared/data/aerial-cars)")
    import yolo_spd  # noqa: F401 - registers the modules
    from yolo_spd.study.plan import run_study

    plan = plan_for(args.runs, study, stem, args.checkpoint)
    plan.folder.mkdir(parents=True, exist_ok=True)
    restored = restore_runs(args.archive, plan.folder)
    if restored:
        print(f"{script}: restored {len(restored)} finished runs from {args.archive}: {', '.join(restored)}")
    from yolo_spd.errors import UsageError

    try:
        run_study(plan, train=not args.score_only)
    except UsageError as e:  # e.g. a run with no weights to score and no scoring on record: one line, exit 2
        print(f"{script}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    archive_runs(plan.folder, args.archive, plan.eval_name)
    best = args.checkpoint == "best"
    name = stem if best else f"{stem}-last"
    publish(plan.folder, args.out, args.docs if best else None, name)
    published = ", ".join(f"{name}{suffix}" for suffix in SUFFIXES)
    print(f"{script}: published {published} in {args.out}" + (f" and the block in {args.docs}" if best else ""))


if __name__ == "__main__":
    main()
