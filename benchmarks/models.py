"""Whole-model speed: PyTorch eager and ONNX Runtime latency at 640 x 640, batch 1, with GFLOPs and ms per GFLOP.

    python benchmarks/models.py             # every packaged n and s config against yolov5nu / yolov5su
    python benchmarks/models.py --quick     # n scale only, fewer repeats
    python benchmarks/models.py --models yolov5-spd-n yolov5nu
    python benchmarks/models.py --write-docs docs/speed.md   # also into that page's generated block

Models are built from their YAMLs (no weights are downloaded) and put in inference form with Ultralytics'
``model.fuse()`` (which fuses yolo_spd's modules too), as Ultralytics does before predict and export. The ONNX
models come from Ultralytics' own ``export(format="onnx")``. GFLOPs are ``yolo_spd.info.gflops`` of the unfused
model (the figure the README's model table reports). A packaged config is compared with the stock model of its
family and scale (yolov5-spd-n with yolov5nu): the target is latency ratio <= GFLOPs ratio, i.e. no worse time
per GFLOP than the baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile

from _timing import (add_write_docs, check_docs, environment_line, interleaved, markdown_table, ort_session, setup,
                     write_docs)

from yolo_spd.info import quiet_ultralytics


BLOCK = "models-speed"  # the generated block --write-docs fills (docs/speed.md)
GFLOPS_COLUMNS = ("GFLOPs", "GFLOPs ratio")  # the same on every machine; every other column is a timing


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", help="config names (default: packaged n/s configs and baselines)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--repeats", type=int, help="interleaved rounds (default 15; 7 with --quick)")
    parser.add_argument("--warmup", type=int, help="untimed calls per candidate first (default 2-3)")
    parser.add_argument("--quick", action="store_true", help="n scale only, fewer rounds")
    add_write_docs(parser, BLOCK)
    args = parser.parse_args(argv)
    defaults = (7, 2) if args.quick else (15, 3)  # (repeats, warmup); explicit options win
    args.repeats = args.repeats or defaults[0]
    args.warmup = defaults[1] if args.warmup is None else args.warmup
    return args


def default_models(scales: str) -> list[str]:
    from yolo_spd import list_models

    names = []
    for scale in scales:
        packaged = list_models(f"*-{scale}")
        names += packaged + sorted({baseline_of(name) for name in packaged})
    return names


def baseline_of(name: str) -> str | None:
    """The stock Ultralytics model a packaged config is compared with: same family and scale (yolov5-spd-n ->
    yolov5nu); None for the stock models themselves."""
    family, _, scale = name.partition("-")[0], None, name.rpartition("-")[2]
    if "-" not in name or len(scale) != 1:
        return None
    return f"{family}{scale}u" if family == "yolov5" else f"{family}{scale}"


def build(name: str, workdir: str, imgsz: int):
    """(GFLOPs, fused eval PyTorch model, ONNX path) for the config ``name``."""
    from ultralytics import YOLO

    from yolo_spd.info import gflops

    yolo = YOLO(f"{name}.yaml")
    flops = gflops(yolo.model, imgsz)
    with contextlib.chdir(workdir), quiet_ultralytics():
        onnx_file = yolo.export(format="onnx", imgsz=imgsz, device="cpu")
    model = yolo.model.float().eval().fuse(verbose=False)
    return flops, model, os.path.join(workdir, onnx_file)


def main(argv=None) -> None:
    args = parse_args(argv)
    setup(args.threads)
    check_docs(args.write_docs, BLOCK)
    import torch

    names = args.models or default_models("n" if args.quick else "ns")
    x = torch.rand(1, 3, args.imgsz, args.imgsz)
    eager, onnx, flops = {}, {}, {}
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            flops[name], model, onnx_path = build(name, workdir, args.imgsz)
            session = ort_session(onnx_path, args.threads)
            feed = {session.get_inputs()[0].name: x.numpy()}
            eager[name] = lambda model=model: model(x)
            onnx[name] = lambda session=session, feed=feed: session.run(None, feed)
        with torch.inference_mode():
            eager_t = interleaved(eager, args.repeats, args.warmup)
        onnx_t = interleaved(onnx, args.repeats, args.warmup)

    text = report(names, flops, eager_t, onnx_t, args)
    print(text)
    if args.write_docs:
        write_docs(args.write_docs, BLOCK, text)


def report(names, flops, eager_t, onnx_t, args) -> str:
    """The printed result: the setting, one table of all models, one of each packaged config against its baseline."""
    setting = f"{args.imgsz} x {args.imgsz}, batch 1, {args.repeats} interleaved rounds"
    parts = [f"{setting}; {environment_line(args.threads)}."]
    rows = [
        [name, f"{flops[name]:.1f}", f"{eager_t.ms(name):.1f}", f"{onnx_t.ms(name):.1f}",
         f"{eager_t.ms(name) / flops[name]:.2f}", f"{onnx_t.ms(name) / flops[name]:.2f}"]
        for name in names
    ]
    parts.append(markdown_table(["model", "GFLOPs", "PyTorch ms", "ONNX Runtime ms", "PyTorch ms/GFLOP",
                                 "ONNX Runtime ms/GFLOP"], rows))
    pairs = [(name, baseline_of(name)) for name in names if baseline_of(name) in names]
    if pairs:
        parts.append("Against the baseline of the same scale (target: latency ratio <= GFLOPs ratio).")
        rows = []
        for name, base in pairs:
            flops_ratio = flops[name] / flops[base]
            eager_ratio, onnx_ratio = eager_t.ratio(name, base), onnx_t.ratio(name, base)
            rows.append([f"{name} / {base}", f"{flops_ratio:.2f}", against(eager_ratio, flops_ratio),
                         against(onnx_ratio, flops_ratio)])
        parts.append(markdown_table(["pair", "GFLOPs ratio", "PyTorch latency ratio", "ONNX Runtime latency ratio"],
                                    rows))
    return "\n\n".join(parts)


def against(latency_ratio: float, flops_ratio: float) -> str:
    return f"{latency_ratio:.2f} ({'met' if latency_ratio <= flops_ratio else 'not met'})"


if __name__ == "__main__":
    main()
