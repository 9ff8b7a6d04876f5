"""Issue 19 before and after: SSDConv, and SCConv at stride 2, at a git revision and now, against the Conv replaced.

    python benchmarks/before_after.py                          # batch 8, benchmarks/modules.py's shapes (minutes)
    python benchmarks/before_after.py --quick                  # the first shape only, fewer rounds
    python benchmarks/before_after.py --write-docs docs/speed.md   # also into that page's generated block

"Before" is ``yolo_spd/modules`` at ``--before`` (default 633a60a, the last commit before issue 19 changed a module),
taken from this repository's git history with ``git archive`` into a temporary folder and imported there as a
package of its own; "after" is the checkout's. So it needs a git clone with that commit (not an installed wheel).
Per row, one interleaved run of five candidates on the same input: the Ultralytics ``Conv`` the module replaces,
and each version of the module, in eval (inference forms: SCConv after its ``fuse()``, SSDConv as it is; the Conv
with its BatchNorm folded; no gradients) and in training (forward + backward, gradients of the input and every
parameter). Ratios are medians of per-round ratios to the Conv, timed with this process's CPU time at one thread by
default (``--threads``, ``--wall-time``: _timing.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from _timing import (REPO, add_clock_options, add_write_docs, check_docs, clock, clock_name, environment_line,
                     interleaved, markdown_table, positive_int, setup, write_docs)

BLOCK = "before-after"  # the generated block --write-docs fills (docs/speed.md)
BEFORE = "633a60a"  # the last commit before issue 19 changed a module
PACKAGE = "yolo_spd_modules_before"  # the name the old modules are imported under
HEADER = ["module @px", "Conv eval ms", "eval before", "eval after", "Conv train ms", "train before", "train after"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE, help=f"git revision of the 'before' modules (default {BEFORE})")
    parser.add_argument("--batch", type=positive_int, default=8)
    parser.add_argument("--repeats", type=positive_int,
                        help="interleaved rounds per comparison (default 9; 3 with --quick)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per candidate first (default 2)")
    parser.add_argument("--quick", action="store_true", help="the first shape only, fewer rounds")
    add_clock_options(parser)
    add_write_docs(parser, BLOCK)
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 9)
    args.clock = clock(args)
    return args


def load_modules(revision: str, folder: Path):
    """``yolo_spd/modules`` at ``revision``, imported from ``folder`` as the package :data:`PACKAGE` (its files import
    one another relatively, and nothing from the rest of yolo_spd); a second load replaces the first."""
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", revision, "yolo_spd/modules"],
                                 capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        why = e.stderr.decode(errors="replace").strip() if isinstance(e, subprocess.CalledProcessError) else str(e)
        sys.exit(f"before_after.py: error: --before {revision}: cannot read yolo_spd/modules from git ({why}); "
                 "run it in a git clone of the repository that has that commit")
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.10.12+: refuse links and paths out of the folder
            tar.extractall(folder, filter="data")
        else:
            tar.extractall(folder)
    for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:  # an earlier load's submodules
        del sys.modules[name]
    package = folder / "yolo_spd" / "modules"
    spec = importlib.util.spec_from_file_location(PACKAGE, package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def cases(c: int, before, after):
    """(label, make(version), Conv) per module the issue bounds: SSDConv at stride 1 and 2, SCConv at stride 2."""
    from ultralytics.nn.modules import Conv

    return [
        (f"SSDConv({c}, {c})", lambda v: v.SSDConv(c, c), lambda: Conv(c, c, 3, 1)),
        (f"SCConv({c}, {2 * c}, s=2)", lambda v: v.SCConv(c, 2 * c, 3, 2), lambda: Conv(c, 2 * c, 3, 2)),
        (f"SSDConv({c}, {2 * c}, s=2)", lambda v: v.SSDConv(c, 2 * c, 3, 2), lambda: Conv(c, 2 * c, 3, 2)),
    ]


def inference_form(module):
    """SCConv after its own fuse() (both versions have one), anything else as it is; eval mode."""
    import copy

    module = copy.deepcopy(module).eval()
    return module.fuse() if type(module).__name__ == "SCConv" else module


def row(label, before, after, conv, x, args):
    """One module's eval and train ratios, old and new, to the Conv it replaces (benchmarks/modules.py's Conv fold
    and train step)."""
    import torch

    from modules import fused, train_step

    forms = {"conv": fused(conv), "before": inference_form(before), "after": inference_form(after)}
    with torch.no_grad():
        e = interleaved({name: (lambda m=m: m(x)) for name, m in forms.items()}, args.repeats, args.warmup, args.clock)
    x.requires_grad_(True)
    steps = {name: train_step(lambda m=m: m(x), m, x) for name, m in
             (("conv", conv.train()), ("before", before.train()), ("after", after.train()))}
    t = interleaved(steps, args.repeats, args.warmup, args.clock)
    x.requires_grad_(False)
    return [label, f"{e.ms('conv'):.1f}", f"{e.ratio('before', 'conv'):.2f}×", f"**{e.ratio('after', 'conv'):.2f}×**",
            f"{t.ms('conv'):.1f}", f"{t.ratio('before', 'conv'):.2f}×", f"**{t.ratio('after', 'conv'):.2f}×**"]


def main(argv=None) -> None:
    args = parse_args(argv)
    setup(args.threads)
    check_docs(args.write_docs, BLOCK)
    import torch

    from modules import SHAPES

    import yolo_spd.modules as after

    with tempfile.TemporaryDirectory() as folder:
        before = load_modules(args.before, Path(folder))
        rows = []
        for c, size in SHAPES[:1] if args.quick else SHAPES:
            torch.manual_seed(0)
            x = torch.randn(args.batch, c, size, size)
            for label, make, conv in cases(c, before, after):
                torch.manual_seed(0)
                rows.append(row(f"{label} @{size}", make(before), make(after), conv(), x, args))
                print(f"  {rows[-1][0]}", file=sys.stderr, flush=True)
    text = "\n".join([
        f"Batch {args.batch}, contiguous (NCHW) inputs, {args.repeats} interleaved rounds; "
        f"{environment_line(args.threads, clock_name(args))}. Before: `yolo_spd/modules` at {args.before}; after: "
        "this checkout. Each ratio is to the Ultralytics `Conv` the module replaces (eval: fused, no gradients; "
        "train: forward + backward).",
        "",
        markdown_table(HEADER, rows),
    ]) + "\n"
    sys.stdout.write(text)
    if args.write_docs:
        write_docs(args.write_docs, BLOCK, text)


if __name__ == "__main__":
    main()
