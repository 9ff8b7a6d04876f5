"""The start-up hook (_yolo_spd_autoload): stock Ultralytics knows yolo_spd without `import yolo_spd`.

Each test runs a fresh interpreter that executes the exact line setup.py puts in the installed .pth file, as Python's
site module does at start-up. tests/test_wheel.py checks the same from a real wheel and an editable install.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from .conftest import REPO, child_env


def pth_line() -> str:
    """The line setup.py writes into yolo_spd_autoload.pth."""
    tree = ast.parse((REPO / "setup.py").read_text())
    values = {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
              for t in node.targets if isinstance(t, ast.Name) and t.id in ("PTH_LINE", "PTH_NAME")}
    assert values["PTH_NAME"].endswith(".pth") and values["PTH_LINE"].startswith("import ")
    return values["PTH_LINE"]


def started(code: str, cwd, **env) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter that started the way an installed yolo_spd makes it start."""
    environment = child_env(**env)
    return subprocess.run([sys.executable, "-c", pth_line() + code], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=300)


LOADED = "import sys\nprint(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'yolo_spd', 'ultralytics'}))\n"


def test_a_process_that_never_imports_ultralytics_imports_neither_torch_nor_yolo_spd(tmp_path):
    code = ("import json, pathlib, csv, numpy\n" + LOADED +
            "print([type(f).__name__ for f in sys.meta_path][0])\n")
    out = started(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "UltralyticsImportWatcher"]  # watching, and nothing heavy loaded
    assert out.stderr == ""


def test_yolo_builds_a_packaged_config_by_bare_name_without_importing_yolo_spd(tmp_path):
    code = ("from ultralytics import YOLO\n"
            "model = YOLO('yolov8-spd-s.yaml')\n"
            "print(sorted({type(m).__name__ for m in model.model.modules()} & {'SPDConv', 'SpaceToDepth'}))\n")
    out = started(code, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[-1] == "['SPDConv', 'SpaceToDepth']"


@pytest.mark.parametrize("off", ["0", "false", "OFF"])
def test_yolo_spd_autoload_0_turns_it_off(tmp_path, off):
    code = LOADED + "from ultralytics import YOLO\nYOLO('yolov8-spd-s.yaml')\n"
    out = started(code, tmp_path, YOLO_SPD_AUTOLOAD=off)
    assert out.stdout.splitlines()[0] == "[]"
    assert out.returncode == 1 and "yolov8-spd-s.yaml" in out.stderr and "does not exist" in out.stderr


REGISTERED_ONCE = """
import sys
import yolo_spd
from ultralytics.utils.callbacks import base
from yolo_spd.integration import fonts, training
print(yolo_spd.is_registered())
print(sum(f is training.drop_rerun_epochs_from_results for f in base.default_callbacks["on_train_start"]))
print(all(sys.modules[name].check_font.__wrapped__ for name in fonts.FONT_USERS))
print([type(f).__name__ for f in sys.meta_path].count("UltralyticsImportWatcher"))
"""


@pytest.mark.parametrize("first", ["from ultralytics import YOLO", "import ultralytics.nn.tasks",
                                   "from ultralytics.data.utils import check_det_dataset", "import yolo_spd"])
def test_registers_exactly_once_whatever_imports_ultralytics_first(tmp_path, first):
    """Every part in effect (check_font is bound by name in modules that may still be executing when tasks finishes,
    as in Ultralytics 8.4.67), registered once, and the watcher gone."""
    out = started(first + "\n" + REGISTERED_ONCE, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-4:] == ["True", "1", "True", "0"]


def test_an_unsupported_ultralytics_gets_one_warning_line_and_keeps_working(tmp_path):
    """Stock Ultralytics (its `yolo` entry point) still builds and predicts; yolo_spd says once why it is inactive."""
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "image.jpg"), np.full((64, 64, 3), 127, np.uint8))
    code = ("import ultralytics\n"
            "ultralytics.__version__ = '8.5.1'  # as if a newer Ultralytics were installed\n"
            "from ultralytics.cfg import entrypoint\n"
            "entrypoint('yolo predict model=yolov8n.yaml source=image.jpg imgsz=64 device=cpu save=False')\n"
            "import sys\nfrom ultralytics.nn import tasks\n"
            "print('yolo_spd' in sys.modules, hasattr(tasks, 'SPDConv'))\n")
    out = started(code, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[-1] == "False False" and "image.jpg" in out.stdout  # predicted, unregistered
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("WARNING yolo_spd is inactive: yolo_spd supports ultralytics>=8.4.67,<8.5")
    assert "8.5.1 is installed" in lines[0] and "YOLO_SPD_AUTOLOAD=0" in lines[0]


@pytest.mark.parametrize("flag", ["1", "true"])
def test_a_restricted_load_predicts_without_importing_yolo_spd(tmp_path, flag):
    import cv2
    import numpy as np
    import torch
    from ultralytics import YOLO

    import yolo_spd  # noqa: F401 - this process writes the checkpoint; the child loads it without yolo_spd imported

    model = YOLO("yolov5-spd-n.yaml").model
    torch.save({"model": model, "train_args": {}}, tmp_path / "ours.pt")
    cv2.imwrite(str(tmp_path / "image.jpg"), np.full((64, 64, 3), 127, np.uint8))
    code = ("from ultralytics import YOLO\n"
            "model = YOLO('ours.pt')\n"
            "print(type(model.model.model[2]).__name__, len(model.predict('image.jpg', imgsz=64, verbose=False)))\n")
    out = started(code, tmp_path, ULTRALYTICS_SAFE_LOAD=flag)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["SpaceToDepth", "1"]
    honoured = started("from ultralytics.utils import SAFE_LOAD\nprint(SAFE_LOAD)", tmp_path, ULTRALYTICS_SAFE_LOAD=flag)
    if honoured.stdout.split()[-1] == "True":  # 8.4.67 reads only "true"; later 8.4 releases also "1"
        off = started(code, tmp_path, ULTRALYTICS_SAFE_LOAD=flag, YOLO_SPD_AUTOLOAD="0")
        assert off.returncode != 0 and "references types outside" in off.stderr  # restricted loading is really on
    else:
        assert flag != "true"
