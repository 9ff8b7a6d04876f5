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
   rounds up, so concatenating the base and diversity outputs fails (a shape error: 5 against 4 rows at 9 x 9). Pooling
   here uses ceil mode, so both give ceil(H/2) x ceil(W/2).
2. No expansion input (in_ratio = 1, or c1 too small to leave a channel): the released code sets Y_e to the integer 0
   and fails concatenating it with X_m (a TypeError). Here the expansion path is absent and the output is the
   attended main path alone.
3. Down-projection groups: the released code uses groups = base_out, which fails unless base_out divides both
   exp_out and c2 (e.g. odd c2). Here groups = base_out when it divides both (identical to the released module),
   otherwise gcd(exp_out, c2).
4. An out_ratio that leaves the diversity branch with no channel (c2 = ceil(c2 * out_ratio), e.g. c2 = 1) raises a
   ValueError, as does out_ratio >= 1 (the released code builds a zero-width expansion and fails in the forward
   pass). The base branch always has ceil(c2 * out_ratio) >= 1 channels.
5. Conv-row tail: ``bn=True, act=True`` (default) add a BatchNorm and activation after the sum, so the module replaces
   an Ultralytics ``Conv`` (conv + BN + SiLU) row; ``bn=False, act=False`` is the released module's output.
6. The released file defines an interleaving concat (``jc_concat``) that its forward pass never calls; the plain
   concatenation the forward pass uses is what is implemented.

Implementation. Three forms compute the same function (``tests/reference.py`` keeps the step-by-step form as the
oracle; ``tests/test_fast_equivalence.py`` compares outputs, every gradient and the running statistics, in float32
and in float64 to float64 rounding). Each fast step below is exact algebra: only float rounding differs (sums in
another order).

* Step form (:meth:`SSDConv.forward_steps`): the steps above one by one; the similarity attention without the C x C
  matrix (:meth:`SSDConv.similarity_attention`). Used while exporting a module :meth:`SSDConv.fuse` did not prepare, in
  eval mode with gradients, under autocast or for half-precision inputs (its BatchNorms keep float32 statistics), and
  for BatchNorms without running statistics.
* Expansion composed into the diversity convolution (both fast forms, :meth:`SSDConv.diversity_weights`). BN_div is
  a per-channel affine s x + t and the expansion a 1 x 1 map, and both commute with the diversity convolution's zero
  padding, so diversity(BN_div([X_m U W_e X_e])) = conv([X_m U X_e], W') + conv(1, K): a k x k convolution of the
  (pooled) module input itself, W' = [W_d,m diag(s_m) | W_d,e diag(s_e) W_e], plus a bias, K's sum in the interior
  and less where taps fall into the padding (:func:`border_bias`, added on the border bands only). [X_m U Y_e]
  (main_in + exp_out channels, 109 at c = 64) is never built: each diversity group reads its own X_m channels and
  X_e (:meth:`SSDConv.diversity_input_ranges`), one convolution per group (grouped NCHW convolutions measured about
  twice as slow per multiply-add on CPU). With the base convolution that is 0.85x the multiply-adds of the replaced
  ``Conv`` at 64 channels (the step form's k x k convolutions: 1.20x for c2 = c1, 1.70x for c2 = 2 c1, at either
  stride; 1.24x and 1.74x with its 1 x 1 expansion).
* Residual: down(expand(X_e)) as one 1 x 1 map of X_e (:meth:`SSDConv.residual_weight`).
* Eval without gradients (:meth:`SSDConv.forward_inference`): BN_div and BN_main fold into the convolutions' weights
  and bias (running statistics), the attention's softmax is torch's fused kernel (:func:`similarity_feature`), and the
  residual map, the final BatchNorm and the attended sum are one batched product, one ``addcmul`` and an in-place
  SiLU. The folded tensors (:class:`InferenceWeights`) are computed on first use and kept between no-grad eval
  calls while the parameters and running statistics they come from are unchanged (:meth:`SSDConv.inference_weights`
  says how a change is seen): folding them (and the border bias) on every call cost about as much again as the
  replaced ``Conv`` at batch 1 and scale n's widths (``benchmarks/modules.py``, its eval-path table). The convolutions run
  split (the base and one per diversity group, each reading only its input channels) where that saves enough
  multiply-adds per extra call, else merged into fewer, larger ones (:data:`SPLIT_MIN_SAVED_MACS`): at stride 1 one
  c1 -> c2 convolution, the base taps zero on X_e.
* Training (:meth:`SSDConv.forward_train`): BN_div's batch statistics come from the input's, as the expansion is
  linear: mean(W_e X_e) = W_e mean(X_e) and var(W_e X_e)_j = w_j^T Cov(X_e) w_j (:class:`_ChannelMoments`, two-pass,
  as BatchNorm); the autograd graph then runs through the composed weights. BN_main (:class:`_BatchNormTrain`), the
  similarity attention's statistics (:class:`_SimilarityFeature`) and the tail act(BN(R X_e + a Y_m))
  (:class:`_ResidualNormAct`) have hand-written backward passes; the border bias is added in place
  (:class:`_AddBorderBias`). Running statistics are updated as ``nn.BatchNorm2d`` does (:func:`update_running_stats`).
* Stride 2 pools with two vector adds (``_common.average_pool``; ``F.avg_pool2d`` measured 3-5x slower on CPU).

Export form (used only while torch traces or exports, ``_common.is_exporting()``; eager training and inference are
unchanged). After :meth:`SSDConv.fuse` (Ultralytics' exporter fuses every model before it traces it) a trace takes
the fold fuse() kept (:meth:`SSDConv.forward_export`): the eval path's folded convolutions (split or merged by
channel counts, :data:`EXPORT_SPLIT_MIN_CHANNELS`), with BN_div's border bias as a convolution of a ones map of the
input's size (zero padding makes it exactly :func:`border_bias`, at any size a dynamic-shape graph is run at), the
residual as a 1 x 1 convolution with the tail's BatchNorm in it, then a multiply, an add and the activation: no
BatchNormalization, expansion or grouped convolution left in the graph. The ones map is ``x * 0 + 1`` of the input's
first channel, per image, not a constant: from a constant, a static export's simplifier (onnxslim, which Ultralytics
runs) folds the border bias into a stored C x H x W map per layer, which made yolov5-ssdconv-n's ONNX file at 640 px
about 60% larger for a latency gain within a run's noise (``tests/test_fuse.py`` checks that no such map is stored).
Its only other effect: a non-finite input value makes that image's outputs around it NaN, where the module's own
output is non-finite too. yolov5-ssdconv-n in ONNX Runtime went from about 1.3x to 1.1x yolov5nu's latency
(docs/speed.md). Without fuse(), or when the weights changed since, a trace takes the step form. In both forms the
attention's inverse norm ``1 / ||e||`` is ``linalg.vector_norm(...).reciprocal()`` eagerly and ``rsqrt`` of the sum of
squares while exporting (:func:`inverse_l2_norm`, equal within float32 rounding), because three export targets cannot
take the eager ops:
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

