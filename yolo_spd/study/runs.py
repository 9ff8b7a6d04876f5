"""One study run: a (model, seed) pair trained with the study's shared settings, then scored on the val split.

A run lives in ``<study folder>/<model stem>-seed<k>/``: Ultralytics' own training output (``weights/``,
``results.csv``, ``args.yaml``, plots), then

- ``study_run.json``, written before training starts: the run's *spec* (what decides the trained weights: the model
  file's content, the seed, the training data's content key and every training key). A rerun reuses the folder only
  when the spec is identical, so a finished run is reused only if it is exactly what the command would train (a run
  that left neither a checkpoint nor a ``results.csv`` trained nothing and starts again with the new spec);
- ``done.json``, written when Ultralytics' ``train()`` returns: the run is finished and is skipped from then on
  (a run with ``weights/last.pt`` and no ``done.json`` was interrupted and resumes from ``last.pt``, unless its
  training had ended: a study stopped during Ultralytics' final validation left a ``last.pt`` without optimizer
  state, and that run is marked done);
- ``<eval name>/``: the scoring of ``weights/best.pt`` (``coco_eval.json``, ``coco_predictions.json``), or of
  ``weights/last.pt`` with the study's ``checkpoint=last`` (in ``<eval name>-last/``).

Every file is written through :func:`yolo_spd.paths.write_atomic`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..paths import write_atomic

SPEC_FILE = "study_run.json"
DONE_FILE = "done.json"
RESUMES_FILE = "resumed_at.json"  # the epochs in results.csv each time the study resumed the run
#: Training keys that decide where and how a run computes, not what it is trained to do: Ultralytics lets a resume
#: change the first four (``BaseTrainer.check_resume``), and the study passes them on when it resumes a run. A run
#: trained with other values is reused (a study continued on another machine, ``workers=`` lowered for memory);
#: ``device`` and ``workers`` change the floating-point and data-loader random streams, so the report names the runs
#: trained with values other than the command's (:func:`operational_differences`).
OPERATIONAL_KEYS = ("device", "workers", "plots", "save_period", "verbose")
RESUME_KEYS = OPERATIONAL_KEYS[:4]
CHECKPOINTS = ("best", "last")  # the study's checkpoint=: which of a run's weights it scores
#: The results.csv column Ultralytics picks ``best.pt`` by: its fitness is this metric alone on the supported versions
#: (``DetMetrics.fitness`` weighs [P, R, mAP50, mAP50-95] as [0, 0, 0, 1]; tests/test_study.py checks it), and an
#: epoch as fit as the best saves ``best.pt`` again (``BaseTrainer.save_model``), so of equals the later one is kept.
FITNESS_COLUMN = "metrics/mAP50-95(B)"


def model_stem(model: str) -> str:
    """A model's name in the study: its file stem (``yolov5-spd-n`` for ``cfg/yolov5-spd-n.yaml``)."""
    return Path(str(model)).stem


def run_name(model: str, seed: int) -> str:
    """A run's folder name: ``<model stem>-seed<seed>``."""
    return f"{model_stem(model)}-seed{seed}"


def model_identity(model: str) -> dict:
    """What identifies a model for reuse: its stem and the SHA-256 of its file (a path, a packaged config or an
    Ultralytics config), so a renamed path to the same YAML matches and an edited YAML does not."""
    from ..model_source import model_file

    file = model_file(model)
    digest = hashlib.sha256(file.read_bytes()).hexdigest() if file is not None else None
    return {"name": model_stem(model), "sha256": digest}


@dataclass(frozen=True)
class RunSpec:
    """Everything that decides what a run trains.

    Attributes:
        model (str): the model as given (a YAML path or name, or a ``.pt``).
        seed (int): Ultralytics' ``seed=``.
        data (Path): the dataset YAML it trains on (the tiled one with ``tile=``).
        data_key (str): the training data's content key (:func:`yolo_spd.study.plan.training_data`).
        train (dict): every other Ultralytics training key, the same for all runs of a study.
    """

    model: str
    seed: int
    data: Path
    data_key: str
    train: dict

    @property
    def name(self) -> str:
        """The run's folder name (:func:`run_name`)."""
        return run_name(self.model, self.seed)

    def as_dict(self) -> dict:
        """The spec as ``study_run.json`` holds it (the model by content, the training keys sorted)."""
        return {"model": model_identity(self.model), "seed": self.seed, "data_key": self.data_key,
                "train": dict(sorted(self.train.items()))}


