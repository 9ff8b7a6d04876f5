"""A study's results: ``study.json`` (everything), ``study.md`` (the report, its tables in Markdown), ``study.tex``
(the same tables in LaTeX, to paste into a paper), ``study.csv`` (one row per run) and ``study_paired.csv`` (every
paired difference, long form), and ``study.png`` (the paired differences with both intervals), rewritten after every
scored run.

Headline rule: a difference is *resolved* when both intervals exclude 0 on the same side (:data:`RULE`). The paired
image bootstrap (:mod:`.stats`) counts the sampling of the val images, which a seed-only interval cannot; the seed-level
t interval counts the spread between training runs, which a bootstrap over the images of fixed runs cannot. Either
alone over-claims when the other's noise is the larger, and on small val splits either can be. For each variant and
metric the *resolvable difference* is the larger of the two half-widths: a true difference smaller than that is not
told apart from none by this design (these val images, these seeds). A number that rests on fewer than
:data:`FEW_INSTANCES` val instances (a class, or a size range) is flagged, since a handful of boxes can swing it; and
since COCO's metrics average over classes, each class with at least that many instances of the focus range is also
paired on its own (``paired_classes``; at most :data:`MAX_CLASS_SCOPES`), when more than one class has val instances.
"""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..markdown import table
from ..paths import save_figure, write_atomic
from . import runs as study_runs
from . import stats

FEW_INSTANCES = 30
#: Below this many val images, the report says the image bootstrap is coarse: it resamples so few images that its
#: interval moves in large steps and can exclude 0 on the chance of which images were drawn.
FEW_IMAGES = 20
FLAG = "†"
MODEL_COLUMNS = ("AP", "AP50", "AP_{s}", "AP_{m}", "AR_{s}")


def focus_range(labels: tuple[str, ...]) -> str:
    """The size range the paired metrics are about: ``small`` when the ranges have one, else the first."""
    return "small" if "small" in labels else labels[0]


def paired_metrics(labels: tuple[str, ...]) -> tuple[str, ...]:
    """The metrics every paired difference is computed for: AP, AP50, and AP and AR of the focus size range."""
    s = focus_range(labels)
    return ("AP", "AP50", f"AP_{s}", f"AR_{s}")


def _columns(labels: tuple[str, ...]) -> list[str]:
    s = focus_range(labels)
    m = labels[labels.index(s) + 1] if labels.index(s) + 1 < len(labels) else None
    return [c.format(s=s, m=m) for c in MODEL_COLUMNS if m is not None or "{m}" not in c]


