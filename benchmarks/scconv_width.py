"""SCConv at scale s on the aerial cars: does the small-car loss of yolov5-scconv-n shrink with width?

    python benchmarks/scconv_width.py                # train or resume every run, score, publish (hours)
    python benchmarks/scconv_width.py --score-only   # score the finished runs, publish partial results
    python benchmarks/scconv_width.py --runs DIR     # the folder that holds the study (default benchmarks/runs)

At scale n, yolov5-scconv-n loses small-car AP_S to yolov5nu on every seed of the published aerial study, and its
SCConv layers are 16-128 channels wide: one channel per GroupNorm group in the P2 stage, 2-16 input channels per
group in the CRU's 3 x 3 path (docs/evidence.md, "SCConv at scale n"). The paper's detection results use backbones
hundreds of channels wide. This study runs ``yolo-spd study`` with the published study's recipe
(``benchmarks/small_objects_sliced.py``: 320-px tiles at native resolution, 15 epochs, AdamW, sliced scoring on the
full val images) on yolov5su against yolov5-scconv-s, whose SCConv layers are 32-256 channels wide, with 5 seeds.
If the loss is the narrow layers', it shrinks here; if it is the module's, it stays.

Results go to ``results/scconv_width.{json,md,tex,csv,png}`` and ``results/scconv_width_paired.csv``, and each
finished run's record (no weights) to ``results/scconv_width-runs/``, restored from there into a study folder that
lacks it, as for the published study, and the report into docs/evidence.md's block ``scconv_width``.

    python benchmarks/scconv_width.py --contrast     # does the loss differ between the scales? (minutes, no training)

``--contrast`` answers the question itself: from the two studies' run records (this one's and the published study's
``results/small_objects_sliced-runs/``, restored into ``--runs``), the contrast of yolov5-scconv-s - yolov5su with
yolov5-scconv-n - yolov5nu, with a Welch t interval over the two studies' seeds and an image bootstrap that scores every
run of both on the same draws (:mod:`yolo_spd.study.contrast`). It writes ``results/scconv_width_contrast.{json,md,tex}``
and docs/evidence.md's block ``scconv_width-contrast`` (with ``--checkpoint last``: ``scconv_width_contrast-last.*``
and no block, if both studies have ``last.pt`` scorings).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import small_objects_sliced as aerial  # noqa: E402 - benchmarks/ is not a package
from small_objects_sliced import RECIPE  # noqa: E402

STEM = "scconv_width"
MODELS = ("yolov5su.yaml", "yolov5-scconv-s.yaml")
SEEDS = "seeds=0,1,2,3,4"  # an s run takes about 3x an n run's time on a CPU
STUDY = (f"models={','.join(MODELS)}", "data=../shared/data/aerial-cars/data.yaml",
         *(SEEDS if token.startswith("seeds=") else token for token in RECIPE))


#: The published study's SCConv pair, the contrast's first side: scale n.
SCALE_N_VARIANT = "yolov5-scconv-n.yaml"


def publish_contrast(args) -> Path:
    """Score the contrast of scale s with scale n from the two studies' records in ``args.runs``; write
    ``<out>/scconv_width_contrast[-last].{json,md,tex}`` and, for ``best.pt``, the docs block. Returns the .md."""
    import yolo_spd  # noqa: F401 - registers the modules
    from yolo_spd.errors import UsageError
    from yolo_spd.markdown import write_blocks
    from yolo_spd.paths import write_atomic
    from yolo_spd.study import contrast

    scale_n = aerial.plan_for(args.runs, aerial.STUDY, aerial.STEM, args.checkpoint)
    scale_s = aerial.plan_for(args.runs, STUDY, STEM, args.checkpoint)
    for plan, archive in ((scale_n, aerial.HERE / "results" / f"{aerial.STEM}-runs"), (scale_s, args.archive)):
        plan.folder.mkdir(parents=True, exist_ok=True)
        aerial.restore_runs(archive, plan.folder)
    try:
        res = contrast.contrast(scale_n, scale_s, first_variant=SCALE_N_VARIANT)
    except UsageError as e:
        print(f"scconv_width.py: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    name = f"{STEM}_contrast" + ("" if args.checkpoint == "best" else "-last")
    text = contrast.markdown(res, "scale n", "scale s")
    write_atomic(args.out / f"{name}.json", json.dumps(res, indent=1) + "\n")
    write_atomic(args.out / f"{name}.md", text)
    write_atomic(args.out / f"{name}.tex", contrast.latex(res, "scale n", "scale s"))
    if args.checkpoint == "best":
        write_blocks([args.docs], "scconv_width-contrast", text.strip("\n"))
    print(text)
    return args.out / f"{name}.md"


def main(argv=None) -> None:
    parser = aerial.build_parser(STEM, __doc__)
    parser.add_argument("--contrast", action="store_true",
                        help="score the contrast of this study's SCConv difference with scale n's (the published "
                             "study's) from both studies' records, and publish it; trains nothing (scale n's records "
                             "come from results/small_objects_sliced-runs, --archive is scale s's)")
    args = parser.parse_args(argv)
    if not args.contrast:
        aerial.main(study=STUDY, stem=STEM, doc=__doc__, args=args)
    elif not aerial.DATA.is_file():
        sys.exit(f"scconv_width.py: {aerial.DATA} not found (the studies are scored on ../shared/data/aerial-cars)")
    else:
        publish_contrast(args)


if __name__ == "__main__":
    main()
