"""Ultralytics' deprecated keys, as its own ``yolo`` command reads them (changes nothing at registration).

Ultralytics maps a deprecated key onto its current one with a warning (``half=True`` -> ``quantize=16`` in 8.4.190,
while 8.4.67 still lists ``half``; ``hide_labels`` -> ``show_labels``, ``line_thickness`` -> ``line_width``) and drops
removed ones
(``label_smoothing``), in ``ultralytics.cfg._handle_deprecation``, which ``yolo`` runs before it checks the keys.
``yolo-spd`` checks every key up front against Ultralytics' current ones, so it asks here first.
"""

from __future__ import annotations


def current_keys(key: str, value, allowed: set[str]) -> dict | None:
    """``{key: value}`` as Ultralytics' current keys (possibly none), with Ultralytics' deprecation warning; None where
    ``key`` is not one of its deprecated keys, or maps onto a key outside ``allowed`` (the mode's keys: the caller
    then refuses ``key`` as unknown, and no deprecation warning precedes that error line).

    Raises:
        UsageError: Ultralytics refuses the value of a deprecated key (``end2end=3``: not a bool).
    """
    from ultralytics.cfg import _handle_deprecation
    from ultralytics.utils import LOGGER

    from ..errors import UsageError

    disabled, LOGGER.disabled = LOGGER.disabled, True  # a first, silent look: which keys would it set?
    try:
        mapped = _handle_deprecation({key: value})
    except (TypeError, ValueError) as error:
        raise UsageError(f"{key}={value}: {error}") from None
    finally:
        LOGGER.disabled = disabled
    if key in mapped or not set(mapped) <= allowed:
        return None
    return _handle_deprecation({key: value})  # again, as `yolo` runs it: with the warning
