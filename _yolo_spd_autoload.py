"""yolo_spd's start-up hook: register yolo_spd into Ultralytics the first time Ultralytics' model code is imported.

So that stock ``yolo train model=yolov5-spd-n.yaml``, ``yolo predict model=best.pt`` (also under
``ULTRALYTICS_SAFE_LOAD=1``) and ``YOLO("yolov8-spd-s.yaml")`` work without ``import yolo_spd``.

How it works:

1. Installing yolo_spd (a wheel or an editable install) puts ``yolo_spd_autoload.pth`` in site-packages (see
   ``setup.py``). Python runs the one line of every ``.pth`` file there at interpreter start; this one imports this
   module, which imports nothing but ``os`` and ``sys`` (both already loaded at start-up), and calls :func:`install`.
2. :func:`install` puts a finder at the front of ``sys.meta_path``, unless ``YOLO_SPD_AUTOLOAD=0`` (or ``false``,
   ``no``, ``off``). For any module outside Ultralytics the finder answers "not mine" at once, so a process that never
   imports Ultralytics imports neither torch nor yolo_spd.
3. For ``ultralytics`` and its submodules the finder lets the usual finders find the module and counts how many are
   executing. When ``ultralytics.nn.tasks`` (where ``parse_model`` lives) has been imported and the outermost
   Ultralytics import has finished - so no Ultralytics module is half-initialised, which matters because some bind
   names that registration replaces - it removes itself and imports yolo_spd, whose import registers it
   (:func:`yolo_spd.register`). If yolo_spd is being imported already (``import yolo_spd`` imports Ultralytics),
   that import finishes the registration as usual.
4. With an Ultralytics outside yolo_spd's supported range (or another import problem), registration is refused and
   this hook prints one warning line naming the reason; Ultralytics itself keeps working. An explicit
   ``import yolo_spd`` still raises.

This file sits outside the ``yolo_spd`` package on purpose: importing anything inside it would import yolo_spd's
``__init__`` and with it torch, at every interpreter start.
"""

import os
import sys

ENV = "YOLO_SPD_AUTOLOAD"
TRIGGER = "ultralytics.nn.tasks"
OFF = ("0", "false", "no", "off")


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in OFF


class UltralyticsImportWatcher:
    """A ``sys.meta_path`` finder that finds nothing itself: it watches Ultralytics' imports and fires once."""

    def __init__(self):
        self.executing = 0  # Ultralytics modules whose body is running now

    def find_spec(self, name, path=None, target=None):
        if name != "ultralytics" and not name.startswith("ultralytics."):
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    self._watch(spec.loader)
                return spec
        return None

    def _watch(self, loader) -> None:
        original = loader.exec_module

        def exec_module(module):
            self.executing += 1
            try:
                original(module)
            finally:
                self.executing -= 1
                loader.__dict__.pop("exec_module", None)  # the loader is this module's own: restore it
            if self.executing == 0 and TRIGGER in sys.modules:
                self.fire()

        loader.exec_module = exec_module

    def fire(self) -> None:
        uninstall()
        try:
            import yolo_spd  # noqa: F401 - registers into Ultralytics
        except ImportError as error:  # includes UnsupportedUltralyticsError
            if getattr(error, "name", None) == "yolo_spd":  # uninstalled; a stale .pth must not get in the way
                return
            message = " ".join(str(error).split())
            print(f"WARNING yolo_spd is inactive: {message} (set {ENV}=0 to hide this line)", file=sys.stderr)


def install() -> bool:
    """Start watching for Ultralytics' model code (once per process, and only if enabled). True if now watching."""
    if not enabled() or "yolo_spd" in sys.modules:
        return False
    if not any(isinstance(f, UltralyticsImportWatcher) for f in sys.meta_path):
        if TRIGGER in sys.modules:  # too late to watch: Ultralytics is loaded already
            return False
        sys.meta_path.insert(0, UltralyticsImportWatcher())
    return True


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, UltralyticsImportWatcher)]
