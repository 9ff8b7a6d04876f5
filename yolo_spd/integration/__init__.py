"""The Ultralytics integration: the only code that touches Ultralytics internals, one small part per concern.

``import yolo_spd`` calls :func:`register`, which applies these parts in order; :func:`unregister` undoes them in
reverse. Each part is a module with ``apply()`` and ``undo()`` and keeps what it replaced, so undoing restores
Ultralytics exactly:

1. :mod:`~yolo_spd.integration.names` - model names in ``ultralytics.nn.tasks`` and parse_model's channel rule.
2. :mod:`~yolo_spd.integration.yaml_loading` - bare config names (``tasks.check_yaml``) and row errors
   (``tasks.parse_model``).
3. :mod:`~yolo_spd.integration.checkpoints` - the checkpoint allow-list (torch's safe globals).
4. :mod:`~yolo_spd.integration.training` - trainer callbacks (atomic checkpoints, results.csv on resume) and the
   DDP launch file.
5. :mod:`~yolo_spd.integration.fuse` - ``BaseModel.fuse`` folds yolo_spd's modules first.
6. :mod:`~yolo_spd.integration.fonts` - ``check_font`` offline.
7. :mod:`~yolo_spd.integration.flops` - ``get_flops`` profiles a model with a space-to-depth first layer on an
   image of the right channel count (the model summary showed no GFLOPs for the SPD configs).

Six more parts change nothing at registration:

8. :mod:`~yolo_spd.integration.validator` - :func:`validate_collecting_detections`, called per evaluation run.
9. :mod:`~yolo_spd.integration.predictor` - :func:`announcing_predictor`, handed to ``YOLO.predict`` by
   ``yolo-spd predict`` so it prints the device line and model summary as ``yolo predict`` does.
10. :mod:`~yolo_spd.integration.deprecated_keys` - :func:`current_keys`, Ultralytics' deprecated keys (``half=``)
    mapped as its ``yolo`` command maps them, for the CLI's key check.
11. :mod:`~yolo_spd.integration.exporting` - :class:`~.exporting.ExportGuard`, joined to ``yolo-spd export`` by
    Ultralytics' ``on_export_start`` callback: no calibration dataset downloaded, nothing left by a failed export.
12. :mod:`~yolo_spd.integration.autoinstall` - :func:`~.autoinstall.without_autoinstall`, Ultralytics' AutoUpdate
    off while a ``yolo-spd`` command runs.
13. The autoload hook, the top-level module :mod:`_yolo_spd_autoload` (outside this package because it runs at
    interpreter start, where importing yolo_spd would import torch): an installed yolo_spd's ``.pth`` file lets it
    import yolo_spd the first time ``ultralytics.nn.tasks`` is imported, so stock ``yolo`` and ``YOLO()`` know the
    modules. ``YOLO_SPD_AUTOLOAD=0`` turns it off.

:func:`register` is idempotent. It checks the Ultralytics version against :data:`SUPPORTED_ULTRALYTICS` first, and
afterwards verifies on a two-row model that the channel rule took effect (:func:`names.self_check`); any failure
undoes the parts already applied, so a future Ultralytics that builds models differently fails with a clear message
instead of building wrong models.
"""

from __future__ import annotations

from . import checkpoints, flops, fonts, fuse, names, training, yaml_loading
from .validator import CollectedValidation, validate_collecting_detections
from .version import SUPPORTED_TEXT, SUPPORTED_ULTRALYTICS, UnsupportedUltralyticsError, check_ultralytics_version

#: The parts :func:`register` applies, in order (:func:`unregister` undoes them in reverse).
PARTS = (names, yaml_loading, checkpoints, training, fuse, fonts, flops)

_applied: list = []  # the parts applied so far, in order


def is_registered() -> bool:
    """Whether :func:`register` has patched Ultralytics (and :func:`unregister` has not undone it since)."""
    return bool(_applied)


def register() -> None:
    """Make the modules usable from Ultralytics model YAMLs and checkpoints. Safe to call more than once."""
    if is_registered():
        return
    check_ultralytics_version()
    try:
        for part in PARTS:
            part.apply()
            _applied.append(part)
        names.self_check()
    except BaseException:
        unregister()
        raise


def unregister() -> None:
    """Undo :func:`register`, leaving Ultralytics exactly as it was. Safe to call when unregistered."""
    while _applied:
        _applied.pop().undo()


__all__ = (
    "PARTS",
    "SUPPORTED_TEXT",
    "SUPPORTED_ULTRALYTICS",
    "CollectedValidation",
    "UnsupportedUltralyticsError",
    "check_ultralytics_version",
    "is_registered",
    "register",
    "unregister",
    "validate_collecting_detections",
)
