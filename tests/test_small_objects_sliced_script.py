"""benchmarks/small_objects_sliced.py: the published study is ``yolo-spd study`` with the documented recipe, and its
results reach the docs unchanged (the study itself runs for hours; tests/test_study.py runs the command on tiny data)."""

from __future__ import annotations

import json

import pytest

from .conftest import SHARED, load_script


@pytest.fixture(scope="module")
def script():
    return load_script("small_objects_sliced")


@pytest.mark.skipif(not (SHARED / "data" / "aerial-cars" / "data.yaml").is_file(), reason="needs ../shared")
def test_the_plan_is_the_recipe_with_every_module_and_the_control(script, tmp_path):
    plan = script.plan_for(tmp_path / "runs")
    assert [m.rsplit("/", 1)[-1] for m in plan.models] == ["yolov5nu.yaml", "yolov5-spd-n.yaml",
                                                           "yolov5-scconv-n.yaml", "yolov5-ssdconv-n.yaml",
                                                           "yolov5nu-wide.yaml"]
    assert plan.control == plan.models[-1]  # every module is also compared with the compute-matched control
    assert plan.seeds == (0, 1, 2, 3, 4) and plan.folder == tmp_path / "runs" / "small_objects_sliced"
    assert plan.train == {"epochs": 15, "imgsz": 320, "batch": 16, "optimizer": "AdamW", "lr0": 0.004,
                          "warmup_epochs": 0, "device": "cpu", "workers": 2}
    assert (plan.tiles.tile, plan.tiles.overlap, plan.tiles.min_visible) == (320, 0.2, 0.5)
    assert plan.evaluation.slicing.size == 320 and plan.evaluation.slicing.overlap == 0.2
    assert plan.val.split == "val" and len(plan.val.images) == 10
    assert plan.command.startswith("yolo-spd study models=yolov5nu.yaml,") and "data=../shared/" in plan.command
    assert plan.eval_name == "sliced-val-320"


def test_publish_copies_the_study_files_and_writes_the_docs_block(script, tmp_path):
    folder, out, docs = tmp_path / "study", tmp_path / "results", tmp_path / "evidence.md"
    folder.mkdir()
    (folder / "study.json").write_text(json.dumps({"partial": True}))
    (folder / "study.md").write_text("`yolo-spd study ...`\n\n**Partial**: 2 of 15 runs\n")
    (folder / "study.png").write_bytes(b"\x89PNG fake")
    for suffix in (".tex", ".csv", "_paired.csv"):
        (folder / f"study{suffix}").write_text(f"the study's {suffix}\n")
    docs.write_text("# Evidence\n\n<!-- BEGIN generated: small_objects_sliced -->\nold\n"
                    "<!-- END generated: small_objects_sliced -->\n\nafter\n")
    script.publish(folder, out, docs)
    for suffix in (".json", ".md", ".tex", ".csv", "_paired.csv", ".png"):
        assert (out / f"small_objects_sliced{suffix}").read_bytes() == (folder / f"study{suffix}").read_bytes()
    text = docs.read_text()
    assert "**Partial**: 2 of 15 runs" in text and "old" not in text and text.endswith("after\n")


