"""Does a variant's difference from its baseline change between two studies? The contrast of two paired differences.

Two studies scored on the same val images, each pairing a variant with its baseline seed by seed (say SCConv at scale
n, yolov5-scconv-n against yolov5nu, and at scale s, yolov5-scconv-s against yolov5su). Per study, ``D`` is the mean
over seeds of (variant - baseline), what its report prints; the contrast is ``D(second) - D(first)``: how much the
variant's difference moved from the first study to the second (positive: less of a loss, or more of a gain).

Two intervals, as for a paired difference (:mod:`.report`'s rule), each counting a noise the other cannot:

- **Welch t over seeds** (:func:`.stats.welch_interval`) on the two studies' per-seed differences, taken as
  independent samples of unequal spread. That is an assumption: Ultralytics' ``seed=`` fixes the data order and
  augmentation, so two studies' runs of one seed on the same data can share noise. Where they do (a positive
  correlation of the two studies' per-seed differences), Welch's interval is the wider, conservative one. Where both
  studies have the same seeds, the report also gives the t interval of the per-seed contrasts (``seed_paired``), for
  reading only: the rule does not use it, since nothing guarantees that runs of one seed belong together.
- **Image bootstrap** (:func:`.stats.contrast_bootstrap`): each replicate draws one set of val images, every run of
  both studies is scored on it, and the statistic is the replicate's contrast. This needs both studies to use the
  same val data, scoring settings and bootstrap draws, which :func:`contrast` checks.

The contrast is *resolved* when both intervals exclude 0 on the same side.

From the command line, ``yolo-spd study ... contrast=DIR`` contrasts the study it runs (the second) with the study in
``DIR`` (the first), each with its first variant unless ``contrast_variants=A,B`` names them (A in ``DIR``'s study, B in
this one), and writes ``contrast.json``, ``contrast.md`` and ``contrast.tex`` into the study folder (:func:`save`).
``DIR``'s runs must have been scored as this study scores (same val data by content, same scoring settings); they are
read, never trained or scored again.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..errors import UsageError
from . import report, stats
from . import runs as study_runs

RULE = ("resolved when the Welch t interval over the two studies' seeds and the image bootstrap interval both exclude "
        "0 on the same side")


def _pair(plan, variant: str | None, side: str) -> tuple[str, str]:
    """(baseline stem, variant stem) of ``plan``, which the error line calls ``side``: the baseline is its first
    model; ``variant`` defaults to its second."""
    stems = [study_runs.model_stem(m) for m in plan.models]
    chosen = stems[1] if variant is None else study_runs.model_stem(variant)
    if chosen not in stems[1:]:
        raise UsageError(f"{variant}: not a variant of {side} ({plan.folder}); give one of "
                         f"{', '.join(stems[1:])}")
    return stems[0], chosen


def check_comparable(first, second) -> None:
    """One error line unless the two plans score on the same val data with the same settings and bootstrap draws."""
    a, b = first.eval_spec(), second.eval_spec()
    if a != b:
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise UsageError(f"the two studies are scored differently ({', '.join(keys)} differ): a contrast needs the "
                         "same val data and scoring settings")
    for key in ("resamples", "bootstrap_seed"):
        if getattr(first, key) != getattr(second, key):
            raise UsageError(f"{key}={getattr(first, key)} and {key}={getattr(second, key)}: a contrast needs the "
                             "same bootstrap draws in both studies")


def contrast(first, second, first_variant: str | None = None, second_variant: str | None = None) -> dict:
    """The contrast of ``second``'s paired difference with ``first``'s (each a :class:`~.plan.StudyPlan` whose runs
    are scored), over all classes and on each class the studies' reports pair alone; see the module docstring."""
    from ..evaluation import build_ground_truth

    check_comparable(first, second)
    pairs = [_pair(first, first_variant, "the first study"), _pair(second, second_variant, "the second study")]
    truth = build_ground_truth(first.val, first.evaluation.gt)
    val = report.instance_counts(truth.coco, first.evaluation.sizes)
    classes = report.class_scopes(val, first.evaluation.sizes.labels)
    metrics = report.paired_metrics(first.evaluation.sizes.labels)
    sides = []
    for plan, (baseline, variant) in zip((first, second), pairs):  # both checked before the slow part
        rows = [r for r in report.scored_runs(plan)[0] if r["model"] in (baseline, variant)]
        seeds = sorted({r["seed"] for r in rows if r["model"] == variant} &
                       {r["seed"] for r in rows if r["model"] == baseline})
        if len(seeds) < 2:
            raise UsageError(f"{plan.folder}: {len(seeds)} seed(s) with both {baseline} and {variant} scored; a "
                             "contrast needs at least 2 in each study")
        sides.append({"command": plan.command, "baseline": baseline, "variant": variant, "seeds": seeds,
                      "rows": [r for r in rows if r["seed"] in seeds]})
    for plan, side in zip((first, second), sides):
        side["replicates"] = report.bootstrap_replicates(plan, side.pop("rows"), truth, tuple(classes))
    scopes = {None: None, **report.scope_names(val, classes)}
    out = {"first": {k: v for k, v in sides[0].items() if k != "replicates"},
           "second": {k: v for k, v in sides[1].items() if k != "replicates"},
           "metrics": list(metrics), "images": len(truth.coco["images"]), "resamples": first.resamples,
           "bootstrap_seed": first.bootstrap_seed, "rule": RULE, "scopes": {}}
    for scope, name in scopes.items():
        out["scopes"][name or "all classes"] = _scope(sides, scope, metrics)
    return out


