"""Per-module speed: SPDConv, SCConv, SSDConv and SpaceToDepth against what each replaces, at YOLO-typical shapes.

    python benchmarks/modules.py             # batch 8; 64/128/256 channels at 80/40/20 px (a few minutes)
                                             # and scale n's bottleneck shapes at batch 1
    python benchmarks/modules.py --quick     # 64 channels at 80 px only, fewer repeats
    python benchmarks/modules.py --wall-time # wall-clock time instead of CPU time, for a quiet machine

Times are this process's CPU time at one torch thread by default (``--threads``, ``--wall-time``: _timing.py).

Prints Markdown. Per row: eval forward (no grad) of the straightforward implementation (``tests/reference.py``,
the code before issue #5), of the fast modules, and of the fused modules (``fuse()``, what Ultralytics runs for
val/predict/export; SSDConv's changes only its export form), against the Ultralytics ``Conv`` the module replaces,
fused the same way (conv + bias + SiLU); then train-mode forward + backward (gradients of input and parameters); then ONNX Runtime on
each module with a ``fuse()`` exported as it is (eval) and after ``fuse_modules``, i.e. whether the fuse gains
anything in an export; then SCConv and SSDConv at the shapes of yolov5-scconv-n's and yolov5-ssdconv-n's bottleneck
convolutions at batch 1 (what a model's latency adds up), and SSDConv's eval path: folded once against folding on
every call, and its two convolution layouts. All ratios come from one interleaved run (median of per-round ratios;
times are medians over rounds).
"""

from __future__ import annotations

import argparse
import contextlib
import copy

from _timing import (add_clock_options, clock, clock_name, environment_line, interleaved, markdown_table, ort_session,
                     setup)

SHAPES = [(64, 80), (128, 40), (256, 20)]
#: The bottleneck convolutions of yolov5-scconv-n and yolov5-ssdconv-n at a 640 px input (batch 1): (channels, px).
SCALE_N_SHAPES = [(16, 160), (32, 80), (64, 40), (128, 20)]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, help="interleaved rounds per comparison (default 9; 5 with --quick)")
    parser.add_argument("--warmup", type=int, help="untimed calls per candidate first (default 2-3)")
    parser.add_argument("--quick", action="store_true", help="first shape only, fewer rounds")
    parser.add_argument("--channels-last", action="store_true", help="channels-last inputs and weights throughout")
    add_clock_options(parser)
    args = parser.parse_args(argv)
    args.clock = clock(args)
    defaults = (5, 1) if args.quick else (9, 2)  # (repeats, warmup); explicit options win
    args.repeats = args.repeats or defaults[0]
    args.warmup = defaults[1] if args.warmup is None else args.warmup
    return args


def cases(c: int):
    """(label, module, the Conv it replaces, straightforward forward) at input width c."""
    from ultralytics.nn.modules import Conv

    from tests import reference
    from yolo_spd import SCConv, SPDConv, SSDConv

    return [
        (f"SCConv({c}, {c})", SCConv(c, c), Conv(c, c, 3, 1), reference.scconv),
        (f"SSDConv({c}, {c})", SSDConv(c, c), Conv(c, c, 3, 1), reference.ssdconv),
        (f"SCConv({c}, {2 * c}, s=2)", SCConv(c, 2 * c, 3, 2), Conv(c, 2 * c, 3, 2), reference.scconv),
        (f"SSDConv({c}, {2 * c}, s=2)", SSDConv(c, 2 * c, 3, 2), Conv(c, 2 * c, 3, 2), reference.ssdconv),
        (f"SPDConv({c}, {2 * c})", SPDConv(c, 2 * c), Conv(c, 2 * c, 3, 2), reference.spdconv),
    ]


def prepared(module, memory_format):
    return module.to(memory_format=memory_format)


def fused(module):
    """Inference form: our fuse for SCConv, SPDConv and SSDConv (an export fold only), Ultralytics' Conv + BN fold for
    Conv rows."""
    from ultralytics.nn.modules import Conv
    from ultralytics.utils.torch_utils import fuse_conv_and_bn

    from yolo_spd import fuse_modules

    module = fuse_modules(copy.deepcopy(module))
    for m in module.modules():
        if isinstance(m, Conv) and hasattr(m, "bn"):
            m.conv = fuse_conv_and_bn(m.conv, m.bn)
            del m.bn
            m.forward = m.forward_fuse
    return module


def has_fuse(module) -> bool:
    """Whether :func:`fused` changes ``module``'s eager forward: it holds a module with our ``fuse()`` (but SSDConv's,
    which keeps a fold for export traces only) or an Ultralytics Conv + BN."""
    from ultralytics.nn.modules import Conv

    from yolo_spd import SSDConv
    from yolo_spd.modules import FUSABLE

    return any((isinstance(m, FUSABLE) and not isinstance(m, SSDConv)) or (isinstance(m, Conv) and hasattr(m, "bn"))
               for m in module.modules())


