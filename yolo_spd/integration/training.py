"""Part 4: training reliability - two trainer callbacks, and the multi-GPU (DDP) launch file.

- Checkpoints (``last.pt``, ``best.pt``, ``epochN.pt``) are written to a temporary file and renamed
  (:func:`yolo_spd.paths.write_atomic`), so a kill mid-write leaves the previous checkpoint intact.
- On resume, ``results.csv`` rows of epochs about to be re-run are dropped (Ultralytics writes the row before the
  checkpoint, so a kill between the two would otherwise duplicate that epoch).

Both join Ultralytics' default trainer callbacks (``ultralytics.utils.callbacks.base.default_callbacks``). The DDP
launch file Ultralytics generates (``ultralytics.utils.dist.generate_ddp_file``) gets an ``import yolo_spd`` line, so
DDP workers rebuild our models.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path
from types import SimpleNamespace

from ..paths import write_atomic

DDP_IMPORT = "    import yolo_spd  # registers yolo_spd's modules in this DDP worker\n"

_saved: dict = {}


class AtomicWritePath(type(Path())):
    """A path whose ``write_bytes`` (what Ultralytics saves checkpoints with) writes a temporary file and renames it."""

    def write_bytes(self, data) -> int:
        write_atomic(self, data)
        return len(data)


def write_checkpoints_atomically(trainer) -> None:
    """on_pretrain_routine_start: route the trainer's checkpoint writes through :class:`AtomicWritePath`."""
    trainer.wdir = AtomicWritePath(trainer.wdir)
    trainer.last, trainer.best = trainer.wdir / trainer.last.name, trainer.wdir / trainer.best.name


def drop_rerun_epochs_from_results(trainer) -> None:
    """on_train_start: after a resume, keep only results.csv rows of epochs the checkpoint already contains."""
    csv_file = Path(trainer.csv)
    if trainer.start_epoch <= 0 or not csv_file.is_file():
        return
    rows = list(csv.reader(io.StringIO(csv_file.read_text(encoding="utf-8"))))
    kept = rows[:1] + [r for r in rows[1:] if r and int(float(r[0])) <= trainer.start_epoch]
    if len(kept) != len(rows):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(kept)
        write_atomic(csv_file, buffer.getvalue())


TRAINER_CALLBACKS = {
    "on_pretrain_routine_start": write_checkpoints_atomically,
    "on_train_start": drop_rerun_epochs_from_results,
}


def ddp_file_importing_us(original):
    def generate_ddp_file(trainer):
        file = Path(original(trainer))
        text = file.read_text(encoding="utf-8")
        main = 'if __name__ == "__main__":\n'
        if main in text and DDP_IMPORT not in text:
            file.write_text(text.replace(main, main + DDP_IMPORT, 1), encoding="utf-8")
        return str(file)

    generate_ddp_file.__wrapped__ = original
    return generate_ddp_file


def apply() -> None:
    from ultralytics.utils import dist
    from ultralytics.utils.callbacks import base

    _saved["generate_ddp_file"] = dist.generate_ddp_file
    dist.generate_ddp_file = ddp_file_importing_us(_saved["generate_ddp_file"])
    for event, callback in TRAINER_CALLBACKS.items():
        base.default_callbacks[event].append(callback)


def undo() -> None:
    from ultralytics.utils import dist
    from ultralytics.utils.callbacks import base

    dist.generate_ddp_file = _saved.pop("generate_ddp_file")
    for event, callback in TRAINER_CALLBACKS.items():
        base.default_callbacks[event].remove(callback)


def unknown_optimizer(name) -> str | None:
    """Why Ultralytics' trainer would refuse ``optimizer=name``, or None: its ``build_optimizer`` run on a one-layer
    model (the list of names lives inside that method, and differs between versions: ``RMSProp`` in 8.4.67,
    ``RMSprop`` later). The trainer raises the same NotImplementedError only after it wrote the run folder and
    ``args.yaml``; this asks before any folder exists. ``auto`` is never refused (it picks from the data)."""
    if name is None or str(name).lower() == "auto":
        return None
    import torch
    from ultralytics.engine.trainer import BaseTrainer
    from ultralytics.utils import LOGGER

    model = torch.nn.Module()
    with torch.random.fork_rng(devices=[]):  # the layer's initialisation must not move the caller's random numbers
        model.model = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1))  # MuSGD looks up the head as model.model[-1]
    trainer = SimpleNamespace(args=SimpleNamespace(lr0=0.01, optimizer=name, warmup_bias_lr=0.0), data={"nc": 1})
    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)  # the probe's "optimizer: SGD(...)" line is not the run's
    try:
        BaseTrainer.build_optimizer(trainer, model, name=str(name))
    except NotImplementedError as error:
        names = re.search(r"\{([^}]*)\}", str(error))
        allowed = ", ".join(sorted(n.strip(" '\"") for n in names.group(1).split(","))) if names else str(error)
        return f"optimizer={name}: not an optimizer Ultralytics' trainer knows; choose from {allowed}"
    except Exception:  # noqa: BLE001 - a probe that does not fit this version's method: the trainer checks the name
        return None
    finally:
        LOGGER.setLevel(level)
    return None
