"""Part 5: fuse - ``model.fuse()`` also folds yolo_spd's modules.

Ultralytics calls ``model.fuse()`` before val, predict and export, and its ``BaseModel.fuse`` only knows Ultralytics'
classes. ``BaseModel.fuse`` is wrapped to run :func:`yolo_spd.fuse_modules` (SCConv's exact BatchNorm and branch
folding, SPD-Conv's and the yolov5-spd SpaceToDepth rows' fold into strided convolutions, and the switch of any
SpaceToDepth left to ONNX's block order, the last two checked on a small random image sized from the model's
``yaml["channels"]`` and ``stride``) first, then Ultralytics' own fuse, unchanged.
"""

from __future__ import annotations

import torch

from ..modules import fuse_modules

_saved: dict = {}


def fuse_ours_first(original):
    """Wrap ``BaseModel.fuse``: fuse yolo_spd's modules, then run Ultralytics' fuse exactly as before."""

    def fuse(self, *args, **kwargs):
        fuse_modules(self, example=probe_image(self))
        return original(self, *args, **kwargs)

    fuse.__wrapped__ = original
    return fuse


def probe_image(model) -> torch.Tensor | None:
    """A seeded random batch of one image, two maximum strides square, on the model's device; None unless float32."""
    parameter = next(model.parameters(), None)
    if parameter is None or parameter.dtype != torch.float32:
        return None
    channels = (getattr(model, "yaml", None) or {}).get("channels", 3)
    stride = getattr(model, "stride", None)
    size = 2 * max(32, int(stride.max()) if isinstance(stride, torch.Tensor) else 32)
    generator = torch.Generator().manual_seed(0)
    return torch.rand(1, channels, size, size, generator=generator).to(parameter.device)


def apply() -> None:
    from ultralytics.nn import tasks

    _saved["fuse"] = tasks.BaseModel.__dict__["fuse"]
    tasks.BaseModel.fuse = fuse_ours_first(_saved["fuse"])


def undo() -> None:
    from ultralytics.nn import tasks

    tasks.BaseModel.fuse = _saved.pop("fuse")
