"""A plain, non-editable wheel ships the configs, dataset YAMLs and the yolo-spd command: bare names resolve from
site-packages in another directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv

import pytest

from .conftest import REPO, child_env

pytestmark = pytest.mark.slow


def test_wheel_installs_and_resolves_bare_config_names_from_site_packages(tmp_path):
    source, dist = tmp_path / "source", tmp_path / "dist"  # a copy: setuptools writes build/ beside the sources
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", "runs"))
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(source)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    wheel = next(dist.glob("yolo_spd-*.whl"))

    # torch and ultralytics come from the outer environment; yolo_spd itself only from the wheel.
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(tmp_path / "venv")
    python = tmp_path / "venv" / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall", str(wheel)],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import yolo_spd\n"
        "from ultralytics import YOLO\n"
        "model = YOLO('yolov5-spd-m.yaml')\n"
        "print(yolo_spd.__file__)\n"
        "print(yolo_spd.config_dir())\n"
        "from yolo_spd.configs import packaged_dataset\n"
        "print(packaged_dataset('coco.yaml'))\n"
        "print(model.model.model[0].conv.conv.out_channels)\n"
    )
    env = child_env()
    env.pop("PYTHONPATH")  # nothing from the repository
    run = subprocess.run([str(python), "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    package_file, configs, coco_yaml, focus_width = run.stdout.split()[-4:]
    site_packages = str(tmp_path / "venv" / "lib")
    assert all(path.startswith(site_packages) for path in (package_file, configs, coco_yaml))
    assert configs.endswith("yolo_spd/cfg") and focus_width == "48"  # m scale: 64 * 0.75
    assert coco_yaml.endswith("yolo_spd/data/coco.yaml")

    command = subprocess.run([str(tmp_path / "venv" / "bin" / "yolo-spd"), "val", "data=coco.yaml", "weights=x.pt"],
                             cwd=elsewhere, env=env, capture_output=True, text=True)
    assert command.returncode == 2, command.stderr  # the packaged coco.yaml was found; its images are not here
    assert "data=coco.yaml: val images not found at" in command.stderr and "never downloads" in command.stderr
