"""Issue 19's targets, read off the measured blocks of docs/speed.md: which are met, and the figures each rests on.

    python benchmarks/targets.py                                   # prints the table; measures nothing (a second)
    python benchmarks/targets.py --write-docs docs/speed.md        # also into that page's generated block 'targets'

Every figure comes from another generated block of the page (``modules``, ``space-to-depth``, ``models-speed``,
``spd_fold``, ``info-latency``, ``before-after``, and model_floor.py's ``model-floor`` blocks) or from
``benchmarks/results/gpu.json``, so the verdicts change exactly when one of those is re-measured, and nobody keeps a
range by hand. ``tests/test_docs.py`` checks that the published block is this script's output for the published
blocks. The figures are as machine-dependent as the blocks they come from.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from _timing import REPO, add_write_docs, check_docs, setup, write_docs

BLOCK = "targets"  # the generated block --write-docs fills (docs/speed.md)
MODULE_LIMITS = {"SSDConv": 1.5, "SCConv": 1.2}  # the bounds on the ratio to the replaced Conv
SPACE_TO_DEPTH_LIMIT = 1.25  # SpaceToDepth against a copy of the same tensor
#: Node types that only a space-to-depth leaves in each exported graph (benchmarks/spd_fold.py counts them).
SPACE_TO_DEPTH_NODES = {"onnx": ("SpaceToDepth", "DepthToSpace"), "openvino": ("SpaceToDepth", "MaxPool"),
                        "ncnn": ("Reorg", "Pooling", "Crop")}
#: The measured blocks whose setting line must name the clock (target 5: process CPU time at a fixed thread count).
#: benchmarks/model_floor.py's blocks (what bounds each pair), and how a row of each is named here.
FLOOR_BLOCKS = {"model-floor": "{runtime}, ONNX export in the process", "model-floor-pytorch": "PyTorch-only process",
                "model-floor-pytorch-malloc": "PyTorch-only process, allocator tuned"}
MET_IN_FLOOR = "— (met)"  # model_floor.py's 'bound by' for a pair within its target
TIMED_BLOCKS = ("modules", "space-to-depth", "models-speed", "spd_fold", "info-latency", "before-after",
                *FLOOR_BLOCKS)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--page", default=str(REPO / "docs" / "speed.md"), help="the page whose blocks are read")
    parser.add_argument("--gpu", default=str(REPO / "benchmarks" / "results" / "gpu.json"),
                        help="benchmarks/gpu.py's results, where it has run")
    add_write_docs(parser, BLOCK)
    return parser.parse_args(argv)


def cells_of(text: str, column: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows of cells) of the first Markdown table in ``text`` with a column ``column``
    (:func:`yolo_spd.markdown.table_cells` from its header line on). A missing one means a block's shape changed: an
    error naming it."""
    from yolo_spd.markdown import table_cells

    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and column in [cell.strip() for cell in line.strip().strip("|").split("|")]:
            return table_cells("\n".join(lines[i:]))
    raise SystemExit(f"targets.py: error: no table with a column {column!r}; re-generate the blocks or update this "
                     "script")


def table_with(text: str, column: str) -> list[dict[str, str]]:
    """:func:`cells_of` as {header: cell} per row (for tables whose column names are unique)."""
    header, body = cells_of(text, column)
    return [dict(zip(header, row)) for row in body]


def number(cell: str) -> float:
    """The first number in a cell such as ``**1.33×**`` or ``1.04 (not met)``."""
    match = re.search(r"\d+(?:\.\d+)?", cell)
    if match is None:
        raise SystemExit(f"targets.py: error: no number in the cell {cell!r}")
    return float(match.group())


def span(values: list[float], unit: str = "×") -> str:
    low, high = min(values), max(values)
    return f"{low:.2f}{unit}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}–{high:.2f}{unit}"


def verdict(met: bool) -> str:
    return "**met**" if met else "**not met**"


