"""Where yolo_spd keeps generated files, and how it writes them so that no reader ever sees half a file."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Iterable
from pathlib import Path


def cache_dir() -> Path:
    """The user's cache folder for yolo_spd: ``$YOLO_SPD_CACHE``, else the platform's cache location."""
    if os.environ.get("YOLO_SPD_CACHE"):
        return Path(os.environ["YOLO_SPD_CACHE"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "yolo_spd"


@contextlib.contextmanager
def atomic_target(file: Path):
    """Yield a temporary path beside ``file``; when the block succeeds it is flushed to disk and renamed to ``file``,
    else removed. This is the one way yolo_spd writes a file, so a reader never sees half of one.

    The temporary file is created like any new file (mode 0666 less the umask: 0644 under the usual 022), not with
    ``tempfile.mkstemp``'s private 0600, so results sit beside Ultralytics' own files with the same permissions.
    """
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(file)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, file)
    finally:
        tmp.unlink(missing_ok=True)


def _create_temporary(file: Path) -> Path:
    """A new, empty, hidden file beside ``file`` with the mode a new file gets (``0o666 & ~umask``)."""
    for _ in range(100):
        tmp = file.with_name(f".{file.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {file}")


def write_atomic(file: Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``file`` through a temporary file in the same folder and a rename."""
    with atomic_target(file) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8", newline="")
        else:
            tmp.write_bytes(data)
    return Path(file)


def save_figure(fig, file: Path) -> Path:
    """Save a Matplotlib figure as PNG through :func:`atomic_target`, then close it (also when saving fails); laid out
    by ``tight_layout`` unless the figure has its own layout engine."""
    import matplotlib.pyplot as plt

    if fig.get_layout_engine() is None:
        fig.tight_layout()
    try:
        with atomic_target(file) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return Path(file)


ASIDE_PREFIX = ".yolo-spd-aside-"


@contextlib.contextmanager
def restored_if_failed(file: Path, outputs: Iterable[str]):
    """Run a block that writes files named after ``file`` (an export of ``best.pt`` writes ``best.onnx``,
    ``best_openvino_model/``, ... beside it), leaving the folder as it was if the block fails.

    ``outputs`` are the names the block may write over. Those present are set aside first: renamed into a new
    hidden folder beside them, which costs no copy. If the block raises, every path named ``<stem>.*`` or ``<stem>_*``
    that was not there before is removed and the set-aside paths return; if it succeeds, a set-aside path it wrote
    again is dropped (as the block would have overwritten it) and the others return. Other files named after the
    stem (``best_calib.yaml``) stay where they are throughout. A set-aside folder left by a killed process (its pid
    gone) is emptied back first, where its paths have not been written again.
    """
    file = Path(file)
    folder, stem = file.parent, file.stem
    if not stem or not folder.is_dir():  # nothing to name outputs after (a model built from a dict)
        yield
        return

    def named_after() -> set[Path]:
        return {p for p in folder.iterdir() if p.name != file.name and p.name.startswith((f"{stem}.", f"{stem}_"))}

    for stale in folder.glob(f"{ASIDE_PREFIX}{stem}-*"):
        if not _alive(stale.name.rsplit("-", 2)[-2]):
            _put_back(stale, folder, drop_written=False)
    before = named_after()
    outputs = set(outputs)
    wanted = sorted(p for p in before if p.name in outputs)
    aside = folder / f"{ASIDE_PREFIX}{stem}-{os.getpid()}-{secrets.token_hex(4)}"
    kept = []
    try:
        if wanted:
            aside.mkdir()
        for path in wanted:
            try:
                path.rename(aside / path.name)
                kept.append(path)
            except OSError:  # e.g. a folder without write permission: it stays, unguarded, as without this
                pass
    except OSError:  # a folder this process cannot write in: nothing is guarded (the export will say why it fails)
        pass
    try:
        yield
    except BaseException:
        for path in named_after() - (before - set(kept)):  # new, or written over a set-aside one
            _remove(path)
        if aside.is_dir():
            _put_back(aside, folder, drop_written=False)
        raise
    if kept:
        _put_back(aside, folder, drop_written=True)
    elif aside.is_dir():
        aside.rmdir()


def _put_back(aside: Path, folder: Path, drop_written: bool) -> None:
    """Return ``aside``'s paths into ``folder`` and remove ``aside``; a path whose name is taken again in ``folder``
    is dropped if ``drop_written``, else left in ``aside`` (which then stays)."""
    for kept in sorted(aside.iterdir()):
        target = folder / kept.name
        if not (target.exists() or target.is_symlink()):
            kept.rename(target)
        elif drop_written:
            _remove(kept)
    with contextlib.suppress(OSError):
        aside.rmdir()


def _alive(pid: str) -> bool:
    """Whether the process ``pid`` (text) still runs; an unreadable pid counts as alive (its folder is left alone)."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, PermissionError):
        return True
    except OSError:
        return False
    return True


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
