"""Model statistics for the packaged configs: ``python -m yolo_spd.info [pattern]`` prints a Markdown table.

Parameters are counted from the built model; GFLOPs come from Ultralytics' own counter (ultralytics-thop, with the
same stride-aware proxy call Ultralytics makes) at 640. The README's model table is this command's output.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from .configs import list_models


@dataclass(frozen=True)
class ModelStats:
    name: str
    layers: int
    params: int  # whole model
    params_before_detect: int  # the figure comparable with the SPD-Conv authors' backbone + neck
    gflops: float  # at 640 x 640, batch 1


def model_stats(name: str, imgsz: int = 640) -> ModelStats:
    """Build the packaged config ``name`` (e.g. ``"yolov5-spd-n"``) and measure it."""
    from ultralytics import YOLO

    model = YOLO(f"{name}.yaml").model
    layers = model.model
    return ModelStats(
        name=name,
        layers=len(layers),
        params=sum(p.numel() for p in model.parameters()),
        params_before_detect=sum(p.numel() for layer in layers[:-1] for p in layer.parameters()),
        gflops=gflops(model, imgsz),
    )


def gflops(model, imgsz: int = 640) -> float:
    """GFLOPs of ``model`` at ``imgsz`` x ``imgsz``, batch 1, counted by ultralytics-thop.

    Ultralytics' ``get_flops`` sizes its probe image from the first weight's input channels, which for a Focus stem
    is 4x the image channels, so it fails and returns 0.0 for these models. This makes the same ``thop.profile``
    call with the model's real input channels.
    """
    import thop
    import torch

    stride = max(int(model.stride.max()), 32)
    image = torch.empty(1, model.yaml.get("channels", 3), imgsz, imgsz)
    return thop.profile(model, inputs=[image], stride=stride, min_cells=1, verbose=False)[0] / 1e9 * 2


def markdown_table(stats: list[ModelStats]) -> str:
    rows = [
        "| model | layers | params | params before Detect | GFLOPs @640 |",
        "|---|---:|---:|---:|---:|",
    ]
    rows += [f"| {s.name} | {s.layers} | {s.params:,} | {s.params_before_detect:,} | {s.gflops:.1f} |" for s in stats]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m yolo_spd.info", description=__doc__.splitlines()[0])
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style filter on config names (default: all)")
    args = parser.parse_args(argv)
    names = list_models(args.pattern)
    if not names:
        parser.error(f"no packaged config matches {args.pattern!r}; available: {', '.join(list_models())}")
    print(markdown_table([model_stats(name) for name in names]))


if __name__ == "__main__":
    main()
