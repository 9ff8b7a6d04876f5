"""The Ultralytics versions whose internals the integration parts were written and tested against.

Both ends of :data:`SUPPORTED_ULTRALYTICS` are tested: CI runs the suite against the newest 8.4.x and again against
8.4.67, the first release with restricted checkpoint loading (``ULTRALYTICS_SAFE_LOAD``).
"""

from __future__ import annotations

import re

#: [lower, upper): every part of :mod:`yolo_spd.integration` is written against Ultralytics in this range.
SUPPORTED_ULTRALYTICS = ((8, 4, 67), (8, 5, 0))
SUPPORTED_TEXT = "ultralytics>={}.{}.{},<{}.{}".format(*SUPPORTED_ULTRALYTICS[0], *SUPPORTED_ULTRALYTICS[1][:2])


class UnsupportedUltralyticsError(ImportError):
    """The installed Ultralytics is outside the range whose internals the integration was written and tested against."""


def release(version: str | None = None) -> tuple[int, int, int] | None:
    """``version`` (default: the installed Ultralytics') as (major, minor, patch), or None if it names no release."""
    if version is None:
        import ultralytics

        version = ultralytics.__version__
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    return tuple(int(part) for part in match.groups()) if match else None


def check_ultralytics_version(version: str | None = None) -> None:
    """Raise :class:`UnsupportedUltralyticsError` unless ``version`` (default: installed) is in the supported range."""
    if version is None:
        import ultralytics

        version = ultralytics.__version__
    found = release(version)
    low, high = SUPPORTED_ULTRALYTICS
    if found is None or not low <= found < high:
        raise UnsupportedUltralyticsError(
            f"yolo_spd supports {SUPPORTED_TEXT}, but ultralytics {version} is installed; "
            f"install a supported version: pip install '{SUPPORTED_TEXT}'"
        )
