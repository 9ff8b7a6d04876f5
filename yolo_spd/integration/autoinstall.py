"""Ultralytics' AutoUpdate, off while a ``yolo-spd`` command runs (changes nothing at registration).

Online, Ultralytics' ``check_requirements`` pip-installs a missing optional package into the running environment:
an export's converter, an exported model's runtime, a predict source's reader. Its switch is the module-level
``AUTOINSTALL`` (``YOLO_AUTOINSTALL``, default on), read when ``ultralytics.utils`` is imported and copied into the
modules that import it (``ultralytics.utils.checks`` in every supported version; 8.4.190 also
``ultralytics.utils.export.tensorflow``). yolo-spd commands never install packages (docs/cli.md): some converters
need a venv of their own (``yolo_spd.cli.OWN_VENV_EXTRAS``; an install beside the rest would downgrade numpy and
protobuf under it). With the switch off, Ultralytics prints that AutoUpdate is disabled, the import fails, and the
CLI names the package and its ``pip install`` command, online as offline.
"""

from __future__ import annotations

import contextlib
import os
import sys

ENV = "YOLO_AUTOINSTALL"  # Ultralytics' switch, read when it is imported


@contextlib.contextmanager
def without_autoinstall():
    """``AUTOINSTALL = False`` in ``ultralytics.utils`` (so modules imported during the block copy False) and in each
    Ultralytics module that holds a copy; afterwards every copy, including those of modules imported during the
    block, holds the value it had (or would have had) before."""
    import ultralytics.utils

    if not hasattr(ultralytics.utils, "AUTOINSTALL"):  # every supported version has it (tested)
        raise AttributeError("ultralytics.utils.AUTOINSTALL is gone; yolo_spd.integration.autoinstall needs updating")
    original, environment = ultralytics.utils.AUTOINSTALL, os.environ.get(ENV)
    saved = {name: module.AUTOINSTALL for name, module in _holders()}
    for _, module in _holders():
        module.AUTOINSTALL = False
    os.environ[ENV] = "False"  # and in the processes it starts (a multi-GPU launch's workers import Ultralytics anew)
    try:
        yield
    finally:
        for name, module in _holders():
            module.AUTOINSTALL = saved.get(name, original)
        if environment is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = environment


def _holders() -> list:
    """(name, module) of the imported Ultralytics modules with an ``AUTOINSTALL`` global."""
    return [(name, module) for name, module in list(sys.modules.items())
            if name.startswith("ultralytics.") and hasattr(module, "AUTOINSTALL")]
