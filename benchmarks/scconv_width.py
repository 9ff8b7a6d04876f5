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
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from small_objects_sliced import RECIPE, main as run_aerial_study  # noqa: E402 - benchmarks/ is not a package

STEM = "scconv_width"
MODELS = ("yolov5su.yaml", "yolov5-scconv-s.yaml")
SEEDS = "seeds=0,1,2,3,4"  # an s run takes about 3x an n run's time on a CPU
STUDY = (f"models={','.join(MODELS)}", "data=../shared/data/aerial-cars/data.yaml",
         *(SEEDS if token.startswith("seeds=") else token for token in RECIPE))


def main(argv=None) -> None:
    run_aerial_study(argv, study=STUDY, stem=STEM, doc=__doc__)


if __name__ == "__main__":
    main()
