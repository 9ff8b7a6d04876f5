"""The straightforward implementations the fast modules are tested against.

This is the forward math of yolo_spd's modules as first written (one tensor op per paper step, before the speed work
of issue #5), kept verbatim as functions of a module's parameters, so the fast and fused code paths can be compared
with it on the same weights, outputs and gradients alike. SCConv's release form (``variant="release"``, the public
code's gate and fuse) was added later, written the same way, one tensor op per step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def space_to_depth(x: torch.Tensor, s: int = 2) -> torch.Tensor:
    pad_h, pad_w = -x.shape[-2] % s, -x.shape[-1] % s
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return torch.cat([x[..., i::s, j::s] for j in range(s) for i in range(s)], dim=1)


def spdconv(m, x: torch.Tensor) -> torch.Tensor:
    conv = m.conv
    return conv.act(conv.bn(conv.conv(space_to_depth(x, m.spd.scale))))


def strided_weight(weight: torch.Tensor, s: int = 2, row_major: bool = False) -> torch.Tensor:
    """The stride-s convolution weight equal to space_to_depth(s) + a convolution with ``weight``, entry by entry:
    tap (s*dy + i, s*dx + j) of input channel c is the weight of channel block*C + c at tap (dy, dx), block = j*s + i
    (the authors' order above) or i*s + j (``row_major``, ONNX's order). Issue 19 added this oracle."""
    c2, wide, kh, kw = weight.shape
    c1 = wide // (s * s)
    out = weight.new_zeros(c2, c1, s * kh, s * kw)
    for i in range(s):
        for j in range(s):
            block = i * s + j if row_major else j * s + i
            for c in range(c1):
                for dy in range(kh):
                    for dx in range(kw):
                        out[:, c, s * dy + i, s * dx + j] = weight[:, block * c1 + c, dy, dx]
    return out


def sru_gates(sru, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    gamma = sru.gn.weight
    reweights = torch.sigmoid(sru.gn(x) * (gamma / gamma.sum()).view(1, -1, 1, 1))
    informative = reweights > sru.gate_threshold
    if sru.variant == "release":
        return reweights.masked_fill(informative, 1.0), reweights.masked_fill(informative, 0.0)
    w1 = informative.to(reweights.dtype) + (reweights - reweights.detach())
    return w1, 1.0 - w1


def sru(sru_module, x: torch.Tensor) -> torch.Tensor:
    w1, w2 = sru_gates(sru_module, x)
    x11, x12 = (w1 * x).chunk(2, dim=1)
    x21, x22 = (w2 * x).chunk(2, dim=1)
    return torch.cat([x11 + x22, x21 + x12], dim=1)


def cru(c, x: torch.Tensor) -> torch.Tensor:
    up, low = x.split([c.up_channels, c.low_channels], dim=1)
    x_up = c.squeeze_up(up)
    x_low = c.squeeze_low(c.pool(low))
    y1 = c.gwc(x_up) + c.pwc1(c.pool(x_up))
    y2 = torch.cat([c.pwc2(x_low), x_low], dim=1)
    if c.variant == "release":  # one softmax over all 2C pooled channels of [Y1 U Y2], then the halves summed
        both = torch.cat([y1, y2], dim=1)
        weighted = F.adaptive_avg_pool2d(both, 1).softmax(dim=1) * both
        first, second = weighted.chunk(2, dim=1)
        return first + second
    beta = torch.stack([y1.mean(dim=(2, 3)), y2.mean(dim=(2, 3))]).softmax(dim=0)[..., None, None]
    return beta[0] * y1 + beta[1] * y2


def scconv(m, x: torch.Tensor) -> torch.Tensor:
    return m.act(m.bn(cru(m.cru, sru(m.sru, x))))


def similarity_attention(m, y: torch.Tensor) -> torch.Tensor:
    n, c = y.shape[:2]
    v = F.normalize(y.flatten(2).softmax(dim=-1), dim=-1)
    similarity = ((v @ v.transpose(1, 2) + 1.0) / 2.0).mean(dim=2)
    return m.fc((1.0 - similarity) * y.mean(dim=(2, 3))).view(n, c, 1, 1)


def ssdconv(m, x: torch.Tensor) -> torch.Tensor:
    x_m, x_e = x.split([m.main_in, m.exp_in], dim=1)
    y_base = m.base(x_m)
    x_m = m.pool(x_m)
    y_e = m.expand(m.pool(x_e)) if m.expand is not None else None
    diversity_in = x_m if y_e is None else torch.cat([x_m, y_e], dim=1)
    y_m = m.bn_main(torch.cat([y_base, m.diversity(m.bn_diversity(diversity_in))], dim=1))
    y = y_m * similarity_attention(m, y_m)
    if y_e is not None:
        y = y + (y_e if m.down is None else m.down(y_e))
    return m.act(m.bn(y))
