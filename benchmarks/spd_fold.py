"""SPD fold (issue 19): whole-model latency with space-to-depth kept as a rearrangement and folded into strided
convolutions, in PyTorch and ONNX Runtime, and the rearrangement ops each exported graph keeps.

    python benchmarks/spd_fold.py                        # the SPD n configs at 640, 1 thread, process CPU time
    python benchmarks/spd_fold.py --quick                # fewer rounds, ONNX graphs only
    python benchmarks/spd_fold.py --formats onnx,openvino,ncnn

Both forms are what Ultralytics runs for inference: ``model.fuse()`` (registered: yolo_spd's fuse, then Ultralytics'
BatchNorm fold). "kept" is that fuse with ``fold_spd=False`` (SPDConv's and yolov5-spd's SpaceToDepth stay
rearrangements, switched to ONNX's block order where exact: the inference form before issue 19); "folded" is the
default. The ONNX models are Ultralytics' own ``export(format="onnx")`` of each form (dynamic=False, simplified).
Timing: this process's CPU time at ``--threads`` threads (default 1), both forms of a model run once per round in
alternating order; ms are medians over rounds, a ratio is the median of the per-round folded/kept ratios.
Graphs: every node of a rearranging type (ONNX, OpenVINO IR, NCNN param), counted per form, with the layer it comes
from where the format names it (``model.N``), so the ops the fold removed and those it leaves are listed by layer.
Writes ``benchmarks/results/spd_fold.md`` and ``.json`` (``--out STEM`` names other files).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.metadata
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from unittest import mock

from _timing import REPO, interleaved, markdown_table, ort_session, setup

MODELS = ("yolov5-spd-n", "yolov8-spd-n", "yolo11-spd-n")
FORMS = ("kept", "folded")
#: Node types that move or select data without arithmetic, per format (MaxPool counts only with a 1 x 1 window:
#: the crops of space-to-depth's traced form; SPPF's 5 x 5 pools compute a maximum).
REARRANGING = {
    "onnx": {"SpaceToDepth", "DepthToSpace", "Transpose", "Reshape", "Slice", "Gather", "Split", "Pad", "Concat",
             "MaxPool"},
    "openvino": {"SpaceToDepth", "DepthToSpace", "Transpose", "Reshape", "StridedSlice", "Slice", "Gather",
                 "VariadicSplit", "Split", "Pad", "Concat", "MaxPool"},
    "ncnn": {"Reorg", "PixelShuffle", "Permute", "Reshape", "Crop", "Slice", "Padding", "Concat", "Pooling"},
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated config names")
    parser.add_argument("--formats", default="onnx,openvino,ncnn", help="graphs to inspect (onnx is always timed)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--repeats", type=int, help="interleaved rounds (default 15; 7 with --quick)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, ONNX graphs only")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "spd_fold"), help="output file stem")
    parser.add_argument("--from-json", metavar="JSON", help="re-render the Markdown of a saved run, measuring nothing")
    args = parser.parse_args(argv)
    args.models = args.models.split(",")
    args.formats = ["onnx"] if args.quick else args.formats.split(",")
    args.repeats = args.repeats or (7 if args.quick else 15)
    return args


@contextlib.contextmanager
def spd_kept():
    """Ultralytics' ``model.fuse()`` (and so its exporter) with yolo_spd's fuse minus the space-to-depth fold."""
    from yolo_spd.integration import fuse as registered
    from yolo_spd.modules import fuse_modules

    with mock.patch.object(registered, "fuse_modules", functools.partial(fuse_modules, fold_spd=False)):
        yield


def form_context(form: str):
    return spd_kept() if form == "kept" else contextlib.nullcontext()


def build_checkpoint(name: str, folder: Path) -> Path:
    """The config with seeded weights and non-trivial BatchNorm statistics, saved as a checkpoint."""
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    yolo = YOLO(f"{name}.yaml")
    with torch.no_grad():
        for m in yolo.model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.3, 0.3)
                m.running_mean.uniform_(-0.3, 0.3), m.running_var.uniform_(0.5, 1.5)
    path = folder / f"{name}.pt"
    yolo.save(str(path))
    return path


def fused(weights: Path, form: str):
    from ultralytics import YOLO

    model = YOLO(str(weights)).model.float().eval()
    with form_context(form):
        return model.fuse(verbose=False)


def export(weights: Path, form: str, fmt: str, imgsz: int, folder: Path) -> str:
    """Ultralytics' export of the checkpoint in ``form``, in its own subfolder."""
    import shutil

    from ultralytics import YOLO

    target = folder / f"{form}-{fmt}"
    target.mkdir(exist_ok=True)
    local = target / weights.name
    shutil.copy(weights, local)
    with form_context(form), contextlib.chdir(target):
        return str(target / YOLO(str(local)).export(format=fmt, imgsz=imgsz, device="cpu"))


