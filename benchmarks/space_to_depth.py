"""SpaceToDepth against copying the same bytes: eval forward and train forward + backward, NCHW and channels-last.

    python benchmarks/space_to_depth.py                 # batch 8; the shapes of benchmarks/modules.py (seconds)
    python benchmarks/space_to_depth.py --quick         # the first shape only, fewer rounds
    python benchmarks/space_to_depth.py --write-docs docs/speed.md   # also into that page's generated block

A rearrangement cannot beat one copy of its input, so ``x.clone()`` is the floor it is measured against (issue 19's
target: SpaceToDepth <= 1.25x that floor). Per input, on the same tensor (NCHW, then the same values
channels-last), one interleaved run of five candidates, timed with this process's CPU time at one thread:

- eval: ``SpaceToDepth()(x)`` without gradients against ``x.clone()``;
- train: ``torch.autograd.grad`` of ``SpaceToDepth()(x)`` (forward, then the backward for a fixed random output
  gradient of the output's layout) against the same for a copy whose backward copies the gradient too (one copy
  each way, the floor for any rearrangement in training; plain ``clone()``'s backward copies nothing);
- train, autograd's backward: the same forward as a view chain whose backward autograd derives (the layer before
  issue 19's hand-written backward), against the same floor.

Ratios are medians of per-round ratios (the two sides of each ran back to back); ``clone ms`` is the eval floor's
median time. Times depend on the machine, and the NCHW figures on the CPU's copy kernels (see docs/speed.md).
"""

from __future__ import annotations

import argparse
import time

from _timing import (add_write_docs, check_docs, environment_line, interleaved, non_negative_int, positive_int, setup,
                     write_docs)

BLOCK = "space-to-depth"  # the generated block --write-docs fills (docs/speed.md)
HEADER = ["input", "layout", "clone ms", "eval / clone", "train / copy both ways",
          "train, autograd's backward / copy both ways"]  # fmt: skip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=positive_int, default=8)
    parser.add_argument("--repeats", type=positive_int,
                        help="interleaved rounds per input (default 61; 9 with --quick)")
    parser.add_argument("--warmup", type=non_negative_int, help="untimed calls per candidate first (default 3)")
    parser.add_argument("--quick", action="store_true", help="the first shape only, fewer rounds")
    add_write_docs(parser, BLOCK)
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (9 if args.quick else 61)
    args.warmup = 3 if args.warmup is None else args.warmup
    return args


def shapes(quick: bool) -> list[tuple[int, int]]:
    """(channels, size) of benchmarks/modules.py, so the two scripts' SpaceToDepth rows are the same inputs."""
    from modules import SHAPES

    return SHAPES[:1] if quick else list(SHAPES)


def copy_both_ways():
    """x -> x.clone() whose backward returns a clone of the gradient: one copy forward, one backward."""
    import torch

    class CopyBothWays(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad.clone()

    return CopyBothWays.apply


def candidates(x):
    """The five timed calls on input ``x`` (its own memory format)."""
    import torch

    from yolo_spd import SpaceToDepth
    from yolo_spd.modules.spd import _rearranged  # the same copy as the layer's forward, left to autograd

    layer, copy = SpaceToDepth(), copy_both_ways()
    leaf = x.detach().clone().requires_grad_(True)
    with torch.no_grad():
        grad_out = torch.randn_like(layer(x))  # the output's layout, as a convolution's input gradient would be
    grad_in = torch.randn_like(x)
    return {
        "clone": x.clone,
        "eval": lambda: layer(x),
        "floor": lambda: torch.autograd.grad(copy(leaf), leaf, grad_in),
        "train": lambda: torch.autograd.grad(layer(leaf), leaf, grad_out),
        "autograd": lambda: torch.autograd.grad(_rearranged(leaf, 2), leaf, grad_out),
    }


def measure(args) -> list[list[str]]:
    import torch

    rows = []
    for c, size in shapes(args.quick):
        x = torch.randn(args.batch, c, size, size)
        for layout, tensor in (("NCHW", x), ("channels-last", x.contiguous(memory_format=torch.channels_last))):
            with torch.no_grad():
                assert torch.equal(candidates(tensor)["eval"](), candidates(x)["eval"]())  # the same result
            t = interleaved(candidates(tensor), args.repeats, args.warmup, time.process_time)
            rows.append([str(tuple(x.shape)), layout, f"{t.ms('clone'):.2f}", f"**{t.ratio('eval', 'clone'):.2f}×**",
                         f"**{t.ratio('train', 'floor'):.2f}×**", f"{t.ratio('autograd', 'floor'):.2f}×"])
    return rows


def report(rows, args) -> str:
    setting = (f"Batch {args.batch}, {args.repeats} interleaved rounds, process CPU time; "
               f"{environment_line(1)}. Target: SpaceToDepth <= 1.25x the copy.")
    from yolo_spd.markdown import table

    return f"{setting}\n\n{table(HEADER, rows, align='llrrrr')}"


def main(argv=None) -> None:
    args = parse_args(argv)
    setup(1)  # one thread, CPU time: steady while other processes share the machine
    check_docs(args.write_docs, BLOCK)
    text = report(measure(args), args)
    print(text)
    if args.write_docs:
        write_docs(args.write_docs, BLOCK, text)


if __name__ == "__main__":
    main()
