"""What bounds an n config's latency ratio to its baseline: the model's convolutions and matrix products, run alone.

    python benchmarks/model_floor.py            # every packaged n config and its baseline, 640 x 640 (2-3 minutes)
    python benchmarks/model_floor.py --quick    # yolov5-scconv-n and yolov5nu only, fewer rounds
    python benchmarks/model_floor.py --models yolov5-ssdconv-n yolov5nu
    python benchmarks/model_floor.py --no-onnx  # PyTorch only: no export or ONNX Runtime session in the process
    python benchmarks/model_floor.py --write-docs docs/speed.md   # also into that page's generated block
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 python benchmarks/model_floor.py --no-onnx

Issue 19's whole-model target asks each n config's latency ratio to its baseline to be at most its GFLOPs ratio.
GFLOPs count the convolutions (and the matrix products some modules compute them as); everything else a model runs
(activations, pooling, concatenation, normalisation, attention, gates) is passes over memory that GFLOPs do not see.
This script splits each fused model's latency (batch 1, ``model.fuse()`` as Ultralytics predicts and exports) into
those two parts, in PyTorch eager and in ONNX Runtime, to say which one keeps a config above its target:

- One forward is recorded with a ``TorchDispatchMode``: every ``aten.convolution``, ``mm``, ``addmm``, ``bmm`` and
  ``baddbmm`` call with its input tensors (the ops the model's GFLOPs come from; SCConv and SSDConv compute their
  1 x 1 convolutions as matrix products on CPU, and SSDConv's attention has a few small ones, counted here too).
- Each round times the whole model and, back to back, the recorded calls replayed alone on the same inputs ("compute
  alone"), and the model's ONNX export (Ultralytics' ``export(format="onnx")``) in ONNX Runtime, this process's CPU
  time at one thread (``--threads``, ``--wall-time``: _timing.py). Ratios are medians of per-round ratios.
- ONNX Runtime cannot run its nodes alone, so its compute alone is each timed run times the share of node kernel
  time its profiler (``SessionOptions.enable_profiling``, wall time per node) puts in Conv, FusedConv (a Conv with its
  activation), ConvTranspose, MatMul, FusedMatMul and Gemm nodes: the median share over as many profiled runs of a
  second session. The share is of node kernel time, and is applied to the whole timed ``run`` call, whose
  per-call overhead outside the nodes (microseconds at these sizes) it thereby counts in proportion.
- "other passes" is a model's latency minus its compute alone, in units of its baseline's latency. The target
  leaves a config ``GFLOPs ratio - compute alone / baseline latency`` for them. Every config keeps its baseline's own
  other passes: those outside the replaced layers (SiLU, SPPF's pooling, Concat, Upsample, the head) and the
  replaced ``Conv``'s BatchNorm and SiLU, which SCConv and SSDConv end with too. So where the target leaves less than
  the baseline's own passes take ("bound by compute"), no reduction of the module's elementwise work can meet it.
  The test is ``(model's compute alone - baseline's) / baseline latency > GFLOPs ratio - 1``: a difference of
  compute times, so an error that scales both replays alike only scales that difference.

A replayed call reads inputs that the model had just written, and the replay reads them cold, so compute alone is
not exactly the compute's share inside the model; both sides of a ratio are measured the same way. The GMACs column
is the recorded calls' multiply-accumulates of the fused model, which can exceed GFLOPs / 2 of the unfused model
where a fused form merges convolutions with zero blocks. Times depend on the machine (see docs/speed.md).

Process CPU time counts the kernel's time too, and on Linux part of it is page faults: glibc's malloc can serve
large blocks (a 32-channel 320 x 320 activation is 13 MB) with fresh ``mmap`` calls and return freed memory to the
system, so a forward faults its large tensors' pages in again. Whether it does depends on what the process allocated
before (glibc moves its thresholds as blocks are freed), so the ONNX export and sessions of a full run change the
PyTorch figures; ``--no-onnx`` measures a PyTorch-only process, as a predict run is. The setting line names glibc's
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` where the environment sets them (raised, they keep freed
memory for reuse). Each combination fills its own block (:func:`block_name`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

from _timing import (add_clock_options, add_write_docs, check_docs, clock, clock_name, environment_line, interleaved,
                     markdown_table, non_negative_int, ort_session, positive_int, setup, write_docs)

BLOCK = "model-floor"  # the generated block --write-docs fills (docs/speed.md); see block_name() for the variants
#: glibc's allocator settings (environment variables) a run names in its setting line and in its block's name.
MALLOC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
QUICK_MODELS = ("yolov5-scconv-n", "yolov5nu")
MODEL_HEADER = ["model", "GFLOPs", "GMACs as run", "PyTorch ms", "PyTorch compute alone ms", "PyTorch compute share",
                "PyTorch compute GMAC/s", "ONNX Runtime ms", "ONNX Runtime compute share"]  # fmt: skip
PAIR_HEADER = ["pair", "runtime", "GFLOPs ratio", "latency ratio", "compute alone ratio", "other passes",
               "the target leaves", "baseline's other passes", "bound by"]  # fmt: skip
#: ONNX Runtime's node types that are the convolutions and matrix products (FusedConv: a Conv with its activation).
ONNX_COMPUTE_OPS = frozenset({"Conv", "FusedConv", "ConvTranspose", "MatMul", "FusedMatMul", "Gemm"})
RUNTIMES = {"": "PyTorch", " onnx": "ONNX Runtime"}  # candidate-name suffix: runtime


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", help="config names (default: every packaged n config and its baseline)")
    parser.add_argument("--imgsz", type=positive_int, default=640)
    parser.add_argument("--repeats", type=positive_int, help="interleaved rounds (default 21; 5 with --quick)")
    parser.add_argument("--warmup", type=non_negative_int, help="untimed calls per candidate first (default 2)")
    parser.add_argument("--quick", action="store_true", help=f"{' and '.join(QUICK_MODELS)} only, fewer rounds")
    parser.add_argument("--no-onnx", action="store_true",
                        help="PyTorch only: no export, no ONNX Runtime session in the process (as in a predict run)")
    add_clock_options(parser)
    add_write_docs(parser, BLOCK)
    args = parser.parse_args(argv)
    args.block = block_name(args.no_onnx, bool(allocator_settings()))
    args.repeats = args.repeats or (5 if args.quick else 21)
    args.warmup = 2 if args.warmup is None else args.warmup
    args.clock = clock(args)
    return args


def block_name(no_onnx: bool, allocator_set: bool) -> str:
    """The block a run fills: ``model-floor``, with ``-pytorch`` for ``--no-onnx`` and ``-malloc`` where the
    environment sets glibc's allocator (:data:`MALLOC_SETTINGS`), so no block mixes settings."""
    return BLOCK + ("-pytorch" if no_onnx else "") + ("-malloc" if allocator_set else "")


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
        weight = args[1]
        if args[6]:  # transposed: weight (C_in, C_out / groups, k, k); every input element meets weight[0]
            return args[0].numel() * weight[0].numel()
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


