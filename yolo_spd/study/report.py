"""A study's results: ``study.json`` (everything), ``study.md`` (tables to paste into a paper) and ``study.png``
(the paired differences with both intervals), rewritten after every scored run.

Headline interval: the paired image bootstrap (:mod:`.stats`), because it counts the sampling of the val images,
which a seed-only interval cannot. The seed-level t interval is printed beside it. For each variant and metric the
*resolvable difference* is the bootstrap interval's half-width: a true difference smaller than that is not told apart
from none by this design (these val images, these seeds). A number that rests on fewer than
:data:`FEW_INSTANCES` val instances (a class, or a size range) is flagged, since a handful of boxes can swing it.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from ..markdown import table
from ..paths import save_figure, write_atomic
from . import runs as study_runs
from . import stats

FEW_INSTANCES = 30
FLAG = "†"
MODEL_COLUMNS = ("AP", "AP50", "AP_{s}", "AP_{m}", "AR_{s}")


def focus_range(labels: tuple[str, ...]) -> str:
    """The size range the paired metrics are about: ``small`` when the ranges have one, else the first."""
    return "small" if "small" in labels else labels[0]


def paired_metrics(labels: tuple[str, ...]) -> tuple[str, ...]:
    s = focus_range(labels)
    return ("AP", "AP50", f"AP_{s}", f"AR_{s}")


def _columns(labels: tuple[str, ...]) -> list[str]:
    s = focus_range(labels)
    m = labels[labels.index(s) + 1] if labels.index(s) + 1 < len(labels) else None
    return [c.format(s=s, m=m) for c in MODEL_COLUMNS if m is not None or "{m}" not in c]


def instance_counts(truth_coco: dict, ranges) -> dict:
    """Val instances (crowd boxes excluded) in total, per size range and per class (each with its ranges)."""
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
            if low <= ann["area"] < high:
                row[label] += 1
                total[label] += 1
    return {"images": len(truth_coco["images"]), "total": total, "per_class": list(per_class.values())}


def _run_rows(plan) -> tuple[list[dict], list[str]]:
    rows, missing = [], []
    for model, seed in plan.order:
        folder = plan.folder / study_runs.run_name(model, seed)
        scored = folder / plan.eval_name / "coco_eval.json"
        if study_runs.run_state(folder) != "done" or not scored.is_file():
            missing.append(folder.name)
            continue
        evaluation = json.loads(scored.read_text(encoding="utf-8"))
        rows.append({"model": study_runs.model_stem(model), "seed": seed, "metrics": evaluation["metrics"],
                     "per_class": [{k: v for k, v in c.items() if k != "class"} for c in evaluation["per_class"]],
                     "train_minutes": round(study_runs.training_minutes(folder), 2),
                     "eval": str(scored.relative_to(plan.folder))})
    return rows, missing


def bootstrap_replicates(plan, rows: list[dict], truth) -> dict[tuple[str, int], np.ndarray]:
    """Each scored run's metrics on every bootstrap replicate (the same draws for every run)."""
    labels = ("all", *plan.evaluation.sizes.labels)
    metrics = paired_metrics(plan.evaluation.sizes.labels)
    counts = stats.bootstrap_counts(len(truth.coco["images"]), plan.resamples, plan.bootstrap_seed)
    out = {}
    for row in rows:
        folder = plan.folder / f"{row['model']}-seed{row['seed']}" / plan.eval_name
        detections = json.loads((folder / "coco_predictions.json").read_text(encoding="utf-8"))
        matches = stats.per_image_matches(truth.coco, detections, plan.evaluation.sizes.area_ranges(), labels,
                                          max_det=plan.evaluation.max_dets)
        out[(row["model"], row["seed"])] = stats.replicate_metrics(matches, counts, metrics)
    return out