def training_kwargs(spec: RunSpec, study_folder: Path) -> dict:
    """The keyword arguments of ``YOLO(spec.model).train(...)`` for this run."""
    return {**spec.train, "data": str(spec.data), "seed": spec.seed, "project": str(study_folder),
            "name": spec.name, "exist_ok": True}


def run_state(folder: Path) -> str:
    """``done``; ``interrupted`` (``weights/last.pt`` can be resumed); ``trained`` (its ``last.pt`` is a finished
    training's: stopped during Ultralytics' final validation, before ``done.json``); or ``new``."""
    if (folder / DONE_FILE).is_file():
        return "done"
    last = folder / "weights" / "last.pt"
    if last.is_file():
        from ultralytics import YOLO

        from ..model_source import is_resumable

        try:
            checkpoint = YOLO(str(last))
        except Exception:  # unreadable (a kill while Ultralytics wrote it): the resume will say so, as it did
            return "interrupted"
        return "interrupted" if is_resumable(checkpoint) else "trained"
    return "new"


def check_spec(spec: RunSpec, folder: Path) -> None:
    """Refuse to reuse ``folder`` when it holds a run trained differently from ``spec``. A run that left neither a
    checkpoint nor a ``results.csv`` (which Ultralytics writes after every epoch, also with ``save=False``) failed or
    was stopped before its first epoch ended: it trained nothing and starts again with ``spec``."""
    file = folder / SPEC_FILE
    if not folder.exists() or (not file.is_file() and not any(folder.iterdir())):
        return
    if not file.is_file():
        raise UsageError(f"{folder} exists but is not a study run (no {SPEC_FILE}); use another name= for the study")
    kept = CHECKPOINT_KEYS if Path(str(spec.model)).suffix == ".pt" else ()
    recorded = _design(_without_defaults(json.loads(file.read_text(encoding="utf-8")), kept))
    wanted = _design(_without_defaults(spec.as_dict(), kept))
    trained = any((folder / name).is_file() for name in (DONE_FILE, "weights/last.pt", "results.csv"))
    if recorded != wanted and trained:
        changes = "; ".join(_differences(recorded, wanted))
        raise UsageError(f"{folder.name} in {folder.parent} was trained differently ({changes}); "
                         "continue it with the same settings, or give the study another name=")


#: The training keys a ``.pt`` model brings from its checkpoint (Ultralytics' ``Model._reset_ckpt_args``, less
#: ``data`` and ``task``, which a study sets): left unset, they take the checkpoint's value, not the default.
CHECKPOINT_KEYS = ("imgsz", "single_cls")


def _design(spec: dict) -> dict:
    """``spec`` without its :data:`OPERATIONAL_KEYS`: what must be the same for a run to be reused."""
    return {**spec, "train": without_operational(spec["train"])} if "train" in spec else spec


def without_operational(keys: dict) -> dict:
    """``keys`` without the :data:`OPERATIONAL_KEYS` (also what a scoring record is compared by: device and workers
    change where and how a run is scored, not its scores)."""
    return {k: v for k, v in keys.items() if k not in OPERATIONAL_KEYS}


def operational_differences(spec_train: dict, folder: Path) -> dict:
    """The :data:`OPERATIONAL_KEYS` the run in ``folder`` started with (its ``study_run.json``, which a resume leaves
    as it was) where they differ from ``spec_train``'s (the command's), as ``{key: recorded value}`` (None: left
    unset); {} where the run has no spec on record."""
    file = folder / SPEC_FILE
    if not file.is_file():
        return {}
    recorded = json.loads(file.read_text(encoding="utf-8")).get("train", {})
    # a key written out at Ultralytics' default is the key left unset, as for reuse
    old, new = (_without_defaults({"train": train})["train"] for train in (recorded, spec_train))
    return {k: recorded.get(k) for k in OPERATIONAL_KEYS if old.get(k) != new.get(k)}