def _scope(sides: list[dict], scope: int | None, metrics: tuple[str, ...]) -> dict:
    draws, values = [], []
    for side in sides:
        key = lambda model, seed: side["replicates"][(model, seed)][scope]  # noqa: E731 - (values, draws) of a run
        draws.append(({s: key(side["baseline"], s)[1] for s in side["seeds"]},
                      {s: key(side["variant"], s)[1] for s in side["seeds"]}))
        values.append({m: [key(side["variant"], s)[0][m] - key(side["baseline"], s)[0][m] for s in side["seeds"]]
                       for m in metrics})
    boot = stats.contrast_bootstrap(draws[0], draws[1], metrics)
    out = {}
    for metric in metrics:
        first, second = values[0][metric], values[1][metric]
        welch = stats.welch_interval(first, second)
        same_seeds = sides[0]["seeds"] == sides[1]["seeds"]
        entry = {"first": {"differences": _round(first), "t": _round(stats.t_interval(first))},
                 "second": {"differences": _round(second), "t": _round(stats.t_interval(second))},
                 "contrast": round(welch["mean"], 6), "t": _round(welch), "bootstrap": _round(boot[metric]),
                 "seed_paired": _round(stats.t_interval([b - a for a, b in zip(first, second)])) if same_seeds
                 else None}
        entry["resolved"] = report.resolved(entry)
        out[metric] = entry
    return out


def _round(value):
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return round(value, 6) if isinstance(value, float) else value


