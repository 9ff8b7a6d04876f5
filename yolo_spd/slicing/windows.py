"""Where the windows of a sliced image lie: one rule for tiled datasets and for sliced inference.

Along each axis of length ``L``, windows of ``size`` px start every ``size - int(overlap * size)`` px from 0; the
last one is moved back so that it ends exactly at the border, and an axis shorter than ``size`` gets one window
covering all of it. This is the placement SAHI's ``get_slice_bboxes`` produces (its documented behaviour: fixed
stride from the top-left corner, border windows shifted inwards, never padded), so sliced inference here and
``sahi.predict.get_sliced_prediction`` look at the same pixels; ``tests/test_slicing_windows.py`` compares the two.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import UsageError


class Window(NamedTuple):
    """A window ``[x0, x1) x [y0, y1)`` in pixels of the full image."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        """The window's width in pixels."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """The window's height in pixels."""
        return self.y1 - self.y0


def check_overlap(overlap: float) -> None:
    """Raise :class:`~yolo_spd.errors.UsageError` (a ``ValueError``) unless 0 <= ``overlap`` < 1."""
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap < 1:
        raise UsageError(f"overlap={overlap!r}: the overlap must be a fraction in [0, 1), e.g. overlap=0.2")


def check_slice_args(size: int, overlap: float, where: str = "slice") -> None:
    """Raise :class:`~yolo_spd.errors.UsageError` naming the bad value unless ``size`` >= 1 and 0 <= ``overlap`` < 1."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise UsageError(f"{where}={size!r}: the window size must be a whole number of pixels >= 1")
    check_overlap(overlap)


def axis_starts(length: int, size: int, overlap: float) -> list[int]:
    """Start offsets of the windows along one axis (see the module docstring)."""
    if length <= size:
        return [0]
    step = max(size - int(overlap * size), 1)
    starts = list(range(0, length - size + 1, step))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def slice_windows(width: int, height: int, size: int, overlap: float = 0.2) -> list[Window]:
    """The windows covering a ``width`` x ``height`` image, row by row from the top-left corner."""
    check_slice_args(size, overlap)
    return [
        Window(x0, y0, min(x0 + size, width), min(y0 + size, height))
        for y0 in axis_starts(height, size, overlap)
        for x0 in axis_starts(width, size, overlap)
    ]
