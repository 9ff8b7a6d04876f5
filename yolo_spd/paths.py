"""Where yolo_spd keeps generated files, and how it writes them so that no reader ever sees half a file."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """The user's cache folder for yolo_spd: ``$YOLO_SPD_CACHE``, else the platform's cache location."""
    if os.environ.get("YOLO_SPD_CACHE"):
        return Path(os.environ["YOLO_SPD_CACHE"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "yolo_spd"


def write_atomic(file: Path, text: str) -> Path:
    """Write ``text`` to ``file`` through a temporary file in the same folder and a rename."""
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return file
