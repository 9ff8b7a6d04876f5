"""The convolution blocks, one file per paper: SPD-Conv (``spd``), SCConv (``scconv``), SSDConv (``ssdconv``)."""

from .scconv import CRU, SRU, SCConv
from .spd import SPDConv, SpaceToDepth
from .ssdconv import SSDConv

__all__ = ("CRU", "SRU", "SCConv", "SPDConv", "SSDConv", "SpaceToDepth")