def graph_nodes(fmt: str, exported: str) -> list[tuple[str, str, dict]]:
    """(op type, node name, attributes we read) of every node of an exported graph."""
    if fmt == "onnx":
        import onnx

        return [(n.op_type, n.name, {a.name: list(a.ints) for a in n.attribute if a.ints})
                for n in onnx.load(exported).graph.node]
    if fmt == "openvino":
        import xml.etree.ElementTree as ET

        xml = next(Path(exported).glob("*.xml"))
        nodes = []
        for layer in ET.parse(xml).getroot().iter("layer"):
            data = layer.find("data")
            kernel = (data.get("kernel") or "") if data is not None else ""
            nodes.append((layer.get("type"), layer.get("name"), {"kernel_shape": [int(k) for k in kernel.split(",")
                                                                                   if k.strip()]}))
        return nodes
    param = next(Path(exported).glob("*.param"))
    nodes = []
    for line in param.read_text().splitlines()[2:]:
        fields = line.split()
        if len(fields) > 1:
            pooling = fields[0] == "Pooling"  # its parameter 1 is kernel_w (11 kernel_h)
            values = dict(v.split("=", 1) for v in fields[2:] if "=" in v)
            kernel = [int(values[k]) for k in ("11", "1") if pooling and k in values]
            nodes.append((fields[0], fields[1], {"kernel_shape": kernel}))
    return nodes


def rearranging(fmt: str, nodes) -> list[tuple[str, str]]:
    """(op type, layer) of each rearranging node; layer is ``model.N`` where the node name carries it, else '-'."""
    found = []
    for op, name, attributes in nodes:
        if op not in REARRANGING[fmt]:
            continue
        if op in ("MaxPool", "Pooling") and set(attributes.get("kernel_shape") or [0]) != {1}:
            continue  # a real pooling window (SPPF), not a 1 x 1 crop
        layer = re.search(r"model[./_](\d+)", name or "")
        found.append((op, f"model.{layer.group(1)}" if layer else "-"))
    return found


