"""C3, C2f and C3k2 whose bottleneck 3 x 3 convolution is SCConv or SSDConv.

Both papers use their module as a drop-in for the 3 x 3 convolution of a bottleneck residual block: SCConv
(Li, Wen, He, CVPR 2023) places SCConv on "the intermediate input features X in the bottleneck residual block"
(Sec. 2, Fig. 1) and its experiments "only replace the bottleneck 3 x 3 convolutions" (Sec. 3.4); SSDConv (Zhang
et al., IEEE TETCI 2025; authors' README) "is designed to replace standard 3 x 3 convolutional layers". In
Ultralytics YOLO the bottleneck residual block is ``Bottleneck``, used inside C3 (YOLOv5), C2f (YOLOv8) and C3k2
(YOLO11, directly or through C3k). Each class here is the stock Ultralytics block, built by the stock constructor,
with the ``cv2`` convolution of every ``Bottleneck`` it contains replaced by the paper module (same c1, c2 and
kernel; SCConv/SSDConv end with BatchNorm + SiLU like the ``Conv`` they replace). Nothing else changes: the 1 x 1
convolutions, the CSP split/concat, the shortcut and the repeat count are the stock block's.

Naming: ``<base block>_<module>``. The SCConv variants carry the year, ``C3_SCConv23`` etc., because "SCConv" also
names Self-Calibrated Convolutions (Liu et al., CVPR 2020, SCNet), and blocks called ``C2f_SCConv`` built on either
module circulate in YOLO forks; a YAML or checkpoint written for one of those then fails loudly (unknown name)
instead of silently building a different network. No other published "SSDConv" is known to us, so those variants
are ``C3_SSDConv``, ``C2f_SSDConv`` and ``C3k2_SSDConv``.

Deviations and decisions common to all six classes, with reasons:

1. Which convolution. C3's bottleneck is 1 x 1 (cv1) then 3 x 3 (cv2), like the ResNet bottleneck of the papers,
   and cv2 is replaced. The C2f, C3k2 and C3k bottlenecks are 3 x 3 then 3 x 3; only cv2 (the output 3 x 3) is
   replaced there too, so "the bottleneck's 3 x 3 conv" means the same layer in all three families and the cost
   change stays one module per bottleneck. cv1 stays an Ultralytics ``Conv``.
2. Groups. The stock blocks pass ``g`` to the bottleneck's cv2 as convolution groups. SCConv and SSDConv define their
   own grouping (SCConv's GWC groups, SSDConv's diversity groups), so ``g`` must be 1 (a ValueError otherwise).
3. Module hyper-parameters are the papers' defaults (SCConv: alpha 1/2, r 2, g 2, hard gate; SSDConv: in_ratio 0.7,
   out_ratio 0.5, exp_times 2). The constructors keep the stock signatures so a YAML row switches between the stock
   block and a variant by its name alone; use the modules directly for other settings.
4. C3k2 variants and parse_model. Ultralytics' ``parse_model`` recognises C3k2 by identity (``m is C3k2``) for two
   scale-dependent rules: in a ``scales:`` YAML it forces ``c3k=True`` at scales m, l and x, and any C3k2 row turns
   off the ``legacy`` (YOLOv8-style) classification branch of ``Detect``. A subclass is not ``C3k2`` to that test,
   and yolo_spd does not change parse_model's body, so for ``C3k2_SCConv23``/``C3k2_SSDConv`` rows ``c3k`` is what
   the row says (write ``True`` for m/l/x, as the packaged per-scale YAMLs do for stock C3k2) and a YAML whose only
   C3k2-type rows are variants gets the legacy Detect head. The repeat count is inserted as for the stock blocks
   (registration lists the variants in parse_model's repeat-module set).
"""

from __future__ import annotations

from ultralytics.nn.modules.block import C2f, C3, C3k2, Bottleneck

from ._common import is_number, require, require_positive_int
from .scconv import SCConv
from .ssdconv import SSDConv


