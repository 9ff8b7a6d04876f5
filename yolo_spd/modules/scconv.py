"""SCConv: Spatial and Channel reconstruction Convolution (SRU then CRU).

Li, Wen, He, "SCConv: Spatial and Channel Reconstruction Convolution for Feature Redundancy", CVPR 2023.
Equation numbers below are the paper's (text in ``shared/papers/scconv-paper.md`` of the project workspace).

Two forms, chosen by one argument, ``variant``:

* ``variant="paper"`` (default): equations 1-11 as the paper writes them, with deviations 1-5 below.
* ``variant="release"``: the behaviour of the public code ``cheng-haha/ScConv`` (``ScConv.py``). Its README calls it
  "the unofficial implementation" of the paper: it is not the paper authors' code. It is widely copied into other
  projects, so this form lets a model built here be compared with models built from it. It differs from the paper
  in points R1-R4 below; deviations 3-5 apply to both forms.

Deviations of this module from the paper, each with its reason:

1. Hard gate gradient (SRU, eq. 3; paper form). The paper: "We set those weights above the threshold to 1 to obtain
   the informative weights W_1 while setting them to 0 to gain the non-informative weights W_2", which "separate[s]
   the input features into two parts". The paper form reads this as two complementary 0/1 masks: W1 is 1 above the
   threshold and 0 elsewhere, W2 = 1 - W1. (The sentence does not spell out the entries below the threshold; the
   public code reads it otherwise, R1.) Such a step has zero gradient, so the GroupNorm scale gamma - the very
   importance measure of eq. 2 - would never train. The forward pass here is the exact 0/1 gate; the backward pass
   uses a straight-through estimator (W1 = step + sigmoid - stop_gradient(sigmoid), W2 = 1 - W1), so gamma and beta
   learn.
2. GroupNorm group count (SRU, eq. 1). The paper gives none. With ``gn_groups=None`` the paper form asks for 16,
   the count of the public code's first revision and this package's default before ``variant`` existed, kept so that
   models built by earlier versions are unchanged; the release form asks for 4 (R2).
3. GroupNorm groups that do not divide C. The public code builds ``nn.GroupNorm(4, C)``, which raises unless 4 divides
   C. Here the group count is gcd(C, gn_groups): exactly gn_groups whenever it divides C, otherwise the largest
   count dividing both, so SRU takes every even channel count: 24 or 40, say, which 16 groups do not divide, and 6
   or 10, which 4 do not. The chosen count is ``sru.gn.num_groups``. (CRU has its own limits, which SCConv checks:
   g must divide the squeezed upper width and c2. At the paper's alpha = 1/2, r = 2, g = 2 that means an even c1 of
   at least 8 that is 0 or 2 modulo 8, e.g. 8, 10, 16, 18, 24 but not 6, 12 or 20, and an even c2 > c1 / 4. The
   packaged configs' widths are multiples of 8.)
4. c1 != c2 and stride 2 (the paper's SCConv and the public code map C -> C at stride 1). SRU works on c1 channels.
   CRU maps c1 -> c2 exactly as eq. 11 counts it (GWC and PWC1 output c2; PWC2 outputs c2 - (1 - alpha) c1 / r,
   concatenated with the reused X_low). At stride 2 the k x k GWC is strided and sees the full-resolution X_up; the
   1 x 1 paths (PWC1, PWC2 and the reused X_low) see their input 2x2 average-pooled (ceil mode), so no pixel is
   simply dropped and odd H or W give the ceil(H/2) x ceil(W/2) of a strided 3 x 3 convolution.
5. Conv-row tail. The paper's SCConv replaces the 3 x 3 convolution inside a block whose BatchNorm and activation
   follow it. As a YOLO row replaces Ultralytics' ``Conv`` (conv + BN + SiLU), ``bn=True, act=True`` (default) adds
   that BatchNorm and activation; ``bn=False, act=False`` is the bare module (the paper's, or the public code's).

Where the public code ``cheng-haha/ScConv`` differs from the paper, each reproduced by ``variant="release"`` only, as
that code does it, so that the two can be compared; the paper form follows the paper. The file changed several times
in July 2023; R1-R4 describe the revision that other projects copy (``torch.where`` gate, ``nn.GroupNorm``). Its
revisions of 22 and 27 July gated differently (27 July: a 0/1 mask of the sigmoid value times GN(X); 22 July: a 0/1
mask of W_gamma times the sigmoid value times X) and normalised with a hand-written GroupBatchnorm2d; those are not
reproduced:

R1. Gate (SRU, eq. 3). W1 = 1 where Sigmoid(W_gamma GN(X)) > threshold, elsewhere the sigmoid value itself; W2 = 0
    there, elsewhere the sigmoid value: a literal reading of the paper's sentence (deviation 1), which sets only the
    weights above the threshold. The paper form's W1 and W2 are 0/1 masks everywhere; here the uninformative
    elements enter both X1w and X2w, scaled by their weight. (Gradients flow through the sigmoid values, so no
    straight-through estimator is needed.)
R2. GroupNorm groups (SRU, eq. 1). ``torch.nn.GroupNorm`` with 4 groups (its ``ScConv`` passes 4; its ``SRU`` alone
    defaults to 16). Its earlier revisions normalised with a hand-written GroupBatchnorm2d (standard deviation with
    Bessel's correction, eps added to it), first with 16 groups, then with 4; that normalisation is not reproduced.
R3. GWC bias (CRU, eq. 5). Its GWC convolution has a bias; eq. 5 and the parameter count of eq. 11 have none.
R4. Fuse (CRU, eqs. 8-9). One softmax over all 2C pooled channels of [Y1 U Y2],
    (a1, a2) = Softmax_2C([S1 U S2]), Y = a1 Y1 + a2 Y2, instead of eq. 8's per-channel softmax over the two
    branches, beta_1 = e^{S1} / (e^{S1} + e^{S2}). The weights of one channel no longer sum to 1 (they sum to 1 over
    all channels together), so every channel's scale depends on all the others.

The rest is the same in both forms and in that code: eq. 2's W_gamma = gamma / sum(gamma), eq. 4's
cross-reconstruction, and CRU's split, squeezes, PWC1, PWC2 and reuse of X_low (eqs. 5-7).

Implementation (same outputs as the equations, within float32 rounding; ``tests/reference.py`` keeps the
step-by-step form and ``tests/test_fast_equivalence.py`` compares outputs and gradients):

* SRU (paper form): W_gamma and the threshold fold into GroupNorm's affine, z = W_gamma GN(X) - logit(t), so the
  hard gate is z > 0 (no sigmoid in the forward pass); eq. 4 is two ``addcmul`` per half (bit-identical), fed to
  CRU's squeezes without concatenating; the straight-through backward is written by hand
  (``_GatedCrossReconstruction``). The release gate (R1) and fuse (R4) are computed as written, with autograd.
* CRU: 1 x 1 convolutions run as batched matrix products; at stride 1 the two squeezes of an unsplit input are one
  block-diagonal 1 x 1 convolution; eq. 8's two-way softmax is sigmoid(S1 - S2) and eq. 9 one ``lerp``.
* Stride 2: the 2 x 2 average pools before PWC1 and PWC2 (ceil mode) run, for contiguous inputs with even H and W,
  as two vector adds (``_common.average_pool``): ``F.avg_pool2d`` on NCHW measured 3-5x slower on CPU at one thread,
  and was SCConv's largest cost after its memory-bound SRU passes at stride 2 (issue 19; ``benchmarks/before_after.py``
  measures SCConv at stride 2 before and after, docs/speed.md).
* ``SCConv.fuse()`` (inference; Ultralytics' ``model.fuse()`` calls it): the trailing BatchNorm folds into CRU's
  branches (paper form: exact because beta1 + beta2 = 1) or into the fuse's weights plus a shift (release form:
  BN(a1 Y1 + a2 Y2) = (s a1) Y1 + (s a2) Y2 + t, as a1 + a2 != 1), and at stride 1 GWC + PWC1 become one dense
  k x k convolution. At stride 2 they stay separate: PWC1 sees the ceil-mode-pooled input, which a strided kernel
  reproduces only for even H and W.

Export forms. While torch traces the model, exports it to ONNX or runs ``torch.export`` (``is_exporting()``; NCNN's and
Paddle's converters trace it, ExecuTorch and Core AI use ``torch.export`` (counted without autograd only), whose Core AI
converter cannot lower the ``empty_like`` buffers the eager inference path writes through ``out=``), a few steps take a
form built only from ops that all the converters behind Ultralytics' exports know: one form for all of them, as a trace
does not say which converter reads it. Each gives the eager outputs to float tolerance: E1 and E2 compute exactly the
eager gate of the same input, but E3 changes the gate logits by float rounding, so a logit within rounding of 0 may gate
the other way; ``tests/test_scconv.py`` and ``tests/test_exports.py`` check that, and ``benchmarks/exports.py`` each
format end to end. NCNN's converter (pnnx) has no comparison, ``addcmul`` or ``lerp``; x2paddle 1.6 (Ultralytics' Paddle
export) has no ``ceil``, ``sign``, ``heaviside``, ``block_diag`` or ``addcmul`` ("Model is not supported yet"), its
``floor`` mapper writes Python's ``math.floor`` of the tensor (a TypeError), its ``group_norm`` mapper takes the affine
weight and bias only from parameters (a KeyError for computed or absent ones), and its ``sum`` mapper needs the reduced
dims (an IndexError for a sum over all elements).

E1. Hard gate (eq. 3, paper form), :func:`step`: clamp(sqrt(sqrt(sqrt(sqrt(clamp(z, 0, 1))))) 2^15, 0, 1) instead
    of z > 0. The smallest positive float32 is 2^-149 and four square roots take it to 2^-9.3, which 2^15 lifts past 1;
    z <= 0 stays 0 (or -0): exactly the same 0/1, in float16 and bfloat16 too. Every constant is a float16 number, so
    a half-precision export, or a runtime that computes a float32 graph in float16 (NCNN and MNN on ARM), gets no inf
    and no 0 * inf = NaN (a scale such as 2^127 would). (One clamp of z * BIG, or of relu(z) / (relu(z) + eps), is not
    0/1 for the smallest z > 0.)
E2. Release gate (R1), :func:`release_gate`: M = step(r - t) (r - t > 0 exactly where r > t), W1 = r (1 - M) + M,
    W2 = r (1 - M) instead of ``masked_fill``; exact, as M is exactly 0 or 1.
E3. Gate logits, :meth:`SRU.gate_logits`: GroupNorm with its own parameters, then W_gamma GN(X) - logit(t) as a
    multiply and a subtract, instead of W_gamma and the shift folded into GroupNorm's affine (float rounding only);
    eq. 2's sum over gamma is written over dim 0 (the same reduction, in eager mode too).
E4. CRU's squeezes at stride 1, :meth:`CRU.squeeze`: two 1 x 1 convolutions of the split input instead of one with a
    block-diagonal weight (the same sums, to float rounding: the zero blocks add nothing, the order may differ). Also
    ``addcmul`` and ``lerp`` as multiplies and adds (``_common.addcmul``/``lerp``, float rounding only) and 1 x 1
    convolutions instead of batched matrix products.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._common import (
    addcmul,
    average_pool,
    bn_scale_shift,
    conv_like,
    differentiable_backward,
    grouped_to_dense,
    is_exporting,
    is_number,
    lerp,
    norm_act,
    pointwise,
    require,
    require_odd_kernel,
    require_positive_int,
    require_stride,
)

VARIANTS = ("paper", "release")
DEFAULT_GN_GROUPS = {"paper": 16, "release": 4}  # deviation 2 and R2


def require_variant(variant) -> None:
    """Refuse an SCConv ``variant`` other than :data:`VARIANTS` (a ValueError naming it)."""
    require(variant in VARIANTS, f"SCConv: variant={variant!r} is not allowed; expected one of {', '.join(VARIANTS)}")


class SRU(nn.Module):
    """Spatial Reconstruction Unit (Sec. 2.1): separate informative from redundant features, then cross-reconstruct.

    Args:
        c (int): Channels (even: eq. 4 adds the two channel halves).
        gn_groups (int | None): Requested GroupNorm groups; the count used is gcd(c, gn_groups) (deviation 3).
            None: 16 for the paper form (deviation 2), 4 for the release form (R2).
        gate_threshold (float): Gate threshold in (0, 1); the paper uses 0.5.
        variant (str): ``"paper"`` (eq. 3's 0/1 gate, with a straight-through gradient) or ``"release"`` (the public
            code's gate, R1); see the module docstring.
    """

    def __init__(self, c: int, gn_groups: int | None = None, gate_threshold: float = 0.5, variant: str = "paper"):
        super().__init__()
        require_variant(variant)
        require_positive_int("c1", c, "SCConv")
        require(c % 2 == 0, f"SCConv: c1={c} is not allowed; SRU's cross-reconstruction (eq. 4) needs an even c1")
        gn_groups = DEFAULT_GN_GROUPS[variant] if gn_groups is None else gn_groups
        require_positive_int("gn_groups", gn_groups, "SCConv")
        require(
            is_number(gate_threshold) and 0.0 < gate_threshold < 1.0,
            f"SCConv: gate_threshold={gate_threshold!r} is not allowed; expected 0 < t < 1",
        )
        self.gn = nn.GroupNorm(math.gcd(c, gn_groups), c)
        self.gate_threshold = gate_threshold
        self.variant = variant

    def __setstate__(self, state: dict) -> None:
        """Unpickle, mapping the ``gate`` of checkpoints from this package's first version ("hard": the paper gate,
        "released": the release gate, R1) to ``variant``: the same computation."""
        gate = state.pop("gate", None)
        if gate is not None:
            state["variant"] = "release" if gate == "released" else "paper"
        super().__setstate__(state)

    def importance_weights(self) -> torch.Tensor:
        """Eq. 2: W_gamma = gamma_i / sum_j gamma_j (a plain ratio, not a softmax: a softmax would squash every
        weight towards 1/C and the gate of eq. 3 would see almost no spread)."""
        gamma = self.gn.weight
        return gamma / gamma.sum(0)  # over dim 0: x2paddle converts no sum without dims (export form E3)

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 3: W = Gate(Sigmoid(W_gamma * GN(X))); returns (W1, W2), elementwise, shaped like ``x``. The release
        gate (R1) sets informative weights to 1 in W1 and 0 in W2 and leaves the others at their sigmoid value."""
        reweights = torch.sigmoid(self.gn(x) * self.importance_weights().view(1, -1, 1, 1))
        if self.variant == "release":  # R1
            return release_gate(reweights, self.gate_threshold)
        informative = reweights > self.gate_threshold
        w1 = informative.to(reweights.dtype) + (reweights - reweights.detach())  # forward: exact 0/1 (deviation 1)
        return w1, 1.0 - w1

    @staticmethod
    def reconstruct(x1w: torch.Tensor, x2w: torch.Tensor) -> torch.Tensor:
        """Eq. 4: X^w = (X11w + X22w) U (X21w + X12w), where Xi1w / Xi2w are the first / second channel halves."""
        x11, x12 = x1w.chunk(2, dim=1)
        x21, x22 = x2w.chunk(2, dim=1)
        return torch.cat([x11 + x22, x21 + x12], dim=1)

    def gate_logits(self, x: torch.Tensor) -> torch.Tensor:
        """z = W_gamma * GN(X) - logit(threshold) in one GroupNorm call (W_gamma folded into its affine), so that
        Sigmoid(W_gamma * GN(X)) > threshold exactly where z > 0 (sigmoid is increasing). While exporting (form E3):
        GroupNorm with its own parameters, then W_gamma and the shift as a multiply and a subtract."""
        w_gamma = self.importance_weights()
        shift = self.threshold_logit
        if is_exporting():
            return self.gn(x) * w_gamma.view(1, -1, 1, 1) - shift
        weight, bias = self.gn.weight * w_gamma, self.gn.bias * w_gamma - shift
        return F.group_norm(x, self.gn.num_groups, weight, bias, self.gn.eps)

    @property
    def threshold_logit(self) -> float:
        """The gate threshold as a logit: W > threshold exactly where the pre-sigmoid value > this."""
        return math.log(self.gate_threshold / (1.0 - self.gate_threshold))

    def reconstructed_halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 4 without the final union: (X11w + X22w, X21w + X12w)."""
        if self.variant == "release":
            x1, x2 = x.chunk(2, dim=1)
            w1, w2 = self.gates(x)
            (w11, w12), (w21, w22) = w1.chunk(2, dim=1), w2.chunk(2, dim=1)
            return x1 * w11 + x2 * w22, x1 * w21 + x2 * w12
        z = self.gate_logits(x)
        if z.requires_grad and not is_exporting():
            return _GatedCrossReconstruction.apply(x, z, self.threshold_logit)
        return cross_reconstruct(x, step(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.reconstructed_halves(x), dim=1)


class _GatedCrossReconstruction(torch.autograd.Function):
    """Eqs. 3-4 under the hard gate, (X, z) -> (X11w + X22w, X21w + X12w) with W1 = step(z), W2 = 1 - W1, and the
    straight-through gradient of deviation 1 (dW1/dz = sigmoid'(z + logit t)), with a hand-written backward:

        dX1 = lerp(dB, dA, M1)    dX2 = lerp(dA, dB, M2)    dz1 = (dA - dB) X1 s'    dz2 = (dB - dA) X2 s'

    where (dA, dB) are the output gradients. Autograd through the elementwise form needs about twice the passes.
    Under ``create_graph`` the backward is autograd's through :func:`gated_cross_reconstruction`, so that it can be
    differentiated again.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, z: torch.Tensor, threshold_logit: float):
        mask = step(z)
        ctx.save_for_backward(x, z, mask)
        ctx.threshold_logit = threshold_logit
        return cross_reconstruct(x, mask)

    @staticmethod
    def backward(ctx, grad_first: torch.Tensor, grad_second: torch.Tensor):
        x, z, mask = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: a backward that can be differentiated again
            return differentiable_backward(gated_cross_reconstruction, (x, z, ctx.threshold_logit),
                                           (grad_first, grad_second))
        # Under CUDA autocast, GroupNorm runs in float32 (its fp32 list) while X comes half from a convolution: the
        # outputs, and so their gradients, are float32 (type promotion, as in the reference). lerp's out= needs one
        # dtype; autograd casts grad_x back to X's dtype. The 0/1 mask is exact in any dtype.
        dtype = grad_first.dtype
        (x1, x2), (m1, m2) = x.chunk(2, dim=1), mask.to(dtype).chunk(2, dim=1)
        half = x1.shape[1]
        difference = grad_first - grad_second
        grad_x = torch.empty_like(x, dtype=dtype)
        torch.lerp(grad_second, grad_first, m1, out=grad_x[:, :half])
        torch.lerp(grad_first, grad_second, m2, out=grad_x[:, half:])
        sig = torch.sigmoid(z + ctx.threshold_logit)
        grad_z = torch.addcmul(sig, sig, sig, value=-1.0)  # sigmoid' = s - s^2
        grad_z[:, :half].mul_(difference).mul_(x1)
        grad_z[:, half:].mul_(difference).mul_(x2).neg_()
        return grad_x, grad_z, None


