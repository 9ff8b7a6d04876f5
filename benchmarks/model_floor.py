"""What bounds an n config's latency ratio to its baseline: the model's convolutions and matrix products, run alone.

    python benchmarks/model_floor.py            # every packaged n config and its baseline, 640 x 640 (about a minute)
    python benchmarks/model_floor.py --quick    # yolov5-scconv-n and yolov5nu only, fewer rounds
    python benchmarks/model_floor.py --models yolov5-ssdconv-n yolov5nu
    python benchmarks/model_floor.py --write-docs docs/speed.md   # also into that page's generated block
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 python benchmarks/model_floor.py \
        --write-docs docs/speed.md   # glibc keeping freed memory: the block 'model-floor-malloc'

Issue 19's whole-model target asks each n config's latency ratio to its baseline to be at most its GFLOPs ratio.
GFLOPs count the convolutions (and the matrix products some modules compute them as); everything else a model runs
(activations, pooling, concatenation, normalisation, attention, gates) is passes over memory that GFLOPs do not see.
This script splits each fused model's PyTorch eager latency (batch 1, ``model.fuse()`` as Ultralytics predicts) into
those two parts, to say which one keeps a config above its target:

- One forward is recorded with a ``TorchDispatchMode``: every ``aten.convolution``, ``mm``, ``addmm``, ``bmm`` and
  ``baddbmm`` call with its input tensors (the ops the model's GFLOPs come from; SCConv and SSDConv compute their
  1 x 1 convolutions as matrix products on CPU).
- Each round times the whole model and, back to back, the recorded calls replayed alone on the same inputs ("compute
  alone"), this process's CPU time at one thread (``--threads``, ``--wall-time``: _timing.py). Ratios are medians of
  per-round ratios.
- "other passes" is a model's latency minus its compute alone, in units of its baseline's latency. The target
  leaves a config ``GFLOPs ratio - compute alone / baseline latency`` for them; every config keeps its baseline's own
  passes outside the replaced layers (SiLU, SPPF's pooling, Concat, Upsample, the head), so where the target leaves
  less than the baseline's own passes take, no reduction of the module's elementwise work alone can meet it.

A replayed call reads inputs that the model had just written, and the replay reads them cold, so compute alone is
not exactly the compute's share inside the model; both sides of a ratio are measured the same way. The GMACs column
is the recorded calls' multiply-accumulates of the fused model, which can exceed GFLOPs / 2 of the unfused model
where a fused form merges convolutions with zero blocks. Times depend on the machine (see docs/speed.md).

Process CPU time counts the kernel's time too, and on Linux part of it is page faults: glibc's malloc serves large
blocks (a 32-channel 320 x 320 activation is 13 MB) with fresh ``mmap`` calls and returns freed memory to the
system, so each call faults its large tensors' pages in again. The setting line names glibc's
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` where the environment sets them (raised, they keep freed
memory for reuse), and such a run writes the block ``model-floor-malloc`` instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from _timing import (add_clock_options, add_write_docs, check_docs, clock, clock_name, environment_line, interleaved,
                     markdown_table, non_negative_int, positive_int, setup, write_docs)

BLOCK = "model-floor"  # the generated block --write-docs fills (docs/speed.md)
#: glibc's allocator settings (environment variables) a run names in its setting line, and the block such a run fills.
MALLOC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
MALLOC_BLOCK = "model-floor-malloc"
QUICK_MODELS = ("yolov5-scconv-n", "yolov5nu")
MODEL_HEADER = ["model", "GFLOPs", "GMACs as run", "latency ms", "compute alone ms", "compute alone / latency",
                "compute GMAC/s"]  # fmt: skip
PAIR_HEADER = ["pair", "GFLOPs ratio", "latency ratio", "compute alone ratio", "other passes", "the target leaves",
               "baseline's other passes", "bound by"]  # fmt: skip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", help="config names (default: every packaged n config and its baseline)")
    parser.add_argument("--imgsz", type=positive_int, default=640)
    parser.add_argument("--repeats", type=positive_int, help="interleaved rounds (default 21; 5 with --quick)")
    parser.add_argument("--warmup", type=non_negative_int, help="untimed calls per candidate first (default 2)")
    parser.add_argument("--quick", action="store_true", help=f"{' and '.join(QUICK_MODELS)} only, fewer rounds")
    add_clock_options(parser)
    add_write_docs(parser, BLOCK)
    args = parser.parse_args(argv)
    args.block = MALLOC_BLOCK if allocator_settings() else BLOCK
    args.repeats = args.repeats or (5 if args.quick else 21)
    args.warmup = 2 if args.warmup is None else args.warmup
    args.clock = clock(args)
    return args


def allocator_settings() -> str:
    """The glibc allocator settings of this process's environment, as ``NAME=value`` (empty: glibc's defaults)."""
    return ", ".join(f"{name}={os.environ[name]}" for name in MALLOC_SETTINGS if name in os.environ)


def compute_ops() -> frozenset:
    """The aten overloads GFLOPs count: convolutions and the matrix products a 1 x 1 convolution can be computed as."""
    import torch

    aten = torch.ops.aten
    return frozenset({aten.convolution.default, aten.mm.default, aten.addmm.default, aten.bmm.default,
                      aten.baddbmm.default})


def macs(func, args: tuple, out) -> int:
    """Multiply-accumulates of one recorded compute call (``out``: its result)."""
    import torch

    aten = torch.ops.aten
    if func is aten.convolution.default:
        weight, groups = args[1], args[8]
        if args[6]:  # transposed: every input element meets C_out / groups * kernel weights
            return args[0].numel() * weight[0].numel() * groups
        return out.numel() * weight[0].numel()
    left = args[0] if func in (aten.mm.default, aten.bmm.default) else args[1]  # addmm, baddbmm: args[0] is added
    return out.numel() * left.shape[-1]


def record(model, x) -> tuple[list[tuple], int]:
    """(the compute calls of one ``model(x)``: (overload, args, kwargs) each, their multiply-accumulates)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    ops = compute_ops()

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls, self.macs = [], 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            if func in ops:
                self.calls.append((func, args, kwargs))
                self.macs += macs(func, args, out)
            return out

    with torch.no_grad(), Recorder() as recorder:
        model(x)
    return recorder.calls, recorder.macs


