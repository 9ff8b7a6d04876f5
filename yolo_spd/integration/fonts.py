"""Part 6: offline fonts - plots never reach for the network.

Ultralytics' ``check_font`` downloads Arial from GitHub when it is not in the settings folder, even in offline mode.
When Ultralytics found no connectivity at import (``ultralytics.utils.ONLINE`` false) the wrapper answers with a
local copy of the font if there is one, else matplotlib's bundled DejaVu Sans. Online, Ultralytics' own download runs
as usual. ``check_font`` is bound by name in each module of :data:`FONT_USERS`, so each binding is replaced.
"""

from __future__ import annotations

import importlib
from pathlib import Path

FONT_USERS = ("ultralytics.utils.checks", "ultralytics.data.utils", "ultralytics.utils.plotting")  # bind check_font

_saved: dict = {}


def local_font(name: str) -> Path | None:
    from matplotlib import font_manager
    from ultralytics.utils import USER_CONFIG_DIR

    candidates = [Path(USER_CONFIG_DIR) / name, *(Path(f.fname) for f in font_manager.fontManager.ttflist
                                                    if name in f.fname)]
    return next((c for c in candidates if c.is_file()), None)


def check_font_offline_fallback(original):
    def check_font(font="Arial.ttf"):
        from ultralytics import utils

        if utils.ONLINE:
            return original(font)
        import matplotlib

        return local_font(Path(font).name) or Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"

    check_font.__wrapped__ = original
    return check_font


def _bind_everywhere(function) -> None:
    for name in FONT_USERS:
        setattr(importlib.import_module(name), "check_font", function)


def apply() -> None:
    from ultralytics.utils import checks

    _saved["check_font"] = checks.check_font
    _bind_everywhere(check_font_offline_fallback(_saved["check_font"]))


def undo() -> None:
    _bind_everywhere(_saved.pop("check_font"))