def relative_difference(got, expected) -> float:
    import numpy as np

    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def measure(args) -> dict:
    import numpy as np
    import torch

    x = torch.rand(1, 3, args.imgsz, args.imgsz, generator=torch.Generator().manual_seed(0))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.models:
            weights = build_checkpoint(name, folder)
            models = {form: fused(weights, form) for form in FORMS}
            layer_types = {f"model.{i}": type(m).__name__ for i, m in enumerate(models["folded"].model)}
            kept_types = {f"model.{i}": type(m).__name__ for i, m in enumerate(models["kept"].model)}
            with torch.inference_mode():
                outputs = {form: models[form](x)[0].numpy() for form in FORMS}
                eager = interleaved({form: (lambda m=models[form]: m(x)) for form in FORMS}, args.repeats,
                                    args.warmup, clock=time.process_time)
            graphs, exported_onnx = {}, {}
            for fmt in args.formats:
                graphs[fmt] = {}
                for form in FORMS:
                    exported = export(weights, form, fmt, args.imgsz, folder)
                    if fmt == "onnx":
                        exported_onnx[form] = exported
                    ops = rearranging(fmt, graph_nodes(fmt, exported))
                    graphs[fmt][form] = {"counts": dict(Counter(op for op, _ in ops)),
                                         "by_layer": dict(Counter(f"{layer} {op}" for op, layer in ops))}
            sessions = {form: ort_session(exported_onnx[form], args.threads) for form in FORMS}
            feed = {form: {sessions[form].get_inputs()[0].name: x.numpy()} for form in FORMS}
            onnx_out = {form: sessions[form].run(None, feed[form])[0] for form in FORMS}
            runtime = interleaved({form: (lambda s=sessions[form], f=feed[form]: s.run(None, f)) for form in FORMS},
                                  args.repeats, args.warmup, clock=time.process_time)
            results[name] = {
                "torch_ms": {form: eager.ms(form) for form in FORMS},
                "torch_ratio": eager.ratio("folded", "kept"),
                "onnx_ms": {form: runtime.ms(form) for form in FORMS},
                "onnx_ratio": runtime.ratio("folded", "kept"),
                "rel_diff": {"torch folded vs kept": relative_difference(outputs["folded"], outputs["kept"]),
                             "onnx folded vs torch": relative_difference(onnx_out["folded"], outputs["folded"]),
                             "onnx kept vs torch": relative_difference(onnx_out["kept"], outputs["kept"])},
                "layers": {"kept": kept_types, "folded": layer_types},
                "graphs": graphs,
            }
            del models, sessions
            print(f"{name}: done", flush=True)
    assert np.isfinite([r["torch_ratio"] for r in results.values()]).all()
    return results


#: The downsampling stages of yolov5nu and yolov5-spd-n, by layer index: (stage, yolov5nu's stride-2 Conv and the C3
#: after it, yolov5-spd-n's stride-1 Conv and the C3 after its SpaceToDepth row). Every other layer computes the same
#: in both (the Focus stem is the 6 x 6 stride-2 stem of yolov5nu, spd_to_strided).
STAGES = [("P2/4", (1, 2), (1, 3)), ("P3/8", (3, 4), (4, 6)), ("P4/16", (5, 6), (7, 9)), ("P5/32", (7, 8), (10, 12)),
          ("head P4/16", (18, 20), (22, 25)), ("head P5/32", (21, 23), (26, 29))]


