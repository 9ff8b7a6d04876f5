"""Installed the way users install it: a built wheel, and an editable install, each in a fresh venv.

The venvs see the outer environment's packages (torch, Ultralytics, ...) through a ``.pth`` file listing its
site-packages folders, so the tests work the same from the base interpreter and from a venv (a venv made with
``--system-site-packages`` would see the base interpreter's packages instead). A ``.pth`` line that is a folder only
extends ``sys.path``; the outer environment's own ``.pth`` files (its editable yolo_spd, say) do not run, and the venv's
own site-packages come first, so yolo_spd and its start-up hook come only from what the test installed.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from .conftest import REPO, child_env, make_yolo_dataset

pytestmark = pytest.mark.slow

IGNORED = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", "runs", ".pytest_cache")


def outer_site_folders() -> list[str]:
    """This environment's site-packages folders in import order, also those a .pth added (as CI's second venv does)."""
    on_path = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    folders = [*on_path, *site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return [f for f in dict.fromkeys(folders) if Path(f).is_dir()]


def make_venv(folder: Path) -> Path:
    """A venv without pip or system packages that sees the outer environment's site-packages; returns its python."""
    venv.EnvBuilder(with_pip=False).create(folder)
    python = folder / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_outer_environment.pth").write_text("\n".join(outer_site_folders()) + "\n")
    return python


def pip_install(python: Path, *args: str) -> None:
    """Install with the outer pip into ``python``'s environment, offline and without dependencies."""
    command = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", *args]
    out = subprocess.run(command, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def purelib(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip())


def clean_env(**extra: str) -> dict:
    env = child_env(**extra)
    env.pop("PYTHONPATH")  # nothing from the repository
    return env


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """Python of a fresh venv with the yolo_spd wheel built from this checkout installed."""
    root = tmp_path_factory.mktemp("wheel")
    source, dist = root / "source", root / "dist"  # a copy: setuptools writes build/ beside the sources
    shutil.copytree(REPO, source, ignore=IGNORED)
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(source)],
        capture_output=True, text=True, cwd=root,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    python = make_venv(root / "venv")
    pip_install(python, str(next(dist.glob("yolo_spd-*.whl"))))
    return python


def test_wheel_installs_and_resolves_bare_config_names_from_site_packages(wheel_venv, tmp_path):
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
    run = subprocess.run([str(wheel_venv), "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    package_file, configs, coco_yaml, focus_width = run.stdout.split()[-4:]
    site_packages = str(purelib(wheel_venv))
    assert all(path.startswith(site_packages) for path in (package_file, configs, coco_yaml))
    assert configs.endswith("yolo_spd/cfg") and focus_width == "48"  # m scale: 64 * 0.75
    assert coco_yaml.endswith("yolo_spd/data/coco.yaml")

    command = subprocess.run([str(wheel_venv.parent / "yolo-spd"), "val", "data=coco.yaml", "weights=x.pt"],
                             cwd=tmp_path, env=clean_env(), capture_output=True, text=True)
    assert command.returncode == 2, command.stderr  # the packaged coco.yaml was found; its images are not here
    assert "data=coco.yaml: val images not found at" in command.stderr and "never downloads" in command.stderr

    dist_info = next(purelib(wheel_venv).glob("yolo_spd-*.dist-info"))  # the licence travels with the package
    assert "License-Expression: AGPL-3.0-or-later" in (dist_info / "METADATA").read_text()
    assert (dist_info / "licenses" / "LICENSE").read_text() == (REPO / "LICENSE").read_text()
    assert (REPO / "LICENSE").read_text().split("\n", 2)[:2] == [
        "                    GNU AFFERO GENERAL PUBLIC LICENSE", "                       Version 3, 19 November 2007"]


def test_a_process_without_ultralytics_imports_nothing_of_yolo_spd_or_torch(wheel_venv, tmp_path):
    assert (purelib(wheel_venv) / "yolo_spd_autoload.pth").is_file()
    code = ("import json, csv, numpy, sys\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'yolo_spd', 'ultralytics'}))\n"
            "print(sys.modules['_yolo_spd_autoload'].__file__)\n")
    run = subprocess.run([str(wheel_venv), "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True, text=True)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    loaded, hook = run.stdout.splitlines()
    assert loaded == "[]" and hook.startswith(str(purelib(wheel_venv)))  # the hook is there, and it is all there is


YOLO = "import sys; from ultralytics.cfg import entrypoint; sys.argv[0] = 'yolo'; sys.exit(entrypoint())"  # `yolo`


def test_stock_yolo_trains_vals_predicts_and_exports_yolo_spd_models_without_importing_it(wheel_venv, tmp_path):
    """Ultralytics' own `yolo` command, no `import yolo_spd` anywhere; checkpoints also load with restricted loading."""
    data = make_yolo_dataset(tmp_path / "data", n_train=4, n_val=2, size=64)

    def yolo(*args: str, **env: str) -> subprocess.CompletedProcess:
        out = subprocess.run([str(wheel_venv), "-c", YOLO, *args], cwd=tmp_path, env=clean_env(**env),
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
        return out

    common, runs = ["imgsz=64", "batch=2", "workers=0", "device=cpu"], tmp_path / "runs"
    yolo("train", "model=yolov5-spd-n.yaml", f"data={data}", "epochs=1", "plots=False", f"project={runs}", "name=t",
         *common)
    best = runs / "t" / "weights" / "best.pt"
    assert best.is_file()
    yolo("predict", f"model={best}", f"source={data.parent / 'images' / 'val'}", f"project={runs}", "name=p", *common,
         ULTRALYTICS_SAFE_LOAD="1")
    assert len(list((runs / "p").glob("*.jpg"))) == 2
    val = yolo("val", f"model={best}", f"data={data}", f"project={runs}", "name=v", *common, ULTRALYTICS_SAFE_LOAD="true")
    assert "mAP50-95" in val.stdout + val.stderr
    yolo("export", f"model={best}", "format=torchscript", "imgsz=64")
    assert best.with_suffix(".torchscript").is_file()


def test_an_editable_install_carries_the_start_up_hook_too(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=IGNORED)
    python = make_venv(tmp_path / "venv")
    pip_install(python, "--no-build-isolation", "-e", str(source))
    assert (purelib(python) / "yolo_spd_autoload.pth").is_file()
    code = ("from ultralytics import YOLO\n"
            "model = YOLO('yolov5-spd-n.yaml')\n"
            "import sys\n"
            "print(sys.modules['yolo_spd'].__file__, type(model.model.model[2]).__name__)\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run([str(python), "-c", code], cwd=elsewhere, env=clean_env(), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    package_file, layer = run.stdout.split()[-2:]
    assert package_file == str(source / "yolo_spd" / "__init__.py") and layer == "SpaceToDepth"


def test_every_subpackage_on_disk_is_listed_for_the_wheel():
    """pyproject.toml lists the packages explicitly (cfg/ and data/ are mapped in), so a new subpackage that is not
    listed would work from a checkout and be missing from the wheel."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    from .conftest import REPO

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "yolo_spd").rglob("__init__.py")}
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"