def eval_row(label, module, conv, reference_forward, x, args):
    import torch

    baseline = fused(conv)
    candidates = {
        "conv": lambda: baseline(x),
        "reference": lambda: reference_forward(module, x),
        "fast": lambda: module(x),
    }
    if has_fuse(module):
        inference = fused(module)
        candidates["fused"] = lambda: inference(x)
    with torch.no_grad():
        t = interleaved(candidates, args.repeats, args.warmup, args.clock)
    final = "fused" if "fused" in candidates else "fast"  # what Ultralytics runs after model.fuse()
    return [
        label, *(f"{t.ms(name):.1f}" for name in ("conv", "reference", "fast")),
        f"{t.ms('fused'):.1f}" if final == "fused" else "—",
        f"{t.ratio('reference', 'conv'):.2f}×",
        f"{t.ratio('fused', 'fast'):.2f}×" if final == "fused" else "—",
        f"**{t.ratio(final, 'conv'):.2f}×**",
    ]


def train_step(forward, module, x):
    import torch

    inputs = [x, *module.parameters()]
    return lambda: torch.autograd.grad(forward().sum(), inputs)


def train_row(label, module, conv, reference_forward, x, args):
    t = interleaved(
        {
            "conv": train_step(lambda: conv(x), conv, x),
            "reference": train_step(lambda: reference_forward(module, x), module, x),
            "fast": train_step(lambda: module(x), module, x),
        },
        args.repeats,
        args.warmup,
        args.clock,
    )
    return [
        label, *(f"{t.ms(name):.1f}" for name in ("conv", "reference", "fast")),
        f"**{t.ratio('fast', 'reference'):.2f}×**", f"{t.ratio('fast', 'conv'):.2f}×",
    ]


def scale_n_row(label, module, conv, x, args):
    """Batch 1 at a scale-n shape: the module's inference form against the Conv it replaces (what a model's latency
    adds up)."""
    import torch

    baseline, inference = fused(conv), fused(module) if has_fuse(module) else module
    with torch.no_grad():
        t = interleaved({"conv": lambda: baseline(x), "module": lambda: inference(x)}, args.repeats * 3, args.warmup,
                        args.clock)
    return [label, f"{t.ms('conv'):.2f}", f"{t.ms('module'):.2f}", f"**{t.ratio('module', 'conv'):.2f}×**"]


@contextlib.contextmanager
def forced(namespace, name: str, value):
    """Set ``namespace.name`` to ``value`` for the block (None leaves it as it is), then restore it: a layout
    threshold forced for one candidate."""
    kept = getattr(namespace, name)
    setattr(namespace, name, kept if value is None else value)
    try:
        yield
    finally:
        setattr(namespace, name, kept)


def ssdconv_eval_row(label, module, conv, x, args):
    """SSDConv's eval path: as it runs (folded once, the layout the input size picks), folding on every call, and
    each convolution layout forced (``SPLIT_MIN_SAVED_MACS``), against the Conv it replaces."""
    import torch

    from yolo_spd.modules import ssdconv

    def layout(threshold):
        def run():
            with forced(ssdconv, "SPLIT_MIN_SAVED_MACS", threshold):
                return module(x)
        return run

    def fold_every_call():
        module.__dict__.pop("_inference", None)
        return module(x)

    baseline = fused(conv)
    candidates = {"conv": lambda: baseline(x), "kept": lambda: module(x), "every call": fold_every_call,
                  "split": layout(0), "merged": layout(float("inf"))}
    with torch.no_grad():
        t = interleaved(candidates, args.repeats * (3 if x.shape[0] == 1 else 1), args.warmup, args.clock)
        folded = module.inference_weights()
        used = "split" if folded.convolutions(x.shape[0], *module.pooled(x).shape[-2:]) is folded.split else "merged"
    return [label, str(x.shape[0]), f"{t.ms('conv'):.2f}", f"**{t.ratio('kept', 'conv'):.2f}×**",
            f"{t.ratio('every call', 'conv'):.2f}×", f"{t.ratio('split', 'conv'):.2f}×",
            f"{t.ratio('merged', 'conv'):.2f}×", used]