class _BottleneckConvSwap:
    """Mixin: after the stock block is built, replace each contained ``Bottleneck.cv2`` with ``conv_module``."""

    conv_module: type  # SCConv or SSDConv, set by each class

    def _check_args(self, c1, c2, n, g, e) -> None:
        owner = type(self).__name__
        for name, value in (("c1", c1), ("c2", c2), ("n", n)):
            require_positive_int(name, value, owner)
        require(
            g == 1 and not isinstance(g, bool),
            f"{owner}: g={g!r} is not allowed; expected 1 ({self.conv_module.__name__} defines its own grouping)",
        )
        require(
            is_number(e) and int(c2 * e) >= 1,
            f"{owner}: e={e!r} is not allowed for c2={c2}; expected a ratio whose hidden width int(c2 * e) is >= 1",
        )

    def _swap_bottleneck_convs(self) -> None:
        for block in self.modules():
            if isinstance(block, Bottleneck):
                conv = block.cv2.conv
                try:
                    block.cv2 = self.conv_module(conv.in_channels, conv.out_channels, conv.kernel_size[0])
                except ValueError as error:  # name the block's arguments: the module's c1/c2 are derived from them
                    raise ValueError(f"{type(self).__name__}: its bottleneck convolution is {conv.in_channels} -> "
                                     f"{conv.out_channels} channels (set by c2 and e); {error}") from None


class _C3Variant(_BottleneckConvSwap, C3):
    """C3 (c1, c2, n, shortcut, g, e) with ``conv_module`` bottleneck convs; the concrete classes set the module."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        self._check_args(c1, c2, n, g, e)
        super().__init__(c1, c2, n, shortcut, g, e)
        self._swap_bottleneck_convs()


class _C2fVariant(_BottleneckConvSwap, C2f):
    """C2f (c1, c2, n, shortcut, g, e) with ``conv_module`` bottleneck convs; the concrete classes set the module."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5):
        self._check_args(c1, c2, n, g, e)
        super().__init__(c1, c2, n, shortcut, g, e)
        self._swap_bottleneck_convs()


class _C3k2Variant(_BottleneckConvSwap, C3k2):
    """C3k2 (c1, c2, n, c3k, e, attn, g, shortcut) with ``conv_module`` bottleneck convs; see the concrete classes."""

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        c3k: bool = False,
        e: float = 0.5,
        attn: bool = False,
        g: int = 1,
        shortcut: bool = True,
    ):
        self._check_args(c1, c2, n, g, e)
        super().__init__(c1, c2, n, c3k, e, attn, g, shortcut)
        self._swap_bottleneck_convs()


class C3_SCConv23(_C3Variant):
    """YOLOv5's C3 with each bottleneck's 3 x 3 convolution replaced by SCConv (Li et al., CVPR 2023, Fig. 1).

    YAML: ``[-1, 3, C3_SCConv23, [c2]]`` or ``[c2, False]`` (no shortcut), exactly as a C3 row. See the module
    docstring for the replaced layer, naming and deviations.

    Args:
        c1 (int): Input channels.
        c2 (int): Output channels.
        n (int): Number of bottlenecks (parse_model inserts the depth-scaled repeat count).
        shortcut (bool): Residual connection in each bottleneck.
        g (int): Must be 1 (deviation 2).
        e (float): Hidden-width ratio; the bottlenecks and their SCConvs work on int(c2 * e) channels.
    """

    conv_module = SCConv


class C3_SSDConv(_C3Variant):
    """YOLOv5's C3 with each bottleneck's 3 x 3 convolution replaced by SSDConv (Zhang et al., IEEE TETCI 2025).

    YAML: ``[-1, 3, C3_SSDConv, [c2]]`` or ``[c2, False]`` (no shortcut), exactly as a C3 row. See the module
    docstring for the replaced layer, naming and deviations.

    Args:
        c1 (int): Input channels.
        c2 (int): Output channels.
        n (int): Number of bottlenecks (parse_model inserts the depth-scaled repeat count).
        shortcut (bool): Residual connection in each bottleneck.
        g (int): Must be 1 (deviation 2).
        e (float): Hidden-width ratio; the bottlenecks and their SSDConvs work on int(c2 * e) channels.
    """

    conv_module = SSDConv