def spd_fold_row(blocks: dict[str, str]) -> list[str]:
    """Item 1: a fused SPD config's exported graphs hold no space-to-depth, and the fold is no slower."""
    counts = table_with(blocks["spd_fold"], "node counts, kept -> folded")
    left = []
    for row in counts:
        for kind in SPACE_TO_DEPTH_NODES.get(row["format"], ()):
            match = re.search(rf"\b{kind} (\d+) -> (\d+)", row["node counts, kept -> folded"])
            if match and int(match.group(2)):
                left.append(f"{row['model']} {row['format']} {kind} {match.group(2)}")
    # the timing table has a "folded / kept" column per runtime (PyTorch, then ONNX Runtime): read it by position
    header, body = cells_of(blocks["spd_fold"], "PyTorch kept ms")
    columns = [i for i, name in enumerate(header) if name == "folded / kept"]
    ratios = {runtime: [number(row[i]) for row in body] for runtime, i in zip(("PyTorch", "ONNX Runtime"), columns)}
    slower = [runtime for runtime, values in ratios.items() if max(values) > 1.0]
    figures = (f"space-to-depth nodes left in the folded ONNX, OpenVINO and NCNN graphs: "
               f"{', '.join(left) if left else 'none'}; latency folded / kept "
               + ", ".join(f"{runtime} {span(values)}" for runtime, values in ratios.items())
               + " ([SPD fold](#spd-conv-folded-into-strided-convolutions))")
    return ["SPD-Conv folded into strided convolutions, no slower", verdict(not left and not slower), figures]


def module_rows(blocks: dict[str, str]) -> list[list[str]]:
    """Items 2 and 3: SSDConv and SCConv at stride 2 against the Conv they replace, batch 8, eval and training."""
    eval_rows = table_with(blocks["modules"], "inference form / Conv")
    train_rows = table_with(blocks["modules"], "fast / Conv")
    rows = []
    for name, stride2 in (("SSDConv", False), ("SCConv", True)):
        def picked(table, name=name, stride2=stride2):
            return [r for r in table if r["module @px"].startswith(name + "(")
                    and (not stride2 or "s=2" in r["module @px"])]

        evals = [number(r["inference form / Conv"]) for r in picked(eval_rows)]
        trains = [number(r["fast / Conv"]) for r in picked(train_rows)]
        if not evals or not trains:
            raise SystemExit(f"targets.py: error: no {name} rows in the modules block")
        limit = MODULE_LIMITS[name]
        where = "stride 2" if stride2 else "64/128/256 channels"
        what = f"{name} ≤ {limit}× the `Conv`, eval and training, {where}"
        rows.append([what, verdict(max(evals + trains) <= limit),
                     f"eval {span(evals)}, train {span(trains)} (batch 8, [per module](#per-module))"])
    return rows


def space_to_depth_row(blocks: dict[str, str]) -> list[str]:
    """Item 3: SpaceToDepth against a copy, per layout, eval and training."""
    rows = table_with(blocks["space-to-depth"], "eval / clone")
    parts, met = [], {}
    for layout in dict.fromkeys(r["layout"] for r in rows):
        evals = [number(r["eval / clone"]) for r in rows if r["layout"] == layout]
        trains = [number(r["train / copy both ways"]) for r in rows if r["layout"] == layout]
        met[layout] = max(evals + trains) <= SPACE_TO_DEPTH_LIMIT
        parts.append(f"{layout}: eval {span(evals)}, train {span(trains)}")
    status = ("**met**" if all(met.values()) else
              "; ".join(f"{verdict(ok)} in {layout}" for layout, ok in met.items()))
    figures = "; ".join(parts) + " ([against a copy](#spacetodepth-against-a-copy)); inference folds it away in the " \
                                 "SPD configs"
    return [f"SpaceToDepth ≤ {SPACE_TO_DEPTH_LIMIT}× a copy, NCHW and channels-last, where not folded away", status,
            figures]


