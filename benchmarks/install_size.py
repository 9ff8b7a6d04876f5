"""How much a default ``pip install .`` of yolo_spd downloads and takes on disk, measured without downloading wheels.

    python benchmarks/install_size.py [--index-url URL] [--packages]

pip resolves the project's dependencies (pyproject.toml) for this interpreter and platform with ``install --dry-run
--ignore-installed --report``, which reads only the index pages and the wheels' metadata. The download size of each
wheel it would fetch is the ``size`` the index publishes for that file (the JSON simple API, PEP 691/700: the pages pip
reads anyway). The installed size is measured where the same distribution at the same version is installed in this
interpreter: the size on disk of every file its RECORD lists. Prints a Markdown table by part (torch with its CUDA
libraries, and the rest) and a note naming the platform; ``--packages`` lists every wheel. Machine- and
platform-dependent: other platforms get other torch builds (macOS and Windows wheels carry no CUDA libraries; the
CPU build from PyTorch's index is a fraction of the size).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYPI = "https://pypi.org/simple"
#: torch and what its default Linux build pulls in: NVIDIA's CUDA libraries, the CUDA Python bindings and Triton.
TORCH_PART = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")
PARTS = ("torch and its CUDA libraries", "everything else")


@dataclass(frozen=True)
class Wheel:
    name: str  # as the index spells it, normalised (PEP 503)
    version: str
    filename: str
    download: int | None  # bytes, from the index
    installed: int | None  # bytes on disk here, when the same version is installed

    @property
    def part(self) -> str:
        return PARTS[0] if TORCH_PART.match(self.name) else PARTS[1]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(pyproject: Path = HERE.parent / "pyproject.toml") -> list[str]:
    """The project's install requirements (``[project] dependencies``)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: the installed yolo_spd's own list
        return [r for r in metadata.requires("yolo_spd") or [] if "extra ==" not in r]
    return list(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"])


def resolve(requirements: list[str], index_url: str) -> list[tuple[str, str, str]]:
    """(name, version, wheel URL) of every distribution ``pip install`` would fetch for ``requirements``: pip's dry
    run, ignoring what is installed and every pip configuration file and variable, so that it resolves as on a fresh
    machine asking only ``index_url``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # pip then reads no configuration file at all
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "install", "--dry-run",
                   "--ignore-installed", "--quiet", "--report", str(report), "--index-url", index_url, *requirements]
        out = subprocess.run(command, capture_output=True, text=True, env=env)
        if out.returncode != 0 or not report.is_file():
            last = (out.stderr.strip() or out.stdout.strip() or "no output").splitlines()[-1]
            sys.exit(f"install_size.py: error: pip could not resolve the requirements against {index_url}: {last}")
        items = json.loads(report.read_text())["install"]
    return [(normalise(i["metadata"]["name"]), i["metadata"]["version"], i["download_info"]["url"]) for i in items]


def index_sizes(name: str, index_url: str) -> dict[str, int]:
    """{file name: size in bytes} from the index's JSON page of project ``name`` (PEP 691; ``size`` is PEP 700)."""
    request = urllib.request.Request(f"{index_url.rstrip('/')}/{name}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        files = json.load(response).get("files", [])
    return {f["filename"]: int(f["size"]) for f in files if isinstance(f.get("size"), int)}


def installed_size(name: str, version: str) -> int | None:
    """Bytes on disk of the files ``name`` ``version`` installed here (its RECORD), or None if another version (or
    none) is installed."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    if normalise(dist.version) != normalise(version) or dist.files is None:
        return None
    total = 0
    for file in dist.files:
        path = Path(file.locate())
        total += path.stat().st_size if path.is_file() else (file.size or 0)
    return total


def measure(requirements: list[str], index_url: str) -> list[Wheel]:
    wheels = []
    for name, version, url in resolve(requirements, index_url):
        filename = url.rsplit("/", 1)[-1].split("#", 1)[0]
        wheels.append(Wheel(name, version, filename, index_sizes(name, index_url).get(filename),
                            installed_size(name, version)))
    return wheels


def gigabytes(size: int | None) -> str:
    return "-" if size is None else f"{size / 1e9:.2f} GB"


def _sum(sizes: list[int | None]) -> str:
    """The sum of the known sizes, saying how many of the sizes that is when some are unknown."""
    known = [size for size in sizes if size is not None]
    if not known:
        return "-"
    return gigabytes(sum(known)) + ("" if len(known) == len(sizes) else f" ({len(known)} of {len(sizes)} wheels)")


def parts_table(wheels: list[Wheel]) -> str:
    """Wheels, download and installed size per part and in total."""
    rows = []
    for part in (*PARTS, None):
        chosen = [w for w in wheels if part is None or w.part == part]
        rows.append(f"| {part or '**total**'} | {len(chosen)} | {_sum([w.download for w in chosen])} | "
                    f"{_sum([w.installed for w in chosen])} |")
    return "\n".join(["| part | wheels | download | installed |", "|---|---:|---:|---:|", *rows])


def packages_table(wheels: list[Wheel]) -> str:
    def megabytes(size: int | None) -> str:
        return "-" if size is None else f"{size / 1e6:.1f} MB"

    rows = [f"| {w.name} | {w.version} | {megabytes(w.download)} | {megabytes(w.installed)} |"
            for w in sorted(wheels, key=lambda w: -(w.download or 0))]
    return "\n".join(["| wheel | version | download | installed |", "|---|---|---:|---:|", *rows])


def note(wheels: list[Wheel], index_url: str, pip_version: str) -> str:
    known = sum(w.installed is not None for w in wheels)
    return (f"`pip install .` resolved by pip {pip_version} for Python {platform.python_version()} on "
            f"{platform.system()} {platform.machine()} against {index_url} ({date.today().isoformat()}); download "
            f"sizes from the index, installed sizes measured on this machine for {known} of {len(wheels)} wheels "
            f"(the same versions installed here). Platform-dependent: re-run `python benchmarks/install_size.py`.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="install_size.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--index-url", default=PYPI, help=f"the package index pip resolves against (default {PYPI})")
    parser.add_argument("--packages", action="store_true", help="also list every wheel")
    args = parser.parse_args(argv)
    try:
        wheels = measure(requirements(), args.index_url)
    except OSError as e:  # the index's JSON page (urllib), offline or refused
        sys.exit(f"install_size.py: error: could not read the index {args.index_url}: {e}")
    print(parts_table(wheels))
    if args.packages:
        print()
        print(packages_table(wheels))
    print()
    print(note(wheels, args.index_url, metadata.version("pip")))


if __name__ == "__main__":
    main()