def test_finished_runs_are_archived_without_weights_and_restored_only_where_missing(script, tmp_path):
    study, archive = tmp_path / "study", tmp_path / "archive"
    done, unfinished = study / "yolov5nu-seed0", study / "yolov5-spd-n-seed0"
    for run in (done, unfinished):
        (run / "sliced-val-320").mkdir(parents=True)
        (run / "weights").mkdir()
        (run / "weights" / "best.pt").write_bytes(b"weights")
        for name in ("study_run.json", "results.csv"):
            (run / name).write_text(f"{run.name} {name}")
        for name in ("coco_eval.json", "coco_predictions.json", "study_eval.json"):
            (run / "sliced-val-320" / name).write_text(f"{run.name} {name}")
    (done / "done.json").write_text("{}")  # the other one is still training: no done marker
    (done / "resumed_at.json").write_text("[4]\n")  # kept where there is one: the run's training minutes need it
    assert script.archive_runs(study, archive, "sliced-val-320") == ["yolov5nu-seed0"]
    archived = sorted(str(p.relative_to(archive)) for p in archive.rglob("*") if p.is_file())
    assert archived == ["yolov5nu-seed0/done.json", "yolov5nu-seed0/results.csv", "yolov5nu-seed0/resumed_at.json",
                        "yolov5nu-seed0/sliced-val-320/coco_eval.json",
                        "yolov5nu-seed0/sliced-val-320/coco_predictions.json",
                        "yolov5nu-seed0/sliced-val-320/study_eval.json", "yolov5nu-seed0/study_run.json"]

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert script.restore_runs(archive, fresh) == ["yolov5nu-seed0"]
    for f in archive.rglob("*"):
        if f.is_file():
            assert (fresh / f.relative_to(archive)).read_bytes() == f.read_bytes()
    assert [p.name for p in fresh.iterdir()] == ["yolov5nu-seed0"]  # no build folder left behind
    (fresh / "yolov5nu-seed0" / "results.csv").write_text("continued here")
    assert script.restore_runs(archive, fresh) == []  # a run folder that exists is never overwritten
    assert (fresh / "yolov5nu-seed0" / "results.csv").read_text() == "continued here"
    assert script.restore_runs(tmp_path / "no-archive", fresh) == []


@pytest.mark.skipif(not (SHARED / "data" / "aerial-cars" / "data.yaml").is_file(), reason="needs ../shared")
def test_the_scconv_width_study_is_the_published_recipe_at_scale_s(script, tmp_path):
    """benchmarks/scconv_width.py: the same recipe, tiles and scoring as the published study; yolov5su against
    yolov5-scconv-s, the published study's five seeds, its own folder and results."""
    width = load_script("scconv_width")
    plan, published = script.plan_for(tmp_path, width.STUDY, width.STEM), script.plan_for(tmp_path)
    assert [m.rsplit("/", 1)[-1] for m in plan.models] == ["yolov5su.yaml", "yolov5-scconv-s.yaml"]
    assert plan.seeds == published.seeds == (0, 1, 2, 3, 4)
    assert plan.control is None and plan.folder == tmp_path / "scconv_width"
    assert plan.train == published.train and plan.tiles == published.tiles
    assert plan.eval_spec() == published.eval_spec()
    assert plan.command.startswith("yolo-spd study models=yolov5su.yaml,yolov5-scconv-s.yaml ")
    assert plan.command.endswith("(python benchmarks/scconv_width.py)")
    last = script.plan_for(tmp_path, width.STUDY, width.STEM, "last")  # --checkpoint last: last.pt, its own scoring
    assert last.checkpoint == "last" and last.eval_name == "sliced-val-320-last" and last.train == plan.train
    assert last.command.endswith(" checkpoint=last (python benchmarks/scconv_width.py --checkpoint last)")


@pytest.mark.skipif(not (SHARED / "data" / "aerial-cars" / "data.yaml").is_file(), reason="needs ../shared")
def test_the_contrast_without_scale_s_runs_is_one_error_line_and_writes_nothing(tmp_path):
    """``scconv_width.py --contrast`` restores the published study's records, finds no scale-s run on record (an
    empty archive) and stops with one line before any bootstrap, leaving no results file or docs block behind."""
    import subprocess
    import sys

    from .conftest import REPO, child_env

    (tmp_path / "empty").mkdir()
    docs = tmp_path / "evidence.md"
    docs.write_text("<!-- BEGIN generated: scconv_width-contrast -->\n<!-- END generated: scconv_width-contrast -->\n")
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "scconv_width.py"), "--contrast",
                          "--runs", str(tmp_path / "runs"), "--archive", str(tmp_path / "empty"),
                          "--out", str(tmp_path / "out"), "--docs", str(docs)],
                         cwd=tmp_path, env=child_env(YOLO_SPD_CACHE=str(tmp_path / "cache")), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == (
        f"scconv_width.py: error: {tmp_path / 'runs' / 'scconv_width'}: 0 seed(s) with both yolov5su and "
        "yolov5-scconv-s scored; a contrast needs at least 2 in each study")
    assert "Traceback" not in out.stderr and not (tmp_path / "out").exists()
    assert len(list((tmp_path / "runs" / "small_objects_sliced").iterdir())) == 25  # the published study's runs
