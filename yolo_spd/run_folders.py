"""Where a ``yolo-spd`` run writes its output: one folder per run, named as Ultralytics names its own.

Every mode that writes output (train, val, compare, predict, sliced or not) picks its folder with :func:`run_folder`,
and hands Ultralytics that folder (its ``save_dir``), so everything the run writes, Ultralytics' files and
yolo_spd's, lands in it. The names are the installed Ultralytics' own (``ultralytics.cfg.get_save_dir``):

- without ``project=``: ``<runs_dir>/detect/<name>``, ``runs_dir`` being Ultralytics' setting (``yolo settings``;
  a relative one is relative to the working directory);
- a relative ``project=P``: ``<runs_dir>/detect/P/<name>``; an absolute one: ``P/<name>``;
- ``<name>`` is ``name=`` or the mode's own (``val``, ``predict``, ``compare``, ``train``); when that folder exists
  and ``exist_ok`` is not set, the next free ``<name>-2``, ``<name>-3``, ...
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

from .errors import UsageError


def run_folder(project: str | os.PathLike | None, name: str | None, default_name: str, exist_ok: bool = False, *,
               task: str = "detect") -> Path:
    """Pick a run's folder as Ultralytics would, and create it.

    Args:
        project: ``project=`` as the user gave it, or None (Ultralytics' runs folder).
        name: ``name=`` as the user gave it, or None/empty for ``default_name``.
        default_name: the mode's folder name: ``val``, ``predict``, ``compare``, ``train``, ...
        exist_ok: reuse ``project/name`` if it exists (``exist_ok=``) instead of numbering a new one.
        task: the task folder a relative ``project`` goes under (Ultralytics' ``runs/<task>``).

    Returns:
        The folder, absolute and existing. Give it to Ultralytics as ``save_dir=`` (train, val and predict do;
        compare gives each model's validation a subfolder of it as its ``save_dir``).

    Raises:
        UsageError: the folder cannot be created (a file in its way, no permission, a read-only file system); the
            message names the folder and the reason.
    """
    return _create(project, name, default_name, exist_ok, task)[0]


def created_run_folder(project: str | os.PathLike | None, name: str | None, default_name: str, exist_ok: bool = False,
                       *, task: str = "detect") -> tuple[Path, tuple[Path, ...]]:
    """:func:`run_folder`, and the folders it created: the run folder first (if it was new), then its new parents
    upward; :func:`remove_created` takes them away again."""
    folder, created = _create(project, name, default_name, exist_ok, task)
    return folder, tuple(created)


def remove_created(created: tuple[Path, ...]) -> None:
    """Remove folders :func:`created_run_folder` made: the first with what is in it, then each parent while empty."""
    import shutil

    if created:
        shutil.rmtree(created[0], ignore_errors=True)
    for parent in created[1:]:
        try:
            parent.rmdir()
        except OSError:
            break


#: What Ultralytics' trainer writes into its run folder as it is set up, before it reads the data: a folder holding
#: nothing else is a run that never started (a dataset it refused, a typo), and records nothing worth keeping.
SETUP_ONLY = ("args.yaml",)


@contextlib.contextmanager
def run_output(project: str | os.PathLike | None, name: str | None, default_name: str, exist_ok: bool = False, *,
               task: str = "detect") -> Iterator[Path]:
    """:func:`run_folder` for the duration of one run: if the run fails before anything was written into the folder,
    the folders it created are removed again, so a run that stops at a typo (``source=``) leaves nothing behind and
    does not push the next one to ``<name>-2``; so is a training run's ``args.yaml`` when nothing else was written
    (:data:`SETUP_ONLY`). A folder that existed before (``exist_ok``) is left as it is."""
    folder, created = _create(project, name, default_name, exist_ok, task)
    try:
        yield folder
    except BaseException:
        if created:  # made by this run: the empty folders it made inside go too (compare's per-model folders)
            for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if sub.is_dir() and not sub.is_symlink():
                    with contextlib.suppress(OSError):
                        sub.rmdir()
            if folder.is_dir() and {p.name for p in folder.iterdir()} <= set(SETUP_ONLY):
                for name in SETUP_ONLY:  # a training run that stopped before its first epoch wrote nothing else
                    with contextlib.suppress(FileNotFoundError):
                        (folder / name).unlink()
        for made in created:  # the run folder first, then the parents made for it; only empty ones go
            try:
                made.rmdir()
            except OSError:
                break
        raise


def _create(project, name, default_name: str, exist_ok: bool, task: str) -> tuple[Path, list[Path]]:
    """(the run folder, the folders created for it: itself, then its new parents upward)."""
    from ultralytics.cfg import get_save_dir

    wanted = SimpleNamespace(project=project, name=name or default_name, exist_ok=bool(exist_ok), task=task,
                             mode=default_name)
    for _ in range(100):
        folder = get_save_dir(wanted)
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=bool(exist_ok))
            return folder, missing
        except FileExistsError:
            if folder.is_dir() and not exist_ok:
                continue  # another run took this name between picking and creating it: pick the next one
            reason = "a file of that name is in the way"
        except OSError as error:
            reason = error.strerror or str(error)
            if error.filename and Path(error.filename) != folder:
                reason += f": {error.filename}"
        if project:
            raise UsageError(f"project={project}: cannot create the output folder {folder} ({reason}); give project= "
                             "a folder you can write to")
        raise UsageError(f"cannot create the output folder {folder} ({reason}) in Ultralytics' runs_dir; give "
                         "project= a folder you can write to (or change runs_dir: yolo settings runs_dir=...)")
    raise UsageError(f"cannot create the output folder {folder}: other runs keep taking its name; set name=")
