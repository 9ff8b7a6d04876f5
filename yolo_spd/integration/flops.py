"""Part 7: GFLOPs in Ultralytics' model summary for models whose first layer rearranges the image.

Ultralytics' ``get_flops`` profiles a dummy image with as many channels as the model's first weight takes. For a
model that starts with a space-to-depth (``Focus``, as the yolov5-spd, yolov8-spd and yolo11-spd configs do, following
the SPD-Conv paper's YOLOv5-SPD) that is 12 channels, not the image's 3; the profile fails and the summary line
(``model.info()``, ``yolo train``) and the trainer's logged ``model/GFLOPs`` show no GFLOPs (0.0).

The wrapper profiles such a model through a stand-in whose first parameter has the image's channel count
(``model.yaml["channels"]``), so Ultralytics' own profiling runs unchanged on the right input. Every other model goes to
the original as it was. ``get_flops`` is looked up in ``ultralytics.utils.torch_utils`` by both callers
(``model_info`` and ``model_info_for_loggers``), so that one binding is replaced.
"""

from __future__ import annotations

import torch
from torch import nn

_saved: dict = {}


class _ImageInput(nn.Module):
    """``model`` behind a first parameter of shape (1, channels): what ``get_flops`` reads the image channels from."""

    def __init__(self, model: nn.Module, channels: int):
        super().__init__()
        first = next(model.parameters())
        self.image_channels = nn.Parameter(first.new_empty(1, channels), requires_grad=False)
        self.model = model
        if hasattr(model, "stride"):
            self.stride = model.stride

    def forward(self, x):
        return self.model(x)


def image_channels(model: nn.Module) -> int | None:
    """The image channels a model built from a YAML takes (its ``channels``), or None where it does not say."""
    channels = getattr(model, "yaml", {}).get("channels") if isinstance(getattr(model, "yaml", None), dict) else None
    return channels if isinstance(channels, int) and channels > 0 else None


def get_flops_for_image_input(original):
    def get_flops(model, imgsz=640):
        from ultralytics.utils.torch_utils import unwrap_model

        inner = unwrap_model(model)
        channels = image_channels(inner)
        try:
            first = next(inner.parameters())
        except (StopIteration, AttributeError):
            return original(model, imgsz)
        if channels is None or first.ndim < 2 or first.shape[1] == channels:
            return original(model, imgsz)
        with torch.no_grad():
            return original(_ImageInput(inner, channels), imgsz)

    get_flops.__wrapped__ = original
    return get_flops


def apply() -> None:
    from ultralytics.utils import torch_utils

    _saved["get_flops"] = torch_utils.get_flops
    torch_utils.get_flops = get_flops_for_image_input(_saved["get_flops"])


def undo() -> None:
    from ultralytics.utils import torch_utils

    torch_utils.get_flops = _saved.pop("get_flops")