def space_to_depth_rows(x, args):
    import torch
    import torch.nn.functional as F

    from tests import reference
    from yolo_spd import SpaceToDepth

    spd = SpaceToDepth()
    rows = []
    for name, tensor in (("contiguous", x), ("channels_last", x.contiguous(memory_format=torch.channels_last))):
        t = interleaved(
            {
                "clone": tensor.clone,
                "fast": lambda tensor=tensor: spd(tensor),
                "reference": lambda tensor=tensor: reference.space_to_depth(tensor, 2),
                "pixel_unshuffle": lambda tensor=tensor: F.pixel_unshuffle(tensor, 2),
            },
            args.repeats * 3,
            args.warmup,
            args.clock,
        )
        times = [f"{t.ms(k):.2f}" for k in ("clone", "reference", "pixel_unshuffle", "fast")]
        rows.append([f"{tuple(x.shape)} {name}", *times, f"**{t.ratio('fast', 'clone'):.2f}×**"])
    return rows


def onnx_space_to_depth_row(x, args):
    """ONNX Runtime on SpaceToDepth exported in the authors' block order (reshape, 6-D Transpose, reshape) and in
    ONNX's order (one native SpaceToDepth node: what ``fuse()`` switches a model's layers to before export)."""
    import io

    import torch

    from yolo_spd import SpaceToDepth

    sessions = {}
    for order in ("authors", "onnx"):
        layer, graph = SpaceToDepth(), io.BytesIO()
        layer.block_order = order
        torch.onnx.export(layer, x, graph, input_names=["x"], dynamo=False, opset_version=17)
        sessions[order] = ort_session(graph.getvalue(), args.threads)
    feed = {"x": x.numpy()}
    t = interleaved({order: lambda s=s: s.run(None, feed) for order, s in sessions.items()}, args.repeats * 3,
                    args.warmup, args.clock)
    speed_up = t.ratio("authors", "onnx")
    return [str(tuple(x.shape)), f"{t.ms('authors'):.2f}", f"{t.ms('onnx'):.2f}", f"**{speed_up:.1f}×**"]


def onnx_fuse_row(label, module, x, args):
    """ONNX Runtime on ``module`` exported as it is (eval mode) and exported after ``fuse_modules``."""
    import io

    import torch

    sessions = {}
    for form, candidate in (("as is", module), ("fused", fused(module))):
        graph = io.BytesIO()
        torch.onnx.export(candidate, x, graph, input_names=["x"], dynamo=False, opset_version=17)
        sessions[form] = ort_session(graph.getvalue(), args.threads)
    feed = {"x": x.numpy()}
    t = interleaved({form: lambda s=s: s.run(None, feed) for form, s in sessions.items()}, args.repeats, args.warmup,
                    args.clock)
    return [label, f"{t.ms('as is'):.1f}", f"{t.ms('fused'):.1f}", f"**{t.ratio('fused', 'as is'):.2f}×**"]


def ssdconv_export_row(label, module, x, args):
    """SSDConv in ONNX Runtime: the step form (exported unfused) against the export form after ``fuse()`` in each
    convolution layout (``EXPORT_SPLIT_MIN_CHANNELS`` forced), and the layout the channel counts pick."""
    import io

    import torch

    from yolo_spd import fuse_modules
    from yolo_spd.modules import ssdconv

    fused_module = fuse_modules(copy.deepcopy(module).eval())
    sessions = {}
    for form, candidate, threshold in (("steps", module, None), ("split", fused_module, 0),
                                       ("merged", fused_module, float("inf"))):
        graph = io.BytesIO()
        with forced(ssdconv, "EXPORT_SPLIT_MIN_CHANNELS", threshold):
            torch.onnx.export(candidate, x, graph, input_names=["x"], dynamo=False, opset_version=17)
        sessions[form] = ort_session(graph.getvalue(), args.threads)
    feed = {"x": x.numpy()}
    t = interleaved({form: lambda s=s: s.run(None, feed) for form, s in sessions.items()},
                    args.repeats * (3 if x.shape[0] == 1 else 1), args.warmup, args.clock)
    folded = fused_module.export_weights()
    picked = "split" if folded.export_convolutions() is folded.split else "merged"
    return [label, str(x.shape[0]), f"{t.ms('steps'):.2f}", f"{t.ratio('split', 'steps'):.2f}×",
            f"{t.ratio('merged', 'steps'):.2f}×", picked, f"**{t.ratio(picked, 'steps'):.2f}×**"]


