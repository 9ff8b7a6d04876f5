"""Part 3: the checkpoint allow-list, so yolo_spd checkpoints load under ``ULTRALYTICS_SAFE_LOAD=1``.

Restricted loading unpickles only classes on ``torch.serialization``'s safe globals; the classes a yolo_spd model
pickles (:data:`PICKLED_CLASSES`) are added there. A restricted load cannot import yolo_spd for you: in an installed
yolo_spd the start-up hook (:mod:`_yolo_spd_autoload`) registers before Ultralytics loads a checkpoint; otherwise
``import yolo_spd`` first.
"""

from __future__ import annotations

import torch

from ..modules import CRU, SRU, SCConv, SPDConv, SPDStridedConv2d, SSDConv, SpaceToDepth
from ..modules.blocks import BLOCKS
from ..modules.spd_fold import DeferredConcat, FoldedSpaceToDepth, SplitConv2d

#: Classes a checkpoint of a yolo_spd model pickles, besides torch's and Ultralytics' own; the last four only in a
#: model saved after ``model.fuse()`` (``YOLO.save()`` after a predict, which fuses the model in place).
PICKLED_CLASSES = (SpaceToDepth, SPDConv, SCConv, SSDConv, SRU, CRU, *BLOCKS, SPDStridedConv2d, FoldedSpaceToDepth,
                   DeferredConcat, SplitConv2d)

_before: list = []  # the allow-list as it was, so undo removes only what this part added


def apply() -> None:
    _before[:] = list(torch.serialization.get_safe_globals())
    torch.serialization.add_safe_globals(list(PICKLED_CLASSES))


def undo() -> None:
    ours = set(PICKLED_CLASSES)
    kept = [g for g in torch.serialization.get_safe_globals() if g not in ours or g in _before]
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(kept)
    _before.clear()
