"""Window placement: covers every pixel, stays inside the image, and matches SAHI's placement exactly."""

from __future__ import annotations

import itertools

import pytest

from yolo_spd.slicing import slice_windows
from yolo_spd.slicing.windows import axis_starts

SIZES = [(100, 100), (320, 320), (321, 511), (640, 684), (1000, 700), (1284, 1000), (1764, 1100)]


@pytest.mark.parametrize("width,height", SIZES)
@pytest.mark.parametrize("size,overlap", [(64, 0.0), (320, 0.2), (512, 0.25), (640, 0.5), (320, 0.9)])
def test_windows_cover_the_image_inside_its_borders(width, height, size, overlap):
    windows = slice_windows(width, height, size, overlap)
    covered = [[False] * width for _ in range(height)] if width * height <= 200_000 else None
    for w in windows:
        assert 0 <= w.x0 < w.x1 <= width and 0 <= w.y0 < w.y1 <= height
        assert w.width == min(size, width) and w.height == min(size, height)
        if covered is not None:
            for y in range(w.y0, w.y1):
                covered[y][w.x0 : w.x1] = [True] * w.width
    if covered is not None:
        assert all(all(row) for row in covered)
    assert len(set(windows)) == len(windows)


def test_consecutive_windows_overlap_by_at_least_the_requested_fraction():
    starts = axis_starts(1764, 320, 0.2)
    assert starts[0] == 0 and starts[-1] == 1764 - 320
    assert all(0 < b - a <= 320 - int(0.2 * 320) for a, b in zip(starts, starts[1:]))


def test_placement_matches_sahi():
    slicing = pytest.importorskip("sahi.slicing")
    for (width, height), size, overlap in itertools.product(SIZES, (64, 320, 512, 640), (0.0, 0.1, 0.2, 0.5, 0.9)):
        ours = [list(w) for w in slice_windows(width, height, size, overlap)]
        theirs = slicing.get_slice_bboxes(height, width, size, size, False, overlap, overlap)
        assert ours == theirs, (width, height, size, overlap)


@pytest.mark.parametrize("size,overlap,bad", [(0, 0.2, "slice=0"), (320, 1.0, "overlap=1.0"), (320, -0.1, "overlap=-0.1"),
                                              (32.5, 0.2, "slice=32.5")])
def test_bad_arguments_name_the_value(size, overlap, bad):
    with pytest.raises(ValueError, match=bad.replace(".", r"\.")):
        slice_windows(100, 100, size, overlap)
