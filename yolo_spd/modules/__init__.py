"""The convolution blocks, one file per paper: SPD-Conv (``spd``), SCConv (``scconv``), SSDConv (``ssdconv``); and
C3/C2f/C3k2 variants whose bottleneck 3 x 3 conv is SCConv or SSDConv (``blocks``)."""

from .blocks import C2f_SCConv23, C2f_SSDConv, C3_SCConv23, C3_SSDConv, C3k2_SCConv23, C3k2_SSDConv
from .scconv import CRU, SRU, SCConv
from .spd import SPDConv, SpaceToDepth
from .ssdconv import SSDConv

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
    "SpaceToDepth",
)