def instance_counts(truth_coco: dict, ranges) -> dict:
    """Val instances (crowd boxes excluded) in total, per size range and per class (each with its ranges). A range
    includes both its bounds, as COCOeval's does: a box of exactly 32 x 32 px counts as small and as medium."""
    names = {c["id"]: c.get("name", str(c["id"])) for c in truth_coco["categories"]}
    bounds = dict(zip(ranges.labels, ranges.area_ranges()[1:]))
    total = {"all": 0, **dict.fromkeys(ranges.labels, 0)}
    per_class = {cid: {"name": names[cid], "all": 0, **dict.fromkeys(ranges.labels, 0)} for cid in sorted(names)}
    for ann in truth_coco["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        row = per_class[ann["category_id"]]
        row["all"] += 1
        total["all"] += 1
        for label, (low, high) in bounds.items():
            if low <= ann["area"] <= high:  # both ends, as COCOeval's range test
                row[label] += 1
                total[label] += 1
    return {"images": len(truth_coco["images"]), "total": total, "per_class": list(per_class.values())}


def model_costs(plan) -> dict[str, dict]:
    """What each model costs, from its YAML built for the data's classes: parameters, and GFLOPs of one image at the
    training size (a tile's, with tiling; each sliced window costs that much), counted as ``yolo-spd info`` counts
    them. The same on every machine, unlike training minutes."""
    from ultralytics.nn.tasks import DetectionModel

    from ..info import gflops, quiet_ultralytics
    from ..model_source import architecture

    imgsz = int(plan.train.get("imgsz", 640))
    costs = {}
    with quiet_ultralytics():
        for model in plan.models:
            built = DetectionModel(architecture(model), nc=len(plan.val.names), verbose=False)
            costs[study_runs.model_stem(model)] = {"params": sum(p.numel() for p in built.parameters()),
                                                   "gflops": round(gflops(built, imgsz), 4), "imgsz": imgsz}
    return costs


def scored_runs(plan) -> tuple[list[dict], list[str]]:
    """(a row per scored run of ``plan``: model stem, seed, metrics, per class, training minutes, ...; the names of
    the runs not yet trained and scored)."""
    rows, missing = [], []
    for model, seed in plan.order:
        folder = plan.folder / study_runs.run_name(model, seed)
        scored = folder / plan.eval_name / "coco_eval.json"
        if not scored.is_file() or study_runs.run_state(folder) not in ("done", "trained"):
            missing.append(folder.name)
            continue
        evaluation = json.loads(scored.read_text(encoding="utf-8"))
        epoch, epochs = study_runs.scored_epoch(folder, plan.checkpoint)
        rows.append({"model": study_runs.model_stem(model), "seed": seed, "metrics": evaluation["metrics"],
                     "per_class": [{k: v for k, v in c.items() if k != "class"} for c in evaluation["per_class"]],
                     "train_minutes": round(study_runs.training_minutes(folder), 2),
                     "resumed": study_runs.was_resumed(folder), "scored_epoch": epoch, "epochs": epochs,
                     "eval": str(scored.relative_to(plan.folder)),
                     **({"trained_with": other} if (other := study_runs.operational_differences(plan.train, folder))
                        else {})})
    return rows, missing


MAX_CLASS_SCOPES = 6


def class_scopes(val: dict, labels: tuple[str, ...]) -> list[int]:
    """Indices (in ``val["per_class"]`` order, which is COCO's category order) of the classes that get paired
    differences of their own: those with at least :data:`FEW_INSTANCES` val instances in the focus range, when more
    than one class has val instances (with one, that class alone is the whole); at most :data:`MAX_CLASS_SCOPES`,
    those with the most such instances, so that a dataset of many classes keeps readable tables."""
    s = focus_range(labels)
    rows = val["per_class"]
    present = [k for k, row in enumerate(rows) if row["all"] > 0]
    if len(present) < 2:
        return []
    counted = [k for k in present if rows[k][s] >= FEW_INSTANCES]
    return sorted(sorted(counted, key=lambda k: -rows[k][s])[:MAX_CLASS_SCOPES])


def scope_names(val: dict, classes: list[int]) -> dict[int, str]:
    """Each paired class's name in the results, made unique with its index where two classes share a name."""
    names = [row["name"] for row in val["per_class"]]
    return {k: names[k] if names.count(names[k]) == 1 else f"{names[k]} (class {k})" for k in classes}


def bootstrap_replicates(plan, rows: list[dict], truth, classes: tuple[int, ...] = ()) -> dict:
    """Each scored run's metrics on every bootstrap replicate (the same draws for every run), over all classes and for
    each class of ``classes`` alone: {(model, seed): {scope: (values on the val split as it is, [resamples, metrics])}},
    scope ``None`` for all classes, else the class index."""
    labels = ("all", *plan.evaluation.sizes.labels)
    metrics = paired_metrics(plan.evaluation.sizes.labels)
    n_images = len(truth.coco["images"])
    counts = np.vstack([np.ones((1, n_images), int), stats.bootstrap_counts(n_images, plan.resamples,
                                                                            plan.bootstrap_seed)])
    out = {}
    for row in rows:
        folder = plan.folder / f"{row['model']}-seed{row['seed']}" / plan.eval_name
        detections = json.loads((folder / "coco_predictions.json").read_text(encoding="utf-8"))
        matches = stats.per_image_matches(truth.coco, detections, plan.evaluation.sizes.area_ranges(), labels,
                                          max_det=plan.evaluation.max_dets)
        scopes = stats.replicate_scopes(matches, counts, metrics, tuple(classes))
        out[(row["model"], row["seed"])] = {scope: (dict(zip(metrics, values[0].tolist())), values[1:])
                                            for scope, values in scopes.items()}
    return out


RULE = ("resolved when the seed t interval and the image bootstrap interval both exclude 0 on the same side: the t "
        "interval counts the spread between training runs on these val images, the bootstrap counts the sampling of "
        "the val images for these runs, and each is blind to what the other counts")


def resolved(entry: dict) -> bool:
    """Whether one paired difference is resolved (:data:`RULE`); never with fewer than two seeds."""
    t, boot = entry["t"]["ci"], entry["bootstrap"]["ci"]
    if t is None or boot is None:
        return False
    return (t[0] > 0 and boot[0] > 0) or (t[1] < 0 and boot[1] < 0)


def paired(plan, rows: list[dict], replicates: dict, images: int, baseline: str | None = None,
           scope: int | None = None) -> dict:
    """Every other model's paired differences from ``baseline`` (a model YAML of the plan; default: the first), over
    all classes or, with ``scope``, on that class index alone; ``images``: the val images each replicate draws."""
    metrics = paired_metrics(plan.evaluation.sizes.labels)
    models = [study_runs.model_stem(m) for m in plan.models]
    if scope is None:
        by = {(r["model"], r["seed"]): r["metrics"] for r in rows}
    else:
        by = {key: scopes[scope][0] for key, scopes in replicates.items()}
    draws = {key: scopes[scope][1] for key, scopes in replicates.items()}
    baseline = models[0] if baseline is None else study_runs.model_stem(baseline)
    out = {"baseline": baseline, "metrics": list(metrics), "headline": "both", "rule": RULE,
           "t_method": "per seed d = variant - baseline; mean(d) +- t(0.975, n-1) sd(d)/sqrt(n); counts seeds only",
           "bootstrap_method": (f"paired percentile bootstrap over val images: {plan.resamples} replicates of "
                                f"{images} draws, "
                                f"numpy default_rng({plan.bootstrap_seed}); every run scored on the same draw; "
                                "statistic = mean over seeds of (variant - baseline); counts the val images, not seeds"),
           "variants": {}}
    for variant in (m for m in models[1:] if m != baseline):
        seeds = sorted(s for (m, s) in by if m == variant and (baseline, s) in by)
        boot = stats.paired_bootstrap({s: draws[(baseline, s)] for s in seeds},
                                      {s: draws[(variant, s)] for s in seeds}, metrics)
        entry = {}
        for metric in metrics:
            diffs = [by[(variant, s)][metric] - by[(baseline, s)][metric] for s in seeds]
            entry[metric] = {"seeds": seeds, "differences": [round(d, 6) for d in diffs],
                             "mean": round(statistics.fmean(diffs), 6) if diffs else None,
                             "t": _rounded(stats.t_interval(diffs)), "bootstrap": _rounded(boot[metric])}
            entry[metric]["resolved"] = resolved(entry[metric])
        out["variants"][variant] = entry
    return out


def _rounded(entry: dict) -> dict:
    return {k: (None if v is None else [round(x, 6) for x in v] if isinstance(v, list) else
                round(v, 6) if isinstance(v, float) else v) for k, v in entry.items()}


def results(plan, data) -> dict:
    """The study's results as one dict (what ``study.json`` holds)."""
    from ..evaluation import build_ground_truth

    rows, missing = scored_runs(plan)
    truth = build_ground_truth(plan.val, plan.evaluation.gt)
    val = instance_counts(truth.coco, plan.evaluation.sizes)
    classes = class_scopes(val, plan.evaluation.sizes.labels)
    replicates = bootstrap_replicates(plan, rows, truth, tuple(classes)) if rows else {}

    images = len(truth.coco["images"])

    def pairs(scope: int | None) -> dict:
        return {"paired": paired(plan, rows, replicates, images, scope=scope),
                **({"paired_control": paired(plan, rows, replicates, images, plan.control, scope)}
                   if plan.control else {})}

    return {
        "command": plan.command,
        "partial": bool(missing),
        "planned_runs": len(plan.order),
        "missing": missing,
        "settings": {"models": list(plan.models), "seeds": list(plan.seeds), "data": str(plan.data),
                     "train": dict(plan.train), "tiles": data.tiles, "evaluation": plan.eval_spec(),
                     "resamples": plan.resamples, "bootstrap_seed": plan.bootstrap_seed,
                     "checkpoint": plan.checkpoint},
        "val": val,
        "cost": model_costs(plan),
        "runs": rows,
        **pairs(None),
        **({"control": study_runs.model_stem(plan.control)} if plan.control else {}),
        "paired_classes": {name: pairs(k) for k, name in scope_names(val, classes).items()} if rows else {},
    }


def _few(n: int) -> str:
    """An instance count, flagged when fewer than :data:`FEW_INSTANCES`."""
    return f"{n}{FLAG}" if n < FEW_INSTANCES else str(n)


def _cell(value: float | None) -> str:
    return "-" if value is None or value < 0 else f"{value:.3f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _interval(entry: dict) -> str:
    return "n<2" if entry.get("ci") is None else f"[{entry['ci'][0]:+.3f}, {entry['ci'][1]:+.3f}]"


@dataclass
class Table:
    """One table of the report: its ``headers`` and ``rows`` of cells (Markdown, as :func:`yolo_spd.markdown.table`
    takes them), the paragraph that introduces it in ``study.md`` (``intro``, also its LaTeX caption unless
    ``caption`` gives a shorter one) and a LaTeX label suffix (``name``)."""

    headers: list[str]
    rows: list[list]
    name: str
    intro: str | None = None
    caption: str | None = None


def document(res: dict) -> list[str | Table]:
    """The report in reading order: paragraphs (str; "" is a blank line) and :class:`Table` objects, which
    :func:`markdown` and :func:`latex` render."""
    settings, val, runs = res["settings"], res["val"], res["runs"]
    labels = tuple(k for k in val["total"] if k != "all")
    models = [study_runs.model_stem(m) for m in settings["models"]]
    s = focus_range(labels)
    status = (f"**Partial**: {len(runs)} of {res['planned_runs']} runs finished and scored; missing: "
              f"{', '.join(res['missing'])}." if res["partial"] else f"All {len(runs)} runs finished and scored.")
    ev = settings["evaluation"]
    scoring = (f"sliced inference ({ev['slicing']['slice']}-px windows, overlap {ev['slicing']['overlap']}) on the "
               "full val images" if ev.get("slicing") else "COCO's evaluator on the val images")
    train = ", ".join(f"{k}={v}" for k, v in settings["train"].items())
    tiles = settings.get("tiles")
    fraction = settings["train"].get("fraction", 1.0)
    part = "" if fraction in (1, 1.0) else f", of which fraction={fraction} trains on a part"
    tiled = (f" on {tiles['tile']}-px tiles (overlap {tiles['overlap']}, min_visible {tiles['min_visible']}: "
             f"{tiles['train_tiles']} train tiles{part})" if tiles else "")
    few = _few
    described = (f"Trained{tiled} with {train}; scored by {scoring} ({ev['backend']}, sizes {ev['sizes']}, max_dets "
                 f"{ev['max_dets']}). Val: {val['images']} images, {few(val['total']['all'])} instances, "
                 f"{few(val['total'][s])} {s}. {FLAG}: fewer than {FEW_INSTANCES} val instances behind the number.")
    resumed = [f"{r['model']}-seed{r['seed']}" for r in runs if r.get("resumed")]
    if resumed:  # Ultralytics restores no random state on resume: these are not the seed's uninterrupted runs
        status += (f" Resumed after an interruption: {', '.join(resumed)} (Ultralytics does not restore the random "
                   "state on resume, so such a run differs from an uninterrupted one with the same seed).")
    status += _trained_otherwise(runs)
    parts: list[str | Table] = [f"`{res['command']}`", "", status, described, "",
                                *_scored_checkpoint(settings.get("checkpoint", "best"), runs, bool(tiles)),
                                *_nothing_learned(runs),
                                verdict(res), "", *few_images(val["images"])]
    columns = _columns(labels)
    mean_rows = []
    for model in models:
        mine = [r for r in runs if r["model"] == model]
        if not mine:
            continue
        cells = []
        for c in columns:
            values = [r["metrics"][c] for r in mine if r["metrics"][c] >= 0]  # -1: no val objects of that size
            if len(values) > 1:
                cells.append(f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}")
            else:  # one seed has no spread to show
                cells.append(f"{values[0]:.3f}" if values else "-")
        minutes = [r["train_minutes"] for r in mine]
        spread = f" ± {statistics.stdev(minutes):.1f}" if len(minutes) > 1 else ""
        mean_rows.append([model, len(mine), *cells, *_cost_cells(res.get("cost", {}), model, models[0]),
                          f"{statistics.fmean(minutes):.1f}{spread}"])
    cost = res.get("cost", {})
    size = next(iter(cost.values()))["imgsz"] if cost else None
    cost_headers = ["params", f"GFLOPs @{size}"] if cost else []
    parts += [Table(["model (mean ± sd over seeds)", "seeds", *columns, *cost_headers, "train min/run"], mean_rows,
                    "means", caption=f"Scores of each model, mean ± sd over seeds. {described}"), ""]
    if cost:
        parts += [f"Cost: parameters and GFLOPs of one {size}-px image (each model built for the data's classes), "
                  f"in brackets as a multiple of {models[0]}'s; the same on every machine. Training minutes are wall "
                  "time on the machine that trained, as loaded as it was.", ""]
    blocks = paired_blocks(res)
    for scope, control, pair in blocks:  # all classes
        if scope is None:
            parts += _paired_tables(pair, control=control)
    averaged = _class_average_line(val, labels, list(res.get("paired_classes", {})))
    if averaged:  # what the class averages rest on, and why some classes are paired alone
        parts += [averaged, ""]
    for scope, control, pair in blocks:  # each class alone
        if scope is not None:
            parts += _paired_tables(pair, control=control, scope=scope)
    class_rows = []
    for k, row in enumerate(val["per_class"]):
        cells = []
        for model in models:
            pair_of = []
            for metric in ("AP", f"AP_{s}"):
                valid = [v for r in runs if r["model"] == model and (v := r["per_class"][k][metric]) >= 0]
                pair_of.append(_cell(statistics.fmean(valid)) if valid else "-")
            cells.append(" / ".join(pair_of))
        class_rows.append([row["name"], few(row["all"]), few(row[s]), *cells])
    parts += [Table(["class", "val instances", s, *models], class_rows, "classes",
                    intro=f"Per class: val instances (all sizes, {s}), and each model's AP / AP_{s} (means over "
                          "seeds):"), ""]
    per_run = [[r["model"], r["seed"], *(_cell(r["metrics"][c]) for c in columns), _epoch_cell(r),
                f"{r['train_minutes']:.1f}"] for r in runs]
    parts.append(Table(["model", "seed", *columns, "scored epoch", "train min"], per_run, "runs",
                       caption="Scores of every run (model and training seed), and the epoch its scored checkpoint "
                               "holds of those it trained."))
    return parts


def markdown(res: dict) -> str:
    """``study.md``: the report's paragraphs and its tables in Markdown."""
    return parts_markdown(document(res))


def parts_markdown(parts: list[str | Table]) -> str:
    """Paragraphs and :class:`Table` objects in Markdown, each table after its ``intro`` paragraph."""
    lines = []
    for part in parts:
        if isinstance(part, Table):
            lines += [part.intro, ""] if part.intro else []
            lines.append(table(part.headers, part.rows))
        else:
            lines.append(part)
    return "\n".join(lines)


def latex(res: dict) -> str:
    """``study.tex``: every table of the report as a LaTeX ``table`` (booktabs), captioned by the paragraph that
    introduces it in ``study.md``, labelled ``tab:study-<name>``; the command and status as comments on top."""
    from .. import latex as tex

    parts = document(res)
    head = [f"% {line}" for line in (res["command"], parts[2].replace("**", ""), "Needs \\usepackage{booktabs}. The paired tables "
                                     "are wide: wrap one in \\resizebox{\\linewidth}{!}{...} to fit a column.")]
    tables, labels = [], set()
    for p in parts:
        if isinstance(p, Table):
            label = f"tab:study-{p.name}"
            while label in labels:  # two class names with one label form ("small car", "small-car")
                label += "-2"
            labels.add(label)
            tables.append(tex.table(p.headers, p.rows, caption=p.caption or p.intro, label=label))
    return "\n\n".join(["\n".join(head), *tables])


def _trained_otherwise(runs: list[dict]) -> str:
    """A sentence naming the runs trained with other operational keys than the command's
    (:data:`yolo_spd.study.runs.OPERATIONAL_KEYS`), grouped by what they were trained with ("" where none)."""
    groups: dict[str, list[str]] = {}
    for r in runs:
        if r.get("trained_with"):
            said = ", ".join(f"{k}={study_runs.shown(v)}" for k, v in r["trained_with"].items())
            groups.setdefault(said, []).append(f"{r['model']}-seed{r['seed']}")
    if not groups:
        return ""
    listed = "; ".join(f"{said}: {', '.join(names)}" for said, names in groups.items())
    return (f" Trained with other operational settings than this command's ({listed}); they change where and how a "
            "run computes (device and workers: its floating-point and data-loading random streams), not its settings.")


def _epoch_cell(run: dict) -> str:
    """``12/15``: the epoch the scored checkpoint holds, of the epochs trained ("-" where not known)."""
    return "-" if run.get("scored_epoch") is None else f"{run['scored_epoch']}/{run['epochs']}"


def _scored_checkpoint(checkpoint: str, runs: list[dict], tiles: bool) -> list[str]:
    """Which checkpoint of each run is scored, and for ``best.pt``, in how many runs Ultralytics' pick (made on the
    study's own val images) is an earlier epoch than the last: a selection neither interval counts."""
    if checkpoint == "last":
        return ["Scored: each run's `last.pt`, its last epoch (`checkpoint=last`), so no run was picked on the val "
                "images it is scored on.", ""]
    known = [r for r in runs if r.get("scored_epoch") is not None]
    if not known:
        return []
    earlier = sum(r["scored_epoch"] < r["epochs"] for r in known)
    where = "these val images' tiles" if tiles else "these val images"
    said = (f"an earlier epoch than the last in {earlier} of {len(known)} runs" if earlier else
            f"the last epoch in all {len(known)} runs, so the pick changed nothing here")
    return [f"Scored: each run's `best.pt`, the epoch of highest mAP50-95 that Ultralytics measured on {where}: "
            f"{said} (`scored epoch` in the last table). Picking on the scored images favours every run a little, and "
            "neither interval counts it; `checkpoint=last` scores the last epochs instead (no run trains again).", ""]


def _nothing_learned(runs: list[dict]) -> list[str]:
    """A warning paragraph (as lines) when every run scored AP 0: the differences then compare models that detect
    nothing, and their zero-width intervals say nothing about what this design resolves."""
    if not runs or any(r["metrics"]["AP"] > 0 for r in runs):
        return []
    return ["**Every run scored AP 0.000**: no model detects anything on the val images yet, so the differences "
            "and intervals below compare nothing. Train longer (epochs=), check the data, or, for small objects in "
            "large images, train on tiles at native resolution (tile=, scored with slice=) rather than shrinking "
            "whole images to imgsz, before reading them.", ""]


def paired_blocks(res: dict) -> list[tuple[str | None, bool, dict]]:
    """Every ``paired()`` result of ``res`` in reading order, as (class it is restricted to or None, against the
    control?, result): all classes from the baseline, from the control, then the same for each class paired alone."""
    scopes = [(None, res), *res.get("paired_classes", {}).items()]
    return [(scope, key == "paired_control", block[key]) for scope, block in scopes
            for key in ("paired", "paired_control") if key in block]


def verdict(res: dict) -> str:
    """One paragraph: every resolved difference (variant, against what, metric, on which class), or that none is."""
    found = [f"{variant} vs {pair['baseline']}, {metric}{f' on {scope}' if scope else ''} "
             f"{_signed(entry[metric]['mean'])}"
             for scope, _, pair in paired_blocks(res) for variant, entry in pair["variants"].items()
             for metric in pair["metrics"] if entry[metric].get("resolved")]
    if not found:
        return ("**Resolved differences** (both intervals exclude 0): none. A difference smaller than the larger "
                "interval half-width in the tables below is not told apart from none by this design.")
    return f"**Resolved differences** (both intervals exclude 0): {'; '.join(found)}."


def _cost_cells(cost: dict, model: str, baseline: str) -> list[str]:
    """The params and GFLOPs cells of ``model``, each with its multiple of the baseline's; none without costs."""
    if model not in cost:
        return ["-", "-"] if cost else []
    mine, base = cost[model], cost.get(baseline, cost[model])
    from ..info import gflops_cell

    return [f"{mine['params'] / 1e6:.2f}M ({mine['params'] / base['params']:.2f}x)",
            f"{gflops_cell(mine['gflops'])} ({mine['gflops'] / base['gflops']:.2f}x)"]


def _paired_tables(pair: dict, control: bool = False, scope: str | None = None) -> list[str | Table]:
    """The paired-difference table and the resolvable-difference table of one ``paired()`` result, as report parts;
    ``scope`` names the class the result is restricted to."""
    metrics = pair["metrics"]
    rows, resolvable = [], []
    for variant, entry in pair["variants"].items():
        seeds = len(entry[metrics[0]]["seeds"])
        if not seeds:
            rows.append([variant, 0, *(["no paired run yet"] * len(metrics))])
            resolvable.append([variant, *(["-"] * len(metrics))])
            continue
        rows.append([variant, seeds, *(_difference(entry[m]) for m in metrics)])
        resolvable.append([variant, *(_resolution(entry[m]) for m in metrics)])
    alone = f" on {scope} alone" if scope else ""
    intro = (f"Paired differences{alone} from {pair['baseline']}: mean over seeds of (variant - baseline), 95% paired "
             "bootstrap interval over val images, and in brackets after t the seed-level Student t interval. "
             "**Bold**: resolved, i.e. both intervals exclude 0 (each counts a noise the other cannot: the bootstrap "
             "the val images, t the training seeds).")
    if control:
        intro = (f"Paired differences{alone} from the control, {pair['baseline']} (control=): mean over seeds of "
                 "(variant - control), with the same two intervals and the same rule. Against a compute-matched "
                 "control, a resolved positive difference means the variant beats spending the same compute the "
                 "control's way.")
    name = f"{'control' if control else 'paired'}{f'-{label_of(scope)}' if scope else ''}"
    return [Table(["variant", "seeds", *(f"Δ {m}" for m in metrics)], rows, name, intro=intro), "",
            Table(["variant", *metrics], resolvable, f"{name}-resolvable",
                  intro="Smallest difference this design resolves (interval half-widths, bootstrap / t; a difference "
                        "must exceed both):",
                  caption=f"Smallest difference{alone} from {pair['baseline']} this design resolves (interval "
                          "half-widths, bootstrap / t; a difference must exceed both)."), "",
            *_per_seed_table(pair, metrics[2], name, alone)]


def _per_seed_table(pair: dict, metric: str, name: str, alone: str) -> list[str | Table]:
    """The focus metric's paired difference on each seed (what the t interval is built from), and on how many seeds
    the variant is ahead: a mean can come from one seed, a consistent sign cannot."""
    seeds = sorted({s for entry in pair["variants"].values() for s in entry[metric]["seeds"]})
    if not seeds:
        return []
    rows = []
    for variant, entry in pair["variants"].items():
        by_seed = dict(zip(entry[metric]["seeds"], entry[metric]["differences"]))
        ahead = sum(d > 0 for d in by_seed.values())
        rows.append([variant, *(_signed(by_seed.get(s)) for s in seeds), f"{ahead} of {len(by_seed)}"])
    intro = (f"Δ {metric}{alone} from {pair['baseline']} on each seed (variant - {pair['baseline']}, the values the "
             "t interval is built from), and on how many seeds the variant is ahead:")
    return [Table(["variant", *(f"seed {s}" for s in seeds), "ahead on"], rows, f"{name}-seeds", intro=intro), ""]


def label_of(name: str) -> str:
    """A class name as part of a LaTeX label: letters and digits kept, every other run of characters as one '-'."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-") or "class"


def few_images(images: int, seed_tables: bool = True) -> list[str]:
    """The report's caveat on a val split of fewer than :data:`FEW_IMAGES` images (no lines from that many on);
    ``seed_tables``: the report has per-seed tables to point to."""
    if images >= FEW_IMAGES:
        return []
    split = ", and the per-seed tables show how the seeds split" if seed_tables else ""
    return [f"**Few val images ({images})**: the bootstrap interval resamples only these, so it is coarse and can "
            f"exclude 0 by the chance of which images were drawn; a difference counts only where the seed t interval "
            f"agrees{split}.", ""]


def _resolution(entry: dict) -> str:
    """The half-widths of one paired difference's intervals, bootstrap / t; "no spread" where both are 0 (every
    paired run scored the same on every drawn image set: a width of 0 there measures no noise, it resolves nothing);
    "none: add seeds" where the t half-width is 1 or more (two seeds give a multiplier of 12.7), more than any two
    scores can differ."""
    boot, t = entry["bootstrap"]["half_width"], entry["t"]["half_width"]
    if boot == 0 and not t:
        return "no spread (identical scores)"
    if t is not None and t >= 1:  # no two scores in [0, 1] differ by more: nothing can be resolved
        return f"±{boot:.3f} / ±{t:.3f} (none: add seeds)"
    return f"±{boot:.3f} / " + ("-" if t is None else f"±{t:.3f}")


def _difference(entry: dict) -> str:
    mean = _signed(entry["mean"])
    mean = f"**{mean}**" if entry.get("resolved") else mean
    return f"{mean} {_interval(entry['bootstrap'])} (t {_interval(entry['t'])})"


def _class_average_line(val: dict, labels: tuple[str, ...], classes: list[str]) -> str | None:
    """What the class-averaged metrics rest on, when more than one class has val instances."""
    s = focus_range(labels)
    present = [row for row in val["per_class"] if row["all"] > 0]
    if len(present) < 2:
        return None
    few = _few
    parts = ", ".join(f"{row['name']} {few(row['all'])} ({few(row[s])} {s})" for row in present)
    line = (f"AP and AP50 are means over the classes with val instances, AP_{s} and AR_{s} over those with {s} ones, "
            f"each class weighing the same: {parts}.")
    if any(row["all"] < FEW_INSTANCES or 0 < row[s] < FEW_INSTANCES for row in present):
        line += f" A class marked {FLAG} can swing them as much as a well-counted one."
    if classes:
        line += f" Paired on {' and '.join(classes)} alone, below."
    return line


def plot(res: dict, file: Path) -> Path:
    """Draw :func:`figure` into the PNG ``file``."""
    return save_figure(figure(res), file)


def figure(res: dict):
    """One panel per paired metric: each variant's mean difference (a filled dot when resolved), bootstrap interval
    (thick) and t interval (thin), variants top to bottom in the tables' order; a row of panels with the differences
    from the baseline, one from the control when the study names one, and the same for each class paired alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [(scope, pair) for scope, _, pair in paired_blocks(res)]
    metrics = pairs[0][1]["metrics"]
    heights = [1.1 + 0.55 * max(len(pair["variants"]), 1) for _, pair in pairs]
    # constrained layout keeps the suptitle clear of the top row's titles however tall the figure (tight_layout, which
    # save_figure applies to figures without a layout engine, laid an 8-row figure's first titles over it)
    fig, axes = plt.subplots(len(pairs), len(metrics), figsize=(3.0 * len(metrics), sum(heights) + 0.3), dpi=150,
                             squeeze=False, gridspec_kw={"height_ratios": heights}, layout="constrained")
    for row, (scope, pair) in zip(axes, pairs):
        _plot_row(row, pair, scope)
    partial = " (partial)" if res["partial"] else ""
    fig.suptitle(f"Paired differences: mean over seeds (filled: resolved, both intervals exclude 0), 95% bootstrap "
                 f"over val images (thick), seed t interval (thin; an arrowhead where it runs off the panel){partial}",
                 fontsize=8)
    return fig


