"""Small helpers shared by the module files: argument checks and the Conv-row tail (BN + activation)."""

from __future__ import annotations

from torch import nn
from ultralytics.nn.modules.conv import Conv


def require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition`` holds.

    Every constructor validates its arguments up front with this, so a bad YAML row fails with one line naming the
    argument and what is allowed, instead of a shape error from deep inside torch.
    """
    if not condition:
        raise ValueError(message)


def require_positive_int(name: str, value, owner: str) -> None:
    """Check that ``value`` is an int >= 1 (bools are rejected: ``True`` is not a channel count)."""
    require(
        isinstance(value, int) and not isinstance(value, bool) and value >= 1,
        f"{owner}: {name}={value!r} is not allowed; expected an integer >= 1",
    )


def require_odd_kernel(k, owner: str) -> None:
    """Odd kernels keep 'same' padding (k // 2) symmetric, so stride-1 outputs keep H x W exactly."""
    require(
        isinstance(k, int) and not isinstance(k, bool) and k >= 1 and k % 2 == 1,
        f"{owner}: k={k!r} is not allowed; expected an odd kernel size (1, 3, 5, ...)",
    )


def require_stride(s, owner: str) -> None:
    require(s in (1, 2) and not isinstance(s, bool), f"{owner}: s={s!r} is not allowed; expected 1 or 2")


def norm_act(c2: int, bn: bool, act) -> tuple[nn.Module, nn.Module]:
    """Return the (BatchNorm, activation) tail that turns a bare convolution into an Ultralytics ``Conv`` row.

    ``act`` follows Ultralytics' ``Conv`` exactly: ``True`` selects ``Conv.default_act`` (SiLU unless the model YAML
    sets ``activation:``), an ``nn.Module`` is used as given, anything else means no activation.
    """
    norm = nn.BatchNorm2d(c2) if bn else nn.Identity()
    if act is True:
        activation = Conv.default_act
    elif isinstance(act, nn.Module):
        activation = act
    else:
        activation = nn.Identity()
    return norm, activation
