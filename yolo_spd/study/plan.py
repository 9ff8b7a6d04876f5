"""A study: every model x every seed trained with the same settings, scored by the same evaluator, compared in pairs.

:class:`StudyPlan` is the study as one checked value (the CLI builds it once from its keys); :func:`run_study` trains,
resumes or skips each run (:mod:`.runs`), scores each finished run, and rewrites ``study.json``, ``study.md`` and
``study.png`` (:mod:`.report`) after every scored run, so a stopped study still leaves paired, partial results.
Runs go seed by seed (seed 0 of every model, then seed 1, ...): stopping early leaves whole pairs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from ..errors import UsageError
from ..evaluation.dataset import DatasetSplit
from ..evaluation.settings import EvalSettings
from ..paths import write_atomic
from ..slicing.tiles import TileSettings
from . import runs as study_runs

EVAL_SPEC = "study_eval.json"
DEFAULT_RESAMPLES = 1000
#: The largest seed numpy takes, which bounds the training seeds (Ultralytics' trainer seeds numpy with seed + 1 + RANK,
#: the seed itself in a single process, RANK -1) and the bootstrap's.
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class StudyPlan:
    """What a study runs.

    Attributes:
        models: model YAMLs (or ``.pt`` to fine-tune), at least two; the first is the baseline of every paired
            difference.
        seeds: Ultralytics ``seed=`` values; every model trains once per seed.
        data: the dataset YAML as given; its val split is what every run is scored on.
        val: that val split, resolved once.
        train_split: the train split of ``data``, resolved once (None: resolved when the data is prepared).
        train: Ultralytics' training keys, the same for every run (``epochs``, ``imgsz``, ``optimizer``, ...).
        tiles: train on the tiled dataset ``yolo-spd slice`` makes with these settings (None: on ``data`` as it is).
        evaluation: the scoring settings (sizes, backend, ground truth, max_dets, slicing).
        folder: the study's folder (runs, study.json/md/png).
        resamples: bootstrap replicates (:mod:`.stats`); bootstrap_seed: their random seed.
        command: the command line that reproduces the study, recorded in its results.
        control: one of ``models`` (not the first), or None; with it the results add the paired differences of every
            other variant from it (a compute-matched control: does a module beat spending its compute elsewhere?).
        created: the folders the command created for the study (:func:`yolo_spd.run_folders.created_run_folder`),
            removed again if it stops before any run trained.
        checkpoint: which weights of each run are scored: ``best`` (``best.pt``, the epoch Ultralytics picked on the
            val split; the default, as ``yolo train`` reports it) or ``last`` (``last.pt``, the final epoch, free of
            that selection; scored into its own folder, so both scorings are kept).
        contrast: another study's folder, or None; with it the study also writes the contrast of its paired
            difference with that study's (:mod:`.contrast`: ``contrast.json``, ``.md``, ``.tex``).
        contrast_variants: (variant of the ``contrast`` study, variant of this one), or None: each study's first.
    """

    models: tuple[str, ...]
    seeds: tuple[int, ...]
    data: str
    val: DatasetSplit
    train: dict
    tiles: TileSettings | None
    evaluation: EvalSettings
    folder: Path
    resamples: int = DEFAULT_RESAMPLES
    bootstrap_seed: int = 0
    command: str = ""
    val_keys: dict = field(default_factory=dict)
    control: str | None = None
    train_split: DatasetSplit | None = None
    created: tuple[Path, ...] = ()
    checkpoint: str = "best"
    contrast: Path | None = None
    contrast_variants: tuple[str, str] | None = None

    def __post_init__(self):
        if len(self.models) < 2:
            raise UsageError(f"models={','.join(self.models)}: a study compares two or more models "
                             "(the first is the baseline), e.g. models=yolov5nu.yaml,yolov5-spd-n.yaml")
        if len(set(map(study_runs.model_stem, self.models))) < len(self.models):
            raise UsageError(f"models={','.join(self.models)}: two models have the same file name; their runs would "
                             "share folders")
        if self.control is not None and self.control not in self.models[1:]:
            raise UsageError(f"control={self.control}: name one of models= other than the first (the baseline)")
        seeds = self.seeds
        if not seeds or len(set(seeds)) < len(seeds) or not 0 <= min(seeds) <= max(seeds) <= MAX_SEED:
            raise UsageError(f"seeds={','.join(map(str, seeds))}: give distinct whole numbers from 0 to {MAX_SEED} "
                             "(numpy's seed range), e.g. seeds=0,1,2")
        if not 0 <= self.bootstrap_seed <= MAX_SEED:
            raise UsageError(f"bootstrap_seed={self.bootstrap_seed}: give a whole number from 0 to {MAX_SEED}")
        if self.checkpoint not in study_runs.CHECKPOINTS:
            raise UsageError(f"checkpoint={self.checkpoint}: give best (best.pt, the epoch Ultralytics picked on the "
                             "val split; default) or last (last.pt, the final epoch)")
        if self.resamples < 100:
            raise UsageError(f"resamples={self.resamples}: the bootstrap needs at least 100 replicates (default "
                             f"{DEFAULT_RESAMPLES})")

    @property
    def order(self) -> list[tuple[str, int]]:
        """(model, seed) in the order the runs train: seed by seed, models in the given order."""
        return [(model, seed) for seed in self.seeds for model in self.models]

    @property
    def eval_name(self) -> str:
        """The scoring subfolder of each run: ``val``, or ``sliced-val-<size>`` with ``slice=``; ``-last`` added
        with ``checkpoint=last``."""
        name = f"sliced-val-{self.evaluation.slicing.size}" if self.evaluation.slicing else "val"
        return f"{name}-last" if self.checkpoint == "last" else name

    @cached_property
    def val_key(self) -> str:
        """The val split's content key (:func:`yolo_spd.evaluation.ground_truth.content_key`: images, labels, class
        names), with the COCO JSON's bytes when scoring reads one: the same wherever the data lies."""
        import hashlib

        from ..evaluation.ground_truth import content_key

        official = self.val.coco_json is not None and self.evaluation.gt != "labels"
        extra = {"coco_json": hashlib.sha256(self.val.coco_json.read_bytes()).hexdigest()} if official else {}
        return content_key({"val": self.val}, extra)

    def eval_spec(self) -> dict:
        """What decides a run's scores besides its weights: the val data's content (not its path, so a study copied
        beside the same data elsewhere keeps its scoring), every scoring setting, and ``checkpoint: last`` where it
        scores ``last.pt`` (absent for ``best.pt``, as every scoring recorded before the key existed)."""
        return {"val_data": self.val_key, "split": self.val.split, **self.evaluation.as_dict(),
                **{k: v for k, v in sorted(self.val_keys.items())},
                **({"checkpoint": self.checkpoint} if self.checkpoint != "best" else {})}

    def path_eval_spec(self) -> dict:
        """:meth:`eval_spec` as studies recorded it until December 2026: the val YAML's absolute path, not its content.
        A scoring recorded so at this path is still this scoring (and is recorded again in the current form)."""
        spec = self.eval_spec()
        del spec["val_data"]
        return {"data": str(self.val.yaml_file.resolve()), **spec}


