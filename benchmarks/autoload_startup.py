"""What yolo_spd's start-up hook costs every Python process: interpreter start with and without its .pth file.

Makes a throwaway venv holding what a wheel install puts there for the hook (``_yolo_spd_autoload.py`` and the .pth
line from setup.py), then times ``python -c pass`` alternately with and without ``yolo_spd_autoload.pth`` and reads
the hook's own import time from ``python -X importtime``. (An editable install imports the hook from the checkout
instead, so there it also costs whatever one file lookup in that folder costs on its file system.) Also confirms that the hooked interpreter imported neither torch nor
yolo_spd. Wall times depend on the machine and its load; compare the two columns of one run, not runs on different
machines.

    python benchmarks/autoload_startup.py [--runs 40]
"""

from __future__ import annotations

import argparse
import ast
import py_compile
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def setup_constants() -> dict:
    tree = ast.parse((REPO / "setup.py").read_text())
    return {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name) and t.id in ("PTH_NAME", "PTH_LINE")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="interpreter starts per variant (default 40)")
    args = parser.parse_args()
    constants = setup_constants()
    with tempfile.TemporaryDirectory() as folder:
        venv.EnvBuilder(with_pip=False).create(folder)
        python = str(Path(folder, "bin", "python"))
        site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
        py_compile.compile(str(shutil.copy(REPO / "_yolo_spd_autoload.py", site)), doraise=True)  # as pip does
        hook, off = site / constants["PTH_NAME"], site / (constants["PTH_NAME"] + ".off")
        off.write_text(constants["PTH_LINE"])

        def start() -> float:
            t = time.perf_counter()
            subprocess.run([python, "-c", "pass"], check=True)
            return time.perf_counter() - t

        times = {"without": [], "with": []}
        for _ in range(args.runs):
            for variant in ("without", "with"):
                (off.rename(hook) if variant == "with" else None)
                times[variant].append(start())
                (hook.rename(off) if variant == "with" else None)
        off.rename(hook)
        own = []
        for _ in range(args.runs):
            err = subprocess.run([python, "-X", "importtime", "-c", "pass"], capture_output=True, text=True).stderr
            line = next(line for line in err.splitlines() if line.rstrip().endswith("_yolo_spd_autoload"))
            own.append(int(line.split("|")[1]))  # cumulative microseconds, the hook and anything it imported
        check = "import sys; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'yolo_spd', 'ultralytics'}))"
        loaded = subprocess.run([python, "-c", check], capture_output=True, text=True, check=True).stdout.strip()
    without, with_hook = (statistics.median(times[v]) * 1e3 for v in ("without", "with"))
    print(f"python {sys.version.split()[0]}, {args.runs} starts each (medians)")
    print(f"interpreter start without the hook: {without:.1f} ms")
    print(f"interpreter start with the hook:    {with_hook:.1f} ms (difference {with_hook - without:+.2f} ms)")
    print(f"-X importtime of _yolo_spd_autoload (cumulative): {statistics.median(own):.0f} us")
    print(f"heavy modules imported by a hooked 'python -c ...': {loaded}")


if __name__ == "__main__":
    main()