def main(argv=None) -> None:
    args = parse_args(argv)
    setup(args.threads)
    import torch

    from yolo_spd import SSDConv
    from yolo_spd.modules import FUSABLE

    torch.manual_seed(0)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    shapes = SHAPES[:1] if args.quick else SHAPES
    eval_rows, train_rows, spd_rows, onnx_rows, onnx_fuse_rows, ssd_rows = [], [], [], [], [], []
    ssd_export_rows, ssd_n_export_rows = [], []
    for c, size in shapes:
        x = torch.randn(args.batch, c, size, size).contiguous(memory_format=memory_format)
        x_grad = x.detach().clone().requires_grad_(True)
        for label, module, conv, reference_forward in cases(c):
            label = f"{label} @{size}"
            module, conv = prepared(module, memory_format), prepared(conv, memory_format)
            eval_rows.append(eval_row(label, module.eval(), conv.eval(), reference_forward, x, args))
            train_rows.append(train_row(label, module.train(), conv.train(), reference_forward, x_grad, args))
            if isinstance(module, FUSABLE):  # SSDConv's fuse changes its export form only
                onnx_fuse_rows.append(onnx_fuse_row(label, module.eval(), x.contiguous(), args))
            if isinstance(module, SSDConv):
                ssd_rows.append(ssdconv_eval_row(label, module.eval(), conv.eval(), x, args))
                ssd_export_rows.append(ssdconv_export_row(label, module.eval(), x.contiguous(), args))
        spd_rows += space_to_depth_rows(x.contiguous(), args)
        onnx_rows.append(onnx_space_to_depth_row(x.contiguous(), args))
    scale_n_rows, ssd_n_rows = [], []
    for c, size in SCALE_N_SHAPES[:1] if args.quick else SCALE_N_SHAPES:
        x = torch.randn(1, c, size, size).contiguous(memory_format=memory_format)
        for label, module, conv, _ in cases(c)[:2]:  # SCConv(c, c), SSDConv(c, c): a C3 bottleneck's 3 x 3 conv
            label = f"{label} @{size}"
            module, conv = prepared(module, memory_format).eval(), prepared(conv, memory_format).eval()
            scale_n_rows.append(scale_n_row(label, module, conv, x, args))
            if isinstance(module, SSDConv):
                ssd_n_rows.append(ssdconv_eval_row(label, module, conv, x, args))
                ssd_n_export_rows.append(ssdconv_export_row(label, module, x.contiguous(), args))
    layout = "channels-last" if args.channels_last else "contiguous (NCHW)"
    setting = f"Batch {args.batch}, {layout} inputs, {args.repeats} interleaved rounds"
    print(f"{setting}; {environment_line(args.threads, clock_name(args))}.\n")
    print("Eval forward (no grad). Baseline: the Ultralytics Conv the module replaces, fused (conv + bias + SiLU). "
          "Inference form: fused where the module's fuse changes its eager forward (not SSDConv's: —), else fast.\n")
    print(markdown_table(["module @px", "Conv", "straightforward", "fast", "fused", "straightforward / Conv",
                          "fused / fast", "inference form / Conv"], eval_rows))
    print("\nTrain forward + backward (gradients of input and parameters).\n")
    print(markdown_table(["module @px", "Conv", "straightforward", "fast", "fast / straightforward", "fast / Conv"],
                         train_rows))
    print("\nSpaceToDepth (scale 2) against copying the same bytes (`clone()`), eval.\n")
    print(markdown_table(["input", "clone", "straightforward (4 slices + cat)", "pixel_unshuffle", "SpaceToDepth",
                          "SpaceToDepth / clone"], spd_rows))
    print("\nSpaceToDepth (scale 2) in ONNX Runtime: the authors' block order against ONNX's native op.\n")
    print(markdown_table(["input", "authors' order (6-D Transpose)", "native SpaceToDepth", "speed-up"], onnx_rows))
    print("\nONNX Runtime, eval forward: each module with a fuse exported as it is against exported after "
          "`fuse_modules`.\n")
    print(markdown_table(["module @px", "exported as is", "exported fused", "fused / as is"], onnx_fuse_rows))
    print("\nScale n at batch 1: the bottleneck convolutions of yolov5-scconv-n and yolov5-ssdconv-n at a 640 px "
          "input, eval, the inference form against the fused Conv it replaces.\n")
    print(markdown_table(["module @px", "Conv", "module", "module / Conv"], scale_n_rows))
    print("\nSSDConv's eval path against the fused Conv: as it runs (folded once and kept, the convolution layout the "
          "input size picks), folding on every call, and each layout forced: split (the base convolution and one per "
          "diversity group) or merged (one convolution at stride 1; base + one at stride 2).\n")
    print(markdown_table(["module @px", "batch", "Conv ms", "as it runs / Conv", "folding every call / Conv",
                          "split / Conv", "merged / Conv", "layout picked"], ssd_n_rows + ssd_rows))
    print("\nSSDConv's export form in ONNX Runtime against its step form (exported unfused): each convolution layout "
          "forced, and the one its channel counts pick (EXPORT_SPLIT_MIN_CHANNELS).\n")
    print(markdown_table(["module @px", "batch", "step form ms", "split / step form", "merged / step form",
                          "layout picked", "picked / step form"], ssd_n_export_rows + ssd_export_rows))


if __name__ == "__main__":
    main()