@dataclass(frozen=True)
class TrainingData:
    """The dataset every run trains on, resolved once: its YAML and its content key."""

    yaml_file: Path
    key: str
    summary: list[str]
    tiles: dict | None  # the tiled dataset's manifest summary, None without tile=


def training_data(plan: StudyPlan) -> TrainingData:
    """Tile the data (cached by :func:`yolo_spd.slicing.tiles.slice_dataset`) or take it as it is.

    The key a run's spec records is the data's content (:func:`yolo_spd.evaluation.ground_truth.content_key` of the
    source train and val splits, plus the tile settings), not its paths or file times: a run trained on one machine
    is continued or reused on another that holds the same bytes, and is refused where one label differs.
    """
    from ..evaluation.dataset import load_yaml, resolve_split
    from ..evaluation.ground_truth import content_key

    yaml_file, content = load_yaml(plan.data)
    splits = {"train": plan.train_split or resolve_split(plan.data, "train"), "val": plan.val}
    if plan.tiles is None:
        key = content_key(splits, {"channels": content.get("channels")})
        return TrainingData(yaml_file.resolve(), key, [f"Training data: {yaml_file.resolve()}"], None)
    from ..slicing.tiles import TILE_CACHE_VERSION, slice_dataset, summary_lines

    tiled = slice_dataset(plan.data, plan.tiles, splits=splits)
    key = content_key(splits, {"channels": content.get("channels"), "tiles": asdict(plan.tiles),
                               "tiling": TILE_CACHE_VERSION})
    train = tiled.manifest["splits"]["train"]
    return TrainingData(tiled.data_yaml, key, summary_lines(tiled),
                        {"tile": plan.tiles.tile, "overlap": plan.tiles.overlap, "min_visible": plan.tiles.min_visible,
                         "empty": plan.tiles.empty, "format": plan.tiles.format, "train_tiles": train["tiles"],
                         "train_boxes": train["tile_boxes"], "data_yaml": str(tiled.data_yaml)})


def spec_of(plan: StudyPlan, data: TrainingData, model: str, seed: int) -> study_runs.RunSpec:
    """The spec of the run of ``model`` with ``seed`` in ``plan``, on the training ``data``."""
    return study_runs.RunSpec(model, seed, data.yaml_file, data.key, dict(plan.train))


