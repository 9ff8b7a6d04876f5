"""Whole-model speed: PyTorch eager and ONNX Runtime latency at 640 x 640, batch 1, with GFLOPs and ms per GFLOP,
and training throughput of the n configs.

    python benchmarks/models.py             # every packaged n and s config against yolov5nu / yolov5su, ...
    python benchmarks/models.py --quick     # n scale only, fewer repeats
    python benchmarks/models.py --models yolov5-spd-n yolov5nu
    python benchmarks/models.py --wall-time # wall-clock time instead of CPU time, for a quiet machine
    python benchmarks/models.py --write-docs docs/speed.md   # also into that page's generated block

Times are this process's CPU time at one thread by default (torch and ONNX Runtime; ``--threads``, ``--wall-time``:
_timing.py), medians over interleaved rounds; ratios are medians of per-round ratios.

Models are built from their YAMLs (no weights are downloaded) and put in inference form with Ultralytics'
``model.fuse()`` (which fuses yolo_spd's modules too), as Ultralytics does before predict and export. The ONNX
models come from Ultralytics' own ``export(format="onnx")``. GFLOPs are ``yolo_spd.info.gflops`` of the unfused
model (the figure the README's model table reports). A packaged config is compared with the stock model of its
family and scale (``yolo_spd.configs.baseline``: yolov5-spd-n with yolov5nu): the latency target is latency ratio
<= GFLOPs ratio, i.e. no worse time per GFLOP than the baseline.

Training throughput (n-scale configs and their baselines; ``--no-train`` skips it): images per second of one training
step - forward, Ultralytics' detection loss on fixed synthetic boxes, backward and an SGD step - on a batch of
``--train-batch`` random images at ``--train-imgsz`` (default 8 at 320 x 320, to keep the run short on a CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile

from _timing import (add_clock_options, add_write_docs, check_docs, clock, clock_name, environment_line, interleaved,
                     markdown_table, ort_session, setup, write_docs)

from yolo_spd.info import quiet_ultralytics

BLOCK = "models-speed"  # the generated block --write-docs fills (docs/speed.md)
GFLOPS_COLUMNS = ("GFLOPs", "GFLOPs ratio")  # the same on every machine; every other column is a timing


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", help="config names (default: packaged n/s configs and baselines)")
    add_clock_options(parser)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--repeats", type=int, help="interleaved rounds (default 15; 7 with --quick)")
    parser.add_argument("--warmup", type=int, help="untimed calls per candidate first (default 2-3)")
    parser.add_argument("--quick", action="store_true", help="n scale only, fewer rounds")
    parser.add_argument("--no-train", action="store_true", help="skip the training-throughput table")
    parser.add_argument("--train-imgsz", type=int, default=320, help="training image size (default 320)")
    parser.add_argument("--train-batch", type=int, default=8, help="training batch size (default 8)")
    parser.add_argument("--train-repeats", type=int, help="interleaved training rounds (default 7; 3 with --quick)")
    add_write_docs(parser, BLOCK)
    args = parser.parse_args(argv)
    defaults = (7, 2, 3) if args.quick else (15, 3, 7)  # (repeats, warmup, train repeats); explicit options win
    args.repeats = args.repeats or defaults[0]
    args.warmup = defaults[1] if args.warmup is None else args.warmup
    args.train_repeats = args.train_repeats or defaults[2]
    args.clock = clock(args)
    return args


def default_models(scales: str) -> list[str]:
    from yolo_spd import list_models

    names = []
    for scale in scales:
        packaged = list_models(f"*-{scale}")
        names += packaged + sorted({baseline_of(name) for name in packaged})
    return names


def baseline_of(name: str) -> str | None:
    """The stock Ultralytics model a packaged config is compared with (``yolo_spd.configs.baseline``: same family and
    scale, yolov5-spd-n -> yolov5nu); None for anything else (the stock models themselves)."""
    from yolo_spd.configs import baseline, list_models

    return baseline(name) if name in list_models() else None


def is_n_scale(name: str) -> bool:
    """yolov5-spd-n, yolov5nu, yolov8n, yolo11n: the n-scale packaged configs and stock models."""
    return name.rstrip("u").endswith("n")


def build(name: str, workdir: str | None, imgsz: int):
    """(GFLOPs, fused eval PyTorch model, ONNX path) for the config ``name``; :func:`prepare` of its ``YOLO``."""
    from ultralytics import YOLO

    return prepare(YOLO(f"{name}.yaml"), workdir, imgsz)


def prepare(yolo, workdir: str | None, imgsz: int):
    """(GFLOPs of the unfused model, the fused eval model, its ONNX export in ``workdir``) of a loaded ``YOLO``;
    without ``workdir`` nothing is exported and the path is None."""
    from yolo_spd.info import gflops

    flops = gflops(yolo.model, imgsz)
    onnx_path = None
    if workdir is not None:
        with contextlib.chdir(workdir), quiet_ultralytics():
            onnx_path = os.path.join(workdir, yolo.export(format="onnx", imgsz=imgsz, device="cpu"))
    return flops, yolo.model.float().eval().fuse(verbose=False), onnx_path


def training_step(name: str, batch_size: int, imgsz: int):
    """A closure running one training step of a fresh ``name`` model: forward, Ultralytics' detection loss on a fixed
    synthetic batch (two boxes per image), backward, SGD step."""
    import torch
    from ultralytics import YOLO
    from ultralytics.cfg import DEFAULT_CFG, get_cfg

    with quiet_ultralytics():
        model = YOLO(f"{name}.yaml").model.float()
    model.args = get_cfg(DEFAULT_CFG)  # the loss reads its gains (box, cls, dfl) from here, as a trainer sets them
    model.train()
    generator = torch.Generator().manual_seed(0)
    boxes = 2 * batch_size
    batch = {
        "img": torch.rand(batch_size, 3, imgsz, imgsz, generator=generator),
        "batch_idx": torch.arange(batch_size).repeat_interleave(2).float(),
        "cls": torch.randint(0, 80, (boxes, 1), generator=generator).float(),
        "bboxes": torch.rand(boxes, 4, generator=generator) * 0.5 + 0.25,  # normalised xywh inside the image
    }
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step():
        loss, _ = model.loss(batch)
        loss.sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


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
            eager_t = interleaved(eager, args.repeats, args.warmup, args.clock)
        onnx_t = interleaved(onnx, args.repeats, args.warmup, args.clock)
    train_t = None
    trained = [name for name in names if is_n_scale(name)]
    if not args.no_train and trained:
        steps = {name: training_step(name, args.train_batch, args.train_imgsz) for name in trained}
        train_t = interleaved(steps, args.train_repeats, 1, args.clock)

    text = report(names, flops, eager_t, onnx_t, train_t, args)
    print(text)
    if args.write_docs:
        write_docs(args.write_docs, BLOCK, text)


def report(names, flops, eager_t, onnx_t, train_t, args) -> str:
    """The printed result: the setting, one table of all models, one of each packaged config against its baseline
    (latency ratios next to the GFLOPs ratio, and the training-throughput ratio)."""
    setting = f"{args.imgsz} x {args.imgsz}, batch 1, {args.repeats} interleaved rounds"
    parts = [f"{setting}; {environment_line(args.threads, clock_name(args))}."]
    rows = [
        [name, f"{flops[name]:.1f}", f"{eager_t.ms(name):.1f}", f"{onnx_t.ms(name):.1f}",
         f"{eager_t.ms(name) / flops[name]:.2f}", f"{onnx_t.ms(name) / flops[name]:.2f}"]
        for name in names
    ]
    parts.append(markdown_table(["model", "GFLOPs", "PyTorch ms", "ONNX Runtime ms", "PyTorch ms/GFLOP",
                                 "ONNX Runtime ms/GFLOP"], rows))
    pairs = [(name, baseline_of(name)) for name in names if baseline_of(name) in names]
    if pairs:
        parts.append("Against the baseline of the same scale (latency target: latency ratio <= GFLOPs ratio; training "
                     "throughput as a ratio of images/s, higher is faster).")
        rows = []
        for name, base in pairs:
            flops_ratio = flops[name] / flops[base]
            eager_ratio, onnx_ratio = eager_t.ratio(name, base), onnx_t.ratio(name, base)
            trained = train_t is not None and name in train_t.rounds and base in train_t.rounds
            throughput = f"{train_t.ratio(base, name):.2f}" if trained else "—"  # images/s ratio = time ratio^-1
            rows.append([f"{name} / {base}", f"{flops_ratio:.2f}", against(eager_ratio, flops_ratio),
                         against(onnx_ratio, flops_ratio), throughput])
        parts.append(markdown_table(["pair", "GFLOPs ratio", "PyTorch latency ratio", "ONNX Runtime latency ratio",
                                     "training throughput ratio"], rows))
    if train_t is not None:
        parts.append(f"Training throughput: forward + detection loss + backward + SGD step, batch {args.train_batch} "
                     f"at {args.train_imgsz} x {args.train_imgsz}, {args.train_repeats} interleaved rounds.")
        rows = [[name, f"{train_t.ms(name):.0f}", f"{args.train_batch / (train_t.ms(name) / 1e3):.2f}"]
                for name in train_t.rounds]
        parts.append(markdown_table(["model", "ms per step", "images/s"], rows))
    return "\n\n".join(parts)


def against(latency_ratio: float, flops_ratio: float) -> str:
    return f"{latency_ratio:.2f} ({'met' if latency_ratio <= flops_ratio else 'not met'})"


if __name__ == "__main__":
    main()
