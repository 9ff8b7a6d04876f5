"""Where yolo_spd keeps generated files, and how it writes them so that no reader ever sees half a file."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def atomic_target(file: Path):
    """Yield a temporary path beside ``file``; when the block succeeds it is renamed to ``file``, else removed."""
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.stem}.", suffix=file.suffix or ".tmp", dir=file.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, file)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_atomic(file: Path, text: str) -> Path:
    """Write ``text`` to ``file`` through a temporary file in the same folder and a rename."""
    with atomic_target(file) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    return Path(file)
