"""Small objects at native resolution: cut images into overlapping windows for training (:mod:`.tiles`) and run a
model window by window at inference (:mod:`.inference`). :mod:`.windows` is the one place that decides where the
windows lie, so tiled training data and sliced inference cut images the same way."""

from .windows import Window, slice_windows

__all__ = ("Window", "slice_windows")