def document(res: dict, first_label: str = "first", second_label: str = "second") -> list:
    """The contrast in reading order: paragraphs (str; "" is a blank line) and :class:`~.report.Table` objects, one per
    scope, which :func:`markdown` and :func:`latex` render; the last paragraph is the verdict."""
    first, second = res["first"], res["second"]
    parts = [f"Contrast of two studies scored on the same {res['images']} val images: Δ = mean over seeds of "
             f"(variant - baseline) in each, and the contrast Δ({second_label}) - Δ({first_label}).", "",
             f"- {first_label}: {first['variant']} - {first['baseline']}, seeds {_seeds(first['seeds'])} "
             f"(`{first['command']}`)",
             f"- {second_label}: {second['variant']} - {second['baseline']}, seeds {_seeds(second['seeds'])} "
             f"(`{second['command']}`)", "",
             f"Intervals (95%): in each study the seed t interval as its report prints it; for the contrast the image "
             f"bootstrap ({res['resamples']} replicates, numpy default_rng({res['bootstrap_seed']}); every run of both "
             "studies scored on each replicate's images) and, after t, the Welch t interval over the two studies' "
             "per-seed differences (independent runs, unequal spreads). **Bold**: resolved, both contrast intervals "
             "exclude 0. The last column, where both studies have the same seeds, is the t interval of the per-seed "
             "contrasts: narrower where runs of one seed share noise across the studies (same data order and "
             "augmentation), for reading only, since the rule cannot assume they do.", "",
             *report.few_images(res["images"], seed_tables=False)]
    found = []
    headers = ["metric", f"Δ {first_label}", f"Δ {second_label}", f"contrast {second_label} - {first_label}",
               "paired by seed (t)"]
    for scope, entries in res["scopes"].items():
        rows = []
        for metric, e in entries.items():
            mean = f"{e['contrast']:+.3f}"
            if e["resolved"]:
                mean = f"**{mean}**"
                found.append(f"{metric} on {scope} {e['contrast']:+.3f}")
            rows.append([metric, _with_t(e["first"]), _with_t(e["second"]),
                         f"{mean} {_ci(e['bootstrap']['ci'])} (t {_ci(e['t']['ci'])})",
                         "-" if e["seed_paired"] is None else _ci(e["seed_paired"]["ci"])])
        caption = (f"Contrast Δ({second_label}) - Δ({first_label}) on {scope}: {second['variant']} - "
                   f"{second['baseline']} against {first['variant']} - {first['baseline']}; bootstrap interval over "
                   "val images, Welch t interval over seeds in brackets; **bold**: resolved.")
        parts += [report.Table(headers, rows, f"contrast-{report.label_of(scope)}", intro=f"On {scope}:",
                               caption=caption), ""]
    verdict = "; ".join(found) if found else "none"
    parts.append(f"**Resolved contrasts** (both intervals exclude 0): {verdict}.")
    return parts


def markdown(res: dict, first_label: str = "first", second_label: str = "second") -> str:
    """``contrast.md``: what is compared, one table per scope (all classes, then each class paired alone), and the
    verdict."""
    return report.parts_markdown(document(res, first_label, second_label)) + "\n"


def latex(res: dict, first_label: str = "first", second_label: str = "second") -> str:
    """``contrast.tex``: each scope's table as a LaTeX ``table`` (booktabs), labelled ``tab:contrast-<scope>``, with
    the two studies' commands and the verdict as comments on top."""
    from .. import latex as tex

    parts = document(res, first_label, second_label)
    head = [f"% {first_label}: {res['first']['command']}", f"% {second_label}: {res['second']['command']}",
            f"% {parts[-1].replace('**', '')}", "% Needs \\usepackage{booktabs}."]
    tables = [tex.table(p.headers, p.rows, caption=p.caption, label=f"tab:{p.name}") for p in parts
              if isinstance(p, report.Table)]
    return "\n\n".join(["\n".join(head), *tables]) + "\n"


def _seeds(seeds: list[int]) -> str:
    return ",".join(map(str, seeds))


def _with_t(side: dict) -> str:
    mean = sum(side["differences"]) / len(side["differences"])
    return f"{mean:+.3f} (t {_ci(side['t']['ci'])})"


