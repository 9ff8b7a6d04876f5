"""Sliced val: yolo_spd's wall time against SAHI's on the same images, model and settings, and whether they agree.

    python benchmarks/sliced_speed.py [--data DATA.yaml] [--weights W.pt] [--slice 320] [--overlap 0.2] [--conf 0.25]
    python benchmarks/sliced_speed.py --synthetic 40 --slice 160 [--conf 0.01 --merge NMS --metric IOU]

Both sides do the whole job of a sliced validation: every image of the val split predicted window by window,
boxes merged (GREEDYNMM by IoS at 0.5, SAHI's defaults, unless --merge/--metric say otherwise), detections converted
to COCO and scored with pycocotools. yolo_spd: :func:`yolo_spd.evaluation.evaluate_model` with
``EvalSettings(slicing=...)``. SAHI: ``get_sliced_prediction`` per image with an ``ultralytics`` model of the same
checkpoint (its default one window per forward pass, and with ``batch_size`` equal to ours as a second reference).
Models are loaded and warmed up once before timing. Rounds alternate the order of the candidates; a ratio is the
median of per-round ratios (``benchmarks/_timing.py``). The script also prints each side's AP, AP50 and AP_S and the
number of detections.

Defaults: the aerial-cars val split in ``../shared/data`` and, without ``--weights``, an untrained yolov5nu built
from its YAML for the dataset's classes (speed does not depend on training; its AP is 0 and says nothing, and with
an untrained model the detections at --conf 0.001 are the worst case for merging).

``--synthetic EPOCHS`` instead writes the small-object dataset of ``tests/test_sliced_inference.py`` (128 training
tiles of 160 px, 4 val images of about 360 x 300 px with 8-20 px objects) to ``--workdir`` and trains yolov8n on it
for EPOCHS epochs at imgsz 160 (AdamW lr 0.005, no warm-up, no mosaic; 40 epochs took 16 minutes on a loaded 2-core
CPU, reused while the checkpoint exists): a model that detects, so the AP columns compare something.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import environment_line, interleaved, markdown_table, setup  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "aerial-cars" / "data.yaml"


def untrained_checkpoint(names: tuple[str, ...], folder: Path) -> Path:
    """yolov5nu from Ultralytics' YAML for ``names``, saved as a checkpoint both sides can load."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    model = YOLO("yolov5nu.yaml")
    model.model = DetectionModel("yolov5nu.yaml", nc=len(names), verbose=False)
    model.model.names = dict(enumerate(names))
    file = folder / "yolov5nu-untrained.pt"
    model.save(file)
    return file


def synthetic_model(workdir: Path, epochs: int) -> tuple[str, str]:
    """(data.yaml, last.pt) of yolov8n trained on the generated small-object dataset; reused when it exists."""
    from ultralytics import YOLO

    from tests.test_sliced_inference import SLICE, make_small_object_dataset

    workdir = workdir.resolve()
    data, weights = workdir / "data" / "data.yaml", workdir / f"train{epochs}" / "weights" / "last.pt"
    if not data.is_file():
        make_small_object_dataset(workdir / "data", n_train=128)
    if not weights.is_file():
        YOLO("yolov8n.yaml").train(data=str(data), epochs=epochs, imgsz=SLICE, batch=8, optimizer="AdamW", lr0=0.005,
                                   warmup_epochs=0, mosaic=0.0, workers=0, device="cpu", amp=False, plots=False,
                                   val=False, seed=0, project=str(workdir), name=f"train{epochs}", exist_ok=True)
    return str(data), str(weights)