def where_spd_computes(imgsz: int) -> dict:
    """Convolution GFLOPs (torch.utils.flop_counter, 2 per multiply-add) and parameters of each downsampling stage's
    Conv row and of the next C3's cv1 + cv2, in yolov5nu and yolov5-spd-n; and each model's total."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from ultralytics import YOLO

    found = {}
    for name in ("yolov5nu", "yolov5-spd-n"):
        model = YOLO(f"{name}.yaml").model.eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, 3, imgsz, imgsz))
        counts = counter.get_flop_counts()

        def gflops(path, counts=counts):
            return sum(counts.get(f"DetectionModel.{path}", {}).values()) / 1e9

        def params(module):
            return sum(p.numel() for p in module.parameters())

        stages = {}
        for stage, nu, spd in STAGES:
            conv_row, c3 = nu if name == "yolov5nu" else spd
            c3_module = model.model[c3]
            stages[stage] = {"conv GFLOPs": gflops(f"model.{conv_row}"),
                             "conv stride": model.model[conv_row].conv.stride[0],
                             "C3 cv1+cv2 GFLOPs": gflops(f"model.{c3}.cv1") + gflops(f"model.{c3}.cv2"),
                             "C3 cv1+cv2 params": params(c3_module.cv1) + params(c3_module.cv2),
                             "C3 input channels": c3_module.cv1.conv.in_channels}
        found[name] = {"total GFLOPs": sum(counts["Global"].values()) / 1e9,
                       "params": sum(p.numel() for p in model.parameters()), "stages": stages}
    return found


def versions() -> dict:
    names = ("torch", "ultralytics", "onnx", "onnxruntime", "onnxslim", "openvino", "pnnx", "ncnn")
    found = {}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def _ops(counts: Counter) -> str:
    return ", ".join(f"{op} {n}" for op, n in sorted(counts.items()) if n) or "none"


def changed_by_layer(result: dict, fmt: str) -> list[str]:
    """Each layer whose rearranging nodes differ between the forms: 'model.N (layer type): kept ops -> folded ops'."""
    per_layer = {form: {} for form in FORMS}
    for form in FORMS:
        for key, n in result["graphs"][fmt][form]["by_layer"].items():
            layer, op = key.split()
            per_layer[form].setdefault(layer, Counter())[op] += n
    lines = []
    layers = sorted(set(per_layer["kept"]) | set(per_layer["folded"]),
                    key=lambda layer: int(layer.split(".")[1]) if layer.startswith("model.") else -1)
    for layer in layers:
        kept, folded = (per_layer[form].get(layer, Counter()) for form in FORMS)
        if kept != folded:
            kind = result["layers"]["kept"].get(layer, "not named by layer")
            lines.append(f"{layer} ({kind}): {_ops(kept)} -> {_ops(folded)}" if layer != "-" else
                         f"{_ops(kept)} -> {_ops(folded)} (node names carry no layer)")
    return lines


def left_by_layer_type(result: dict, fmt: str) -> str:
    """The folded graph's rearranging nodes, summed by the type of the layer they come from."""
    by_type = {}
    for key, n in result["graphs"][fmt]["folded"]["by_layer"].items():
        layer, op = key.split()
        kind = result["layers"]["folded"].get(layer, "unnamed")
        by_type.setdefault(kind, Counter())[op] += n
    return "; ".join(f"{kind}: {_ops(ops)}" for kind, ops in sorted(by_type.items()))


def markdown(payload: dict) -> str:
    results = payload["results"]
    parts = [f"`{payload['command']}`", f"{payload['imgsz']} x {payload['imgsz']}, batch 1, {payload['repeats']} "
             f"interleaved rounds, process CPU time at {payload['threads']} thread(s); "
             + ", ".join(f"{k} {v}" for k, v in payload["versions"].items()) + ". Machine-dependent: the ms and ratio "
             "columns; the graph counts are not."]
    rows = [[name, f"{r['torch_ms']['kept']:.1f}", f"{r['torch_ms']['folded']:.1f}", f"**{r['torch_ratio']:.3f}**",
             f"{r['onnx_ms']['kept']:.1f}", f"{r['onnx_ms']['folded']:.1f}", f"**{r['onnx_ratio']:.3f}**"]
            for name, r in results.items()]
    parts.append(markdown_table(["model", "PyTorch kept ms", "PyTorch folded ms", "folded / kept",
                                 "ONNX Runtime kept ms", "ONNX Runtime folded ms", "folded / kept"], rows))
    rows = [[name, *(f"{r['rel_diff'][k]:.1e}" for k in r["rel_diff"])] for name, r in results.items()]
    parts.append("Outputs (max |a - b| / max |b| over the raw Detect output, float32):")
    parts.append(markdown_table(["model", *next(iter(results.values()))["rel_diff"]], rows))
    parts.append(where_markdown(payload["where"], payload["imgsz"]))
    formats = payload["formats"]
    parts.append("Rearranging nodes in the exported graphs (" + "; ".join(
        f"{fmt}: {', '.join(sorted(REARRANGING[fmt]))}" for fmt in formats) + "; 1 x 1 max pools only), kept -> folded:")
    rows = []
    for name, r in results.items():
        for fmt in formats:
            counts = [r["graphs"][fmt][form]["counts"] for form in FORMS]
            ops = sorted(set(counts[0]) | set(counts[1]))
            rows.append([name, fmt, ", ".join(f"{op} {counts[0].get(op, 0)} -> {counts[1].get(op, 0)}" for op in ops)])
    parts.append(markdown_table(["model", "format", "node counts, kept -> folded"], rows))
    parts.append("Where the counts differ, by layer (kept -> folded):")
    parts.append("\n".join(f"- {name}, {fmt}: " + "; ".join(changed_by_layer(r, fmt))
                           for name, r in results.items() for fmt in formats if changed_by_layer(r, fmt)))
    named = [fmt for fmt in formats if fmt != "ncnn"]
    parts.append("Left in the folded graphs, by the type of layer they come from (NCNN's node names carry no layer; "
                 "its counts are in the table above):")
    parts.append("\n".join(f"- {name}, {fmt}: {left_by_layer_type(r, fmt)}"
                           for name, r in results.items() for fmt in named))
    return "\n\n".join(parts) + "\n"