def onnx_compute_share(onnx_path: str, feed: dict, runs: int, threads: int, workdir: str) -> float:
    """The median over ``runs`` profiled runs of the share of ONNX Runtime's node kernel time spent in
    :data:`ONNX_COMPUTE_OPS` (its profiler, ``SessionOptions.enable_profiling``; wall time per node)."""
    import json

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling, options.profile_file_prefix = True, os.path.join(workdir, "profile")
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    session.run(None, feed)  # warm-up, left out below
    for _ in range(runs):
        session.run(None, feed)
    with open(session.end_profiling(), encoding="utf-8") as file:
        events = json.load(file)
    model_runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[1:]
    if not model_runs:  # an ONNX Runtime whose profile names its runs otherwise: a bug to mend here, not bad input
        raise RuntimeError(f"no 'model_run' events in ONNX Runtime {ort.__version__}'s profile; update this script")
    shares = []
    for start, end in model_runs:
        kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
                   and start <= e["ts"] <= end]
        total = sum(e["dur"] for e in kernels)
        compute = sum(e["dur"] for e in kernels if e["args"].get("op_name") in ONNX_COMPUTE_OPS)
        shares.append(compute / total)
    return statistics.median(shares)


def load(names: list[str]) -> dict:
    """{name: its ``YOLO``}, built once here so that a name Ultralytics finds no YAML for is one error line before
    anything is exported or timed."""
    from ultralytics import YOLO

    from yolo_spd.info import quiet_ultralytics

    loaded = {}
    for name in names:
        try:
            with quiet_ultralytics():
                loaded[name] = YOLO(f"{name}.yaml")
        except FileNotFoundError:
            sys.exit(f"model_floor.py: error: --models {name}: no such config; expected a packaged config "
                     "(yolo-spd info lists them) or a stock Ultralytics model name such as yolov5nu")
    return loaded