``fuse()`` changes neither the module nor its eager forward: the eval fast path folds SSDConv's BatchNorms and composes
its convolutions itself, once, and folds again when the weights change. fuse() keeps that fold for export traces, so
``model.fuse()`` and ``yolo_spd.fuse_modules`` leave every parameter, BatchNorm and eager output as it was. (An earlier
fuse that replaced the BatchNorms in the module and merged the base and diversity convolutions without composing the
expansion measured as no gain in PyTorch and was removed: the merged convolution still read the main_in + exp_out
channels of [X_m U Y_e].)

Speed (issue 19; ``benchmarks/modules.py``, CPU time at one thread, ratios to the Ultralytics ``Conv`` of the same
shape): the fast forms' convolutions have 0.85/0.68/0.55x the ``Conv``'s multiply-adds for c1 = 64/128/256 and
c2 = c1 or 2 c1 (the step form's k x k convolutions: 1.20/0.78/0.56x for c2 = c1, 1.70/1.03/0.69x for c2 = 2 c1);
what remains above that is the attention's softmax, the residual's 1 x 1 map, the second BatchNorm and, in
training, their backward passes. ``docs/speed.md`` has the measured ratios.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.optim.optimizer import register_optimizer_step_post_hook

from ._common import (
    addcmul,
    average_pool,
    bn_scale_shift,
    differentiable_backward,
    is_exporting,
    is_number,
    is_torch_exporting,
    observed,
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
        require(is_number(in_ratio) and 0.0 < in_ratio <= 1.0,
                f"SSDConv: in_ratio={in_ratio!r} is not allowed; expected 0 < in_ratio <= 1")
        require(is_number(out_ratio) and 0.0 < out_ratio < 1.0,
                f"SSDConv: out_ratio={out_ratio!r} is not allowed; expected 0 < out_ratio < 1")
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
        (The step-by-step and export form; the eager fast paths use :func:`similarity_feature`, the same terms.)
        """
        n, c = y.shape[:2]
        e = torch.exp(y - y.amax(dim=(2, 3), keepdim=True)).flatten(2)  # (N, C, HW)
        inv_norm = inverse_l2_norm(e)  # (N, C, 1); >= 1 entry is exp(0), so the norm is >= 1
        v_bar = torch.bmm(inv_norm.transpose(1, 2), e) / c  # (N, 1, HW)
        mean_similarity = 0.5 + 0.5 * torch.bmm(e, v_bar.transpose(1, 2)) * inv_norm  # (N, C, 1)
        dissimilarity = (1.0 - mean_similarity).view(n, c)
        return self.fc(dissimilarity * y.mean(dim=(2, 3))).view(n, c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # a forward that can train: the weights may change before the next eval call
            self.__dict__.pop("_inference", None)
            if not is_exporting() and any(p.requires_grad for p in self.parameters()):
                self.__dict__.pop("_export", None)
        if is_exporting():
            folded = self.export_weights()
            return self.forward_steps(x) if folded is None else self.forward_export(x, folded)
        if not self._fast_path_applies(x):
            return self.forward_steps(x)
        if self.training:
            return self.forward_train(x)
        if torch.is_grad_enabled():  # eval mode with gradients (rare): the autograd form
            return self.forward_steps(x)
        return self.forward_inference(x)

    def forward_steps(self, x: torch.Tensor) -> torch.Tensor:
        """The module step by step (split, base, expansion, BN, diversity conv, BN, attention, residual): the export
        form, and the form for cases the fast paths do not cover (see :meth:`_fast_path_applies`)."""
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

    def watched(self) -> bool:
        """Whether hooks watch the convolutions or BatchNorms (:func:`_common.observed`): the fast paths and the export
        form use their weights without calling them, so they give way to the step form, which does."""
        return observed(self.base, self.expand, self.bn_diversity, self.diversity, self.bn_main, self.down, self.bn)

    def batchnorms(self) -> list[nn.BatchNorm2d]:
        """BN_div, BN_main and the tail's BatchNorm where the module has one (``bn=True``)."""
        return [self.bn_diversity, self.bn_main] + ([self.bn] if isinstance(self.bn, nn.BatchNorm2d) else [])

    def _fast_path_applies(self, x: torch.Tensor) -> bool:
        """The fast paths cover 4-D float32/float64 inputs outside autocast (mixed precision keeps the step form,
        whose BatchNorms compute their statistics in float32), BatchNorms with an affine and running statistics
        (Ultralytics' and torch's default), and, in training, batches with more than one value per channel (the step
        form raises there, as BatchNorm does). Modules with forward hooks (FLOP counters such as thop, which
        Ultralytics' and yolo_spd's GFLOPs use, feature extractors) get the step form, where those modules run."""
        norms = self.batchnorms()
        if x.dim() != 4 or x.dtype not in (torch.float32, torch.float64) or not all(
            bn.affine and bn.track_running_stats for bn in norms
        ):
            return False
        if torch.is_autocast_enabled(x.device.type) or self.watched():
            return False
        stride = self.base.stride[0]
        return not self.training or x.shape[0] * -(-x.shape[2] // stride) * -(-x.shape[3] // stride) > 1

    # ---------------------------------------------------------------------------------------------- fast paths

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the expansion and diversity paths: ``x`` at stride 1, 2 x 2 average-pooled at stride 2 (ceil
        mode; :func:`_common.average_pool`)."""
        return average_pool(x, self.pool)

    def diversity_weights(self, scale: torch.Tensor, shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The serial diversity convolution of the BatchNormed [X_m U Y_e], written as a convolution of the (pooled)
        input [X_m U X_e] itself: (W', K) with

            diversity(BN_div([X_m U W_e X_e])) = conv(X, W') + conv(1, K)   (zero padding, stride 1)

        where W' = [W_d,m diag(s_m) | W_d,e diag(s_e) W_e] (the 1 x 1 expansion composed into the k x k taps, the
        grouped weight as its dense block-diagonal form) and K[o] = sum_j W_d[o, j] t_j is the BatchNorm shift's
        contribution per tap (a bias that differs at the borders, where taps fall into the zero padding). Exact: a
        1 x 1 convolution and a per-channel affine commute with each other and with zero padding; only float rounding
        differs (sums in another order)."""
        groups = self.diversity.groups
        c_out, c_in, k, _ = self.diversity.weight.shape  # c_in per group
        per_group = c_out // groups
        grouped = self.diversity.weight.view(groups, per_group, c_in, k, k)
        taps = torch.einsum("goikl,gi->gokl", grouped, shift.view(groups, c_in)).reshape(c_out, k, k)
        grouped = grouped * scale.view(groups, 1, c_in, 1, 1)
        expand = None if self.expand is None else self.expand.weight.flatten(1)  # (exp_out, exp_in)
        weight = grouped.new_zeros(c_out, self.main_in + self.exp_in, k, k)
        for g in range(groups):  # group g reads channels [g c_in, (g + 1) c_in) of [X_m U Y_e]
            rows, first = slice(g * per_group, (g + 1) * per_group), g * c_in
            split = min(max(self.main_in - first, 0), c_in)  # its channels before that index are X_m's
            if split:
                weight[rows, first : first + split] = grouped[g, :, :split]
            if split < c_in:  # Y_e channels first + split - main_in ...: compose with their rows of W_e
                e_rows = expand[first + split - self.main_in : first + c_in - self.main_in]
                composed = (grouped[g, :, split:].permute(0, 2, 3, 1) @ e_rows).permute(0, 3, 1, 2)
                weight[rows, self.main_in :] += composed
        return weight, taps

    def residual_weight(self) -> torch.Tensor | None:
        """(c2, exp_in): the residual down(expand(X_e)) as one 1 x 1 map of X_e (exact: two 1 x 1 maps compose)."""
        if self.expand is None:
            return None
        expand = self.expand.weight.flatten(1)
        if self.down is None:
            return expand
        return block_diagonal(self.down.weight, self.down.groups).flatten(1) @ expand

    def main_path(self, x: torch.Tensor, pooled: torch.Tensor, scale: torch.Tensor,
                  shift: torch.Tensor) -> torch.Tensor:
        """[base U diversity] given BN_div's (scale, shift), in training: the base convolution of X_m (stride s) and
        the composed diversity convolution of the (pooled) input (:meth:`diversity_weights`), one convolution per group
        over the input channels it reads (:meth:`diversity_input_ranges`), concatenated. (At stride 1 base and an
        ungrouped diversity convolution can be one c1 -> c2 convolution, the base taps zero on X_e; at batch 8 it
        measured slower, 1.51x against 1.42x the Conv at 64 channels in training. The eval path chooses per input
        size: :meth:`InferenceWeights.convolutions`.)"""
        weight, taps = self.diversity_weights(scale, shift)
        bias = taps.sum(dim=(1, 2))
        k = self.base.kernel_size[0]
        parts = [F.conv2d(x[:, : self.main_in], self.base.weight, None, self.base.stride[0], k // 2)]
        for rows, (lo, hi) in self.diversity_input_ranges():
            part = F.conv2d(pooled[:, lo:hi], weight[rows, lo:hi], bias[rows], 1, k // 2)
            parts.append(add_border_bias(part, taps[rows]))
        return torch.cat(parts, dim=1)

    def diversity_input_ranges(self) -> list[tuple[slice, tuple[int, int]]]:
        """(output rows, input channels [lo, hi)) of the composed diversity convolution per group: a group reads its
        own X_m channels and, if any of its channels are Y_e's, all of X_e (through W_e). Each range is contiguous, as
        X_e follows X_m. Separate convolutions per group measured faster than one dense one from 2 groups on
        (eval: SSDConv(128, 128) 1.21x -> 0.93x the Conv, SSDConv(256, 256) 1.16x -> 0.86x), as they skip the zero
        blocks."""
        groups = self.diversity.groups
        c_out, c_in = self.diversity.weight.shape[:2]
        c1 = self.main_in + self.exp_in
        ranges = []
        for g in range(groups):
            first = g * c_in
            split = min(max(self.main_in - first, 0), c_in)  # X_m channels of this group
            lo = first if split else self.main_in
            hi = first + split if split == c_in else c1
            rows = slice(g * c_out // groups, (g + 1) * c_out // groups)
            ranges.append((rows, (lo, hi)))
        return ranges

    def forward_inference(self, x: torch.Tensor) -> torch.Tensor:
        """Eval mode without gradients: the folded tensors of :meth:`inference_weights` (every BatchNorm folded, the
        expansion composed into the diversity convolution), the convolutions :meth:`InferenceWeights.convolutions`
        picks for this input size, the residual as one 1 x 1 map written straight into the output with BN's shift,
        then attention, BN and activation in one ``addcmul`` and one in-place SiLU."""
        folded = self.inference_weights()
        pooled = self.pooled(x)
        n = x.shape[0]
        h, w = pooled.shape[-2:]
        parts = []
        for conv in folded.convolutions(n, h, w):
            source = x if conv.strided else pooled
            stride = self.base.stride[0] if conv.strided else 1
            part = F.conv2d(source[:, conv.lo : conv.hi], conv.weight, conv.bias, stride, conv.weight.shape[-1] // 2)
            if conv.taps is not None:
                add_bands(part, folded.border(conv, h, w), conv.first)
            parts.append(part)
        y = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        c = y.shape[1]
        attention = self.fc(similarity_feature(y)[0]).view(n, c, 1)
        if folded.residual is None:
            out = torch.mul(y.reshape(n, c, h * w), attention * folded.scale).add_(folded.shift)
        else:
            x_e = pooled[:, self.main_in :].reshape(n, self.exp_in, h * w)
            out = torch.baddbmm(folded.shift, folded.residual.expand(n, -1, -1), x_e)
            out.addcmul_(y.reshape(n, c, h * w), attention * folded.scale)
        out = out.view(n, c, h, w)
        if isinstance(self.act, nn.SiLU):
            return F.silu(out, inplace=True)
        return self.act(out)

    def inference_weights(self) -> InferenceWeights:
        """The eval-mode tensors (:class:`InferenceWeights`), folded on first use and kept while the parameters and
        running statistics they come from are unchanged. Kept folds are dropped by any forward with gradients enabled,
        by ``train()`` and ``eval()``, and refolded after any optimizer step in the process (:func:`optimizer_steps`:
        fused optimizers change weights without bumping their version counters) and when a tensor's storage, dtype,
        device or version counter changed (in-place updates through autograd-visible ops: ``load_state_dict``,
        Ultralytics' EMA, ``torch.no_grad()`` edits). Not seen: in-place writes through ``.data`` between two no-grad
        eval calls; call ``eval()`` after such a write. Parametrized weights (``torch.nn.utils.parametrize``) are
        recomputed on every access, so nothing is kept for them. Not pickled or deep-copied (checkpoints and
        Ultralytics' EMA copy carry only the module's own parameters)."""
        key = self._inference_key()
        folded = self.__dict__.get("_inference")
        if folded is None or key is None or folded.key != key:
            folded = InferenceWeights(self, key)
            if key is None:
                self.__dict__.pop("_inference", None)
            else:
                self.__dict__["_inference"] = folded
        return folded

    def _inference_key(self) -> tuple | None:
        """What the folded tensors depend on; None where nothing may be kept: a tensor without a version counter
        (created under ``torch.inference_mode``) or a parametrized module (its weight is a new tensor on each access,
        whose address a freed one may have had). Also the count of optimizer steps taken (:func:`optimizer_steps`)."""
        norms = self.batchnorms()
        convs = [m for m in (self.base, self.expand, self.diversity, self.down) if m is not None]
        if any(parametrize.is_parametrized(m) for m in convs + norms):
            return None
        tensors = [m.weight for m in convs] + [t for bn in norms for t in (bn.weight, bn.bias, bn.running_mean,
                                                                              bn.running_var)]
        try:
            versions = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
        except RuntimeError:  # "Inference tensors do not track version counter"
            return None
        return versions + tuple(bn.eps for bn in norms) + (optimizer_steps(),)

    def train(self, mode: bool = True) -> SSDConv:
        self.__dict__.pop("_inference", None)  # model.eval() before a validation refolds
        if mode:  # torch.onnx.export calls train(False); the export fold stays for it
            self.__dict__.pop("_export", None)
        return super().train(mode)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_inference", None)  # derived tensors: refolded on first use
        state.pop("_export", None)  # a copy is fused again before it is exported (Ultralytics' exporter does)
        return state

    # --------------------------------------------------------------------------------------------- export form

    def fuse(self) -> SSDConv:
        """Inference preparation (Ultralytics' ``model.fuse()`` calls this once registered, as its exporter does before
        every export): fold now and keep the fold for tracing (:meth:`export_weights`, :meth:`forward_export`). The
        module itself is unchanged - its parameters, its state dict and its eager forward, which folds by itself (the
        eval path's kept fold, :meth:`inference_weights`). Nothing is kept where the eval path keeps nothing
        (parametrized weights, inference tensors) or its folds do not apply (BatchNorms without running statistics or
        affine, weights that are neither float32 nor float64): traces then take the step form. Folded afresh, outside
        inference mode (the eval path's kept fold may hold inference tensors, which a trace with gradients cannot
        use). Idempotent."""
        self.__dict__.pop("_export", None)
        weight = self.base.weight
        foldable = weight.dtype in (torch.float32, torch.float64) and all(
            bn.affine and bn.track_running_stats for bn in self.batchnorms()
        )
        key = self._inference_key() if foldable else None
        if key is not None:
            with torch.inference_mode(False):
                self.__dict__["_export"] = InferenceWeights(self, key)
        return self

    def export_weights(self) -> InferenceWeights | None:
        """The fold :meth:`fuse` kept, while the module is in eval mode and the parameters and running statistics it
        comes from are unchanged (the same key as :meth:`inference_weights`'s); else None and a trace takes the step
        form. It is dropped by ``train()`` and by a forward with gradients that can train (a parameter requires
        grad), not by ``eval()`` (``torch.onnx.export`` calls it). Not seen, as for the eval path: writes through
        ``.data``; fuse again after them. None as well under ``torch.export`` (ExecuTorch's and Core AI's route: it
        traces with fake tensors, whose storage cannot be checked), and while hooks watch the module's convolutions or
        BatchNorms (the export form does not call them, as the eval path does not)."""
        folded = self.__dict__.get("_export")
        if folded is None or self.training or is_torch_exporting() or self.watched():
            return None
        return folded if folded.key == self._inference_key() else None

    def forward_export(self, x: torch.Tensor, folded: InferenceWeights) -> torch.Tensor:
        """The folded form for export targets (:meth:`fuse`): the convolutions of :class:`InferenceWeights` in the
        layout :meth:`InferenceWeights.export_convolutions` picks by channel counts (a graph holds one layout for every
        input size), each with BN_div's border bias, where it has taps, as a 1 -> c convolution of a ones map (zero
        padding: exactly :func:`border_bias`, and it follows the input's size in a dynamic-shape graph), the
        attention, the residual as a 1 x 1 convolution with the tail's BatchNorm folded, then a multiply, an add and
        the activation. Only ops every export target here converts (those of the step form, and ``type_as``; the
        parity table in docs/export.md runs all 13 formats)."""
        def kept(t: torch.Tensor) -> torch.Tensor:  # traced as type_as(x): a TorchScript file cast with .half() casts
            return t.type_as(x)  # its parameters, not the constants a trace holds (ONNX: nothing, the types match)

        pooled = self.pool(x)
        ones = None
        parts = []
        convolutions = folded.export_convolutions()
        for conv, (border, bias) in zip(convolutions, folded.export_biases[id(convolutions)]):
            source = x if conv.strided else pooled
            stride = self.base.stride[0] if conv.strided else 1
            pad = conv.weight.shape[-1] // 2
            part = F.conv2d(source[:, conv.lo : conv.hi], kept(conv.weight), None, stride, pad)
            bias = kept(bias)
            if border is not None:
                if ones is None:  # from the data, so no converter folds the border map into a stored constant
                    ones = pooled[:, :1] * 0 + 1
                bias = F.conv2d(ones, kept(border), None, 1, pad) + bias
            parts.append(part + bias)
        y = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        attended = y * (self.similarity_attention(y) * kept(folded.scale4))
        if folded.residual is None:
            return self.act(attended + kept(folded.shift4))
        residual = F.conv2d(pooled[:, self.main_in :], kept(folded.residual4))
        return self.act(residual + kept(folded.shift4) + attended)

    def forward_train(self, x: torch.Tensor) -> torch.Tensor:
        """Training: BN_div's batch statistics from the input's (:class:`_ChannelMoments`: the expansion's mean and
        variance follow from X_e's mean and covariance, so Y_e and [X_m U Y_e] are never built), the diversity
        convolution on the input (:meth:`main_path`), and a hand-written backward for the similarity attention
        (:class:`_SimilarityFeature`). BN_main (:class:`_BatchNormTrain`) and the residual, BN and activation
        (:class:`_ResidualNormAct`) have hand-written backward passes too."""
        pooled = self.pooled(x)
        mean, var_main, cov, x_e = _ChannelMoments.apply(pooled, self.main_in)
        bn = self.bn_diversity
        if self.expand is not None:
            expand = self.expand.weight.flatten(1)
            mean = torch.cat([mean[: self.main_in], expand @ mean[self.main_in :]])
            var = torch.cat([var_main, ((expand @ cov) * expand).sum(1)])
        else:
            var = var_main
        scale = bn.weight * torch.rsqrt(var + bn.eps)
        shift = bn.bias - mean * scale
        update_running_stats(bn, mean.detach(), var.detach(), pooled.numel() // pooled.shape[1])
        y = self.main_path(x, pooled, scale, shift)
        bn = self.bn_main
        y_m, mean, var = _BatchNormTrain.apply(y, bn.weight, bn.bias, bn.eps)
        update_running_stats(bn, mean, var, y.numel() // y.shape[1])
        attention = self.fc(_SimilarityFeature.apply(y_m))
        norm = self.bn if isinstance(self.bn, nn.BatchNorm2d) else None
        weight, bias, eps = (None, None, 0.0) if norm is None else (norm.weight, norm.bias, norm.eps)
        silu = isinstance(self.act, nn.SiLU)
        x_e = x_e if self.expand is not None else None
        out, mean, var = _ResidualNormAct.apply(x_e, self.residual_weight(), y_m, attention, weight, bias, eps, silu)
        if norm is not None:
            update_running_stats(norm, mean, var, out.numel() // out.shape[1])
        return out if silu else self.act(out)


_optimizer_steps = 0
_optimizer_hook = None


def optimizer_steps() -> int:
    """How many optimizer steps this process has taken since the first call, counted by a global post-step hook
    (torch's ``register_optimizer_step_post_hook``; it only adds 1) that the first call registers. It
    is in the key of SSDConv's kept folds: a fused optimizer (``fused=True``) updates weights without bumping their
    version counters, so a fold kept by a no-grad forward between ``backward()`` and the step would go stale."""
    global _optimizer_hook
    if _optimizer_hook is None:
        _optimizer_hook = register_optimizer_step_post_hook(_count_optimizer_step)
    return _optimizer_steps


def _count_optimizer_step(optimizer, args, kwargs) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


#: The eval path splits the convolutions (the base convolution and one per diversity group, each reading only the input
#: channels it needs) only where that saves at least this many multiply-adds per extra convolution call, else it runs
#: fewer, larger ones (at stride 1 one c1 -> c2 convolution, the base taps zero on X_e). Measured on this project's CPU
#: at one thread (``benchmarks/modules.py``, its last table; docs/speed.md): at batch 8 and 64-256 channels the split
#: layout is 0.74-0.89x the merged one (95M-306M multiply-adds saved per extra call; at 64 -> 128, stride 2, both
#: are the same two convolutions); at batch 1 and scale n's 16-128 channels the merged one is 0.55-0.88x the split one
#: (7M-10M saved per extra call): each call has a fixed cost, and a group of few output channels fills oneDNN's
#: vectors poorly.
SPLIT_MIN_SAVED_MACS = 1 << 25

#: The export form runs the split layout for modules with at least this many output channels (and split convolutions
#: of at least a quarter of it each), else the merged one. Measured in ONNX Runtime at one thread
#: (``benchmarks/modules.py``, its last table; docs/speed.md): at 16-64 channels merged is about 0.55-0.6x the step
#: form and split no faster (0.6-0.95x; at 16 channels its diversity groups have 2 output channels each); from 128
#: channels split is 0.65-0.95x, while merged reaches 0.75-1.35x (its dense weight holds the zero blocks of the base
#: taps on X_e and of the grouped diversity convolution, which grow with the width).
EXPORT_SPLIT_MIN_CHANNELS = 128


class FoldedConv(NamedTuple):
    """One convolution of the eval path: input channels [lo, hi) of the module input at its stride (``strided``) or
    of the pooled input at stride 1; ``taps`` (when not None) the BatchNorm shift's per-tap contribution of output
    channels ``first:`` (:func:`border_bias`)."""

    strided: bool
    lo: int
    hi: int
    weight: torch.Tensor
    bias: torch.Tensor
    taps: torch.Tensor | None
    first: int


class InferenceWeights:
    """SSDConv's eval-mode tensors: BN_div, BN_main and the tail's BatchNorm folded (running statistics), the expansion
    composed into the diversity convolution (:meth:`SSDConv.diversity_weights`), the residual one 1 x 1 map scaled by
    the tail's BatchNorm. Two equal ways to run the convolutions (:meth:`convolutions`)."""

    def __init__(self, module: SSDConv, key: tuple | None):
        self.key = key
        with torch.no_grad():
            scale_m, shift_m = bn_scale_shift(module.bn_main)
            weight, taps = module.diversity_weights(*bn_scale_shift(module.bn_diversity))
            n_base = module.base.weight.shape[0]
            base = module.base.weight * scale_m[:n_base].view(-1, 1, 1, 1)
            weight = weight * scale_m[n_base:].view(-1, 1, 1, 1)
            taps = taps * scale_m[n_base:].view(-1, 1, 1)
            bias = taps.sum(dim=(1, 2)) + shift_m[n_base:]
            if isinstance(module.bn, nn.BatchNorm2d):
                scale, shift = bn_scale_shift(module.bn)
            else:
                scale, shift = torch.ones_like(scale_m), torch.zeros_like(shift_m)
            residual = module.residual_weight()
            self.residual = None if residual is None else (residual * scale.view(-1, 1)).contiguous()
            self.scale, self.shift = scale.view(1, -1, 1), shift.view(1, -1, 1)
            c1 = module.main_in + module.exp_in
            base_conv = FoldedConv(True, 0, module.main_in, base, shift_m[:n_base], None, 0)
            self.split = [base_conv] + [
                FoldedConv(False, lo, hi, weight[rows, lo:hi].contiguous(), bias[rows], taps[rows], 0)
                for rows, (lo, hi) in module.diversity_input_ranges()
            ]
            if module.base.stride[0] == 1:  # x is the pooled input: one convolution, the base taps zero on X_e
                dense = weight.new_zeros(base.shape[0] + weight.shape[0], c1, *weight.shape[2:])
                dense[:n_base, : module.main_in] = base
                dense[n_base:] = weight
                self.merged = [FoldedConv(True, 0, c1, dense, torch.cat([shift_m[:n_base], bias]), taps, n_base)]
            else:  # the base convolution, and the diversity groups as one over the channels any of them reads
                lo, hi = min(c.lo for c in self.split[1:]), max(c.hi for c in self.split[1:])
                self.merged = [base_conv, FoldedConv(False, lo, hi, weight[:, lo:hi].contiguous(), bias, taps, 0)]
            # The export form's tensors (:meth:`SSDConv.forward_export`; biases added, not passed to the convolution:
            # x2paddle 1.6 converts a functional convolution only without one).
            self.export_biases = {id(layout): [export_bias(conv) for conv in layout] for layout in (self.split,
                                                                                                   self.merged)}
            self.scale4, self.shift4 = scale.view(1, -1, 1, 1), shift.view(1, -1, 1, 1)
            self.residual4 = None if self.residual is None else self.residual[:, :, None, None]
        self.saved_per_position = macs(self.merged) - macs(self.split)
        self._border: dict = {}

    def convolutions(self, n: int, h: int, w: int) -> list[FoldedConv]:
        """The split form where it saves at least :data:`SPLIT_MIN_SAVED_MACS` multiply-adds per extra call for this
        batch and output size (n, h, w), else the merged form."""
        extra = len(self.split) - len(self.merged)
        if extra <= 0 or self.saved_per_position * n * h * w >= SPLIT_MIN_SAVED_MACS * extra:
            return self.split
        return self.merged

    def export_convolutions(self) -> list[FoldedConv]:
        """The layout of the export form (:meth:`SSDConv.forward_export`): split where the module has at least
        :data:`EXPORT_SPLIT_MIN_CHANNELS` output channels and each split convolution at least a quarter of that, else
        merged. By channel counts alone, so a graph's layout does not depend on the size it was traced at."""
        widths = [conv.weight.shape[0] for conv in self.split]
        if sum(widths) >= EXPORT_SPLIT_MIN_CHANNELS and min(widths) >= EXPORT_SPLIT_MIN_CHANNELS // 4:
            return self.split
        return self.merged

    def border(self, conv: FoldedConv, h: int, w: int) -> list[tuple[slice, slice, torch.Tensor]]:
        """``conv``'s :func:`border_band_biases` at output size h x w, kept per size."""
        key = (id(conv.taps), h, w)
        bands = self._border.get(key)
        if bands is None:
            if len(self._border) >= 16:  # a few sizes at a time (rectangular inference, multi-scale val)
                self._border.clear()
            bands = [(rows, cols, bias.contiguous()) for rows, cols, bias in border_band_biases(conv.taps, h, w)]
            self._border[key] = bands
        return bands


def export_bias(conv: FoldedConv) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(border, bias) of one of the eval path's convolutions in the export form: its output's bias is
    conv(1, border) + bias, a convolution of a ones map of the output's size (None where the convolution has no taps)
    plus a per-channel (1, C, 1, 1). With zero padding conv(1, taps) at a position sums the taps that fall inside the
    map, which is ``conv.bias``'s interior sum of the taps plus :func:`border_bias`; ``border`` holds ``conv.taps`` in
    the rows ``first:`` and zeros before them, and ``bias`` is ``conv.bias`` less the interior sum."""
    bias = conv.bias.clone()
    if conv.taps is None:
        return None, bias.view(1, -1, 1, 1)
    border = conv.taps.new_zeros(conv.weight.shape[0], 1, *conv.taps.shape[1:])
    border[conv.first :, 0] = conv.taps
    bias[conv.first :] -= conv.taps.sum(dim=(1, 2))
    return border, bias.view(1, -1, 1, 1)


def macs(convolutions: list[FoldedConv]) -> int:
    """Multiply-adds per output position of a list of convolutions."""
    return sum(conv.weight.numel() for conv in convolutions)


def inverse_l2_norm(e: torch.Tensor) -> torch.Tensor:
    """``1 / ||e||_2`` over the last axis, kept as a size-1 axis.

    While exporting, ``rsqrt`` of the sum of squares instead (export form, equal within float rounding): x2paddle has
    no ``reciprocal``, and MNN's ONNX converter reads ReduceL2's axes only from the pre-opset-18 attribute (see the
    module docstring).
    """
    if is_exporting():
        return torch.rsqrt((e * e).sum(dim=-1, keepdim=True))
    return torch.linalg.vector_norm(e, dim=-1, keepdim=True).reciprocal()


def block_diagonal(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """The dense (groups=1) weight of a grouped convolution weight, block-diagonal in channels (differentiable,
    no loop)."""
    if groups == 1:
        return weight
    c_out, c_in, *kernel = weight.shape
    blocks = weight.view(groups, c_out // groups, c_in, *kernel)
    eye = torch.eye(groups, dtype=weight.dtype, device=weight.device)
    return torch.einsum("goi...,gh->gohi...", blocks, eye).reshape(c_out, groups * c_in, *kernel)


def border_bias(taps: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(C, H, W): conv(1, taps) - sum(taps), what a per-channel constant before a zero-padded stride-1 k x k
    convolution adds beyond its interior value sum(taps) (a bias): an output within k // 2 of a border loses the taps
    that fall into the padding. Zero in the interior."""
    k = taps.shape[-1]
    offsets = torch.arange(k, device=taps.device).view(k, 1) - k // 2
    rows, cols = torch.arange(h, device=taps.device) + offsets, torch.arange(w, device=taps.device) + offsets
    rows, cols = ((rows >= 0) & (rows < h)).to(taps.dtype), ((cols >= 0) & (cols < w)).to(taps.dtype)
    return torch.einsum("okl,ky,lx->oyx", taps, rows, cols) - taps.sum(dim=(1, 2)).view(-1, 1, 1)


def border_bands(h: int, w: int, pad: int) -> list[tuple[slice, slice]]:
    """(rows, cols) slices covering every position within ``pad`` of a border exactly once (nothing else)."""
    if pad == 0:
        return []
    if h <= 2 * pad or w <= 2 * pad:
        return [(slice(None), slice(None))]
    middle = slice(pad, h - pad)
    return [(slice(None, pad), slice(None)), (slice(h - pad, None), slice(None)), (middle, slice(None, pad)),
            (middle, slice(w - pad, None))]


def border_band_biases(taps: torch.Tensor, h: int, w: int) -> list[tuple[slice, slice, torch.Tensor]]:
    """(rows, cols, bias) for each border band (:func:`border_bands`) of :func:`border_bias` at size h x w."""
    bias = border_bias(taps, h, w)
    return [(rows, cols, bias[:, rows, cols]) for rows, cols in border_bands(h, w, taps.shape[-1] // 2)]


def add_bands(y: torch.Tensor, bands: list[tuple[slice, slice, torch.Tensor]], first: int = 0) -> torch.Tensor:
    """Add each band's bias (:func:`border_band_biases`) to channels ``first:`` of ``y`` in place."""
    for rows, cols, bias in bands:
        y[:, first:, rows, cols] += bias
    return y


def add_border_bias(y: torch.Tensor, taps: torch.Tensor, first: int = 0) -> torch.Tensor:
    """Add :func:`border_bias` to channels ``first:`` of ``y`` in place, touching only the border bands (no pass over
    the interior); with autograd through :class:`_AddBorderBias` (an in-place add on a channel view would make autograd
    copy the whole gradient)."""
    if torch.is_grad_enabled() and (y.requires_grad or taps.requires_grad):
        return _AddBorderBias.apply(y, taps, first)
    return add_bands(y, border_band_biases(taps, *y.shape[-2:]), first)


class _AddBorderBias(torch.autograd.Function):
    """:func:`add_border_bias` for training: in place on the convolution's output; the gradient of ``y`` passes
    through, that of ``taps`` is the batch-summed output gradient on the border bands against each tap's mask."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, taps: torch.Tensor, first: int) -> torch.Tensor:
        add_bands(y, border_band_biases(taps, *y.shape[-2:]), first)
        ctx.mark_dirty(y)
        ctx.first, ctx.taps_shape = first, taps.shape
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, w = grad.shape[-2:]
        k = ctx.taps_shape[-1]
        summed = grad.new_zeros(grad.shape[1] - ctx.first, h, w)  # batch sum of the gradient on the bands only
        for rows, cols in border_bands(h, w, k // 2):
            summed[:, rows, cols] = grad[:, ctx.first :, rows, cols].sum(dim=0)
        masks = border_bias(torch.eye(k * k, dtype=grad.dtype, device=grad.device).view(k * k, k, k), h, w)
        grad_taps = torch.einsum("oyx,tyx->ot", summed, masks).view(ctx.taps_shape)
        return grad, grad_taps, None


def update_running_stats(bn: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
    """What ``nn.BatchNorm2d`` does to its running statistics in a training step, given the batch mean and biased
    variance over ``count`` values per channel (the running variance takes the unbiased one)."""
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        bn.running_mean.mul_(1.0 - factor).add_(mean, alpha=factor)
        bn.running_var.mul_(1.0 - factor).add_(var * (count / (count - 1)), alpha=factor)


def similarity_feature(y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The attention's FC input (1 - s_c) m_c, shaped (N, C), and the terms its backward needs.

    v_c = softmax(y_c) / |softmax(y_c)| (the softmax over positions, as the paper's step; its fused kernel also
    subtracts the maximum), v_bar = mean_c v_c, s_c = (1 + v_c . v_bar) / 2, m_c = mean(y_c)."""
    n, c = y.shape[:2]
    flat = y.flatten(2)
    p = torch.softmax(flat, dim=-1)
    inv_norm = torch.linalg.vector_norm(p, dim=-1, keepdim=True).reciprocal()  # (N, C, 1)
    v_bar = torch.bmm(inv_norm.transpose(1, 2), p) / c  # (N, 1, HW)
    dot = torch.bmm(p, v_bar.transpose(1, 2)) * inv_norm  # v_c . v_bar, (N, C, 1)
    dissimilarity = 1.0 - (0.5 + 0.5 * dot)
    mean = flat.mean(dim=-1, keepdim=True)
    return (dissimilarity * mean).view(n, c), p, inv_norm, v_bar, dot, dissimilarity, mean


class _SimilarityFeature(torch.autograd.Function):
    """y -> (1 - s_c) m_c (:func:`similarity_feature`) with a hand-written backward. With u_c = v_c, a_c the gradient
    of v_c . v_bar (= -g_c m_c / 2) and w = mean_c a_c u_c:

        dL/dy_c = u_c * (a_c v_bar + w - (a_c (u_c . v_bar) + u_c . w) u_c) + g_c (1 - s_c) / HW

    (the softmax's per-channel shift and denominator cancel in u_c, so they carry no gradient). Two batched products
    over (N, C, HW) and three elementwise passes; autograd through the forward stores and revisits more. Under
    ``create_graph``, autograd's backward of :func:`similarity_feature` (differentiable again)."""

    @staticmethod
    def forward(ctx, y: torch.Tensor) -> torch.Tensor:
        feature, p, inv_norm, v_bar, dot, dissimilarity, mean = similarity_feature(y)
        ctx.save_for_backward(p, inv_norm, v_bar, dot, dissimilarity, mean, y)
        ctx.shape = y.shape
        return feature

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        p, inv_norm, v_bar, dot, dissimilarity, mean, y = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph
            return differentiable_backward(lambda t: similarity_feature(t)[0], (y,), (grad,))
        n, c = ctx.shape[:2]
        grad = grad.view(n, c, 1)
        a = -0.5 * grad * mean  # dL/d(v_c . v_bar)
        w = torch.bmm((a * inv_norm).transpose(1, 2), p) / c  # (N, 1, HW)
        beta = a * dot + inv_norm * torch.bmm(p, w.transpose(1, 2))  # u_c . dL/du_c
        out = torch.bmm(torch.cat([a * inv_norm, inv_norm], dim=2), torch.cat([v_bar, w], dim=1))
        out.addcmul_(p, -(inv_norm * inv_norm) * beta)
        out = torch.addcmul(grad * dissimilarity / p.shape[-1], out, p, out=out)
        return out.view(ctx.shape)


def channel_moments(x: torch.Tensor, m: int) -> tuple[torch.Tensor, ...]:
    """The statistics of :class:`_ChannelMoments` (mean, variance of the first m channels, covariance of the others)
    and the centred input (N, C, H W)."""
    n, c, h, w = x.shape
    count = n * h * w
    flat = x.reshape(n, c, h * w)
    mean = flat.sum(dim=2).sum(dim=0) / count
    centered = flat - mean.view(1, c, 1)
    var = torch.linalg.vector_norm(centered[:, :m], dim=-1).square().sum(dim=0) / count
    rest = centered[:, m:]
    cov = torch.bmm(rest, rest.transpose(1, 2)).sum(dim=0) / count
    return mean, var, cov, centered


class _ChannelMoments(torch.autograd.Function):
    """x (N, C, H, W), m -> per-channel mean (C,), the biased variance of the first m channels (m,) and the biased
    covariance (C - m, C - m) of the others: BN_div's statistics, two-pass (centred) as BatchNorm computes them.
    Backward: d mean -> g / M; d var -> 2 g (x - mean) / M; d cov -> (G + G^T) (x - mean) / M (M = N H W). Under
    ``create_graph``, autograd's backward of :func:`channel_moments` (differentiable again)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, m: int):
        """Also returns X_e = x[:, m:] (as an output, so that the gradient of its later uses comes back here and is
        added by the ``baddbmm`` below instead of autograd's zero-filled slice gradient and a sum)."""
        mean, var, cov, centered = channel_moments(x, m)
        ctx.save_for_backward(centered, x)
        ctx.m, ctx.shape = m, x.shape
        return mean, var, cov, x[:, m:].clone()

    @staticmethod
    def backward(ctx, grad_mean, grad_var, grad_cov, grad_rest):
        centered, x = ctx.saved_tensors
        m = ctx.m
        if torch.is_grad_enabled():  # create_graph
            plain = lambda t, m: (*channel_moments(t, m)[:3], t[:, m:])  # noqa: E731
            return differentiable_backward(plain, (x, m), (grad_mean, grad_var, grad_cov, grad_rest))
        n, c, h, w = ctx.shape
        count = n * h * w
        grad = torch.empty_like(centered)
        torch.addcmul((grad_mean[:m] / count).view(1, -1, 1), centered[:, :m], (2.0 * grad_var / count).view(1, -1, 1),
                      out=grad[:, :m])
        if m < c:
            symmetric = (grad_cov + grad_cov.T) / count
            shift = (grad_mean[m:] / count).view(1, -1, 1) + grad_rest.reshape(n, c - m, h * w)
            torch.baddbmm(shift, symmetric.expand(n, -1, -1), centered[:, m:], out=grad[:, m:])
        return grad.view(ctx.shape), None


def residual_norm_act(x_e, residual, y, attention, weight, bias, eps: float, silu: bool) -> torch.Tensor:
    """The output of :class:`_ResidualNormAct` in differentiable ops."""
    n, c, h, w = y.shape
    z = y * attention.view(n, c, 1, 1)
    if x_e is not None:
        z = z + (residual @ x_e.flatten(2)).view(n, c, h, w)
    if weight is not None:
        z = F.batch_norm(z, None, None, weight, bias, training=True, eps=eps)
    return F.silu(z) if silu else z


class _ResidualNormAct(torch.autograd.Function):
    """Training tail: act(BN(R X_e + Y_m a)) with R the residual's 1 x 1 map (:meth:`SSDConv.residual_weight`), a the
    attention (N, C), BN in training mode (batch statistics) and act SiLU or identity. Hand-written backward:
    SiLU's and BatchNorm's native backward kernels, then dY_m = dZ a, da = sum_hw dZ Y_m, dX_e = R^T dZ,
    dR = sum_n dZ X_e^T, without autograd's intermediate copies. Returns (output, batch mean, batch variance). Under
    ``create_graph``, autograd's backward of :func:`residual_norm_act` (differentiable again)."""

    @staticmethod
    def forward(ctx, x_e, residual, y, attention, weight, bias, eps: float, silu: bool):
        n, c, h, w = y.shape
        flat = y.view(n, c, h * w)
        scale = attention.view(n, c, 1)
        if x_e is None:
            z = flat * scale
        else:
            z = torch.bmm(residual.expand(n, -1, -1), x_e.reshape(n, x_e.shape[1], h * w)).addcmul_(flat, scale)
        mean = var = invstd = None
        pre = z.view(n, c, h, w)
        if weight is not None:  # outputs are (N, C, H, W) tensors of their own, not views (an in-place act may follow)
            count = n * h * w
            mean = z.sum(dim=2).sum(dim=0) / count
            pre = torch.sub(pre, mean.view(1, c, 1, 1))
            var = torch.linalg.vector_norm(pre.view(n, c, h * w), dim=-1).square().sum(dim=0) / count
            invstd = torch.rsqrt(var + eps)
            torch.addcmul(bias.view(1, c, 1, 1), pre, (weight * invstd).view(1, c, 1, 1), out=pre)
        out = F.silu(pre) if silu else pre if weight is not None else pre.clone()  # without SiLU: not saved
        ctx.save_for_backward(x_e, residual, y, attention, z if weight is not None else None, pre if silu else None,
                              weight, bias, mean, invstd)
        ctx.eps, ctx.silu = eps, silu
        if mean is None:
            mean = var = z.new_zeros(0)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, grad, _grad_mean, _grad_var):
        x_e, residual, y, attention, z, pre, weight, bias, mean, invstd = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph
            return differentiable_backward(residual_norm_act, (x_e, residual, y, attention, weight, bias, ctx.eps,
                                                               ctx.silu), (grad,))
        n, c, h, w = y.shape
        if ctx.silu:
            grad = torch.ops.aten.silu_backward(grad, pre)
        grad = grad.reshape(n, c, h * w)
        grad_weight = grad_bias = None
        if weight is not None:
            grad, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
                grad, z, weight, None, None, mean, invstd, True, ctx.eps, [True, True, True])
            grad = grad.reshape(n, c, h * w)
        flat = y.view(n, c, h * w)
        grad_attention = (grad * flat).sum(dim=2)  # a multiply and a sum measured faster than N*C batched dots
        grad_y = (grad * attention.view(n, c, 1)).view(n, c, h, w)
        grad_x_e = grad_residual = None
        if x_e is not None:
            if ctx.needs_input_grad[0]:
                grad_x_e = torch.bmm(residual.T.expand(n, -1, -1), grad).view(n, -1, h, w)
            grad_residual = torch.bmm(grad, x_e.flatten(2).transpose(1, 2)).sum(dim=0)
        return grad_x_e, grad_residual, grad_y, grad_attention, grad_weight, grad_bias, None, None


class _BatchNormTrain(torch.autograd.Function):
    """Training-mode BatchNorm2d of a contiguous (N, C, H, W): the batch mean, then the centred values and their norm
    (two-pass, as BatchNorm), normalised in place; backward by BatchNorm's native kernel. The native forward measured
    slower on CPU at one thread. Returns (output, batch mean, biased batch variance). Under ``create_graph``,
    autograd's backward of ``F.batch_norm`` (differentiable again)."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float):
        n, c, h, w = y.shape
        count = n * h * w
        mean = y.reshape(n, c, h * w).sum(dim=2).sum(dim=0) / count
        out = torch.sub(y, mean.view(1, c, 1, 1))
        var = torch.linalg.vector_norm(out.reshape(n, c, h * w), dim=-1).square().sum(dim=0) / count
        invstd = torch.rsqrt(var + eps)
        torch.addcmul(bias.view(1, c, 1, 1), out, (weight * invstd).view(1, c, 1, 1), out=out)
        ctx.save_for_backward(y, weight, bias, mean, invstd)
        ctx.eps = eps
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, grad, _grad_mean, _grad_var):
        y, weight, bias, mean, invstd = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph
            plain = lambda y, weight, bias, eps: F.batch_norm(y, None, None, weight, bias, True, 0.0, eps)  # noqa: E731
            return differentiable_backward(plain, (y, weight, bias, ctx.eps), (grad,))
        return (*torch.ops.aten.native_batch_norm_backward(grad, y, weight, None, None, mean, invstd, True, ctx.eps,
                                                           [True, True, True]), None)