def replay(calls: list[tuple]):
    """A closure running the recorded calls alone, in order, on their recorded inputs."""

    def run():
        for func, args, kwargs in calls:
            func(*args, **kwargs)

    return run


def build(name: str, imgsz: int):
    """(GFLOPs of the unfused model, the fused eval model) for the config or stock model ``name``."""
    from ultralytics import YOLO

    from yolo_spd.info import gflops, quiet_ultralytics

    with quiet_ultralytics():
        yolo = YOLO(f"{name}.yaml")
    flops = gflops(yolo.model, imgsz)
    return flops, yolo.model.float().eval().fuse(verbose=False)


def main(argv=None) -> None:
    args = parse_args(argv)
    setup(args.threads)
    check_docs(args.write_docs, args.block)
    import torch
    from models import baseline_of, default_models

    names = list(args.models or (QUICK_MODELS if args.quick else default_models("n")))
    x = torch.rand(1, 3, args.imgsz, args.imgsz, generator=torch.Generator().manual_seed(0))
    flops, gmacs, candidates = {}, {}, {}
    for name in names:
        try:
            flops[name], model = build(name, args.imgsz)
        except FileNotFoundError:
            sys.exit(f"model_floor.py: error: --models {name}: no such config; expected a packaged config "
                     "(yolo-spd info lists them) or a stock Ultralytics model name such as yolov5nu")
        with torch.no_grad():
            model(x)  # first call outside the recorder: lazy caches (fused weights) are built here
        calls, count = record(model, x)
        gmacs[name] = count / 1e9
        candidates[name] = lambda model=model: model(x)
        candidates[f"{name} compute"] = replay(calls)
    with torch.inference_mode():
        timings = interleaved(candidates, args.repeats, args.warmup, args.clock)
    text = report(names, flops, gmacs, timings, baseline_of, args)
    print(text)
    if args.write_docs:
        write_docs(args.write_docs, args.block, text)


def report(names, flops, gmacs, timings, baseline_of, args) -> str:
    rounds = timings.rounds
    setting = f"{args.imgsz} x {args.imgsz}, batch 1, fused, PyTorch eager, {args.repeats} interleaved rounds"
    allocator = allocator_settings() or "glibc's defaults"
    parts = [f"{setting}; {environment_line(args.threads, clock_name(args))}; allocator: {allocator}."]
    rows = []
    for name in names:
        latency, compute = timings.ms(name), timings.ms(f"{name} compute")
        share = statistics.median(c / t for c, t in zip(rounds[f"{name} compute"], rounds[name]))
        rows.append([name, f"{flops[name]:.1f}", f"{gmacs[name]:.2f}", f"{latency:.1f}", f"{compute:.1f}",
                     f"{share:.2f}", f"{gmacs[name] / compute * 1e3:.1f}"])
    parts.append(markdown_table(MODEL_HEADER, rows))
    pairs = [(name, baseline_of(name)) for name in names if baseline_of(name) in names]
    if pairs:
        parts.append("Against the baseline (latency target: latency ratio <= GFLOPs ratio). The last three columns are "
                     "in units of the baseline's latency: the model's passes other than its convolutions and "
                     "matrix products now, what the target leaves them (GFLOPs ratio - the model's compute alone), "
                     "and what the baseline's own other passes take.")
        rows = [pair_row(name, base, flops[name] / flops[base], rounds) for name, base in pairs]
        from yolo_spd.markdown import table

        parts.append(table(PAIR_HEADER, rows, align="l" + "r" * (len(PAIR_HEADER) - 2) + "l"))
    return "\n\n".join(parts)


def pair_row(name: str, base: str, flops_ratio: float, rounds: dict[str, list[float]]) -> list[str]:
    """One pair's ratios, each a median over rounds, and which part keeps it above its target (if it is)."""
    model, model_compute = rounds[name], rounds[f"{name} compute"]
    baseline, baseline_compute = rounds[base], rounds[f"{base} compute"]

    def median(values):
        return statistics.median(list(values))

    latency = median(m / b for m, b in zip(model, baseline))
    compute = median(m / b for m, b in zip(model_compute, baseline_compute))
    other = median((m - c) / b for m, c, b in zip(model, model_compute, baseline))
    left = median(flops_ratio - c / b for c, b in zip(model_compute, baseline))
    own = median((b - c) / b for b, c in zip(baseline, baseline_compute))
    figures = [round(value, 2) for value in (flops_ratio, latency, compute, other, left, own)]
    verdict = bound_by(figures[1], figures[0], figures[4], figures[5])  # the printed figures give the same verdict
    return [f"{name} / {base}", *(f"{value:.2f}" for value in figures), verdict]


def bound_by(latency: float, flops_ratio: float, left: float, own: float) -> str:
    """Which part a config above its target is bound by: its compute, when the target leaves its other passes less
    than the baseline's own take (passes the config keeps); else those passes."""
    if latency <= flops_ratio:
        return "— (met)"
    return "compute" if left < own else "other passes"


if __name__ == "__main__":
    main()