def main(argv=None) -> None:
    args = parse_args(argv)
    setup(args.threads)
    check_docs(args.write_docs, args.block)
    import torch
    from models import baseline_of, default_models, prepare

    names = list(args.models or (QUICK_MODELS if args.quick else default_models("n")))
    x = torch.rand(1, 3, args.imgsz, args.imgsz, generator=torch.Generator().manual_seed(0))
    flops, gmacs, shares, candidates = {}, {}, {}, {}
    with tempfile.TemporaryDirectory() as workdir:
        loaded = load(names)
        for name in names:
            flops[name], model, onnx_path = prepare(loaded[name], None if args.no_onnx else workdir, args.imgsz)
            with torch.no_grad():
                model(x)  # first call outside the recorder: lazy caches (fused weights) are built here
            calls, count = record(model, x)
            gmacs[name] = count / 1e9
            candidates[name] = lambda model=model: model(x)
            candidates[f"{name} compute"] = replay(calls)
            if onnx_path is not None:
                session = ort_session(onnx_path, args.threads)
                feed = {session.get_inputs()[0].name: x.numpy()}
                candidates[f"{name} onnx"] = lambda session=session, feed=feed: session.run(None, feed)
                shares[name] = onnx_compute_share(onnx_path, feed, args.repeats, args.threads, workdir)
        with torch.inference_mode():
            timings = interleaved(candidates, args.repeats, args.warmup, args.clock)
    for name in shares:  # ONNX Runtime's compute alone: its profiled share of each timed run
        timings.rounds[f"{name} onnx compute"] = [shares[name] * t for t in timings.rounds[f"{name} onnx"]]
    text = report(names, flops, gmacs, shares, timings, baseline_of, args)
    print(text)
    if args.write_docs:
        write_docs(args.write_docs, args.block, text)


def report(names, flops, gmacs, shares, timings, baseline_of, args) -> str:
    """The printed result: the setting line, one table of every model, and one row per pair and runtime
    (:func:`pair_row`)."""
    rounds = timings.rounds
    runtimes = "PyTorch only" if args.no_onnx else "PyTorch and ONNX Runtime"
    setting = f"{args.imgsz} x {args.imgsz}, batch 1, fused, {runtimes}, {args.repeats} interleaved rounds"
    allocator = allocator_settings() or "glibc's defaults"
    parts = [f"{setting}; {environment_line(args.threads, clock_name(args))}; allocator: {allocator}."]
    rows = []
    for name in names:
        latency, compute = timings.ms(name), timings.ms(f"{name} compute")
        share = statistics.median(c / t for c, t in zip(rounds[f"{name} compute"], rounds[name]))
        rows.append([name, f"{flops[name]:.1f}", f"{gmacs[name]:.2f}", f"{latency:.1f}", f"{compute:.1f}",
                     f"{share:.2f}", f"{gmacs[name] / compute * 1e3:.1f}",
                     f"{timings.ms(f'{name} onnx'):.1f}" if name in shares else "—",
                     f"{shares[name]:.2f}" if name in shares else "—"])
    parts.append(markdown_table(MODEL_HEADER, rows))
    pairs = [(name, baseline_of(name)) for name in names if baseline_of(name) in names]
    if pairs:
        parts.append("Against the baseline (latency target: latency ratio <= GFLOPs ratio). The last three columns are "
                     "in units of the baseline's latency: the model's passes other than its convolutions and "
                     "matrix products now, what the target leaves them (GFLOPs ratio - the model's compute alone), "
                     "and what the baseline's own other passes take."
                     + ("" if args.no_onnx else " ONNX Runtime's compute alone is its profiled compute share of each "
                                                "timed run."))
        rows = [pair_row(name, base, suffix, flops[name] / flops[base], rounds) for name, base in pairs
                for suffix in RUNTIMES if name + suffix in rounds]
        from yolo_spd.markdown import table

        parts.append(table(PAIR_HEADER, rows, align="ll" + "r" * (len(PAIR_HEADER) - 3) + "l"))
    return "\n\n".join(parts)


def pair_row(name: str, base: str, suffix: str, flops_ratio: float, rounds: dict[str, list[float]]) -> list[str]:
    """One pair's ratios in one runtime (``suffix`` of its candidates' names, :data:`RUNTIMES`), each a median over
    rounds, and which part keeps it above its target (if it is)."""
    model, model_compute = rounds[name + suffix], rounds[f"{name}{suffix} compute"]
    baseline, baseline_compute = rounds[base + suffix], rounds[f"{base}{suffix} compute"]
    median = statistics.median  # of an iterable: the per-round values below
    latency = median(m / b for m, b in zip(model, baseline))
    compute = median(m / b for m, b in zip(model_compute, baseline_compute))
    other = median((m - c) / b for m, c, b in zip(model, model_compute, baseline))
    left = median(flops_ratio - c / b for c, b in zip(model_compute, baseline))
    own = median((b - c) / b for b, c in zip(baseline, baseline_compute))
    figures = [round(value, 2) for value in (flops_ratio, latency, compute, other, left, own)]
    verdict = bound_by(figures[1], figures[0], figures[4], figures[5])  # the printed figures give the same verdict
    return [f"{name} / {base}", RUNTIMES[suffix], *(f"{value:.2f}" for value in figures), verdict]


def bound_by(latency: float, flops_ratio: float, left: float, own: float) -> str:
    """Which part a config above its target is bound by: its compute, when the target leaves its other passes less
    than the baseline's own take (passes the config keeps); else those passes."""
    if latency <= flops_ratio:
        return "— (met)"
    return "compute" if left < own else "other passes"


if __name__ == "__main__":
    main()