def shown(value) -> str:
    """A key's value as a user writes it on the command line (``unset`` for a key left unset, or written out at
    Ultralytics' default, which is the same run)."""
    return "unset" if value is None else str(value)


def _without_defaults(spec: dict, kept: tuple[str, ...] = ()) -> dict:
    """``spec`` without the training keys set to Ultralytics' default value: ``patience=100`` written out trains what
    leaving it unset trains, so the two specs are the same run. Keys in ``kept`` stay (a ``.pt``'s
    :data:`CHECKPOINT_KEYS`: its unset ``imgsz`` is the checkpoint's, so ``imgsz=640`` may train another run)."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    train = {k: v for k, v in spec.get("train", {}).items()
             if k in kept or k not in DEFAULT_CFG_DICT or v != DEFAULT_CFG_DICT[k]}
    return {**spec, "train": train} if "train" in spec else spec


def _differences(recorded: dict, wanted: dict) -> list[str]:
    """What differs between a recorded spec and the wanted one, in the user's terms."""
    said = []
    for key in wanted:
        if recorded.get(key) == wanted[key]:
            continue
        if key == "train":
            old, new = recorded.get("train", {}), wanted["train"]
            said += [f"{k}={shown(old.get(k))}->{shown(new.get(k))}" for k in sorted(set(old) | set(new))
                     if old.get(k) != new.get(k)]
        elif key == "data_key":
            said.append("the training data: a train or val image, label or tile setting differs")
        elif key == "model":
            said.append(f"the model file {wanted['model'].get('name')} has other content")
        else:
            said.append(f"{key}={shown(recorded.get(key))}->{shown(wanted[key])}")
    return said


def train_run(spec: RunSpec, study_folder: Path, state: str | None = None) -> Path:
    """Train, resume or skip one run; return its folder. ``state`` is its :func:`run_state` where the caller has it
    (telling an interrupted run from a finished one loads ``last.pt``)."""
    from ultralytics import YOLO

    folder = study_folder / spec.name
    check_spec(spec, folder)
    state = state or run_state(folder)
    if state == "done":
        return folder
    start = time.time()
    if state == "trained":
        pass  # every epoch ran; what was stopped is the validation that scoring repeats anyway
    elif state == "interrupted":
        _record_resume(folder)  # where and how it computes may change on resume, as Ultralytics allows
        YOLO(str(folder / "weights" / "last.pt")).train(resume=True, **resume_overrides(spec))
    else:
        write_atomic(folder / SPEC_FILE, json.dumps(spec.as_dict(), indent=1) + "\n")
        YOLO(spec.model).train(**training_kwargs(spec, study_folder))
    write_atomic(folder / DONE_FILE, json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                 "seconds_last_session": round(time.time() - start),
                                                 "resumed": state == "interrupted"}) + "\n")
    return folder


def resume_overrides(spec: RunSpec) -> dict:
    """The :data:`RESUME_KEYS` a resumed run takes from the command: each as given, or Ultralytics' default where the
    command leaves it unset (a resume keeps the checkpoint's value of any key it is not given, so a run started with
    ``device=0`` would look for that GPU on the machine that continues it without ``device=``)."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return {k: spec.train.get(k, DEFAULT_CFG_DICT[k]) for k in RESUME_KEYS}


def _resumes(folder: Path) -> list[int]:
    """How many epochs ``results.csv`` held each time the study resumed the run (:data:`RESUMES_FILE`)."""
    file = folder / RESUMES_FILE
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else []


def _record_resume(folder: Path) -> None:
    """Add the epochs finished so far to :data:`RESUMES_FILE`, before the run resumes: the resumed session's epoch
    times start again from 0, which is not always a visible drop (a resume after epoch 1 can start above it). The
    session starts after the epoch ``last.pt`` holds, which is one behind results.csv when the run was killed between
    writing an epoch's row and its checkpoint (that row is then trained and written again)."""
    done = len(_epoch_times(folder)) if (folder / "results.csv").is_file() else 0
    saved = _checkpoint_epochs(folder / "weights" / "last.pt")
    write_atomic(folder / RESUMES_FILE, json.dumps([*_resumes(folder), done if saved is None else min(done, saved)])
                 + "\n")


