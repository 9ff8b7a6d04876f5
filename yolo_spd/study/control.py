"""``control=wide``: a compute-matched control made for the study, the baseline widened to a variant's GFLOPs.

A block that costs more compute should beat spending that compute on a plain wider network, not only the stock model
(docs/study.md, "A compute-matched control"). The published aerial study's control, ``benchmarks/yolov5nu-wide.yaml``,
was made by hand; :func:`wide_control` makes the same kind of model for any study: the baseline YAML with its width
multiple raised until its GFLOPs (one training-size image, the data's classes, counted as the study's cost columns
count them) are closest to those of the most expensive variant. Depth, ``max_channels`` and every row stay the
baseline's. Channels round to multiples of 8, so GFLOPs move in steps and the match is the nearest step; the file
says what it matched and how closely.

The YAML is written into the study folder once (``<baseline>-wide.yaml``) and then kept, as every run is: a rerun
reuses it, so its runs stay reusable even if a later Ultralytics counts FLOPs differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

CONTROL_WIDE = "wide"
#: Bisection steps on the width multiple: 2**-16 of the bracket, far below one channel-rounding step.
STEPS = 16
#: The widest control tried, as a multiple of the baseline's width (a variant costing more than this is not matched).
MAX_WIDENING = 8.0


@dataclass(frozen=True)
class WideControl:
    """A compute-matched control: its YAML text and what it matched.

    Attributes:
        name: the file name (``<baseline stem>-wide.yaml``).
        text: the YAML, headed by comment lines saying how it was made.
        width: its width multiple (the baseline's: ``base_width``).
        gflops: its GFLOPs at ``imgsz`` with ``nc`` classes; ``target``: the matched variant's (``matched``).
    """

    name: str
    text: str
    width: float
    base_width: float
    gflops: float
    target: float
    matched: str
    imgsz: int
    nc: int


def single_scale(model: str) -> dict:
    """The baseline's model dict as Ultralytics parses it, with the scale it builds written out (``yolov5nu.yaml`` is
    ``yolov5.yaml`` at scale n: depth, width and ``max_channels`` from its ``scales`` row)."""
    from ultralytics.nn.tasks import yaml_model_load

    from ..model_source import model_file

    file = model_file(model)
    if file is None or Path(str(model)).suffix == ".pt":
        raise UsageError(f"control=wide: the baseline {model} is not a model YAML; a wider control is made from the "
                         "baseline's YAML (give models= a YAML first, or name a control model)")
    # a unified name (yolov5nu.yaml) reads another file (yolov5.yaml) at the scale its name gives: Ultralytics loads it
    d = yaml_model_load(str(file) if file.name == Path(str(model)).name else str(model))
    d = {k: v for k, v in d.items() if k not in ("yaml_file",)}
    scales, scale = d.pop("scales", None), d.pop("scale", "")
    if scales:
        depth, width, max_channels = scales[scale] if scale in scales else next(iter(scales.values()))
        d.update(depth_multiple=depth, width_multiple=width, max_channels=max_channels)
    if not isinstance(d.get("width_multiple", 1.0), (int, float)):
        raise UsageError(f"control=wide: {model} has no numeric width_multiple to widen")
    return d


def model_gflops(cfg: dict | str, nc: int, imgsz: int) -> float:
    """GFLOPs of one ``imgsz`` image through ``cfg`` (a model dict, YAML or ``.pt``) built for ``nc`` classes
    (:func:`yolo_spd.info.gflops`)."""
    import copy

    from ultralytics.nn.tasks import DetectionModel

    from ..info import gflops, quiet_ultralytics
    from ..model_source import architecture

    with quiet_ultralytics():
        built = DetectionModel(copy.deepcopy(cfg) if isinstance(cfg, dict) else architecture(cfg), nc=nc,
                               verbose=False)
        return gflops(built, imgsz)


def wide_control(baseline: str, variants: list[str], nc: int, imgsz: int) -> WideControl:
    """The baseline widened to the GFLOPs of the most expensive of ``variants`` (see the module docstring)."""
    import json

    from .runs import model_stem

    base = single_scale(baseline)
    base_width = float(base.get("width_multiple", 1.0))
    costs = {v: model_gflops(v, nc, imgsz) for v in variants}
    matched = max(costs, key=costs.get)
    target = costs[matched]

    def cost(width: float) -> float:
        return model_gflops({**base, "width_multiple": width}, nc, imgsz)

    if target <= cost(base_width):
        raise UsageError(f"control=wide: no variant costs more GFLOPs than {model_stem(baseline)} at imgsz={imgsz} "
                         f"(the most, {model_stem(matched)}: {target:.2f}), so there is no compute to match; leave "
                         "control= out, or name a control model")
    low, high = base_width, base_width * MAX_WIDENING
    if cost(high) < target:
        raise UsageError(f"control=wide: {model_stem(matched)} costs more than {model_stem(baseline)} at "
                         f"{MAX_WIDENING:g}x its width; name a control model instead")
    for _ in range(STEPS):
        middle = (low + high) / 2
        low, high = (middle, high) if cost(middle) < target else (low, middle)
    width = min((low, high), key=lambda w: abs(cost(w) - target))
    gflops = cost(width)
    width = next(w for w in (round(width, d) for d in range(2, 12)) if cost(w) == gflops)  # shortest, same model
    name = f"{model_stem(baseline)}-wide.yaml"
    head = [f"{model_stem(baseline)} widened to {model_stem(matched)}'s compute: made by `yolo-spd study control=wide`",
            f"(yolo_spd.study.control). Width multiple {base_width:g} -> {width:g}, depth and rows unchanged; "
            f"GFLOPs at imgsz={imgsz}, {nc} classes:",
            f"{gflops:.3f} against {model_stem(matched)}'s {target:.3f} ({gflops / target:.3f}x). Kept in the study "
            "folder: a rerun reuses it."]
    rows = ("backbone", "head")  # one layer per line, as Ultralytics writes its YAMLs (JSON is YAML's flow style)
    body = [f"{k}: {json.dumps(v)}" for k, v in {**base, "width_multiple": width}.items() if k not in rows]
    for part in rows:
        body += [f"{part}:", *(f"  - {json.dumps(row)}" for row in base[part])]
    text = "".join(f"# {line}\n" for line in head) + "\n".join(body) + "\n"
    return WideControl(name, text, width, base_width, gflops, target, model_stem(matched), imgsz, nc)


def control_file(folder: Path, models: list[str], nc: int, imgsz: int) -> Path:
    """``control=wide``'s YAML in the study ``folder``: made there by :func:`wide_control` the
    first time, then kept (its runs stay the same runs), saying how well it still matches the costliest variant."""
    import re

    from ..paths import write_atomic
    from .runs import model_stem

    file = folder / f"{model_stem(models[0])}-wide.yaml"
    if not file.is_file():
        made = wide_control(models[0], models[1:], nc, imgsz)
        write_atomic(file, made.text)
        print(f"control=wide: {file}: {model_stem(models[0])} at width {made.width:g} (from {made.base_width:g}), "
              f"{made.gflops:.2f} GFLOPs against {made.matched}'s {made.target:.2f} ({made.gflops / made.target:.2f}x) "
              f"at imgsz={imgsz}, {nc} classes")
        return file
    costs = {model_stem(m): model_gflops(m, nc, imgsz) for m in models[1:]}
    costliest = max(costs, key=costs.get)
    ratio = model_gflops(str(file), nc, imgsz) / costs[costliest]
    made = re.search(r"against (\S+)'s [\d.]+ \(([\d.]+)x\)", file.read_text(encoding="utf-8"))  # its header
    drift = "" if made and made[1] == costliest and abs(float(made[2]) - ratio) < 0.01 else (
        "; not the match it was made as (models=, imgsz= or the data's classes changed): delete it to make it "
        "again, and its runs train again")
    print(f"control=wide: {file} (made when this study started; kept): {ratio:.2f}x {costliest}'s GFLOPs at "
          f"imgsz={imgsz}{drift}")
    return file
