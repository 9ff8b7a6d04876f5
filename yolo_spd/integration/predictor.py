"""``yolo-spd predict`` announces itself as ``yolo predict`` does: the Ultralytics/device line and the fused model's
summary before the first image.

Ultralytics prints them only when its own command runs: ``Model.predict`` sets its predictor up with
``verbose=is_cli``, and ``is_cli`` is true when ``sys.argv[0]`` ends with ``yolo``, never under ``yolo-spd``.
:func:`announcing_predictor` is handed to ``Model.predict(predictor=...)`` (a public argument): the model's own
predictor class (``Model.task_map``, public) with ``setup_model`` always verbose. Nothing is patched; the only
internal touched is ``BasePredictor.setup_model(model, verbose)``, whose signature is the same in every supported
Ultralytics version (tests/test_run_folders.py checks the printed lines).
"""

from __future__ import annotations


def announcing_predictor(model) -> type:
    """A subclass of ``model``'s predictor (an Ultralytics ``YOLO``) that prints what ``yolo predict`` prints when it
    sets up the model."""
    base = model.task_map[model.task]["predictor"]

    class AnnouncingPredictor(base):
        def setup_model(self, model, verbose: bool = True):
            super().setup_model(model, verbose=True)

    AnnouncingPredictor.__qualname__ = AnnouncingPredictor.__name__ = f"Announcing{base.__name__}"
    return AnnouncingPredictor