def gated_cross_reconstruction(x: torch.Tensor, z: torch.Tensor, threshold_logit: float):
    """:class:`_GatedCrossReconstruction` in differentiable ops: eq. 4 with W1 = step(z), whose gradient is that of
    sigmoid(z + logit(threshold)) (deviation 1's straight-through estimator, as :meth:`SRU.gates` writes it)."""
    reweights = torch.sigmoid(z + threshold_logit)
    return cross_reconstruct(x, torch.gt(z, 0).to(z.dtype) + (reweights - reweights.detach()))


#: 2^15, a float16 number: after four square roots every z in (0, 1] is at least 2^(-149/16) > 2^-15 (float32).
EXPORT_STEP_SCALE = 2.0**15


def step(z: torch.Tensor) -> torch.Tensor:
    """W1 of eq. 3 as floats: 1 where z > 0, else 0 (written as floats directly: no bool tensor in between).

    While exporting (form E1, no comparison for NCNN, no ceil or floor for x2paddle):
    clamp(sqrt^4(clamp(z, 0, 1)) 2^15, 0, 1), exactly the same 0/1 in float32, float16 and bfloat16 (square roots of
    positive numbers stay positive, and the smallest positive float32, 2^-149, becomes 2^-9.3)."""
    if is_exporting():
        root = z.clamp(0.0, 1.0)
        for _ in range(4):
            root = root.sqrt()
        return (root * EXPORT_STEP_SCALE).clamp(0.0, 1.0)
    return torch.gt(z, 0, out=torch.empty_like(z))


