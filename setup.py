"""Build hooks for the one installed file pyproject.toml cannot declare: ``yolo_spd_autoload.pth``.

The ``.pth`` file starts yolo_spd's autoload hook (``_yolo_spd_autoload.py``) at interpreter start. It must sit at the
top of site-packages, which setuptools has no option for, so (as pytest-cov and pytest-socket ship theirs):

- ``build_py`` writes it into the build folder, so every regular wheel (``pip install .``, ``python -m build``)
  installs it beside the packages;
- ``editable_wheel`` writes it into the editable wheel (``pip install -e .``), which installs no build folder.

Everything else is in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH_NAME = "yolo_spd_autoload.pth"
PTH_LINE = "import _yolo_spd_autoload; _yolo_spd_autoload.install()\n"


class build_py_with_pth(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:  # an editable install gets it from editable_wheel_with_pth
            Path(self.build_lib, PTH_NAME).write_text(PTH_LINE, encoding="utf-8")


class _StrategyWithPth:
    """Wraps setuptools' editable strategy (the editable wheel's finder or path file) to add our .pth file."""

    def __init__(self, strategy):
        self.strategy = strategy

    def __call__(self, wheel, files, mapping):
        self.strategy(wheel, files, mapping)
        wheel.writestr(PTH_NAME, PTH_LINE.encode("utf-8"))

    def __enter__(self):
        self.strategy.__enter__()
        return self

    def __exit__(self, *exc_info):
        return self.strategy.__exit__(*exc_info)


class editable_wheel_with_pth(editable_wheel):
    def _select_strategy(self, *args, **kwargs):
        return _StrategyWithPth(super()._select_strategy(*args, **kwargs))


setup(cmdclass={"build_py": build_py_with_pth, "editable_wheel": editable_wheel_with_pth})
