"""Bad model YAML rows fail with one line naming the file, the layer and the problem (issue 7, item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

import yolo_spd  # noqa: F401  (registers the modules)
from yolo_spd.model_yaml import ModelYAMLError

GOOD_ROWS = """\
  - [-1, 1, Conv, [16, 3, 2]]     # 0
  - [-1, 1, SPDConv, [32, 3]]     # 1
  - [-1, 1, SCConv, [32, 3, 2]]   # 2
  - [-1, 1, SSDConv, [64, 3, 2]]  # 3
"""


def write_yaml(tmp_path: Path, replace: tuple[str, str] | None = None, head: str = "  - [[2, 3], 1, Detect, [nc]]\n"):
    rows = GOOD_ROWS if replace is None else GOOD_ROWS.replace(*replace)
    file = tmp_path / "broken-model.yaml"
    file.write_text(f"nc: 2\ndepth_multiple: 1.0\nwidth_multiple: 1.0\nbackbone:\n{rows}head:\n{head}")
    return file


def build(file: Path):
    from ultralytics import YOLO

    return YOLO(str(file))


def test_a_good_yaml_builds(tmp_path):
    model = build(write_yaml(tmp_path)).model
    assert [type(m).__name__ for m in model.model] == ["Conv", "SPDConv", "SCConv", "SSDConv", "Detect"]


@pytest.mark.parametrize(
    "replace, head, message",
    [
        (("SCConv, [32, 3, 2]", "SCconv, [32, 3, 2]"), None,
         r"broken-model.yaml: layer 2 \(backbone row 2\): unknown module 'SCconv'; did you mean SCConv"),
        (("SSDConv, [64, 3, 2]", "SSDConv, [64, 3, 2, 0.7, 0.5, 2, 16, true, true, 9]"), None,
         r"layer 3 \(backbone row 3\) SSDConv: takes 1 to 9 arguments \(c2, k=3, s=1, .*\), got 10"),
        (("SPDConv, [32, 3]", "SPDConv, [32, 3.5]"), None,
         r"layer 1 \(backbone row 1\) SPDConv: argument k=3.5 \(float\) must be an integer"),
        (("SCConv, [32, 3, 2]", "SCConv, [32, 3, 2, true]"), None,
         r"layer 2 \(backbone row 2\) SCConv: argument alpha=True \(bool\) must be a number"),
        (("[-1, 1, SSDConv", "[7, 1, SSDConv"), None,
         r"layer 3 \(backbone row 3\) SSDConv: 'from' index 7 does not point to an earlier layer \(layers 0-2"),
        (None, "  - [[2, -9], 1, Detect, [nc]]\n",
         r"layer 4 \(head row 0\) Detect: 'from' index -9 does not point to an earlier layer"),
    ],
)
def test_bad_rows_name_file_layer_and_problem(tmp_path, replace, head, message):
    file = write_yaml(tmp_path, replace, head or "  - [[2, 3], 1, Detect, [nc]]\n")
    with pytest.raises(ModelYAMLError, match=message) as error:
        build(file)
    assert "\n" not in str(error.value)


def test_an_error_inside_a_module_is_traced_to_its_row(tmp_path):
    """SpaceToDepth's own check (declared width must be 4x the input) fails inside parse_model: the row is found."""
    file = write_yaml(tmp_path, ("  - [-1, 1, SSDConv, [64, 3, 2]]  # 3\n",
                                 "  - [-1, 1, SSDConv, [64, 3, 2]]  # 3\n  - [-1, 1, SpaceToDepth, [100]]\n"),
                      head="  - [[2, 3], 1, Detect, [nc]]\n")
    with pytest.raises(ModelYAMLError, match=r"broken-model.yaml: layer 4 SpaceToDepth \[100\]: .*c2") as error:
        build(file)
    assert "\n" not in str(error.value)


def test_every_ultralytics_model_yaml_passes_the_row_checks():
    """No false alarms: the checks accept every model YAML Ultralytics ships."""
    import ultralytics
    from ultralytics.nn import tasks

    from yolo_spd.model_yaml import check_rows
    from yolo_spd.integration.names import yaml_parameters

    files = sorted((Path(ultralytics.__file__).parent / "cfg" / "models").rglob("*.yaml"))
    assert len(files) > 30
    for file in files:
        d = tasks.yaml_model_load(file)
        check_rows(d, vars(tasks), yaml_parameters, file.name)