def release_gate(reweights: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The release gate (R1): W1 = 1 where the reweight r > t, else r; W2 = 0 where r > t, else r.

    While exporting (form E2), without a comparison or ``masked_fill``: M = step(r - t) (r - t > 0 exactly where
    r > t: IEEE subtraction is exact in sign, with gradual underflow), W1 = r (1 - M) + M and W2 = r (1 - M): as M is
    exactly 0 or 1, every product and sum is exact, so both are bit-identical to the eager form."""
    if is_exporting():
        informative = step(reweights - threshold)
        kept = 1.0 - informative
        return addcmul(informative, reweights, kept), reweights * kept
    informative = reweights > threshold
    return reweights.masked_fill(informative, 1.0), reweights.masked_fill(informative, 0.0)


def cross_reconstruct(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4 for a 0/1 gate M = W1 (W2 = 1 - M): X11w + X22w = X1 M1 + (X2 - X2 M2), and symmetrically; two
    ``addcmul`` per half, bit-identical to eq. 4's products and sums (multiplying by 0 or 1 and adding 0 are exact)."""
    (x1, x2), (m1, m2) = x.chunk(2, dim=1), mask.chunk(2, dim=1)
    first = addcmul(addcmul(x2, x2, m2, value=-1.0), x1, m1)
    second = addcmul(addcmul(x1, x1, m1, value=-1.0), x2, m2)
    return first, second


class CRU(nn.Module):
    """Channel Reconstruction Unit (Sec. 2.2): split, transform (rich upper / cheap lower) and fuse.

    Args:
        c1 (int): Input channels.
        c2 (int): Output channels.
        k (int): GWC kernel size (odd).
        s (int): Stride, 1 or 2 (deviation 4).
        alpha (float): Split ratio, 0 < alpha < 1; alpha * c1 channels go to the upper branch.
        r (int): Squeeze ratio.
        g (int): GWC groups.
        variant (str): ``"paper"`` (eqs. 5-9) or ``"release"`` (the public code: a GWC bias, R3, and one softmax over
            all 2C channels in the fuse, R4); see the module docstring.
    """

    variant = "paper"  # class default for checkpoints of this package's first version, which had no variant

    def __init__(
        self, c1: int, c2: int, k: int = 3, s: int = 1, alpha: float = 0.5, r: int = 2, g: int = 2, variant="paper"
    ):
        super().__init__()
        require_variant(variant)
        self.variant = variant
        for name, value in (("c1", c1), ("c2", c2), ("r", r), ("g", g)):
            require_positive_int(name, value, "SCConv")
        require_odd_kernel(k, "SCConv")
        require_stride(s, "SCConv")
        require(is_number(alpha) and 0.0 < alpha < 1.0,
                f"SCConv: alpha={alpha!r} is not allowed; expected 0 < alpha < 1")
        self.up_channels = int(alpha * c1)
        self.low_channels = c1 - self.up_channels
        up_sq, low_sq = self.up_channels // r, self.low_channels // r
        require(
            up_sq >= 1 and low_sq >= 1,
            f"SCConv: alpha={alpha}, r={r} are not allowed for c1={c1}: a squeezed branch would have no channels "
            f"(upper {up_sq}, lower {low_sq}); each of alpha*c1 and (1-alpha)*c1 must be >= r",
        )
        require(
            up_sq % g == 0 and c2 % g == 0,
            f"SCConv: g={g} is not allowed; it must divide the squeezed upper width {up_sq} and c2={c2}",
        )
        require(
            low_sq < c2,
            f"SCConv: c2={c2} is not allowed for c1={c1}; eq. 6 reuses {low_sq} squeezed lower channels, "
            "so c2 must exceed it",
        )
        self.squeeze_up = nn.Conv2d(self.up_channels, up_sq, 1, bias=False)
        self.squeeze_low = nn.Conv2d(self.low_channels, low_sq, 1, bias=False)
        self.gwc = nn.Conv2d(up_sq, c2, k, s, k // 2, groups=g, bias=variant == "release")  # R3
        self.pwc1 = nn.Conv2d(up_sq, c2, 1, bias=False)
        self.pwc2 = nn.Conv2d(low_sq, c2 - low_sq, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if s == 2 else nn.Identity()
        # set by fold_output_bn (the first three for the paper form, the last two for the release form): part of a
        # fused module's state dict, as the folded weights are (a None buffer is in no state dict)
        for name in ("low_scale", "low_shift", "mean_scale", "out_scale", "out_shift"):
            self.register_buffer(name, None)

    def squeeze(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two 1 x 1 squeezes of the split input -> (X_up, X_low), X_low at output resolution.

        At stride 1 they run as one 1 x 1 convolution whose weight is block-diagonal (zero blocks make it exactly
        the two separate ones); at stride 2 the lower input is pooled first, which is cheaper than merging.
        """
        if not self.pool_is_identity or is_exporting():  # export form E4: x2paddle has no block_diag
            return self.squeeze_split(*x.split([self.up_channels, self.low_channels], dim=1))
        weight = torch.block_diag(self.squeeze_up.weight.flatten(1), self.squeeze_low.weight.flatten(1))
        squeezed = pointwise(x, weight[..., None, None])
        return squeezed.split([self.squeeze_up.out_channels, self.squeeze_low.out_channels], dim=1)

    def squeeze_split(self, up: torch.Tensor, low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The squeezes of an input already split into its upper and lower part (1 x 1 squeeze and pooling commute)."""
        return pointwise(up, self.squeeze_up.weight), pointwise(average_pool(low, self.pool), self.squeeze_low.weight)

    @property
    def pool_is_identity(self) -> bool:
        """True at stride 1, where the upper path pools nothing."""
        return isinstance(self.pool, nn.Identity)

    def upper(self, x_up: torch.Tensor) -> torch.Tensor:
        """Eq. 5: Y1 = M^G X_up + M^P1 X_up (the 1 x 1 path on the pooled X_up at stride 2). After
        ``SCConv.fuse()`` at stride 1, ``gwc`` holds both (PWC1 added to GWC's centre tap) and ``pwc1`` is None."""
        y1 = self.gwc(x_up)
        return y1 if self.pwc1 is None else y1 + pointwise(average_pool(x_up, self.pool), self.pwc1.weight)

    def lower_parts(self, x_low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two parts of eq. 6's union: (M^P2 X_low, X_low); after ``SCConv.fuse()`` both carry the folded BN."""
        reused = x_low if self.low_scale is None else addcmul(self.low_shift, x_low, self.low_scale)
        return pointwise(x_low, self.pwc2.weight, self.pwc2.bias), reused

    def lower(self, x_low: torch.Tensor) -> torch.Tensor:
        """Eq. 6: Y2 = M^P2 X_low U X_low (``x_low`` already at output resolution)."""
        return torch.cat(self.lower_parts(x_low), dim=1)

    @staticmethod
    def fuse(y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        """Eqs. 7-9: S_m = GAP(Y_m); beta = per-channel softmax over the two branches; Y = beta1 Y1 + beta2 Y2."""
        beta1 = branch_weight(y1.mean(dim=(2, 3), keepdim=True), y2.mean(dim=(2, 3), keepdim=True))
        return lerp(y2, y1, beta1)

    def release_fuse(self, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        """The public code's fuse (R4): (a1, a2) = Softmax over all 2C channels of [GAP(Y1) U GAP(Y2)],
        Y = a1 Y1 + a2 Y2. After ``fold_output_bn`` both weights carry the BatchNorm scale s and its shift t is added:
        s (a1 Y1 + a2 Y2) + t."""
        pooled = torch.cat([y1.mean(dim=(2, 3), keepdim=True), y2.mean(dim=(2, 3), keepdim=True)], dim=1)
        a1, a2 = pooled.softmax(dim=1).chunk(2, dim=1)
        if self.out_scale is None:
            return addcmul(y1 * a1, y2, a2)
        return addcmul(addcmul(self.out_shift, y1, a1 * self.out_scale), y2, a2 * self.out_scale)

    def fuse_parts(self, y1: torch.Tensor, y2_parts: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The fuse with Y2 given as its two parts (eq. 6's union). Paper form (:meth:`fuse`): without autograd the
        union is never materialised, each part's ``lerp`` writes straight into its channels of the output."""
        if self.variant == "release":
            return self.release_fuse(y1, torch.cat(y2_parts, dim=1))
        reduced, reused = y2_parts
        y2_mean = torch.cat([reduced.mean(dim=(2, 3), keepdim=True), reused.mean(dim=(2, 3), keepdim=True)], dim=1)
        beta1 = branch_weight(y1.mean(dim=(2, 3), keepdim=True), y2_mean, self.mean_scale)
        if torch.is_grad_enabled() and self.mean_scale is None and not is_exporting():
            return _BranchMix.apply(y1, torch.cat(y2_parts, dim=1))
        if torch.is_grad_enabled() or is_exporting():
            return lerp(torch.cat(y2_parts, dim=1), y1, beta1)
        # Under autocast the convolutions give its dtype while the reused channels and the weights stay float32.
        if not reduced.dtype == reused.dtype == beta1.dtype == y1.dtype:
            reduced, reused, beta1 = reduced.to(y1.dtype), reused.to(y1.dtype), beta1.to(y1.dtype)
        out = torch.empty_like(y1)
        split = reduced.shape[1]
        torch.lerp(reduced, y1[:, :split], beta1[:, :split], out=out[:, :split])
        torch.lerp(reused, y1[:, split:], beta1[:, split:], out=out[:, split:])
        return out

    def transform_and_fuse(self, x_up: torch.Tensor, x_low: torch.Tensor) -> torch.Tensor:
        """Eqs. 5-8 on the squeezed halves: the upper and lower transforms, then their fusion."""
        return self.fuse_parts(self.upper(x_up), self.lower_parts(x_low))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform_and_fuse(*self.squeeze(x))

    @torch.no_grad()
    def fold_output_bn(self, bn: nn.BatchNorm2d) -> None:
        """Fold the BatchNorm that follows CRU (eval statistics, BN(y) = s y + t).

        Paper form: into the branches. As beta1 + beta2 = 1, BN(beta1 Y1 + beta2 Y2) = beta1 BN(Y1) + beta2 BN(Y2);
        the betas still come from the unfolded means, recovered as (mean - t) / s (t cancels in S1 - S2). Where
        s = 0 the channel is the constant t whatever beta is, so s is replaced by 1 there.

        Release form: a1 + a2 != 1 (R4) and every channel's mean enters every weight, so the branches keep their
        scale and s and t apply to the fuse's output through its weights (:meth:`release_fuse`)."""
        scale, shift = bn_scale_shift(bn)
        if self.variant == "release":
            self.out_scale, self.out_shift = scale.view(1, -1, 1, 1).clone(), shift.view(1, -1, 1, 1).clone()
            return
        n_pwc2 = self.pwc2.out_channels
        column = scale.view(-1, 1, 1, 1)
        self.gwc = conv_like(self.gwc, self.gwc.weight * column, shift)
        if self.pwc1 is not None:
            self.pwc1 = conv_like(self.pwc1, self.pwc1.weight * column, None)
        self.pwc2 = conv_like(self.pwc2, self.pwc2.weight * column[:n_pwc2], shift[:n_pwc2])
        self.low_scale = scale[n_pwc2:].view(1, -1, 1, 1).clone()
        self.low_shift = shift[n_pwc2:].view(1, -1, 1, 1).clone()
        self.mean_scale = torch.where(scale == 0, torch.ones_like(scale), scale).view(1, -1, 1, 1)

    @torch.no_grad()
    def merge_upper(self) -> None:
        """At stride 1, turn GWC + PWC1 (eq. 5, two linear maps of the same X_up) into one dense k x k convolution."""
        if self.pwc1 is None or not self.pool_is_identity:
            return
        weight = grouped_to_dense(self.gwc.weight, self.gwc.groups)
        k = weight.shape[-1]
        weight[:, :, k // 2, k // 2] += self.pwc1.weight[:, :, 0, 0]
        self.gwc = conv_like(self.gwc, weight, self.gwc.bias, groups=1)
        self.pwc1 = None


class _BranchMix(torch.autograd.Function):
    """Eqs. 7-9 for training, Y = lerp(Y2, Y1, beta1) with beta1 = sigmoid(GAP(Y1) - GAP(Y2)), with a hand-written
    backward (g = dL/dY, P = H W):

        g_beta = sum_hw g (Y1 - Y2),   g_S = g_beta beta1 (1 - beta1),
        dY1 = beta1 g + g_S / P,       dY2 = (1 - beta1) g - g_S / P

    g_beta comes from two batched dot products, each gradient from one ``addcmul``: autograd's lerp and mean
    backward make several more passes over the (N, C, H, W) tensors. Under ``create_graph`` the backward is
    autograd's through :meth:`CRU.fuse`, so that it can be differentiated again.
    """

    @staticmethod
    def forward(ctx, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        beta1 = branch_weight(y1.mean(dim=(2, 3), keepdim=True), y2.mean(dim=(2, 3), keepdim=True))
        ctx.save_for_backward(y1, y2, beta1)
        return torch.lerp(y2, y1, beta1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        y1, y2, beta1 = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: beta1 was computed without a graph
            return differentiable_backward(CRU.fuse, (y1, y2), (grad,))
        grad_beta = channel_dot(grad, y1) - channel_dot(grad, y2)
        grad_mean = grad_beta * beta1 * (1.0 - beta1) / (y1.shape[2] * y1.shape[3])
        return torch.addcmul(grad_mean, grad, beta1), torch.addcmul(-grad_mean, grad, 1.0 - beta1)


def channel_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum over H, W of a * b, shaped (N, C, 1, 1), without materialising the product."""
    if not (a.is_contiguous() and b.is_contiguous()):  # e.g. channels-last: the row views below would copy
        return (a * b).sum(dim=(2, 3), keepdim=True)
    n, c, h, w = a.shape
    return torch.bmm(a.view(n * c, 1, h * w), b.view(n * c, h * w, 1)).view(n, c, 1, 1)


def branch_weight(s1: torch.Tensor, s2: torch.Tensor, mean_scale: torch.Tensor | None = None) -> torch.Tensor:
    """beta1 of eq. 8: a softmax over two values is sigmoid(S1 - S2), and then Y = Y2 + beta1 (Y1 - Y2) is one
    ``lerp``. ``mean_scale`` (set by ``CRU.fold_output_bn``) undoes a folded affine s Y + t on the means."""
    difference = s1 - s2
    return torch.sigmoid(difference if mean_scale is None else difference / mean_scale)


class SCConv(nn.Module):
    """SCConv (Fig. 1): ``SRU(c1)`` then ``CRU(c1 -> c2)``, then BN + activation as in an Ultralytics ``Conv`` row.

    YAML: ``[-1, 1, SCConv, [c2]]``, ``[-1, 1, SCConv, [c2, 3, 2]]`` (stride 2), further arguments in order; the
    public code's behaviour: ``[-1, 1, SCConv, [c2, 3, 1, 0.5, 2, 2, null, 0.5, release]]``.

    Args:
        c1 (int): Input channels (even; with the default alpha, r and g also >= 8 and 0 or 2 modulo 8).
        c2 (int): Output channels (a multiple of g, and more than the (1 - alpha) c1 / r channels eq. 6 reuses).
        k (int): GWC kernel size (odd).
        s (int): Stride, 1 or 2.
        alpha (float): CRU split ratio (paper: 1/2).
        r (int): CRU squeeze ratio (paper: 2).
        g (int): GWC groups (paper: 2).
        gn_groups (int | None): SRU GroupNorm groups requested; None: 16 for the paper form (the paper gives no
            count, deviation 2), 4 for the release form (R2). The count used is gcd(c1, gn_groups) (deviation 3).
        gate_threshold (float): SRU gate threshold (paper: 0.5).
        variant (str): ``"paper"`` (default: eqs. 1-11) or ``"release"``: the unofficial public code
            ``cheng-haha/ScConv`` - its gate (R1), GroupNorm groups (R2), GWC bias (R3) and fuse (R4).
        bn (bool): Add a BatchNorm after CRU (deviation 5).
        act (bool | nn.Module): Activation after the BatchNorm, as in Ultralytics' ``Conv``.
    """

    def __init__(
        self,
        c1: int,
        c2: int,
        k: int = 3,
        s: int = 1,
        alpha: float = 0.5,
        r: int = 2,
        g: int = 2,
        gn_groups: int | None = None,
        gate_threshold: float = 0.5,
        variant: str = "paper",
        bn: bool = True,
        act=True,
    ):
        super().__init__()
        self.sru = SRU(c1, gn_groups, gate_threshold, variant)
        self.cru = CRU(c1, c2, k, s, alpha, r, g, variant)
        self.bn, self.act = norm_act(c2, bn, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cru.up_channels * 2 == self.sru.gn.num_channels:  # CRU's split is SRU's halves: never concatenate
            y = self.cru.transform_and_fuse(*self.cru.squeeze_split(*self.sru.reconstructed_halves(x)))
        else:
            y = self.cru(self.sru(x))
        return self.act(self.bn(y))

    @torch.no_grad()
    def fuse(self) -> SCConv:
        """Inference form (eval mode; Ultralytics' ``model.fuse()`` calls this once registered): the trailing
        BatchNorm folds into CRU (:meth:`CRU.fold_output_bn`) and, at stride 1, GWC and PWC1 become one convolution.
        Idempotent."""
        if isinstance(self.bn, nn.BatchNorm2d):
            self.cru.fold_output_bn(self.bn)
            self.bn = nn.Identity()
        self.cru.merge_upper()
        return self
