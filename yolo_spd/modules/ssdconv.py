"""SSDConv: Similarity attention + Serial Diversity convolution.

Zhang, Hu, Zhou, Cao, Zhang, "Feature Diversity Learning for a Compact CNN Module", IEEE TETCI 2025. The paper's
text available to this project (the authors' README, ``shared/papers/ssdconv-readme.md``) states the design -
"feature diversity is improved by guiding filters through similarity attention and utilizing a serial convolution
structure to extract multi-scale features" - but not its numbered equations, so each step below cites the component
it implements and reproduces the arithmetic of the authors' released PyTorch module (written independently here).

Steps (c1 -> c2, stride s):
  * split: the first main_in = ceil(in_ratio * c1) channels are the main input X_m, the rest X_e;
  * base branch: a k x k convolution (stride s) of X_m to base_out = ceil(out_ratio * c2) channels;
  * expansion: a cheap 1 x 1 convolution of X_e to exp_out = (c2 - base_out) * exp_times channels, Y_e;
  * serial diversity convolution: BatchNorm over [X_m U Y_e], then a grouped k x k convolution (groups
    gcd(diversity_out, main_in)) to diversity_out = c2 - base_out channels;
  * BatchNorm over the concatenated main output Y_m = [base U diversity] (c2 channels);
  * similarity attention (:meth:`SSDConv.similarity_attention`) reweights Y_m channel-wise;
  * output = attended Y_m + Y_e (Y_e projected to c2 by a grouped 1 x 1 convolution when its width differs).
At stride 2 the base branch is strided and the expansion/diversity paths see X_m and X_e 2x2 average-pooled.

Deviations from the released module, each with its reason:
1. Odd H or W at stride 2: the released code average-pools with floor rounding while the strided base convolution
   rounds up, then adds the two (a shape error). Pooling here uses ceil mode, so both give ceil(H/2) x ceil(W/2).
2. No expansion input (in_ratio = 1, or c1 too small to leave a channel): the released code still builds a
   down-projection and calls it on the integer 0 (a crash). Here the expansion path is absent and the output is the
   attended main path alone.
3. Down-projection groups: the released code uses groups = base_out, which fails unless base_out divides both
   exp_out and c2 (e.g. odd c2). Here groups = base_out when it divides both (identical to the released module),
   otherwise gcd(exp_out, c2).
4. An out_ratio that leaves the base or the diversity branch with no channel raises a ValueError (the released code
   builds zero-width convolutions and fails later).
5. Conv-row tail: ``bn=True, act=True`` (default) add a BatchNorm and activation after the sum, so the module replaces
   an Ultralytics ``Conv`` (conv + BN + SiLU) row; ``bn=False, act=False`` is the released module's output.
6. The released file defines an interleaving concat (``jc_concat``) that its forward pass never calls; the plain
   concatenation the forward pass uses is what is implemented.

Implementation (same outputs within float32 rounding; ``tests/reference.py`` keeps the step-by-step form): the
similarity attention avoids the C x C matrix (see :meth:`SSDConv.similarity_attention`), 1 x 1 convolutions run as
batched matrix products, and the residual sum is one ``addcmul``.

Export form (used only while torch traces or exports, ``_common.is_exporting()``; eager training and inference are
unchanged): the attention's inverse norm ``1 / ||e||`` is ``linalg.vector_norm(...).reciprocal()`` eagerly and
``rsqrt`` of the sum of squares while exporting (:func:`inverse_l2_norm`, equal within float32 rounding), because three
export targets cannot take the eager ops:
  * Paddle: x2paddle 1.6 translates a traced graph op by op and has no ``aten::reciprocal`` ("Model is not supported
    yet"); it has ``rsqrt``, ``sum`` and ``mul``.
  * MNN: ``vector_norm`` exports to ONNX as ``ReduceL2``. MNN 3.6.1's ONNX converter reads ReduceL2's axes only from
    the ``axes`` attribute, which opset 18 (what Ultralytics picks here) moved to an input, so it reduces over all axes:
    (N, C, HW) -> (1, 1, 1) instead of (N, C, 1). The following matrix product then fails MNN's shape check and the
    converted model returns no output. ``ReduceSum`` with an axes input converts correctly.
  * TensorFlow SavedModel: onnx2tf 1.28 converts ``ReduceL2`` to ``tf.norm`` with a NumPy integer axis, which
    TensorFlow 2.19 rejects ("'axis' must be None, an integer, or a tuple of 2 unique integers").
In float16 the sum of squares could exceed float16's range only for a map of more than 65504 positions with e near
1 everywhere (every entry of e is in (0, 1]); exports are float32 unless ``half=True``.

No inference fuse. Folding SSDConv's three BatchNorms (one of them *before* a zero-padded convolution, which needs a
border-exact bias map) and merging its base and diversity convolutions measured as no gain, in PyTorch eval and in
ONNX Runtime on the exported module (``python benchmarks/modules.py --quick --cpu-time``, run before that code was
removed), so SSDConv has no ``fuse()``: ``model.fuse()`` and ``yolo_spd.fuse_modules`` leave it as it is.

Speed note: with the default ratios SSDConv does more arithmetic than the k x k convolution it replaces (for
c1 = c2 = 64: base 45 -> 32 plus diversity 109 -> 32, 3 x 3, i.e. 1.24x the multiply-adds of a 64 -> 64 3 x 3
convolution), so no implementation of this module can run at or below the plain convolution's time.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._common import (
    addcmul,
    is_exporting,
    norm_act,
    pointwise,
    require,
    require_odd_kernel,
    require_positive_int,
    require_stride,
)


class SSDConv(nn.Module):
    """Similarity attention + serial diversity convolution, a compact replacement for a k x k convolution.

    YAML: ``[-1, 1, SSDConv, [c2]]``, ``[-1, 1, SSDConv, [c2, 3, 2]]`` (stride 2), further arguments in order.

    Args:
        c1 (int): Input channels.
        c2 (int): Output channels.
        k (int): Kernel size of the base and diversity convolutions (odd).
        s (int): Stride, 1 or 2.
        in_ratio (float): Share of input channels for the main path, 0 < in_ratio <= 1.
        out_ratio (float): Share of output channels from the base branch, 0 < out_ratio < 1.
        exp_times (int): Expansion factor of the cheap 1 x 1 path.
        reduction (int): Reduction of the attention's bottleneck FC (hidden width max(2, c2 // reduction)).
        bn (bool): Add a BatchNorm after the sum (deviation 5).
        act (bool | nn.Module): Activation after the BatchNorm, as in Ultralytics' ``Conv``.
    """

    def __init__(
        self,
        c1: int,
        c2: int,
        k: int = 3,
        s: int = 1,
        in_ratio: float = 0.7,
        out_ratio: float = 0.5,
        exp_times: int = 2,
        reduction: int = 16,
        bn: bool = True,
        act=True,
    ):
        super().__init__()
        for name, value in (("c1", c1), ("c2", c2), ("exp_times", exp_times), ("reduction", reduction)):
            require_positive_int(name, value, "SSDConv")
        require_odd_kernel(k, "SSDConv")
        require_stride(s, "SSDConv")
        require(0.0 < in_ratio <= 1.0, f"SSDConv: in_ratio={in_ratio!r} is not allowed; expected 0 < in_ratio <= 1")
        require(0.0 < out_ratio < 1.0, f"SSDConv: out_ratio={out_ratio!r} is not allowed; expected 0 < out_ratio < 1")
        base_out = math.ceil(c2 * out_ratio)
        diversity_out = c2 - base_out
        require(
            diversity_out >= 1,
            f"SSDConv: c2={c2} with out_ratio={out_ratio} is not allowed; it leaves the diversity branch no channel "
            f"(base branch takes ceil(c2*out_ratio)={base_out}); use c2 >= 2 and a smaller out_ratio",
        )
        self.main_in = math.ceil(c1 * in_ratio)
        self.exp_in = c1 - self.main_in
        exp_out = diversity_out * exp_times if self.exp_in else 0

        self.base = nn.Conv2d(self.main_in, base_out, k, s, k // 2, bias=False)
        self.expand = nn.Conv2d(self.exp_in, exp_out, 1, bias=False) if self.exp_in else None
        self.bn_diversity = nn.BatchNorm2d(self.main_in + exp_out)
        groups = math.gcd(diversity_out, self.main_in)
        self.diversity = nn.Conv2d(self.main_in + exp_out, diversity_out, k, 1, k // 2, groups=groups, bias=False)
        self.bn_main = nn.BatchNorm2d(c2)
        hidden = max(2, c2 // reduction)
        self.fc = nn.Sequential(nn.Linear(c2, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, c2), nn.Sigmoid())
        self.down = None
        if self.expand is not None and exp_out != c2:
            fits = exp_out % base_out == 0 and c2 % base_out == 0
            self.down = nn.Conv2d(exp_out, c2, 1, groups=base_out if fits else math.gcd(exp_out, c2), bias=False)
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if s == 2 else nn.Identity()
        self.bn, self.act = norm_act(c2, bn, act)

    def similarity_attention(self, y: torch.Tensor) -> torch.Tensor:
        """Channel weights (N, C, 1, 1) from inter-channel similarity.

        Each channel's spatial map becomes a distribution (softmax over positions), L2-normalised; the cosine
        similarity matrix S = V V^T is mapped to [0, 1] by (S + 1) / 2 and averaged over channels (s_c, how much
        channel c resembles the others). The channel mean m_c scaled by the dissimilarity (1 - s_c) drives an
        FC -> ReLU -> FC -> sigmoid bottleneck, so distinctive channels are emphasised (feature diversity).

        Computed without the C x C matrix: mean_j S_cj = v_c . v_bar with v_bar = mean_j v_j, and the L2
        normalisation cancels the softmax's denominator, so v_c = e_c / |e_c| with e_c = exp(y_c - max y_c).
        """
        n, c = y.shape[:2]
        e = torch.exp(y - y.amax(dim=(2, 3), keepdim=True)).flatten(2)  # (N, C, HW)
        inv_norm = inverse_l2_norm(e)  # (N, C, 1); >= 1 entry is exp(0), so the norm is >= 1
        v_bar = torch.bmm(inv_norm.transpose(1, 2), e) / c  # (N, 1, HW)
        mean_similarity = 0.5 + 0.5 * torch.bmm(e, v_bar.transpose(1, 2)) * inv_norm  # (N, C, 1)
        dissimilarity = (1.0 - mean_similarity).view(n, c)
        return self.fc(dissimilarity * y.mean(dim=(2, 3))).view(n, c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_m, x_e = x.split([self.main_in, self.exp_in], dim=1)
        y_base = self.base(x_m)
        x_m = self.pool(x_m)
        y_e = pointwise(self.pool(x_e), self.expand.weight) if self.expand is not None else None
        diversity_in = x_m if y_e is None else torch.cat([x_m, y_e], dim=1)
        y_m = self.bn_main(torch.cat([y_base, self.diversity(self.bn_diversity(diversity_in))], dim=1))
        attention = self.similarity_attention(y_m)
        if y_e is None:
            return self.act(self.bn(y_m * attention))
        residual = y_e if self.down is None else self.down(y_e)
        return self.act(self.bn(addcmul(residual, y_m, attention)))


def inverse_l2_norm(e: torch.Tensor) -> torch.Tensor:
    """``1 / ||e||_2`` over the last axis, kept as a size-1 axis.

    While exporting, ``rsqrt`` of the sum of squares instead (export form, equal within float rounding): x2paddle has
    no ``reciprocal``, and MNN's ONNX converter reads ReduceL2's axes only from the pre-opset-18 attribute (see the
    module docstring).
    """
    if is_exporting():
        return torch.rsqrt((e * e).sum(dim=-1, keepdim=True))
    return torch.linalg.vector_norm(e, dim=-1, keepdim=True).reciprocal()
