"""``yolo-spd export`` leaves nothing behind when it fails, and never downloads a calibration dataset (changes
nothing at registration).

:class:`ExportGuard` joins the export through Ultralytics' public ``on_export_start`` callback, which the exporter
runs once its arguments are settled and before it writes anything (``Exporter.__call__`` in every supported
version). There the exporter names the file its outputs are named after (``exporter.file``: the ``.pt``, or a model
YAML's name in the working directory) and the calibration dataset it will read (``exporter.args.data``). Two
things happen at that point:

- If the format calibrates on data (INT8: ``quantize=8``, or a format that is INT8 only, such as ``imx``, ``edgetpu``
  or ``xilinx``) and the user gave no ``data=``, Ultralytics has filled in its default dataset (coco8 or coco128),
  which is a download. The export stops with one line asking for ``data=``.
- The outputs named after that file are guarded (:func:`yolo_spd.paths.restored_if_failed`, with the names
  Ultralytics' export-format table gives them: :func:`output_names`). An export that fails part-way leaves no new
  files and does not overwrite earlier exports. Some formats convert through an ONNX file written
  first, so a missing converter package used to leave a new ``best.onnx``, or to overwrite the user's own.
"""

from __future__ import annotations

import contextlib

from ..errors import UsageError
from ..paths import restored_if_failed


class ExportGuard:
    """Give :meth:`on_export_start` to ``model.add_callback("on_export_start", ...)`` and run ``model.export()``
    inside ``with guard:``.

    Args:
        data_given (bool): Whether the user named the calibration data (``data=``).
    """

    def __init__(self, data_given: bool):
        self.data_given = data_given
        self._stack = contextlib.ExitStack()

    def on_export_start(self, exporter) -> None:
        if exporter.args.data and not self.data_given:
            raise UsageError(
                f"format={exporter.args.format} calibrates INT8 weights on a dataset, and data= is not given; give "
                f"data=YOUR.yaml (images like those the model will see). Ultralytics' default, "
                f"{exporter.args.data}, is a download, and yolo-spd never downloads datasets"
            )
        self._stack.enter_context(restored_if_failed(exporter.file, output_names(exporter.file.stem)))

    def __enter__(self) -> ExportGuard:
        self._stack.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        return self._stack.__exit__(*exc)


def output_names(stem: str) -> set[str]:
    """The names Ultralytics gives exports of ``<stem>.pt`` (its export-format table's suffixes: ``best.onnx``,
    ``best_openvino_model``, ...), and their INT8 forms (``best_int8.onnx``, ``best_int8_openvino_model``)."""
    from ultralytics.engine.exporter import export_formats

    suffixes = [suffix for suffix in export_formats()["Suffix"] if suffix != ".pt"]
    return {f"{stem}{infix}{suffix}" for suffix in suffixes for infix in ("", "_int8")}