def _plot_row(axes, pair: dict, scope: str | None = None) -> None:
    """One row of :func:`plot`: every variant's difference from ``pair``'s baseline, one panel per metric (``scope``:
    the class the differences are restricted to)."""
    from matplotlib.ticker import MaxNLocator

    variants = list(pair["variants"])
    for ax, metric in zip(axes, pair["metrics"]):
        entries = [pair["variants"][v][metric] for v in variants]
        reach = _reach(entries)
        for y, entry in enumerate(entries):
            if entry["mean"] is None:
                ax.text(0, y, "no paired run yet", ha="center", va="center", fontsize=6, color="0.45",
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
                continue
            if entry["bootstrap"]["ci"] is not None:
                ax.plot(entry["bootstrap"]["ci"], [y, y], color="C0", lw=4, solid_capstyle="butt", zorder=1)
            if entry["t"]["ci"] is not None:  # over the bootstrap bar, with end ticks: it shows where it is shorter
                low, high = entry["t"]["ci"]
                ax.plot([max(low, -reach), min(high, reach)], [y, y], color="0.3", lw=1, zorder=2)
                for end, edge, marker in ((low, -reach, "<"), (high, reach, ">")):
                    if abs(end) > reach:  # runs off the panel: an arrowhead at the edge
                        ax.plot([edge], [y], marker, color="0.3", ms=4, zorder=2, clip_on=False)
                    else:
                        ax.plot([end], [y], "|", color="0.3", ms=6, zorder=2)
            ax.plot([entry["mean"]], [y], "o", color="C3", ms=5, zorder=3,
                    markerfacecolor="C3" if entry.get("resolved") else "white")
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlim(-reach, reach)  # 0 (no difference) in the middle
        ax.xaxis.set_major_locator(MaxNLocator(5, symmetric=True))
        ax.set_title(f"Δ {metric}{f' on {scope}' if scope else ''} from {pair['baseline']}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_xlabel(f"{metric} of variant - {pair['baseline']}", fontsize=7)
        ax.set_ylim(len(variants) - 0.4, -0.6)  # the first variant on top, in the tables' order
        ax.set_yticks(range(len(variants)), variants if ax is axes[0] else [], fontsize=7)


def _reach(entries: list[dict]) -> float:
    """Half the x-range of a panel: room for every mean and bootstrap interval, and for t intervals up to three times
    that (a wider one, e.g. from two seeds' t multiplier of 12.7, would flatten the rest; it gets arrowheads); at most
    1, the largest difference a COCO metric can show, and 0.01 where every difference is 0."""
    near = [abs(x) for e in entries if e["mean"] is not None
            for x in (e["mean"], *(e["bootstrap"]["ci"] or ()))] or [0.01]
    reach = max(near) * 1.15 or 0.01  # every difference 0 (e.g. identical runs): a panel of +-0.01, not of width 0
    far = [abs(x) for e in entries if e["mean"] is not None for x in (e["t"]["ci"] or ())]
    return min(max([reach, *(x * 1.05 for x in far if x <= 3 * reach)]), 1.0)


def write(plan, data, echo: bool = True) -> dict:
    """Compute the results and write them into the study folder with :func:`save` (and print the tables with
    ``echo``)."""
    res = results(plan, data)
    save(res, plan.folder, echo=echo)
    return res


def runs_csv(res: dict) -> str:
    """``study.csv``: one row per finished run (model, seed, whether it was resumed, training minutes, the epoch its
    scored checkpoint holds and the epochs it trained (empty where not known), then every
    COCO metric at full precision; -1 where the val data has no object of that size, as COCOeval reports it)."""
    metrics = list(res["runs"][0]["metrics"]) if res["runs"] else []
    return _csv(["model", "seed", "resumed", "train_minutes", "scored_epoch", "epochs", *metrics],
                [[r["model"], r["seed"], r.get("resumed", False), r["train_minutes"],
                  *("" if r.get(k) is None else r[k] for k in ("scored_epoch", "epochs")),
                  *(r["metrics"][m] for m in metrics)] for r in res["runs"]])


def paired_csv(res: dict) -> str:
    """``study_paired.csv``: every paired difference in long form, one row per (baseline, class, variant, metric):
    the mean over seeds, both 95% intervals and whether the difference is resolved (empty where not computable)."""
    rows = []
    for scope, _, pair in paired_blocks(res):
        for variant, entry in pair["variants"].items():
            for metric in pair["metrics"]:
                e = entry[metric]
                boot, t = e["bootstrap"]["ci"] or ("", ""), e["t"]["ci"] or ("", "")
                rows.append([pair["baseline"], scope or "all", variant, metric, len(e["seeds"]),
                             "" if e["mean"] is None else e["mean"], *boot, *t, bool(e.get("resolved"))])
    return _csv(["baseline", "class", "variant", "metric", "seeds", "mean", "bootstrap_low", "bootstrap_high",
                 "t_low", "t_high", "resolved"], rows)


def _csv(headers: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return buffer.getvalue()


def save(res: dict, folder: Path, stem: str = "study", echo: bool = True) -> list[Path]:
    """Write ``<stem>.json``, ``.md``, ``.tex``, ``.csv``, ``_paired.csv`` and (once a run is scored) ``.png`` into
    ``folder``; print the Markdown with ``echo``."""
    text = markdown(res)
    files = [write_atomic(folder / f"{stem}.json", json.dumps(res, indent=1) + "\n"),
             write_atomic(folder / f"{stem}.md", text + "\n"),
             write_atomic(folder / f"{stem}.tex", latex(res) + "\n"),
             write_atomic(folder / f"{stem}.csv", runs_csv(res)),
             write_atomic(folder / f"{stem}_paired.csv", paired_csv(res))]
    if res["runs"]:
        files.append(plot(res, folder / f"{stem}.png"))
    if echo:
        print(text)
    return files