def paired(plan, rows: list[dict], replicates: dict, baseline: str | None = None) -> dict:
    """Every other model's paired differences from ``baseline`` (a model YAML of the plan; default: the first)."""
    metrics = paired_metrics(plan.evaluation.sizes.labels)
    models = [study_runs.model_stem(m) for m in plan.models]
    by = {(r["model"], r["seed"]): r["metrics"] for r in rows}
    baseline = models[0] if baseline is None else study_runs.model_stem(baseline)
    out = {"baseline": baseline, "metrics": list(metrics), "headline": "bootstrap",
           "t_method": "per seed d = variant - baseline; mean(d) +- t(0.975, n-1) sd(d)/sqrt(n); counts seeds only",
           "bootstrap_method": (f"paired percentile bootstrap over val images: {plan.resamples} replicates of "
                                f"{len(next(iter(replicates.values()))) if replicates else 0} draws, "
                                f"numpy default_rng({plan.bootstrap_seed}); every run scored on the same draw; "
                                "statistic = mean over seeds of (variant - baseline); counts the val images, not seeds"),
           "variants": {}}
    for variant in (m for m in models[1:] if m != baseline):
        seeds = sorted(s for (m, s) in by if m == variant and (baseline, s) in by)
        boot = stats.paired_bootstrap({s: replicates[(baseline, s)] for s in seeds},
                                      {s: replicates[(variant, s)] for s in seeds}, metrics)
        entry = {}
        for metric in metrics:
            diffs = [by[(variant, s)][metric] - by[(baseline, s)][metric] for s in seeds]
            entry[metric] = {"seeds": seeds, "differences": [round(d, 6) for d in diffs],
                             "mean": round(statistics.fmean(diffs), 6) if diffs else None,
                             "t": _rounded(stats.t_interval(diffs)), "bootstrap": _rounded(boot[metric])}
        out["variants"][variant] = entry
    return out


def _rounded(entry: dict) -> dict:
    return {k: (None if v is None else [round(x, 6) for x in v] if isinstance(v, list) else
                round(v, 6) if isinstance(v, float) else v) for k, v in entry.items()}


def results(plan, data) -> dict:
    """The study's results as one dict (what ``study.json`` holds)."""
    from ..evaluation import build_ground_truth

    rows, missing = _run_rows(plan)
    truth = build_ground_truth(plan.val, plan.evaluation.gt)
    replicates = bootstrap_replicates(plan, rows, truth) if rows else {}
    return {
        "command": plan.command,
        "partial": bool(missing),
        "planned_runs": len(plan.order),
        "missing": missing,
        "settings": {"models": list(plan.models), "seeds": list(plan.seeds), "data": str(plan.data),
                     "train": dict(plan.train), "tiles": data.tiles, "evaluation": plan.eval_spec(),
                     "resamples": plan.resamples, "bootstrap_seed": plan.bootstrap_seed},
        "val": instance_counts(truth.coco, plan.evaluation.sizes),
        "runs": rows,
        "paired": paired(plan, rows, replicates),
        **({"control": study_runs.model_stem(plan.control),
            "paired_control": paired(plan, rows, replicates, plan.control)} if plan.control else {}),
    }


def _cell(value: float | None) -> str:
    return "-" if value is None or value < 0 else f"{value:.3f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _interval(entry: dict) -> str:
    return "n<2" if entry.get("ci") is None else f"[{entry['ci'][0]:+.3f}, {entry['ci'][1]:+.3f}]"


