"""``python -m yolo_spd`` is the ``yolo-spd`` command."""

from .cli import entry

entry()