def _ci(ci) -> str:
    return "-" if ci is None else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def other_study(plan):
    """The study in ``plan.contrast`` as a plan scored as ``plan`` scores: its models, seeds, folder and command from
    its ``study.json``, every scoring setting ``plan``'s. One error line unless it is a study folder whose scored runs
    were scored with those settings."""
    from .plan import EVAL_SPEC, _differences

    folder = Path(plan.contrast)
    file = folder / "study.json"
    if not file.is_file():
        raise UsageError(f"contrast={folder}: no study.json there; give the folder of a yolo-spd study "
                         "(where its study.json and run folders are)")
    if folder.resolve() == Path(plan.folder).resolve():
        raise UsageError(f"contrast={folder}: that is this study's own folder; give another study's")
    try:
        recorded = json.loads(file.read_text(encoding="utf-8"))
        settings = recorded["settings"]
        first = dataclasses.replace(plan, models=tuple(settings["models"]), seeds=tuple(settings["seeds"]),
                                    folder=folder, command=recorded.get("command", ""), control=None, created=(),
                                    contrast=None, contrast_variants=None)
    except (ValueError, KeyError, TypeError, AttributeError):  # not JSON, or not a study's
        raise UsageError(f"contrast={folder}: its study.json is not a yolo-spd study's (no models and seeds in its "
                         "settings); give the folder of a yolo-spd study") from None
    wanted = study_runs.without_operational(json.loads(json.dumps(plan.eval_spec())))
    by_path = study_runs.without_operational(json.loads(json.dumps(plan.path_eval_spec())))
    runs = [folder / study_runs.run_name(model, seed) for model, seed in first.order]
    for run in runs:
        if not (run / first.eval_name / "coco_eval.json").is_file():
            continue  # not scored: the contrast leaves it out
        try:
            spec = study_runs.without_operational(json.loads((run / first.eval_name / EVAL_SPEC).read_text("utf-8")))
        except (OSError, ValueError, AttributeError):
            spec = None
        if spec is None or spec not in (wanted, by_path):
            said = f"no readable {EVAL_SPEC}" if spec is None else \
                "; ".join(_differences(spec, by_path if "data" in spec else wanted))
            raise UsageError(f"contrast={folder}: {run.name} was scored otherwise than this study scores ({said}); "
                             "a contrast needs the same val data and scoring settings")
    if not any((run / first.eval_name / "coco_eval.json").is_file() for run in runs):
        elsewhere = sorted({p.parent.name for run in runs for p in run.glob(f"*/{EVAL_SPEC}")})
        said = (f"its runs are scored into {', '.join(elsewhere)}, this study scores into {first.eval_name} "
                "(checkpoint= and slice= must match)") if elsewhere else "none of its runs is scored yet"
        raise UsageError(f"contrast={folder}: {said}")
    return first


def check_study(plan) -> None:
    """Before a study with ``contrast=`` trains: its contrast can be made (the other study is one, scored as this one
    scores, and the variants are in the studies), or one error line."""
    first = other_study(plan)
    names = plan.contrast_variants or (None, None)
    baseline, variant = _pair(first, names[0], "the contrast= study")
    _pair(plan, names[1], "this study")
    if len(plan.seeds) < 2:
        raise UsageError(f"contrast={plan.contrast}: seeds={','.join(map(str, plan.seeds))} gives one paired "
                         "difference; a contrast needs at least 2 seeds (e.g. seeds=0,1,2)")
    scored = {(r["model"], r["seed"]) for r in report.scored_runs(first)[0]}
    seeds = [s for s in first.seeds if (baseline, s) in scored and (variant, s) in scored]
    if len(seeds) < 2:
        raise UsageError(f"contrast={plan.contrast}: {len(seeds)} seed(s) with both {baseline} and {variant} scored "
                         "there; a contrast needs at least 2 in each study")


def save(plan, echo: bool = True) -> dict:
    """The contrast of ``plan`` (second) with the study in ``plan.contrast`` (first), written to the study folder's
    ``contrast.json``, ``contrast.md`` and ``contrast.tex``; returns it."""
    from ..paths import write_atomic

    names = plan.contrast_variants or (None, None)
    res = contrast(other_study(plan), plan, names[0], names[1])
    labels = Path(plan.contrast).resolve().name, plan.folder.name
    labels = labels if labels[0] != labels[1] else ("first", "second")
    text = markdown(res, *labels)
    write_atomic(plan.folder / "contrast.json", json.dumps(res, indent=1) + "\n")
    write_atomic(plan.folder / "contrast.md", text)
    write_atomic(plan.folder / "contrast.tex", latex(res, *labels))
    if echo:
        print(f"\n{text}\nContrast with {plan.contrast} saved to {plan.folder} (contrast.json, contrast.md, "
              "contrast.tex)")
    return res