def model_rows(blocks: dict[str, str]) -> list[list[str]]:
    """Item 4: every n config's latency ratio to its baseline at most its GFLOPs ratio, both runtimes; and the
    training throughput reported."""
    pairs = table_with(blocks["models-speed"], "GFLOPs ratio")
    runtimes = ("PyTorch latency ratio", "ONNX Runtime latency ratio")
    floors = {}  # {model: {"PyTorch, ONNX export in the process": row, ...}} from benchmarks/model_floor.py's blocks
    for name, setting in FLOOR_BLOCKS.items():
        for floor_row in table_with(blocks[name], "bound by"):
            where = setting.format(runtime=floor_row["runtime"])
            floors.setdefault(floor_row["pair"].split(" / ")[0], {})[where] = floor_row
    missed, met, unsteady = [], [], []
    for row in pairs:
        if "-n /" not in row["pair"]:
            continue
        model = row["pair"].split(" / ")[0]
        gflops = number(row["GFLOPs ratio"])
        latency = [number(row[key]) for key in runtimes]
        figures = f"{model} {latency[0]:.2f}/{latency[1]:.2f} against {gflops:.2f}"
        over = {where: floor_row for where, floor_row in floors.get(model, {}).items()
                if floor_row["bound by"] != MET_IN_FLOOR}  # the floor runs where it missed too
        bounds = {floor_row["bound by"] for floor_row in over.values()}
        if max(latency) <= gflops:
            met.append(figures)
            if over:
                readings = ", ".join(f"{where} {floor_row['latency ratio']}" for where, floor_row in over.items())
                unsteady.append(f"{model} ({readings})")
        else:
            if len(bounds) == 1:
                figures += f", bound by {next(iter(bounds))}"
            elif bounds:
                figures += ", bound by " + "; ".join(f"{floor_row['bound by']} ({where})"
                                                     for where, floor_row in over.items())
            missed.append(figures)
    throughput = [number(row["training throughput ratio"]) for row in pairs if "-n /" in row["pair"]]
    status = "**met**" if not missed else f"**not met** for {len(missed)} of {len(missed) + len(met)}"
    figures = ("PyTorch/ONNX Runtime latency ratio against the GFLOPs ratio ([whole models](#whole-models); bound by "
               "[compute or other passes](#what-bounds-the-whole-model-ratios)): "
               + ("not met: " + "; ".join(missed) + ". " if missed else "")
               + ("met: " + "; ".join(met) if met else "")
               + (". Met here but not in the runs of [what bounds the ratios]"
                  "(#what-bounds-the-whole-model-ratios): " + "; ".join(unsteady) if unsteady else ""))
    return [["whole n models: latency ratio ≤ GFLOPs ratio, PyTorch and ONNX Runtime", status, figures],
            ["training throughput of each n config against its baseline, reported", "**met**",
             f"images/s ratios {span(throughput, '')} ([whole models](#whole-models))"]]


def clock_row(blocks: dict[str, str]) -> list[str]:
    """Item 5: every measured block of the page in process CPU time at a fixed thread count."""
    other = []
    for name in TIMED_BLOCKS:
        text = blocks[name]
        if "process CPU time" not in text or not re.search(r"\b\d+ thread\(s\)", text):
            other.append(name)
    figures = ("the measured blocks " + ", ".join(f"`{name}`" for name in TIMED_BLOCKS)
               + (" all say so in their setting lines" if not other else f"; not: {', '.join(other)}"))
    return ["every speed table in process CPU time at a fixed thread count", verdict(not other), figures]


def gpu_row(gpu_results: Path) -> list[str]:
    """Item 6: the prepared GPU run, where it has run."""
    if not gpu_results.is_file():
        return ["the GPU run (benchmarks/gpu.py)", "**not run**",
                "no GPU lent yet; the script is committed and tested on CPU ([On a GPU](#on-a-gpu))"]
    device = json.loads(gpu_results.read_text(encoding="utf-8"))["device"]
    return ["the GPU run (benchmarks/gpu.py)", "**run**",
            f"on {device['name']}, {device['date']} (`benchmarks/results/gpu.md`)"]


def render(page: Path, gpu_results: Path) -> str:
    from yolo_spd.markdown import blocks as read_blocks
    from yolo_spd.markdown import table

    if not page.is_file():
        raise SystemExit(f"targets.py: error: --page {page}: no such file; expected docs/speed.md or a copy of it")
    blocks = read_blocks(page)
    missing = [name for name in TIMED_BLOCKS if name not in blocks]
    if missing:
        raise SystemExit(f"targets.py: error: {page} has no block(s) {', '.join(missing)}")
    rows = [spd_fold_row(blocks), *module_rows(blocks), space_to_depth_row(blocks), *model_rows(blocks),
            clock_row(blocks), gpu_row(gpu_results)]
    intro = ("Read off this page's measured blocks by `python benchmarks/targets.py` (it measures nothing; the "
             "figures are as machine-dependent as those blocks).")
    return intro + "\n\n" + table(["target", "status", "figures"], rows, align="lll") + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    setup(1)
    check_docs(args.write_docs, BLOCK)
    text = render(Path(args.page), Path(args.gpu))
    sys.stdout.write(text)
    if args.write_docs:
        write_docs(args.write_docs, BLOCK, text)


if __name__ == "__main__":
    main()