def _checkpoint_epochs(last: Path) -> int | None:
    """How many epochs the training checkpoint ``last`` holds (its ``epoch`` + 1); None where it cannot be read."""
    import torch

    try:
        return int(torch.load(last, map_location="cpu", weights_only=False)["epoch"]) + 1
    except Exception:  # noqa: BLE001 - no checkpoint, or none Ultralytics could resume either: results.csv decides
        return None


def _epoch_times(folder: Path) -> list[float]:
    """The ``time`` column of a run's ``results.csv``: seconds since the start of the session that ran each epoch.
    Ultralytics restarts it when a run resumes."""
    return [float(row["time"]) for row in _results(folder)]


def _results(folder: Path) -> list[dict]:
    """The rows of a run's ``results.csv`` (Ultralytics writes one per epoch, its columns padded with spaces)."""
    import csv

    with open(folder / "results.csv", newline="") as f:
        return list(csv.DictReader(f, skipinitialspace=True))


def scored_epoch(folder: Path, checkpoint: str = "best") -> tuple[int | None, int]:
    """(the epoch the scored checkpoint holds, the epochs trained), 1-based, from the run's ``results.csv``.

    ``best.pt`` is the epoch of highest :data:`FITNESS_COLUMN` (the last of equals, which Ultralytics saves again; a
    tie in results.csv's 5 decimals is taken for one), which Ultralytics measured on the study's own val images (their
    tiles, with ``tile=``): a selection that favours every run a little and that neither of the study's intervals
    counts. ``last.pt`` is the last epoch. An epoch trained twice (a run killed between writing its row and its
    checkpoint) counts once, as its later row. The epoch is None where no row has the column (a run whose every
    validation was skipped); a NaN row is never the best."""
    rows = {int(float(row["epoch"])): row for row in _results(folder)}  # a later row of an epoch replaces it
    epochs = max(rows, default=0)
    if checkpoint == "last":
        return epochs or None, epochs
    fitness = {e: float(r[FITNESS_COLUMN]) for e, r in sorted(rows.items()) if r.get(FITNESS_COLUMN) not in (None, "")}
    fitness = {e: f for e, f in fitness.items() if f == f}  # NaN: never fitter, never equal
    return (max(reversed(fitness), key=fitness.get) if fitness else None), epochs


def was_resumed(folder: Path) -> bool:
    """Whether a run was resumed after an interruption: ``done.json`` says so, or its epoch times restart (the only
    trace in runs finished before ``done.json`` recorded it; a resume after an early epoch can leave none). Ultralytics
    restores the weights, optimizer and epoch on resume but not the random state, so a resumed run differs from an
    uninterrupted one with the same seed."""
    done = folder / DONE_FILE
    if _resumes(folder) or (done.is_file() and json.loads(done.read_text(encoding="utf-8")).get("resumed")):
        return True
    times = _epoch_times(folder)
    return any(later < earlier for earlier, later in zip(times, times[1:]))


def training_minutes(folder: Path) -> float:
    """Wall-clock minutes of a run's epochs from its ``results.csv``. Ultralytics restarts the ``time`` column when a
    run resumes, so this sums the last value of each session: a session ends before each resume the study recorded
    (:data:`RESUMES_FILE`) and wherever the time drops (a resume made outside the study)."""
    times = _epoch_times(folder)
    starts = {k for k in _resumes(folder) if 0 < k < len(times)}
    starts |= {k for k in range(1, len(times)) if times[k] < times[k - 1]}
    return (sum(times[k - 1] for k in starts) + (times[-1] if times else 0.0)) / 60
