"""Ultralytics' deprecated keys, as its own ``yolo`` command reads them (changes nothing at registration).

Ultralytics maps a deprecated key onto its current one with a warning (``half=True`` -> ``quantize=16`` in 8.4.190,
while 8.4.67 still lists ``half``; ``hide_labels`` -> ``show_labels``, ``line_thickness`` -> ``line_width``) and drops
removed ones
(``label_smoothing``), in ``ultralytics.cfg._handle_deprecation``, which ``yolo`` runs before it checks the keys.
``yolo-spd`` checks every key up front against Ultralytics' current ones, so it asks here first.
"""

from __future__ import annotations


def current_keys(key: str, value) -> dict | None:
    """``{key: value}`` as Ultralytics' current keys (possibly none), with Ultralytics' deprecation warning; None where
    ``key`` is not one of its deprecated keys."""
    from ultralytics.cfg import _handle_deprecation

    mapped = _handle_deprecation({key: value})
    return None if key in mapped else mapped