def where_markdown(where: dict, imgsz: int) -> str:
    nu, spd = where["yolov5nu"], where["yolov5-spd-n"]
    rows, extra = [], 0.0
    for stage in nu["stages"]:
        a, b = nu["stages"][stage], spd["stages"][stage]
        extra += b["conv GFLOPs"] - a["conv GFLOPs"] + b["C3 cv1+cv2 GFLOPs"] - a["C3 cv1+cv2 GFLOPs"]
        rows.append([stage, f"{a['conv GFLOPs']:.3f}", f"{b['conv GFLOPs']:.3f}",
                     f"{a['C3 cv1+cv2 GFLOPs']:.3f} ({a['C3 input channels']} ch)",
                     f"{b['C3 cv1+cv2 GFLOPs']:.3f} ({b['C3 input channels']} ch)"])
    table = markdown_table(["stage", "yolov5nu Conv, stride 2", "yolov5-spd-n Conv, stride 1",
                            "yolov5nu next C3 cv1+cv2 (input)", "yolov5-spd-n next C3 cv1+cv2 (input)"], rows)
    difference = spd["total GFLOPs"] - nu["total GFLOPs"]
    return (f"Where yolov5-spd-n computes more than yolov5nu: convolution GFLOPs at {imgsz} x {imgsz} "
            "(torch.utils.flop_counter, 2 per multiply-add; the same on every machine) of each downsampling "
            "stage's Conv row and of the 1 x 1 cv1 + cv2 of the C3 reading it. Every other layer is the same in "
            "both, the stems included (Focus + 3 x 3 conv = yolov5nu's 6 x 6 stride-2 conv).\n\n" + table
            + f"\n\nTotals: yolov5nu {nu['total GFLOPs']:.2f} GFLOPs, {nu['params']:,} parameters; yolov5-spd-n "
            f"{spd['total GFLOPs']:.2f} GFLOPs, {spd['params']:,} parameters. The stages above account for "
            f"{extra:.2f} of the {difference:.2f} GFLOPs difference.")


def main(argv=None) -> None:
    args = parse_args(argv)
    setup(args.threads)
    if args.from_json:
        text = markdown(json.loads(Path(args.from_json).read_text()))
        Path(args.out).with_suffix(".md").write_text(text)
        print(text)
        return
    from yolo_spd.info import quiet_ultralytics

    os.environ.setdefault("YOLO_OFFLINE", "true")
    with quiet_ultralytics():
        results = measure(args)
        where = where_spd_computes(args.imgsz)
    payload = {"command": " ".join(["python benchmarks/spd_fold.py", *(sys.argv[1:] if argv is None else argv)]),
               "imgsz": args.imgsz, "threads": args.threads, "repeats": args.repeats, "formats": args.formats,
               "versions": versions(), "results": results, "where": where}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
    text = markdown(payload)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