def markdown(res: dict) -> str:
    settings, val, runs = res["settings"], res["val"], res["runs"]
    labels = tuple(k for k in val["total"] if k != "all")
    models = [study_runs.model_stem(m) for m in settings["models"]]
    s = focus_range(labels)
    status = (f"**Partial**: {len(runs)} of {res['planned_runs']} runs finished and scored; missing: "
              f"{', '.join(res['missing'])}." if res["partial"] else f"All {len(runs)} runs finished and scored.")
    ev = settings["evaluation"]
    scoring = (f"sliced inference ({ev['slicing']['slice']}-px windows, overlap {ev['slicing']['overlap']}) on the "
               "full val images" if ev.get("slicing") else "the val images")
    train = ", ".join(f"{k}={v}" for k, v in settings["train"].items())
    tiles = settings.get("tiles")
    tiled = (f" on {tiles['tile']}-px tiles (overlap {tiles['overlap']}, min_visible {tiles['min_visible']}: "
             f"{tiles['train_tiles']} train tiles)" if tiles else "")
    few = lambda n: f"{n}{FLAG}" if n < FEW_INSTANCES else str(n)
    described = (f"Trained{tiled} with {train}; scored by {scoring} ({ev['backend']}, sizes {ev['sizes']}, max_dets "
                 f"{ev['max_dets']}). Val: {val['images']} images, {few(val['total']['all'])} instances, "
                 f"{few(val['total'][s])} {s}. {FLAG}: fewer than {FEW_INSTANCES} val instances behind the number.")
    lines = [f"`{res['command']}`", "", status, described, ""]
    columns = _columns(labels)
    mean_rows = []
    for model in models:
        mine = [r for r in runs if r["model"] == model]
        if not mine:
            continue
        cells = []
        for c in columns:
            values = [r["metrics"][c] for r in mine if r["metrics"][c] >= 0]  # -1: no val objects of that size
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.fmean(values):.3f} ± {spread:.3f}" if values else "-")
        minutes = [r["train_minutes"] for r in mine]
        mean_rows.append([model, len(mine), *cells, f"{statistics.fmean(minutes):.1f}"])
    lines += [table(["model (mean ± sd over seeds)", "seeds", *columns, "train min/run"], mean_rows), ""]
    lines += _paired_tables(res["paired"])
    if res.get("paired_control"):
        lines += _paired_tables(res["paired_control"], control=True)
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
    lines += [f"Per class: val instances (all sizes, {s}), and each model's AP / AP_{s} (means over seeds):", "",
              table(["class", "val instances", s, *models], class_rows), ""]
    per_run = [[r["model"], r["seed"], *(_cell(r["metrics"][c]) for c in columns), f"{r['train_minutes']:.1f}"]
               for r in runs]
    lines.append(table(["model", "seed", *columns, "train min"], per_run))
    return "\n".join(lines)


def _paired_tables(pair: dict, control: bool = False) -> list[str]:
    """The paired-difference table and the resolvable-difference table of one ``paired()`` result, as lines."""
    metrics = pair["metrics"]
    rows, resolvable = [], []
    for variant, entry in pair["variants"].items():
        seeds = len(entry[metrics[0]]["seeds"])
        if not seeds:
            rows.append([variant, 0, *(["no paired run yet"] * len(metrics))])
            resolvable.append([variant, *(["-"] * len(metrics))])
            continue
        rows.append([variant, seeds,
                     *(f"{_signed(entry[m]['mean'])} {_interval(entry[m]['bootstrap'])} (t {_interval(entry[m]['t'])})"
                       for m in metrics)])
        resolvable.append([variant, *(f"±{entry[m]['bootstrap']['half_width']:.3f} / "
                                      + ("-" if entry[m]["t"]["half_width"] is None
                                         else f"±{entry[m]['t']['half_width']:.3f}") for m in metrics)])
    intro = (f"Paired differences from {pair['baseline']}: mean over seeds of (variant - baseline), 95% paired "
             "bootstrap interval over val images (the headline), and in brackets after t the seed-level Student t "
             "interval. A difference is resolved when its interval excludes 0.")
    if control:
        intro = (f"Paired differences from the control, {pair['baseline']} (control=): mean over seeds of (variant - "
                 "control), with the same two intervals. Against a compute-matched control, a resolved positive "
                 "difference means the variant beats spending the same compute the control's way.")
    return [intro, "",
            table(["variant", "seeds", *(f"Δ {m}" for m in metrics)], rows), "",
            "Smallest difference this design resolves (interval half-width, bootstrap / t):", "",
            table(["variant", *metrics], resolvable), ""]