def score_run(plan: StudyPlan, folder: Path) -> tuple[Path, bool]:
    """Score ``folder``'s ``weights/best.pt`` (``last.pt`` with ``checkpoint=last``) on the val split (reused when
    already scored with the same settings);
    returns the scoring folder (``coco_eval.json``, ``coco_predictions.json``) and whether it was scored now."""
    from ultralytics import YOLO

    from ..evaluation import evaluate_model, report, save_detections

    out = folder / plan.eval_name
    spec = plan.eval_spec()
    files = [out / name for name in ("coco_eval.json", "coco_predictions.json", EVAL_SPEC)]
    recorded = json.loads(files[2].read_text(encoding="utf-8")) if all(f.is_file() for f in files) else None
    same = study_runs.without_operational  # device and workers: where and how it was scored, not what
    if recorded is not None and same(recorded) == same(json.loads(json.dumps(spec))):
        return out, False
    if recorded is not None and same(recorded) == same(json.loads(json.dumps(plan.path_eval_spec()))):  # by path
        write_atomic(files[2], json.dumps(spec, indent=1) + "\n")
        return out, False
    weights = folder / "weights" / f"{plan.checkpoint}.pt"
    if not weights.is_file():  # no best.pt: Ultralytics saved none (it always does after a validated epoch)
        weights = folder / "weights" / "last.pt"
    if not weights.is_file():
        wanted = plan.path_eval_spec() if recorded and "data" in recorded else spec  # compared in the record's form
        said = f"it was scored with other settings ({'; '.join(_differences(recorded, wanted))})" if recorded else \
            f"it has no scoring on record ({plan.eval_name}/{EVAL_SPEC} and its results)"
        wanted_file = "last.pt" if plan.checkpoint == "last" else "best.pt or last.pt"
        raise UsageError(f"{folder.name} in {folder.parent} has no weights/{wanted_file} to score, and {said}; "
                         "copy its weights, or score with the settings it was scored with")
    evaluation = evaluate_model(YOLO(str(weights)), plan.val, plan.evaluation, save_dir=str(out), plots=False,
                                **plan.val_keys)
    report.save(evaluation.result, evaluation.save_dir)
    save_detections(evaluation, evaluation.save_dir)
    write_atomic(evaluation.save_dir / EVAL_SPEC, json.dumps(spec, indent=1) + "\n")
    return evaluation.save_dir, True


def run_study(plan: StudyPlan, train: bool = True) -> dict:
    """Train (unless ``train`` is False: score what is finished), score, and rewrite the study's files after every run
    trained or scored now; returns the final results dict (:func:`yolo_spd.study.report.results`)."""
    from . import contrast, report

    if plan.contrast is not None:  # refused before anything trains
        contrast.check_study(plan)
    data = training_data(plan)
    print("\n".join(data.summary))
    plan.folder.mkdir(parents=True, exist_ok=True)
    if _plans_other_runs(plan):  # study.json of fewer runs said "all finished": partial until the new runs are in
        report.write(plan, data, echo=False)
    order, minutes = plan.order, []
    for k, (model, seed) in enumerate(order, start=1):
        spec = spec_of(plan, data, model, seed)
        folder = plan.folder / spec.name
        state = study_runs.run_state(folder)
        if state == "done":  # trained by an earlier call: its own training time, nothing to wait for
            said = f"done; trained in {study_runs.training_minutes(folder):.1f} min"
        elif state == "trained":
            said = "trained, stopped during its final validation; scored as finished"
        else:
            said = f"{state}; minutes per run so far: {', '.join(f'{m:.1f}' for m in minutes) or 'none yet'}"
        print(f"\nStudy {plan.folder.name}: run {k} of {len(order)}: {spec.name} ({said})")
        if train:
            study_runs.train_run(spec, plan.folder, state)
        else:
            study_runs.check_spec(spec, folder)
            if state not in ("done", "trained"):
                continue
        out, scored_now = score_run(plan, folder)
        minutes.append(study_runs.training_minutes(folder))
        if state != "done" or scored_now:
            report.write(plan, data, echo=False)
            print(f"Study {plan.folder.name}: {spec.name} scored ({out / 'coco_eval.json'}); study.json/.md/.png "
                  "updated")
    res = report.write(plan, data)
    if plan.contrast is not None:
        contrast.save(plan)
    return res


def _differences(recorded: dict, wanted: dict) -> list[str]:
    """The scoring settings that differ between a recorded scoring and the wanted one, as key=old->new."""
    data = ("data", "val_data")  # the val data by path (records until December 2026) or by content
    shown = study_runs.shown
    said = [f"{k}={shown(recorded.get(k))}->{shown(wanted.get(k))}" for k in sorted(set(recorded) | set(wanted))
            if recorded.get(k) != wanted.get(k) and k not in data and k not in study_runs.OPERATIONAL_KEYS]
    if [recorded.get(k) for k in data] != [wanted.get(k) for k in data]:
        said.insert(0, "the val data")
    return said


def _plans_other_runs(plan: StudyPlan) -> bool:
    """Whether the study folder's ``study.json`` was written for other runs than ``plan``'s (models or seeds added)."""
    file = plan.folder / "study.json"
    if not file.is_file():
        return False
    settings = json.loads(file.read_text(encoding="utf-8")).get("settings", {})
    return (settings.get("models"), settings.get("seeds")) != (list(plan.models), list(plan.seeds))
