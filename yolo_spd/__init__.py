"""yolo_spd: SPD-Conv, SCConv and SSDConv for Ultralytics YOLO, aimed at small-object detection.

Importing the package registers the modules into Ultralytics (see :mod:`yolo_spd.integration`), after which stock
Ultralytics builds the packaged configs by bare name::

    import yolo_spd
    from ultralytics import YOLO
    model = YOLO("yolov5-spd-n.yaml")

An installed yolo_spd (wheel or editable) also registers itself the first time Ultralytics' model code is imported,
so the ``import yolo_spd`` line is optional there and stock ``yolo`` commands know the modules (see
:mod:`_yolo_spd_autoload`; ``YOLO_SPD_AUTOLOAD=0`` turns that off).
"""

from .configs import config_dir, list_models
from .modules import (
    CRU,
    C2f_SCConv23,
    C2f_SSDConv,
    C3_SCConv23,
    C3_SSDConv,
    C3k2_SCConv23,
    C3k2_SSDConv,
    SRU,
    SCConv,
    SPDConv,
    SSDConv,
    SpaceToDepth,
    fold_space_to_depth_order,
    fuse_modules,
)
from .integration import SUPPORTED_ULTRALYTICS, is_registered, register, unregister

__version__ = "0.1.0"
__all__ = (
    "C2f_SCConv23",
    "C2f_SSDConv",
    "C3_SCConv23",
    "C3_SSDConv",
    "C3k2_SCConv23",
    "C3k2_SSDConv",
    "CRU",
    "SRU",
    "SCConv",
    "SPDConv",
    "SSDConv",
    "SUPPORTED_ULTRALYTICS",
    "SpaceToDepth",
    "config_dir",
    "fold_space_to_depth_order",
    "fuse_modules",
    "is_registered",
    "list_models",
    "register",
    "unregister",
)

register()