def sahi_detections(sahi_model, split, truth, args, batch_size: int) -> list[dict]:
    from sahi.predict import get_sliced_prediction

    detections = []
    for file in split.images:
        if file.name not in truth.image_ids:
            continue
        result = get_sliced_prediction(
            str(file), sahi_model, slice_height=args.slice, slice_width=args.slice, overlap_height_ratio=args.overlap,
            overlap_width_ratio=args.overlap, perform_standard_pred=False, postprocess_type=args.merge,
            postprocess_match_metric=args.metric, postprocess_match_threshold=0.5, force_postprocess_type=True,
            verbose=0, batch_size=batch_size,
        )
        for p in result.object_prediction_list:
            x0, y0, x1, y1 = p.bbox.to_xyxy()
            detections.append({"image_id": truth.image_ids[file.name], "category_id": truth.category_ids[p.category.id],
                               "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(p.score.value)})
    return detections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--weights", default=None)
    parser.add_argument("--slice", type=int, default=320)
    parser.add_argument("--overlap", type=float, default=0.2)
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--merge", default="GREEDYNMM", choices=("GREEDYNMM", "NMM", "NMS"))
    parser.add_argument("--metric", default="IOS", choices=("IOS", "IOU"))
    parser.add_argument("--batch", type=int, default=16, help="windows per forward pass (yolo_spd, SAHI batched)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--synthetic", type=int, default=0, metavar="EPOCHS", help="train on generated small objects")
    parser.add_argument("--workdir", type=Path, default=Path("runs") / "sliced_speed")
    args = parser.parse_args()
    setup(args.threads)
    if args.synthetic:
        args.data, args.weights = synthetic_model(args.workdir, args.synthetic)

    from sahi import AutoDetectionModel
    from ultralytics import YOLO

    from yolo_spd.evaluation import EvalSettings, evaluate_model, resolve_split, run_cocoeval

    split = resolve_split(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or str(untrained_checkpoint(split.names, Path(tmp)))
        settings = EvalSettings.from_keys(slice=args.slice, overlap=args.overlap, postprocess_type=args.merge,
                                          postprocess_match_metric=args.metric)
        ours_model = YOLO(weights)
        sahi_model = AutoDetectionModel.from_pretrained(model_type="ultralytics", model_path=weights, device="cpu",
                                                        confidence_threshold=args.conf, image_size=args.slice)
        out: dict[str, object] = {}

        def ours():
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                out["yolo_spd"] = evaluate_model(ours_model, split, settings, conf=args.conf, batch=args.batch,
                                                 project=tmp, name="val", exist_ok=True)

        def sahi(batch_size: int):
            def run():
                truth = out["yolo_spd"].truth  # the same ground truth; building it is cached and not timed apart
                detections = sahi_detections(sahi_model, split, truth, args, batch_size)
                out[f"sahi{batch_size}"] = (detections, run_cocoeval(truth, detections))
            return run

        ours()  # warm-up; also gives the ground truth SAHI's detections are scored against
        candidates = {"yolo_spd": ours, "sahi": sahi(1), "sahi_batched": sahi(args.batch)}
        timings = interleaved(candidates, repeats=args.rounds, warmup=1)

    evaluation = out["yolo_spd"]
    rows = []
    for name in candidates:
        if name == "yolo_spd":
            count, metrics = len(evaluation.detections), evaluation.result.metrics
        else:
            detections, result = out["sahi" + ("1" if name == "sahi" else str(args.batch))]
            count, metrics = len(detections), result.metrics
        rows.append([name, f"{timings.ms(name) / 1e3:.2f}", f"{timings.ratio(name, 'sahi'):.2f}", str(count),
                     f"{metrics['AP']:.4f}", f"{metrics['AP50']:.4f}", f"{metrics['AP_small']:.4f}"])
    images = len(evaluation.truth.image_ids)
    print(f"Sliced val of {images} images of {args.data}: slice {args.slice}, overlap {args.overlap}, "
          f"conf {args.conf}, {args.merge}/{args.metric} 0.5, batch {args.batch}; "
          f"weights {args.weights or 'untrained yolov5nu'}")
    print(environment_line(args.threads).replace("medians in ms", f"medians of {args.rounds} rounds"))
    print(markdown_table(["candidate", "wall s", "time / SAHI", "detections", "AP", "AP50", "AP_S"], rows))


if __name__ == "__main__":
    main()
