"""benchmarks/install_size.py: what it adds up, offline (its measurement asks the package index, which tests never do)."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO, child_env, load_script

size = load_script("install_size")


def wheel(name, download, installed, version="1.0"):
    return size.Wheel(size.normalise(name), version, f"{name}-{version}-py3-none-any.whl", download, installed)


def test_torch_and_its_cuda_libraries_are_one_part_and_unknown_sizes_are_counted():
    wheels = [wheel("torch", 500e6, 1200e6), wheel("nvidia-cudnn-cu13", 550e6, 950e6), wheel("triton", 250e6, 900e6),
              wheel("cuda-bindings", 8e6, 30e6), wheel("ultralytics", 1e6, 9e6), wheel("opencv_python", 80e6, None)]
    assert [w.part for w in wheels] == [size.PARTS[0]] * 4 + [size.PARTS[1]] * 2
    table = size.parts_table(wheels).splitlines()
    assert table[:2] == ["| part | wheels | download | installed |", "|---|---:|---:|---:|"]
    assert table[2] == "| torch and its CUDA libraries | 4 | 1.31 GB | 3.08 GB |"
    assert table[3] == "| everything else | 2 | 0.08 GB | 0.01 GB (1 of 2 wheels) |"
    assert table[4] == "| **total** | 6 | 1.39 GB | 3.09 GB (5 of 6 wheels) |"
    listed = size.packages_table(wheels).splitlines()
    assert listed[2].startswith("| nvidia-cudnn-cu13 | 1.0 | 550.0 MB |") and listed[-1].endswith("| 1.0 MB | 9.0 MB |")
    assert "| opencv-python | 1.0 | 80.0 MB | - |" in listed


def test_the_requirements_are_the_projects_and_a_failed_resolution_is_one_error_line(tmp_path):
    assert any(r.startswith("torch") for r in size.requirements()) and any(
        r.startswith("ultralytics") for r in size.requirements())
    empty_index = tmp_path / "index"  # a file index with nothing in it: pip fails without any connection
    empty_index.mkdir()
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "install_size.py"), "--index-url",
                          empty_index.as_uri()], cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith(
        "install_size.py: error: pip could not resolve the requirements against file://")