def plot(res: dict, file: Path) -> Path:
    """One panel per paired metric: each variant's mean difference, bootstrap interval (thick) and t interval (thin);
    a second row of panels with the differences from the control, when the study names one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [res["paired"], *([res["paired_control"]] if "paired_control" in res else [])]
    metrics = pairs[0]["metrics"]
    heights = [0.9 + 0.55 * max(len(pair["variants"]), 1) for pair in pairs]
    fig, axes = plt.subplots(len(pairs), len(metrics), figsize=(3.0 * len(metrics), sum(heights) + 0.3), dpi=150,
                             squeeze=False, gridspec_kw={"height_ratios": heights})
    for row, pair in zip(axes, pairs):
        _plot_row(row, pair)
    partial = " (partial)" if res["partial"] else ""
    fig.suptitle(f"Paired differences: mean over seeds, 95% bootstrap over val images (thick), seed t interval "
                 f"(thin; an arrowhead where it runs off the panel){partial}", fontsize=8)
    return save_figure(fig, file)


def _plot_row(axes, pair: dict) -> None:
    """One row of :func:`plot`: every variant's difference from ``pair``'s baseline, one panel per metric."""
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
            if entry["t"]["ci"] is not None:
                low, high = entry["t"]["ci"]
                ax.plot([max(low, -reach), min(high, reach)], [y, y], color="0.6", lw=1, zorder=1)
                for end, edge, marker in ((low, -reach, "<"), (high, reach, ">")):
                    if abs(end) > reach:  # runs off the panel: an arrowhead at the edge
                        ax.plot([edge], [y], marker, color="0.6", ms=4, zorder=1, clip_on=False)
            if entry["bootstrap"]["ci"] is not None:
                ax.plot(entry["bootstrap"]["ci"], [y, y], color="C0", lw=4, solid_capstyle="butt", zorder=2)
            ax.plot([entry["mean"]], [y], "o", color="C3", ms=5, zorder=3)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlim(-reach, reach)  # 0 (no difference) in the middle
        ax.xaxis.set_major_locator(MaxNLocator(5, symmetric=True))
        ax.set_title(f"Δ {metric} from {pair['baseline']}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_ylim(-0.6, len(variants) - 0.4)
        ax.set_yticks(range(len(variants)), variants if ax is axes[0] else [], fontsize=7)


def _reach(entries: list[dict]) -> float:
    """Half the x-range of a panel: room for every mean and bootstrap interval, and for t intervals up to three times
    that (a wider one, e.g. from two seeds' t multiplier of 12.7, would flatten the rest; it gets arrowheads); at most
    1, the largest difference a COCO metric can show."""
    near = [abs(x) for e in entries if e["mean"] is not None
            for x in (e["mean"], *(e["bootstrap"]["ci"] or ()))] or [0.01]
    reach = max(near) * 1.15
    far = [abs(x) for e in entries if e["mean"] is not None for x in (e["t"]["ci"] or ())]
    return min(max([reach, *(x * 1.05 for x in far if x <= 3 * reach)]), 1.0)


def write(plan, data, echo: bool = True) -> dict:
    """Compute the results and write ``study.json``, ``study.md`` and ``study.png`` into the study folder (and print
    the tables with ``echo``)."""
    res = results(plan, data)
    save(res, plan.folder, echo=echo)
    return res


def save(res: dict, folder: Path, stem: str = "study", echo: bool = True) -> list[Path]:
    text = markdown(res)
    files = [write_atomic(folder / f"{stem}.json", json.dumps(res, indent=1) + "\n"),
             write_atomic(folder / f"{stem}.md", text + "\n")]
    if res["runs"]:
        files.append(plot(res, folder / f"{stem}.png"))
    if echo:
        print(text)
    return files