class C2f_SCConv23(_C2fVariant):
    """YOLOv8's C2f with each bottleneck's second 3 x 3 convolution replaced by SCConv (Li et al., CVPR 2023, Fig. 1).

    YAML: ``[-1, 3, C2f_SCConv23, [c2, True]]``, exactly as a C2f row. See the module docstring for the replaced
    layer (deviation 1: cv2 only), naming and deviations.

    Args:
        c1 (int): Input channels.
        c2 (int): Output channels.
        n (int): Number of bottlenecks (parse_model inserts the depth-scaled repeat count).
        shortcut (bool): Residual connection in each bottleneck (C2f's default: False).
        g (int): Must be 1 (deviation 2).
        e (float): Hidden-width ratio; the bottlenecks and their SCConvs work on int(c2 * e) channels.
    """

    conv_module = SCConv


class C2f_SSDConv(_C2fVariant):
    """YOLOv8's C2f with each bottleneck's second 3 x 3 convolution replaced by SSDConv (Zhang et al., TETCI 2025).

    YAML: ``[-1, 3, C2f_SSDConv, [c2, True]]``, exactly as a C2f row. See the module docstring for the replaced
    layer (deviation 1: cv2 only), naming and deviations.

    Args:
        c1 (int): Input channels.
        c2 (int): Output channels.
        n (int): Number of bottlenecks (parse_model inserts the depth-scaled repeat count).
        shortcut (bool): Residual connection in each bottleneck (C2f's default: False).
        g (int): Must be 1 (deviation 2).
        e (float): Hidden-width ratio; the bottlenecks and their SSDConvs work on int(c2 * e) channels.
    """

    conv_module = SSDConv


class C3k2_SCConv23(_C3k2Variant):
    """YOLO11's C3k2 with every bottleneck's second 3 x 3 convolution replaced by SCConv (Li et al., CVPR 2023).

    Covers all three C3k2 forms: plain bottlenecks, C3k blocks (``c3k=True``; their bottlenecks are replaced too)
    and bottleneck + PSABlock (``attn=True``; the PSABlock is unchanged). YAML: ``[-1, 2, C3k2_SCConv23,
    [c2, False, 0.25]]``, as a C3k2 row; write ``c3k`` explicitly (deviation 4 in the module docstring).

    Args:
        c1 (int): Input channels.
        c2 (int): Output channels.
        n (int): Number of inner blocks (parse_model inserts the depth-scaled repeat count).
        c3k (bool): Use C3k inner blocks (two bottlenecks each) instead of single bottlenecks.
        e (float): Hidden-width ratio of the C2f split.
        attn (bool): Follow each bottleneck with a PSABlock.
        g (int): Must be 1 (deviation 2).
        shortcut (bool): Residual connection in each bottleneck.
    """

    conv_module = SCConv


class C3k2_SSDConv(_C3k2Variant):
    """YOLO11's C3k2 with every bottleneck's second 3 x 3 convolution replaced by SSDConv (Zhang et al., TETCI 2025).

    Covers all three C3k2 forms: plain bottlenecks, C3k blocks (``c3k=True``; their bottlenecks are replaced too)
    and bottleneck + PSABlock (``attn=True``; the PSABlock is unchanged). YAML: ``[-1, 2, C3k2_SSDConv,
    [c2, False, 0.25]]``, as a C3k2 row; write ``c3k`` explicitly (deviation 4 in the module docstring).

    Args:
        c1 (int): Input channels.
        c2 (int): Output channels.
        n (int): Number of inner blocks (parse_model inserts the depth-scaled repeat count).
        c3k (bool): Use C3k inner blocks (two bottlenecks each) instead of single bottlenecks.
        e (float): Hidden-width ratio of the C2f split.
        attn (bool): Follow each bottleneck with a PSABlock.
        g (int): Must be 1 (deviation 2).
        shortcut (bool): Residual connection in each bottleneck.
    """

    conv_module = SSDConv


BLOCKS = (C3_SCConv23, C2f_SCConv23, C3k2_SCConv23, C3_SSDConv, C2f_SSDConv, C3k2_SSDConv)
