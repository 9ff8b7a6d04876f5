"""``yolo-spd study`` as a user runs it: a subprocess on tiny data, its files, resumption, reuse rules and bad input."""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from yolo_spd.errors import UsageError

from .conftest import REPO, child_env, make_yolo_dataset

TINY = ["epochs=1", "imgsz=64", "batch=4", "device=cpu", "workers=0", "resamples=200"]


def study(args: list[str], cwd: Path, config: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "yolo_spd", "study", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=child_env(YOLO_CONFIG_DIR=str(config), YOLO_SPD_CACHE=str(cwd / "cache")))


def error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("yolo-spd: error:"), result.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 2-model x 2-seed study, trained on 64-px tiles and scored by sliced val, then rerun unchanged."""
    root = tmp_path_factory.mktemp("study")
    data = make_yolo_dataset(root / "data", n_train=6, n_val=4, size=128, seed=3)
    args = ["models=yolov5nu.yaml,yolov5-spd-n.yaml", "seeds=0,1", f"data={data}", "tile=64", "overlap=0.2",
            "slice=64", *TINY, f"project={root / 'runs'}", "name=ablation"]
    first = study(args, root, root / "config")
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    folder = root / "runs" / "ablation"
    mtimes = {p: p.stat().st_mtime_ns for p in folder.glob("*/weights/best.pt")}
    saved = (folder / "study.json").read_text()
    again = study(args, root, root / "config")
    return root, data, args, folder, first, again, mtimes, saved


@pytest.mark.slow
def test_the_study_writes_runs_tables_intervals_and_a_plot(finished):
    _, data, _, folder, first, _, _, _ = finished
    out = first.stdout
    for k in range(1, 5):
        assert f"run {k} of 4" in out
    assert out.index("yolov5nu-seed0") < out.index("yolov5-spd-n-seed0") < out.index("yolov5nu-seed1")  # seed by seed
    assert f"Study results saved to {folder}" in out
    for name in ("yolov5nu-seed0", "yolov5-spd-n-seed0", "yolov5nu-seed1", "yolov5-spd-n-seed1"):
        run = folder / name
        assert (run / "weights" / "best.pt").is_file() and (run / "done.json").is_file()
        assert "64px" in (run / "args.yaml").read_text()  # trained on the tiles
        assert (run / "sliced-val-64" / "coco_eval.json").is_file()  # scored by sliced val on the full images
    res = json.loads((folder / "study.json").read_text())
    assert [r["resumed"] for r in res["runs"]] == [False] * 4 and "Resumed" not in (folder / "study.md").read_text()
    assert res["partial"] is False and res["missing"] == [] and res["planned_runs"] == 4
    assert [(r["model"], r["seed"]) for r in res["runs"]] == [("yolov5nu", 0), ("yolov5-spd-n", 0),
                                                              ("yolov5nu", 1), ("yolov5-spd-n", 1)]
    labels = [line.split()[0] for f in sorted((data.parent / "labels" / "val").glob("*.txt"))
              for line in f.read_text().splitlines() if line.strip()]
    assert res["val"]["images"] == 4 and res["val"]["total"]["all"] == len(labels)
    assert [c["all"] for c in res["val"]["per_class"]] == [labels.count("0"), labels.count("1")]
    pair = res["paired"]["variants"]["yolov5-spd-n"]
    assert set(pair) == {"AP", "AP50", "AP_small", "AR_small"} and res["paired"]["headline"] == "both"
    by = {(r["model"], r["seed"]): r["metrics"] for r in res["runs"]}
    for metric, entry in pair.items():
        diffs = [by[("yolov5-spd-n", s)][metric] - by[("yolov5nu", s)][metric] for s in (0, 1)]
        assert entry["differences"] == pytest.approx(diffs, abs=1e-6)
        assert entry["t"]["n"] == 2 and entry["bootstrap"]["n"] == 2
        assert entry["bootstrap"]["ci"][0] <= entry["bootstrap"]["ci"][1]
    md = (folder / "study.md").read_text()
    assert "All 4 runs finished" in md and "Smallest difference this design resolves" in md
    assert "| red |" in md and "†" in md  # a handful of val boxes: flagged
    from PIL import Image

    with Image.open(folder / "study.png") as image:
        pixels = np.asarray(image.convert("L"))
    assert image.size[0] > 600 and pixels.std() > 5  # a drawn figure, not a blank canvas


@pytest.mark.slow
def test_a_rerun_trains_nothing_and_gives_the_same_results(finished):
    _, _, _, folder, first, again, mtimes, saved = finished
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Starting training" not in again.stdout and again.stdout.count("(done; trained in ") == 4
    assert "updated" not in again.stdout  # nothing new: the files are written once, at the end
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*/weights/best.pt")} == mtimes
    assert (folder / "study.json").read_text() == saved  # the bootstrap is deterministic
    assert first.stdout.count("All 4 runs finished") == again.stdout.count("All 4 runs finished") == 1


@pytest.mark.slow
def test_a_changed_training_key_is_refused_and_an_added_seed_reuses_the_rest(finished):
    root, _, args, folder, _, _, mtimes, _ = finished
    changed = study([a if a != "epochs=1" else "epochs=2" for a in args], root, root / "config")
    line = error_line(changed)
    assert "yolov5nu-seed0" in line and "epochs=1->2" in line and "name=" in line
    more = study([a if a != "seeds=0,1" else "seeds=0,1,2" for a in args], root, root / "config")
    assert more.returncode == 0, more.stderr[-3000:]
    assert more.stdout.count("Starting training") == 2 and "run 6 of 6" in more.stdout
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # the four finished runs were reused
    assert len(json.loads((folder / "study.json").read_text())["runs"]) == 6


@pytest.mark.slow
def test_contrast_with_another_study_folder_from_the_command_line(finished):
    """``contrast=DIR``: a copy of the finished study (its records, no weights) run with contrast= the original reuses
    every run, scores nothing, and writes contrast.json/.md: a study contrasted with itself is 0 with a bootstrap of
    [0, 0]. Bad contrast keys are one line each, before anything is made."""
    import shutil

    root, _, args, folder, _, _, _, _ = finished

    def records(target: Path, seeds: tuple[int, ...], study_files: bool = True) -> Path:
        """The finished study's records (no weights) of ``seeds`` only: other tests of this module add seeds to it."""
        keep = {f"{m}-seed{s}" for m in ("yolov5nu", "yolov5-spd-n") for s in seeds}

        def ignore(where, names):
            if Path(where) != folder:
                return [n for n in names if n == "weights"]
            return [n for n in names if ((folder / n).is_dir() and n not in keep)
                    or (n.startswith("study.") and not study_files)]
        shutil.copytree(folder, target, ignore=ignore)
        return target

    first = records(root / "runs" / "ablation-first", (0, 1))
    copy = records(root / "runs" / "ablation-copy", (0, 1), study_files=False)
    named = [a if not a.startswith("name=") else "name=ablation-copy" for a in args]
    out = study([*named, f"contrast={first}"], root, root / "config")
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "Starting training" not in out.stdout and f"Contrast with {first} saved to {copy}" in out.stdout
    res = json.loads((copy / "contrast.json").read_text())
    assert (res["first"]["variant"], res["second"]["variant"]) == ("yolov5-spd-n", "yolov5-spd-n")
    assert res["first"]["seeds"] == res["second"]["seeds"] == [0, 1]
    for entry in res["scopes"]["all classes"].values():
        assert entry["contrast"] == 0 and entry["bootstrap"]["ci"] == [0, 0] and not entry["resolved"]
    md = (copy / "contrast.md").read_text()
    assert "contrast ablation-copy - ablation-first" in md and "seeds 0,1" in md
    assert r"\label{tab:contrast-all-classes}" in (copy / "contrast.tex").read_text()
    assert res["first"]["command"] == json.loads((folder / "study.json").read_text())["command"]  # read from DIR
    assert "name=ablation-copy" in res["second"]["command"] and "contrast=" in res["second"]["command"]

    bad = {f"contrast={root / 'nowhere'}": f"contrast={root / 'nowhere'}: no study.json there",
           f"contrast={copy}": f"contrast={copy}: that is this study's own folder",
           "contrast_variants=a.yaml,b.yaml": "contrast_variants=a.yaml,b.yaml: names the variants of a contrast; add "
                                              "contrast=DIR",
           f"contrast={folder} contrast_variants=yolov5-spd-n.yaml": "contrast_variants=yolov5-spd-n.yaml: give two",
           f"contrast={folder} contrast_variants=yolov5nu.yaml,yolov5-spd-n.yaml":
               f"yolov5nu.yaml: not a variant of the contrast= study ({folder}); give one of yolov5-spd-n",
           f"contrast={folder} checkpoint=last": f"contrast={folder}: its runs are scored into sliced-val-64, this "
                                                  "study scores into sliced-val-64-last (checkpoint= and slice= must "
                                                  "match)"}
    for keys, said in bad.items():
        line = error_line(study([*named, *keys.split()], root, root / "config"))
        assert said in line, line
    scored_otherwise = [*named, f"contrast={folder}", "max_dets=50"]  # the other study was scored at 100
    line = error_line(study(scored_otherwise, root, root / "config"))
    assert "was scored otherwise than this study scores (max_dets=100->50)" in line, line
    (root / "broken").mkdir()
    (root / "broken" / "study.json").write_text("{")
    line = error_line(study([*named, f"contrast={root / 'broken'}"], root, root / "config"))
    assert f"contrast={root / 'broken'}: its study.json is not a yolo-spd study's" in line, line
    one_seed = records(root / "runs" / "one-seed", (0,))  # one paired difference there
    line = error_line(study([*named, f"contrast={one_seed}"], root, root / "config"))
    assert "1 seed(s) with both yolov5nu and yolov5-spd-n scored there" in line, line


@pytest.mark.slow
def test_a_study_moved_with_its_data_to_another_place_reuses_its_runs_and_refuses_changed_labels(finished):
    """The runs record the data's content, not its paths or file times: data and runs copied elsewhere (new paths,
    new modification times, as on another machine) train nothing; one changed label byte is refused."""
    import shutil

    root, data, args, folder, _, _, _, _ = finished
    moved = root / "moved"
    shutil.copytree(data.parent, moved / "data", copy_function=shutil.copy)  # shutil.copy: fresh mtimes
    yaml_file = moved / "data" / data.name
    yaml_file.write_text(yaml_file.read_text().replace(f"path: {data.parent}", f"path: {moved / 'data'}"))
    # without the checkpoints, as benchmarks/small_objects_sliced.py archives a study: its scoring is kept too (it
    # recorded the val YAML's path, so every run was scored again, and without weights that was a traceback)
    shutil.copytree(folder, moved / "runs" / "ablation", ignore=shutil.ignore_patterns("weights"))
    moved_args = [f"data={yaml_file}" if a.startswith("data=") else
                  f"project={moved / 'runs'}" if a.startswith("project=") else a for a in args]
    again = study(moved_args, moved, root / "config")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Starting training" not in again.stdout and again.stdout.count("(done;") == 4
    assert "updated" not in again.stdout  # nothing scored again
    rescore = study([*moved_args, "max_dets=50"], moved, root / "config")
    line = error_line(rescore)
    assert "has no weights/best.pt or last.pt to score" in line and "max_dets=100->50" in line
    label = sorted((moved / "data" / "labels" / "train").glob("*.txt"))[0]
    first, rest = label.read_text().split(" ", 1)
    label.write_text(f"{1 - int(first)} {rest}")
    line = error_line(study(moved_args, moved, root / "config"))
    assert "yolov5nu-seed0" in line and "the training data" in line and "label" in line


@pytest.mark.slow
def test_checkpoint_last_scores_each_runs_last_pt_into_its_own_folder_without_training(finished):
    """checkpoint=last scores last.pt (best.pt made unreadable here: it is never opened), into <eval>-last/ beside the
    best.pt scoring, which stays; no run trains again, and the report says which checkpoint it scored."""
    import shutil

    root, _, args, folder, _, _, _, _ = finished
    copy = root / "last"
    shutil.copytree(folder, copy / "ablation")
    kept = {p: p.read_bytes() for p in (copy / "ablation").glob("*/sliced-val-64/*")}
    for best in (copy / "ablation").glob("*/weights/best.pt"):
        best.write_bytes(b"not a checkpoint")
    moved = [f"project={copy}" if a.startswith("project=") else a for a in args]
    last = study([*moved, "checkpoint=last"], copy, root / "config")
    assert last.returncode == 0, last.stderr[-3000:]
    assert "Starting training" not in last.stdout and last.stdout.count(" scored (") == 4
    assert {p: p.read_bytes() for p in (copy / "ablation").glob("*/sliced-val-64/*")} == kept
    res = json.loads((copy / "ablation" / "study.json").read_text())
    assert res["settings"]["checkpoint"] == "last" and res["settings"]["evaluation"]["checkpoint"] == "last"
    assert [r["eval"].split("/")[1] for r in res["runs"]] == ["sliced-val-64-last"] * 4
    assert [(r["scored_epoch"], r["epochs"]) for r in res["runs"]] == [(1, 1)] * 4
    assert "Scored: each run's `last.pt`" in (copy / "ablation" / "study.md").read_text()
    broken = study(moved, copy, root / "config")  # best.pt again: its recorded scoring is reused, nothing opened
    assert broken.returncode == 0 and "Scored: each run's `best.pt`" in (copy / "ablation" / "study.md").read_text()


def test_the_scored_epoch_is_ultralytics_best_pt_pick_or_the_last_epoch(tmp_path):
    """best.pt is the epoch of highest mAP50-95 in results.csv (Ultralytics' fitness on the supported versions,
    checked against its DetMetrics here), the last of equals (Ultralytics saves best.pt again on a tie: a run that
    learned nothing holds its last epoch); an epoch written twice (killed between row and checkpoint) counts once."""
    from ultralytics.utils.metrics import DetMetrics

    from yolo_spd.study.runs import FITNESS_COLUMN, scored_epoch

    metrics = DetMetrics()
    metrics.box.mean_results = lambda: [0.9, 0.8, 0.7, 0.25]  # P, R, mAP50, mAP50-95
    assert metrics.fitness == 0.25 and FITNESS_COLUMN in metrics.keys
    run = tmp_path / "run"
    run.mkdir()
    head = f"epoch,time,metrics/mAP50(B),{FITNESS_COLUMN}\n"
    (run / "results.csv").write_text(head + "1,10,0.9,0.1\n2,20,0.1,0.3\n3,30,0.2,0.2\n3,31,0.2,0.3\n4,40,0.3,0.25\n")
    assert scored_epoch(run) == (3, 4)  # 3's later row ties 2, and a tie saves best.pt again
    assert scored_epoch(run, "last") == (4, 4)
    (run / "results.csv").write_text(head + "1,10,0,0\n2,20,0,0\n3,30,0,0\n")
    assert scored_epoch(run) == (3, 3)  # nothing learned: every epoch ties, best.pt is the last
    (run / "results.csv").write_text(head + "1,10,0,nan\n2,20,0,0.1\n")
    assert scored_epoch(run) == (2, 2)
    (run / "results.csv").write_text("epoch,time\n1,10\n2,20\n")
    assert scored_epoch(run) == (None, 2) and scored_epoch(run, "last") == (2, 2)


@pytest.mark.slow
def test_operational_keys_changed_reuse_the_runs_and_the_report_names_what_they_were_trained_with(finished):
    """device, workers, plots, save_period and verbose decide where and how a run computes: changed, the finished runs
    are reused (they were refused, with Python reprs), and study.md names the runs trained with other values."""
    import shutil

    root, _, args, folder, _, _, _, _ = finished
    copy = root / "operational"
    shutil.copytree(folder, copy / "ablation")
    moved = [f"project={copy}" if a.startswith("project=") else a for a in args]
    again = study([a if a != "workers=0" else "workers=1" for a in moved] + ["plots=False", "verbose=False"], copy,
                  root / "config")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Starting training" not in again.stdout and again.stdout.count("(done; trained in ") == 4
    assert " scored (" not in again.stdout  # nor scored again: workers is how a scoring runs, not what it scores
    md = (copy / "ablation" / "study.md").read_text()
    assert ("other operational settings than this command's (workers=0, plots=unset, verbose=unset: "
            "yolov5nu-seed0, yolov5-spd-n-seed0, yolov5nu-seed1, yolov5-spd-n-seed1)") in md
    assert "operational" not in (folder / "study.md").read_text()  # the command as trained: nothing to say
    line = error_line(study([a if a != "imgsz=64" else "imgsz=96" for a in moved] + ["optimizer=SGD"], copy,
                            root / "config"))
    assert "imgsz=64->96; optimizer=unset->SGD)" in line  # as typed, not as Python reprs


@pytest.mark.slow
def test_a_run_stopped_during_its_final_validation_is_marked_done_not_trained_again(finished):
    """Ultralytics strips last.pt of its optimizer state when the last epoch ends, then validates best.pt: a study
    stopped there left a run with last.pt and no done.json, which was resumed: Ultralytics trained anew on its default
    data (coco8: a download, and a stray runs/detect/train folder)."""
    import shutil

    root, _, args, folder, _, _, _, _ = finished
    copy = root / "stopped"
    shutil.copytree(folder, copy / "ablation")
    (copy / "ablation" / "yolov5-spd-n-seed1" / "done.json").unlink()
    again = study([f"project={copy}" if a.startswith("project=") else a for a in args], copy, root / "config")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "yolov5-spd-n-seed1 (trained, stopped during its final validation; scored as finished)" in again.stdout
    assert "Starting training" not in again.stdout and "Resuming" not in again.stdout
    assert (copy / "ablation" / "yolov5-spd-n-seed1" / "done.json").is_file() and not (copy / "runs").exists()


def test_scoring_recorded_by_the_val_yaml_path_is_kept_and_recorded_by_content(tmp_path, monkeypatch):
    """Studies recorded their scoring by the val YAML's absolute path until December 2026: such a record, at that
    path, is the same scoring (nothing is scored again, and no weights are needed) and is rewritten by content."""
    from yolo_spd.study.plan import EVAL_SPEC, score_run

    plan, _, _ = fabricated_study(tmp_path, monkeypatch, ["models=yolov5nu.yaml,yolov5-spd-n.yaml", "seeds=0"],
                                  n_val=3, data_seed=1, rng_seed=1)
    run = plan.folder / "yolov5nu-seed0"
    spec_file = run / plan.eval_name / EVAL_SPEC
    spec_file.write_text(json.dumps(plan.path_eval_spec()))
    assert score_run(plan, run) == (run / plan.eval_name, False)
    assert json.loads(spec_file.read_text()) == plan.eval_spec() and "data" not in plan.eval_spec()
    spec_file.write_text(json.dumps({**plan.path_eval_spec(), "data": str(tmp_path / "elsewhere" / "data.yaml")}))
    with pytest.raises(UsageError, match=r"yolov5nu-seed0 in .* has no weights/best.pt or last.pt to score, and it "
                                         r"was scored with other settings \(the val data\); copy its weights"):
        score_run(plan, run)
    spec_file.write_text(json.dumps({**plan.path_eval_spec(), "max_dets": 50}))  # an old record, another setting
    with pytest.raises(UsageError, match=r"scored with other settings \(max_dets=50->100\); copy"):
        score_run(plan, run)


@pytest.mark.parametrize("times, resumes, minutes", [
    ([30, 60, 90], None, 90),  # one session
    ([30, 60, 20, 50], None, 110),  # a resume shows as a drop in the time column
    ([30, 60, 65, 95], [2], 155),  # a resume whose first epoch took longer than the time before it: no drop
    ([30, 60, 20, 50], [2], 110),  # both traces of one resume count it once
    ([30, 60, 90], [0], 90),  # resumed before its first epoch finished
])
def test_training_minutes_add_every_session_of_a_resumed_run(tmp_path, times, resumes, minutes):
    from yolo_spd.study.runs import training_minutes, was_resumed

    rows = "".join(f"{k + 1},{t}\n" for k, t in enumerate(times))
    (tmp_path / "results.csv").write_text(f"epoch,time\n{rows}")
    if resumes is not None:
        (tmp_path / "resumed_at.json").write_text(json.dumps(resumes))
    assert training_minutes(tmp_path) == pytest.approx(minutes / 60)
    assert was_resumed(tmp_path) == (resumes is not None or minutes != times[-1])


@pytest.mark.slow
def test_a_study_killed_mid_run_resumes_that_run_from_last_pt(tmp_path):
    data = make_yolo_dataset(tmp_path / "data", n_train=96, n_val=2, size=64)
    args = ["models=yolov5nu.yaml,yolov5-spd-n.yaml", "seeds=0", f"data={data}", "epochs=3", "imgsz=64", "batch=2",
            "device=cpu", "workers=0", "resamples=100", f"project={tmp_path / 'runs'}"]
    env = child_env(YOLO_CONFIG_DIR=str(tmp_path / "config"), YOLO_SPD_CACHE=str(tmp_path / "cache"))
    process = subprocess.Popen([sys.executable, "-m", "yolo_spd", "study", *args], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = tmp_path / "runs" / "study" / "yolov5nu-seed0"
    deadline = time.time() + 600
    while not ((run / "results.csv").is_file() and (run / "weights" / "last.pt").is_file()):
        assert process.poll() is None and time.time() < deadline, "the first run ended before its first epoch"
        time.sleep(0.2)
    time.sleep(1.5)  # into epoch 2
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=120)
    assert not (run / "done.json").exists()
    # continued with another workers= (an operational key, as Ultralytics' resume allows): resumed, not refused
    resumed = study([a if a != "workers=0" else "workers=1" for a in args], tmp_path, tmp_path / "config")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "run 1 of 2: yolov5nu-seed0 (interrupted" in resumed.stdout and "Resuming training" in resumed.stdout
    assert "workers: 1" in (run / "args.yaml").read_text()  # passed on to the resumed training
    import csv

    with open(run / "results.csv", encoding="utf-8") as f:
        assert [int(float(r["epoch"])) for r in csv.DictReader(f)] == [1, 2, 3]
    runs = json.loads((tmp_path / "runs" / "study" / "study.json").read_text())["runs"]
    assert [(r["model"], r["resumed"]) for r in runs] == [("yolov5nu", True), ("yolov5-spd-n", False)]
    with open(run / "results.csv", encoding="utf-8") as f:
        times = [float(r["time"]) for r in csv.DictReader(f, skipinitialspace=True)]
    (before,) = json.loads((run / "resumed_at.json").read_text())  # the epochs done when it was killed
    assert 1 <= before < 3 and runs[0]["train_minutes"] == round((times[before - 1] + times[-1]) / 60, 2)
    md = (tmp_path / "runs" / "study" / "study.md").read_text()
    assert "Resumed after an interruption: yolov5nu-seed0 (Ultralytics does not restore the random state" in md
    assert "other operational settings than this command's (workers=0: yolov5nu-seed0)" in md


@pytest.mark.parametrize("args, names", [
    (["models=yolov5nu.yaml"], "a study compares two or more models"),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "seeds=0,one"], "seeds=0,one: 'one' is not a whole number"),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "seeds=0,-1"], "seeds=0,-1: give distinct whole numbers from 0 to "
                                                               "4294967295"),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "seeds=4294967296"], "seeds=4294967296: give distinct whole numbers"),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "bootstrap_seed=-2"], "bootstrap_seed=-2: give a whole number from 0"),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "imgsz=none"], "imgsz=None: expected a positive image size"),
    (["models=yolov5nu.yaml,nonexistent-n.yaml"], "models=nonexistent-n.yaml: no such model YAML"),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "imgsz=abc"], "imgsz=abc: expected a positive image size"),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "imgsz=-1"], "imgsz=-1: expected a positive image size"),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "momentum=2"], "'momentum=2' is an invalid value"),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "lr0=2x"], "'lr0=2x' is of invalid type"),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "gt=json"], "gt=json: "),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "seed=3"], "seed= is set by the study"),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "split=train"], "split=train: a study trains on data='s train split "
                                                                "and scores every run on its val split"),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "model=yolov5nu.yaml"], "give the model once: models= or model=, not "
                                                                       "both"),
    (["model=yolov5nu.yaml,yolov5-spd-n"], "model=yolov5-spd-n: not found; the packaged config is "
                                           "model=yolov5-spd-n.yaml"),  # model= is models=, and named as typed
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "resamples=5"], "resamples=5"),
    (["models=yolov5nu.yaml,yolov5nu.yaml"], "same file name"),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "control=yolov5nu.yaml"],
     "control=yolov5nu.yaml: name one of models= other than the first (the baseline), as written there "
     "(yolov5-spd-n.yaml), or control=wide"),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "control=wide.yaml"], "control=wide.yaml: name one of models="),
    # the tiles' own keys without tile= (format=gif was accepted and ignored)
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "format=gif"], "format= applies to the tiles only; add tile=SIZE"),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "min_visible=0.3"], "min_visible= applies to the tiles only; add "),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "overlap=0.3"], "overlap= applies to sliced inference only; add "),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "tile=64", "format=gif"], "format=gif: allowed values are png, jpg"),
    (["models=yolov5nu.yaml,yolov5-spd-n.yaml", "checkpoint=final"], "checkpoint=final: give best (best.pt, "),
    (["models=yolov5-spd-n.yaml,yolov5nu.yaml", "control=wide"], "control=wide: no variant costs more GFLOPs than "
                                                                 "yolov5-spd-n at imgsz=640 (the most, yolov5nu: "),
    ([f"models=yolov5nu.yaml,yolov5-spd-n.yaml,{REPO / 'benchmarks' / 'yolov5nu-wide.yaml'}", "control=wide"],
     "control=wide: makes yolov5nu-wide.yaml, and models= already has a yolov5nu-wide"),
    (["models=yolov5nu.pt,yolov5-spd-n.yaml", "control=wide"], "models=yolov5nu.pt"),  # no such file: named first
    ([f"models={REPO / 'weights' / 'yolov5-spd-n-demo.pt'},yolov5nu.yaml", "control=wide"],
     "is not a model YAML; a wider control is made from the baseline's YAML"),
])
def test_bad_study_arguments_are_one_line(tmp_path, args, names):
    data = make_yolo_dataset(tmp_path / "data", n_train=1, n_val=1, size=64)
    assert names in error_line(study([*args, f"data={data}", f"project={tmp_path}"], tmp_path, tmp_path / "c"))
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("extra, tile_overlap, slice_overlap", [
    (["tile=64", "overlap=0.3"], 0.3, None),  # the tiles' overlap alone (it was refused: "add slice=SIZE")
    (["tile=64", "overlap=0.3", "slice=64"], 0.3, 0.3),  # shared, as docs/study.md says
    (["tile=64", "slice=64"], 0.2, 0.2),  # both defaults
    (["slice=64", "overlap=0.1"], None, 0.1),
])
def test_overlap_is_the_tiles_and_the_slicings_as_given(tmp_path, extra, tile_overlap, slice_overlap):
    from yolo_spd.cli import study_plan

    data = make_yolo_dataset(tmp_path / "data", n_train=1, n_val=1, size=64)
    plan = study_plan(["models=yolov5nu.yaml,yolov5-spd-n.yaml", f"data={data}", f"project={tmp_path}", *extra])
    assert (plan.tiles and plan.tiles.overlap) == tile_overlap
    slicing = plan.evaluation.slicing
    assert (slicing and slicing.overlap) == slice_overlap
    if plan.tiles:
        assert (plan.tiles.min_visible, plan.tiles.empty, plan.tiles.format) == (0.5, 0.1, "png")


@pytest.mark.parametrize("batch, scored", [("8", 8), ("-1", None), ("0.5", None)])
def test_scoring_reuses_the_training_batch_only_where_validation_takes_it(tmp_path, batch, scored):
    """batch=-1 (AutoBatch) and a GPU-memory fraction train; passed on to scoring they failed in its DataLoader
    after every run had trained."""
    from yolo_spd.cli import study_plan

    data = make_yolo_dataset(tmp_path / "data", n_train=1, n_val=1, size=64)
    plan = study_plan(["models=yolov5nu.yaml,yolov5-spd-n.yaml", f"data={data}", f"project={tmp_path}",
                       f"batch={batch}"])
    assert plan.val_keys.get("batch") == scored and plan.train["batch"] == float(batch)


def test_a_run_that_left_no_checkpoint_starts_again_with_the_new_settings(tmp_path):
    """A recorded spec blocks a changed rerun only where the run trained something (a results.csv row, last.pt or
    done.json): a run that failed before its first epoch ended trained nothing, so it must not refuse the corrected
    command."""
    from yolo_spd.errors import UsageError
    from yolo_spd.study.runs import SPEC_FILE, RunSpec, check_spec

    def spec(epochs):
        return RunSpec("yolov5nu.yaml", 0, tmp_path / "data.yaml", "key", {"epochs": epochs, "imgsz": 64})

    folder = tmp_path / spec(1).name
    folder.mkdir()
    (folder / SPEC_FILE).write_text(json.dumps(spec(1).as_dict()))
    (folder / "args.yaml").write_text("epochs: 1\n")  # what a failed start leaves besides the spec
    check_spec(spec(2), folder)  # nothing trained: no refusal
    (folder / "results.csv").write_text("epoch,time\n1,3.0\n")  # an epoch ended (save=False keeps no last.pt)
    with pytest.raises(UsageError, match="epochs=1->2"):
        check_spec(spec(2), folder)
    (folder / "results.csv").unlink()
    (folder / "weights").mkdir()
    (folder / "weights" / "last.pt").write_bytes(b"checkpoint")
    with pytest.raises(UsageError, match="epochs=1->2"):
        check_spec(spec(2), folder)
    check_spec(spec(1), folder)  # the same settings continue it


def test_a_training_key_written_out_at_its_default_value_continues_the_study(tmp_path):
    """patience=100 (Ultralytics' default) given on a rerun of a study that left it unset, or left out on a rerun of
    one that gave it, trains the same run: it is reused; any other value is still refused, naming the key."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    from yolo_spd.errors import UsageError
    from yolo_spd.study.runs import SPEC_FILE, RunSpec, check_spec

    def spec(**train):
        return RunSpec("yolov5nu.yaml", 0, tmp_path / "data.yaml", "key", {"epochs": 1, **train})

    default = DEFAULT_CFG_DICT["patience"]
    folder = tmp_path / spec().name
    (folder / "weights").mkdir(parents=True)
    (folder / "done.json").write_text("{}")
    for recorded, rerun in ((spec(), spec(patience=default)), (spec(patience=default), spec())):
        (folder / SPEC_FILE).write_text(json.dumps(recorded.as_dict()))
        check_spec(rerun, folder)  # no refusal: the same training
        with pytest.raises(UsageError, match=f"patience=unset->{default + 1}\\)"):
            check_spec(spec(patience=default + 1), folder)
    (folder / SPEC_FILE).write_text(json.dumps(spec(device="cpu", workers=8, save_period=1).as_dict()))
    check_spec(spec(device="0", workers=2), folder)  # where and how it computes: a study continued on another machine
    from yolo_spd.study.runs import resume_overrides

    assert resume_overrides(spec(device="cpu")) == {"device": "cpu", "workers": DEFAULT_CFG_DICT["workers"],
                                                    "plots": DEFAULT_CFG_DICT["plots"],
                                                    "save_period": DEFAULT_CFG_DICT["save_period"]}
    # a .pt brings its own imgsz (and single_cls) when they are unset: imgsz=640 written out is not "unset" there
    tuned = RunSpec("best.pt", 0, tmp_path / "data.yaml", "key", {"epochs": 1})
    (folder.parent / tuned.name).mkdir()
    (folder.parent / tuned.name / "done.json").write_text("{}")
    (folder.parent / tuned.name / SPEC_FILE).write_text(json.dumps(tuned.as_dict()))
    imgsz = DEFAULT_CFG_DICT["imgsz"]
    with pytest.raises(UsageError, match=f"imgsz=unset->{imgsz}\\)"):
        check_spec(RunSpec("best.pt", 0, tmp_path / "data.yaml", "key", {"epochs": 1, "imgsz": imgsz}),
                   folder.parent / tuned.name)


def test_tile_on_a_dataset_without_labels_is_one_line(tmp_path):
    data = make_yolo_dataset(tmp_path / "data", n_train=2, n_val=1, size=64)
    for label in (tmp_path / "data" / "labels" / "train").rglob("*.txt"):
        label.unlink()  # refused before tiling, as without tile=
    line = error_line(study(["models=yolov5nu.yaml,yolov5-spd-n.yaml", f"data={data}", "tile=32",
                             f"project={tmp_path}"], tmp_path, tmp_path / "c"))
    assert "the train split has no labelled image" in line
    assert not (tmp_path / "study").exists()  # the study folder it had made is gone (it was left empty)


def test_a_new_study_that_fails_before_training_leaves_no_folder(tmp_path):
    """device=3 on a machine without that GPU: one line from Ultralytics' device check, and no folder holding the
    first run's study_run.json behind."""
    data = make_yolo_dataset(tmp_path / "data", n_train=2, n_val=1, size=64)
    line = error_line(study(["models=yolov5nu.yaml,yolov5-spd-n.yaml", f"data={data}", "device=3", *TINY[:2],
                             f"project={tmp_path / 'p'}", "name=x"], tmp_path, tmp_path / "c"))
    assert "device=3" in line.replace("'", "")
    assert not (tmp_path / "p").exists()  # the study folder and the project folder made for it
    (tmp_path / "mine").mkdir()  # a folder of the user's, empty: it stays
    error_line(study(["models=yolov5nu.yaml,yolov5-spd-n.yaml", f"data={data}", "device=3", *TINY[:2],
                      f"project={tmp_path}", "name=mine"], tmp_path, tmp_path / "c"))
    assert (tmp_path / "mine").is_dir()


def test_control_wide_widens_the_baseline_to_the_nearest_gflops_step_of_the_costliest_variant():
    """control=wide's model: at 640 px and 80 classes it is the published hand-made control (width 0.32, within 5% of
    yolov5-spd-n); at 320 px and 5 classes, where channel rounding moves GFLOPs in steps, no width near it is closer;
    its YAML builds, in Ultralytics, to the GFLOPs it states."""
    import yaml as pyyaml

    from yolo_spd.study.control import model_gflops, single_scale, wide_control

    published = wide_control("yolov5nu.yaml", ["yolov5-scconv-n.yaml", "yolov5-spd-n.yaml"], 80, 640)
    assert published.matched == "yolov5-spd-n" and published.base_width == 0.25
    assert published.width == pytest.approx(0.32, abs=0.001) and abs(published.gflops / published.target - 1) < 0.05
    hand_made = pyyaml.safe_load((REPO / "benchmarks" / "yolov5nu-wide.yaml").read_text())
    assert published.gflops == pytest.approx(model_gflops(hand_made, 80, 640), rel=1e-6)
    tuned = wide_control("yolov5nu.yaml", [str(REPO / "weights" / "yolov5-spd-n-demo.pt")], 80, 640)  # a .pt variant
    assert (tuned.matched, tuned.width, tuned.gflops) == ("yolov5-spd-n-demo", published.width, published.gflops)

    small = wide_control("yolov5nu.yaml", ["yolov5-spd-n.yaml"], 5, 320)
    base = single_scale("yolov5nu.yaml")
    error = abs(small.gflops - small.target)
    grid = [0.28 + 0.0025 * k for k in range(33)]
    assert all(abs(model_gflops({**base, "width_multiple": w}, 5, 320) - small.target) >= error - 1e-9 for w in grid)
    assert small.text.startswith("# yolov5nu widened to yolov5-spd-n's compute")
    loaded = pyyaml.safe_load(small.text)
    assert loaded["width_multiple"] == small.width and loaded["backbone"] == base["backbone"]
    assert model_gflops(loaded, 5, 320) == pytest.approx(small.gflops, rel=1e-9)


@pytest.mark.slow
def test_a_study_with_control_wide_trains_the_control_it_made_and_keeps_it_on_a_rerun(tmp_path):
    data = make_yolo_dataset(tmp_path / "data", n_train=4, n_val=2, size=64)
    args = ["models=yolov5nu.yaml,yolov5-spd-n.yaml", "control=wide", "seeds=0", f"data={data}", *TINY,
            f"project={tmp_path / 'runs'}"]
    first = study(args, tmp_path, tmp_path / "config")
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    folder = tmp_path / "runs" / "study"
    control = folder / "yolov5nu-wide.yaml"
    assert f"control=wide: {control}: yolov5nu at width " in first.stdout and "against yolov5-spd-n's" in first.stdout
    assert first.stdout.count("Starting training") == 3 and (folder / "yolov5nu-wide-seed0" / "done.json").is_file()
    res = json.loads((folder / "study.json").read_text())
    assert res["control"] == "yolov5nu-wide" and res["settings"]["models"][-1] == str(control)
    assert "paired_control" in res and set(res["cost"]) == {"yolov5nu", "yolov5-spd-n", "yolov5nu-wide"}
    made = control.read_bytes()
    again = study(args, tmp_path, tmp_path / "config")
    assert again.returncode == 0 and "Starting training" not in again.stdout
    assert f"control=wide: {control} (made when this study started; kept): " in again.stdout
    assert "not the match it was made as" not in again.stdout and control.read_bytes() == made


def test_a_kept_wide_control_is_reused_and_says_when_it_no_longer_matches(tmp_path, capsys):
    from yolo_spd.study.control import control_file

    models = ["yolov5nu.yaml", "yolov5-scconv-n.yaml", "yolov5-spd-n.yaml"]
    file = control_file(tmp_path, models, 80, 640)
    made, first = file.read_bytes(), capsys.readouterr().out
    assert file == tmp_path / "yolov5nu-wide.yaml" and "yolov5nu at width 0.32 (from 0.25)" in first
    assert control_file(tmp_path, models, 80, 640) == file and file.read_bytes() == made
    kept = capsys.readouterr().out
    assert "(made when this study started; kept): 1.00x yolov5-spd-n's GFLOPs at imgsz=640" in kept
    assert "not the match" not in kept
    control_file(tmp_path, models, 5, 320)  # other classes and size: kept, and said to match no longer
    assert "not the match it was made as" in capsys.readouterr().out and file.read_bytes() == made


def test_the_compute_matched_control_is_within_5_percent_of_yolov5_spd_n():
    from ultralytics.nn.tasks import DetectionModel

    from yolo_spd.info import gflops

    control = REPO / "benchmarks" / "yolov5nu-wide.yaml"
    for nc in (80, 5):  # COCO's classes and aerial-cars'
        spd = gflops(DetectionModel("yolov5-spd-n.yaml", nc=nc, verbose=False))
        wide = gflops(DetectionModel(str(control), nc=nc, verbose=False))
        base = gflops(DetectionModel("yolov5nu.yaml", nc=nc, verbose=False))
        assert abs(wide / spd - 1) <= 0.05 and spd / base > 1.4, (nc, wide, spd, base)


def mean_markers(file: Path) -> tuple[int, int]:
    """The red mean markers drawn in the picture ``file`` (matplotlib's C3, #d62728): how many, and how many are
    filled (a hollow one has a white centre)."""
    from PIL import Image
    from scipy import ndimage

    with Image.open(file) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    red = (abs(rgb[..., 0] - 0xD6) < 40) & (abs(rgb[..., 1] - 0x27) < 40) & (abs(rgb[..., 2] - 0x28) < 40)
    labels, count = ndimage.label(red)
    centres = ndimage.center_of_mass(red, labels, range(1, count + 1))
    return count, sum(bool(red[int(round(y)), int(round(x))]) for y, x in centres)


def fabricate_run(plan, model: str, seed: int, truth, rng, miss: bool = False) -> None:
    """A finished, scored run as the study leaves it, with detections made from the val boxes plus noise (``miss``:
    every box moved 1000 px away, so the run scores 0)."""
    from yolo_spd.evaluation.cocoeval import run_cocoeval
    from yolo_spd.evaluation.report import save
    from yolo_spd.study import runs
    from yolo_spd.study.plan import EVAL_SPEC

    folder = plan.folder / runs.run_name(model, seed)
    (folder / plan.eval_name).mkdir(parents=True)
    (folder / "done.json").write_text("{}")
    # Ultralytics' val mAP50-95 per epoch (best.pt is epoch 1 in about half the runs), from its own generator so that
    # the detections drawn from rng stay what they were
    fitness = np.random.default_rng(zlib.crc32(folder.name.encode())).random(2)
    seconds = 120 + 600 * fitness[1]  # training time differs from run to run
    (folder / "results.csv").write_text(f"epoch,time,metrics/mAP50-95(B)\n1,60,{fitness[0]}\n2,{seconds},{fitness[1]}\n")
    detections = []
    for ann in truth.coco["annotations"]:
        if rng.random() < 0.8:
            x, y, w, h = ann["bbox"]
            jitter = rng.normal(0, 0.15, 4) * [w, h, w, h]
            detections.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                               "bbox": [x + jitter[0], y + jitter[1], w + jitter[2], h + jitter[3]],
                               "score": float(rng.random())})
    for image in truth.coco["images"]:
        detections.append({"image_id": image["id"], "category_id": truth.category_ids[0],
                           "bbox": [float(rng.uniform(0, 60)), float(rng.uniform(0, 60)), 12.0, 12.0],
                           "score": float(rng.random())})
    if miss:
        detections = [{**d, "bbox": [d["bbox"][0] + 1000, d["bbox"][1] + 1000, *d["bbox"][2:]]} for d in detections]
    save(run_cocoeval(truth, detections), folder / plan.eval_name)
    (folder / plan.eval_name / "coco_predictions.json").write_text(json.dumps(detections))
    (folder / plan.eval_name / EVAL_SPEC).write_text(json.dumps(plan.eval_spec()))  # scored with the plan's settings


def fabricated_study(tmp_path, monkeypatch, args: list[str], n_val: int, data_seed: int, rng_seed: int,
                     miss: bool = False):
    """A study of ``args`` on generated data whose every run is fabricated (:func:`fabricate_run`), written out;
    returns (plan, results, ground truth)."""
    from yolo_spd.cli import study_plan
    from yolo_spd.evaluation import build_ground_truth
    from yolo_spd.study.plan import TrainingData
    from yolo_spd.study.report import write

    monkeypatch.setenv("YOLO_SPD_CACHE", str(tmp_path / "cache"))
    data = make_yolo_dataset(tmp_path / "data", n_train=1, n_val=n_val, size=96, seed=data_seed)
    plan = study_plan([*args, f"data={data}", f"project={tmp_path / 'runs'}"])
    truth = build_ground_truth(plan.val)
    rng = np.random.default_rng(rng_seed)
    for seed in plan.seeds:
        for model in plan.models:
            fabricate_run(plan, model, seed, truth, rng, miss=miss)
    return plan, write(plan, TrainingData(data, "key", [], None), echo=False), truth


def test_paired_intervals_of_a_study_against_pycocotools_on_every_drawn_dataset(tmp_path, monkeypatch):
    """study.json's t and bootstrap intervals, recomputed independently: scipy for t, and for the bootstrap each
    replicate's val images really copied and scored by pycocotools from scratch."""
    from scipy import stats as scipy_stats

    from yolo_spd.study.stats import bootstrap_counts

    from .test_study_stats import duplicated, pycoco_arrays

    plan, res, truth = fabricated_study(tmp_path, monkeypatch, ["models=yolov5nu.yaml,yolov5-spd-n.yaml", "seeds=0,1,2",
                                                                 "resamples=100", "bootstrap_seed=4"], 8, 5, 0)
    assert json.loads((plan.folder / "study.json").read_text()) == json.loads(json.dumps(res))
    entry = res["paired"]["variants"]["yolov5-spd-n"]
    assert "100 replicates of 8 draws" in res["paired"]["bootstrap_method"]  # draws = val images, not replicates

    by = {(r["model"], r["seed"]): r["metrics"] for r in res["runs"]}
    diffs = [by[("yolov5-spd-n", s)]["AP50"] - by[("yolov5nu", s)]["AP50"] for s in (0, 1, 2)]
    low, high = scipy_stats.t.interval(0.95, 2, loc=np.mean(diffs), scale=scipy_stats.sem(diffs))
    assert entry["AP50"]["t"]["ci"] == pytest.approx([low, high], abs=1e-6)
    assert entry["AP50"]["mean"] == pytest.approx(np.mean(diffs), abs=1e-6) and diffs != [0, 0, 0]

    areas = plan.evaluation.sizes.area_ranges()
    counts = bootstrap_counts(len(truth.coco["images"]), 100, seed=4)
    detections = {(m, s): json.loads((plan.folder / f"{m}-seed{s}" / "val" / "coco_predictions.json").read_text())
                  for m in ("yolov5nu", "yolov5-spd-n") for s in (0, 1, 2)}
    stat = []
    for row in counts:
        ap50 = {}
        for key, dets in detections.items():
            precision, _ = pycoco_arrays(*duplicated(truth.coco, dets, row), areas, (1, 10, 100))
            p = precision[0, :, :, 0]
            ap50[key] = float(p[p > -1].mean())
        stat.append(np.mean([ap50[("yolov5-spd-n", s)] - ap50[("yolov5nu", s)] for s in (0, 1, 2)]))
    expected = [np.percentile(stat, 2.5), np.percentile(stat, 97.5)]
    assert entry["AP50"]["bootstrap"]["ci"] == pytest.approx(expected, abs=1e-6)
    assert entry["AP50"]["bootstrap"]["half_width"] == pytest.approx((expected[1] - expected[0]) / 2, abs=1e-6)


def test_a_partial_study_lists_its_missing_runs_and_pairs_what_it_has(tmp_path, monkeypatch):
    from yolo_spd.cli import study_plan
    from yolo_spd.evaluation import build_ground_truth
    from yolo_spd.study.plan import TrainingData
    from yolo_spd.study.report import write

    monkeypatch.setenv("YOLO_SPD_CACHE", str(tmp_path / "cache"))
    data = make_yolo_dataset(tmp_path / "data", n_train=1, n_val=6, size=96, seed=2)
    plan = study_plan(["models=yolov5nu.yaml,yolov5-spd-n.yaml,yolov5-scconv-n.yaml", "seeds=0,1", f"data={data}",
                       "resamples=100", f"project={tmp_path / 'runs'}"])
    truth = build_ground_truth(plan.val)
    rng = np.random.default_rng(1)
    for model in ("yolov5nu.yaml", "yolov5-spd-n.yaml"):
        fabricate_run(plan, model, 0, truth, rng)
    res = write(plan, TrainingData(data, "key", [], None), echo=False)
    assert res["partial"] and res["missing"] == ["yolov5-scconv-n-seed0", "yolov5nu-seed1", "yolov5-spd-n-seed1",
                                                 "yolov5-scconv-n-seed1"]
    spd = res["paired"]["variants"]["yolov5-spd-n"]["AP50"]
    assert spd["t"]["ci"] is None and spd["bootstrap"]["ci"] is not None  # one seed: images still resampled
    md = (plan.folder / "study.md").read_text()
    assert "**Partial**: 2 of 6 runs" in md and "| yolov5-scconv-n | 0 | no paired run yet |" in md
    assert "(t n<2)" in md
    means = [line for line in md.split("Paired differences")[0].splitlines()
             if line.startswith(("| yolov5nu | 1 |", "| yolov5-spd-n | 1 |"))]
    assert len(means) == 2 and not any("±" in line for line in means)  # one seed: a mean, no made-up sd of 0
    assert "**Resolved differences** (both intervals exclude 0): none." in md  # one seed: training noise uncounted


def test_a_control_adds_every_other_variants_paired_difference_from_it(tmp_path, monkeypatch):
    """control=: the variant's differences from the control, seed by seed, with both intervals; the mean equals the
    difference of the two variants' differences from the baseline, and the t interval is scipy's."""
    from scipy import stats as scipy_stats

    args = ["models=yolov5nu.yaml,yolov5-spd-n.yaml,yolov5-scconv-n.yaml", "seeds=0,1,2",
            "control=yolov5-scconv-n.yaml", "resamples=100"]
    plan, res, _ = fabricated_study(tmp_path, monkeypatch, args, 6, 3, 2)
    assert plan.control.endswith("yolov5-scconv-n.yaml")
    assert res["control"] == "yolov5-scconv-n" and res["paired_control"]["baseline"] == "yolov5-scconv-n"
    assert list(res["paired_control"]["variants"]) == ["yolov5-spd-n"]  # neither the baseline nor the control
    against_control = res["paired_control"]["variants"]["yolov5-spd-n"]
    against_base = res["paired"]["variants"]
    by = {(r["model"], r["seed"]): r["metrics"] for r in res["runs"]}
    for metric in res["paired"]["metrics"]:
        assert against_control[metric]["mean"] == pytest.approx(
            against_base["yolov5-spd-n"][metric]["mean"] - against_base["yolov5-scconv-n"][metric]["mean"], abs=3e-6)
        diffs = [by[("yolov5-spd-n", s)][metric] - by[("yolov5-scconv-n", s)][metric] for s in (0, 1, 2)]
        if np.std(diffs) > 0:
            low, high = scipy_stats.t.interval(0.95, 2, loc=np.mean(diffs), scale=scipy_stats.sem(diffs))
            assert against_control[metric]["t"]["ci"] == pytest.approx([low, high], abs=1e-5)
        assert against_control[metric]["bootstrap"]["ci"] is not None  # the machinery: the pycocotools test above
    md = (plan.folder / "study.md").read_text()
    assert "Paired differences from the control, yolov5-scconv-n (control=)" in md
    assert md.count("| variant | seeds |") == 2
    from yolo_spd.study.report import plot

    metrics = len(res["paired"]["metrics"])
    assert mean_markers(plan.folder / "study.png")[0] == metrics * (2 + 1)  # rows from the baseline and the control
    without = {k: v for k, v in res.items() if k not in ("control", "paired_control")}
    assert mean_markers(plot(without, tmp_path / "without.png"))[0] == metrics * 2


def test_the_figure_lists_variants_top_down_as_the_tables_do_and_names_each_axis(tmp_path, monkeypatch):
    """study.png reads like study.md: the first variant on top (the y axis runs downwards), and each panel's x axis
    says what the difference is (the metric of the variant minus that row's baseline or control)."""
    import matplotlib.pyplot as plt

    from yolo_spd.study.report import figure

    args = ["models=yolov5nu.yaml,yolov5-spd-n.yaml,yolov5-scconv-n.yaml,yolov5-ssdconv-n.yaml", "seeds=0,1",
            "control=yolov5-ssdconv-n.yaml", "resamples=100"]
    _, res, _ = fabricated_study(tmp_path, monkeypatch, args, 6, 3, 2)
    fig = figure(res)
    try:
        metrics = res["paired"]["metrics"]
        rows = [res["paired"], res["paired_control"]]
        assert len(fig.axes) == len(metrics) * len(rows)
        for r, pair in enumerate(rows):
            first = fig.axes[r * len(metrics)]
            assert first.yaxis_inverted()
            ticks = sorted(zip(first.get_yticks(), (t.get_text() for t in first.get_yticklabels())))
            assert [label for _, label in ticks] == list(pair["variants"])  # y = 0 (drawn on top) is the first
            for ax, metric in zip(fig.axes[r * len(metrics):], metrics):
                assert ax.get_xlabel() == f"{metric} of variant - {pair['baseline']}"
    finally:
        plt.close(fig)


def latex_tables(tex: str) -> list[list[list[str]]]:
    """Every tabular of ``tex`` as rows of cells read back to plain text (pylatexenc), header row first."""
    from pylatexenc.latex2text import LatexNodes2Text

    convert = LatexNodes2Text(math_mode="text").latex_to_text
    known = {r"\textless{}": "<", r"\textgreater{}": ">", r"\textbar{}": "|"}  # LaTeX's own; unknown to pylatexenc

    def text(cell: str) -> str:
        for macro, char in known.items():
            cell = cell.replace(macro, char)
        return convert(cell)
    found = re.findall(r"\\begin\{tabular\}\{[lrc]+\}\n\\toprule\n(.*?)\n\\bottomrule", tex, re.S)
    return [[[text(c).replace("^†", "†") for c in line.removesuffix(r" \\").split(" & ")]
             for line in body.splitlines() if line != r"\midrule"] for body in found]


def test_the_tex_and_csv_files_hold_the_markdown_tables_and_the_json_numbers(tmp_path, monkeypatch):
    """study.tex has every table of study.md, cell for cell once read back as text, each in a captioned, labelled
    table that parses as LaTeX; study.csv holds every run's metrics and study_paired.csv every paired difference, as
    study.json has them."""
    import csv

    pytest.importorskip("pylatexenc")
    from pylatexenc.latexwalker import LatexWalker

    from yolo_spd.markdown import table_cells

    args = ["models=yolov5nu.yaml,yolov5-spd-n.yaml,yolov5-scconv-n.yaml", "seeds=0,1,2",
            "control=yolov5-scconv-n.yaml", "resamples=100"]
    plan, res, _ = fabricated_study(tmp_path, monkeypatch, args, 6, 3, 2)
    md = (plan.folder / "study.md").read_text()
    tex = (plan.folder / "study.tex").read_text()
    md_tables = [[headers, *body] for chunk in md.split("\n\n") if chunk.startswith("|")
                 for headers, body in [table_cells(chunk)]]
    assert len(md_tables) == 9  # means, 2 x (paired, resolvable, per seed), classes, runs
    unbold = [[[c.replace("**", "") for c in row] for row in t] for t in md_tables]
    assert latex_tables(tex) == unbold
    LatexWalker(tex, tolerant_parsing=False).get_latex_nodes()  # balanced braces and environments
    labels = re.findall(r"\\label\{(.+?)\}", tex)
    assert len(labels) == len(set(labels)) == tex.count(r"\begin{table}") == tex.count(r"\caption{") == 9

    # the per-seed tables: each seed's AP_small difference, whose mean is the paired table's, and the seeds ahead
    per_seed = [t for t in md_tables if t[0][:2] == ["variant", "seed 0"]]
    assert len(per_seed) == 2 and all(t[0] == ["variant", "seed 0", "seed 1", "seed 2", "ahead on"] for t in per_seed)
    for t, (_, _, pair) in zip(per_seed, report_blocks(res)):
        for row in t[1:]:
            entry = pair["variants"][row[0]]["AP_small"]
            values = [float(c) for c in row[1:4]]
            assert values == pytest.approx(entry["differences"], abs=5e-4)
            assert sum(values) / 3 == pytest.approx(entry["mean"], abs=5e-4)
            assert row[4] == f"{sum(v > 0 for v in entry['differences'])} of 3"
    assert r"\caption{Scores of each model, mean $\pm$ sd over seeds." in tex and r"\usepackage{booktabs}" in tex

    with open(plan.folder / "study.csv", newline="") as f:
        runs = list(csv.DictReader(f))
    assert [(r["model"], int(r["seed"])) for r in runs] == [(r["model"], r["seed"]) for r in res["runs"]]
    for row, run in zip(runs, res["runs"]):
        assert {k: float(row[k]) for k in run["metrics"]} == run["metrics"]
        assert float(row["train_minutes"]) == run["train_minutes"] and row["resumed"] == str(run["resumed"])
        fitness = [float(line.split(",")[2]) for line in
                   (plan.folder / f"{run['model']}-seed{run['seed']}" / "results.csv").read_text().splitlines()[1:]]
        assert int(row["scored_epoch"]) == run["scored_epoch"] == (1 if fitness[0] >= fitness[1] else 2)
        assert int(row["epochs"]) == run["epochs"] == 2
    earlier = sum(r["scored_epoch"] == 1 for r in res["runs"])
    assert 0 < earlier < 9 and f"an earlier epoch than the last in {earlier} of 9 runs" in md
    assert md.count("| 1/2 |") == earlier and md.count("| 2/2 |") == 9 - earlier  # the runs table's scored epoch
    with open(plan.folder / "study_paired.csv", newline="") as f:
        paired = list(csv.DictReader(f))
    expected = [(p["baseline"], scope or "all", v, m, e[m]) for scope, _, p in report_blocks(res)
                for v, e in p["variants"].items() for m in p["metrics"]]
    assert len(paired) == len(expected) == (2 + 1) * 4  # two variants from the baseline, one from the control
    for row, (baseline, scope, variant, metric, entry) in zip(paired, expected):
        assert (row["baseline"], row["class"], row["variant"], row["metric"]) == (baseline, scope, variant, metric)
        assert float(row["mean"]) == entry["mean"] and int(row["seeds"]) == len(entry["seeds"])
        assert [float(row["bootstrap_low"]), float(row["bootstrap_high"])] == entry["bootstrap"]["ci"]
        assert [float(row["t_low"]), float(row["t_high"])] == entry["t"]["ci"]
        assert row["resolved"] == str(entry["resolved"])


def report_blocks(res):
    from yolo_spd.study.report import paired_blocks

    return paired_blocks(res)


def test_latex_cells_read_back_as_the_markdown_text_and_bad_arguments_are_refused():
    """yolo_spd.latex: special characters escaped, bold and the tables' symbols converted, minus signs only before
    numbers; a wrong column count, alignment letter or label character is one ValueError naming it."""
    pytest.importorskip("pylatexenc")
    from yolo_spd import latex

    cells = ["yolov5-spd-n", "**-0.034** [-0.042, -0.030] (t [-0.081, +0.013])", "a_b & c 95% #1 $x {y}",
             "0.342 ± 0.120", "Δ AP_small", "12†", r"back\slash ~", "+0.010 [n<2] (t > 1 | 2)"]
    tex = latex.table(["h", *cells[1:]], [cells], caption="**Bold**: resolved", label="tab:x-1")
    assert latex_tables(tex) == [[["h", *(c.replace("**", "") for c in cells[1:])],
                                  [c.replace("**", "") for c in cells]]]
    assert r"\textbf{$-$0.034} [$-$0.042, $-$0.030] (t [$-$0.081, $+$0.013])" in tex and "yolov5-spd-n &" in tex
    assert r"\caption{\textbf{Bold}: resolved}" in tex and r"\label{tab:x-1}" in tex
    assert r"[n\textless{}2] (t \textgreater{} 1 \textbar{} 2)" in tex  # OT1 prints < > | as other glyphs
    for bad, needle in ((dict(align="lx"), "align='lx'"), (dict(label="tab x"), "label='tab x'")):
        with pytest.raises(ValueError, match=re.escape(needle)):
            latex.table(["a", "b"], [[1, 2]], **bad)
    with pytest.raises(ValueError, match="has 1 cells; expected 2"):
        latex.table(["a", "b"], [[1]])


def test_the_data_content_key_follows_bytes_not_paths_or_file_times(tmp_path, monkeypatch, capsys):
    """content_key: a copy elsewhere with fresh modification times has the same key; one changed label byte, a
    renamed image or other extra settings give another; the second call on unchanged files reads from the cache."""
    import os
    import shutil

    from yolo_spd.evaluation.dataset import resolve_split
    from yolo_spd.evaluation.ground_truth import content_key

    monkeypatch.setenv("YOLO_SPD_CACHE", str(tmp_path / "cache"))
    data = make_yolo_dataset(tmp_path / "a", n_train=3, n_val=2, size=64, seed=5)

    def key(yaml_file: Path, extra=None) -> str:
        return content_key({s: resolve_split(yaml_file, s) for s in ("train", "val")}, extra)

    original = key(data)
    assert "Reading the 5 images of train, val" in capsys.readouterr().out
    assert key(data) == original and capsys.readouterr().out == ""  # cached: no image read
    copy = tmp_path / "b"
    shutil.copytree(data.parent, copy, copy_function=shutil.copy)
    (copy / "data.yaml").write_text(data.read_text().replace(f"path: {data.parent}", f"path: {copy}"))
    label = copy / "labels" / "train" / "000.txt"
    os.utime(label, ns=(1, 1))
    assert key(copy / "data.yaml") == original
    assert key(copy / "data.yaml", {"tile": 320}) != original
    first, rest = label.read_text().split(" ", 1)
    label.write_text(f"{1 - int(first)} {rest}")
    changed = key(copy / "data.yaml")
    assert changed != original
    for suffix in ("jpg", "txt"):
        kind = "images" if suffix == "jpg" else "labels"
        (copy / kind / "val" / f"001.{suffix}").rename(copy / kind / "val" / f"009.{suffix}")
    assert key(copy / "data.yaml") not in (original, changed)


def test_a_two_seed_t_interval_does_not_flatten_the_plot_panels():
    """Two seeds give t's multiplier 12.7: a t interval many times wider than the bootstrap ones must not set the
    panel's range (it gets arrowheads), a moderately wider one does, and no panel exceeds a difference of 1."""
    from yolo_spd.study.report import _reach

    def entry(mean, boot, t):
        return {"mean": mean, "bootstrap": {"ci": boot}, "t": {"ci": t}}

    assert _reach([entry(0.02, [0.01, 0.03], [-0.9, 1.0]), entry(None, None, None)]) == pytest.approx(0.03 * 1.15)
    assert _reach([entry(0.02, [0.01, 0.03], [-0.05, 0.08])]) == pytest.approx(0.08 * 1.05)
    assert _reach([entry(0.9, [0.5, 1.0], [-3.0, 4.0])]) == 1.0
    assert _reach([entry(0.0, [0.0, 0.0], [0.0, 0.0])]) == 0.01  # identical runs: a usable panel, no matplotlib warning


def test_resolved_needs_both_intervals_to_exclude_zero_on_the_same_side():
    from yolo_spd.study.report import resolved

    def entry(t, boot):
        return {"t": {"ci": t}, "bootstrap": {"ci": boot}}

    assert resolved(entry([0.01, 0.05], [0.002, 0.03]))
    assert resolved(entry([-0.05, -0.01], [-0.03, -0.002]))
    assert not resolved(entry([-0.04, 0.08], [0.005, 0.03]))  # the bootstrap alone: seed noise not counted
    assert not resolved(entry([0.01, 0.05], [-0.01, 0.03]))  # t alone: the val images not counted
    assert not resolved(entry([0.01, 0.05], [-0.03, -0.01]))  # opposite sides
    assert not resolved(entry(None, [0.01, 0.03]))  # one seed


def test_each_well_counted_class_is_paired_alone_and_bold_marks_what_is_resolved(tmp_path, monkeypatch):
    """With 40 val images both classes have 30+ small boxes: each gets its own paired tables and plot rows, whose
    per-seed differences are the runs' pycocotools per-class numbers; bold in study.md is exactly the resolved set."""
    from scipy import stats as scipy_stats

    args = ["models=yolov5nu.yaml,yolov5-spd-n.yaml,yolov5-scconv-n.yaml", "seeds=0,1,2",
            "control=yolov5-scconv-n.yaml", "resamples=100"]
    plan, res, truth = fabricated_study(tmp_path, monkeypatch, args, 40, 6, 3)
    counts = {row["name"]: row["small"] for row in res["val"]["per_class"]}
    assert min(counts.values()) >= 30 and list(res["paired_classes"]) == ["red", "green"]
    per_class = {(r["model"], r["seed"]): {c["name"]: c for c in r["per_class"]} for r in res["runs"]}
    for name, scoped in res["paired_classes"].items():
        assert set(scoped) == {"paired", "paired_control"} and scoped["paired_control"]["baseline"] == "yolov5-scconv-n"
        entry = scoped["paired"]["variants"]["yolov5-spd-n"]["AP_small"]
        diffs = [per_class[("yolov5-spd-n", s)][name]["AP_small"] - per_class[("yolov5nu", s)][name]["AP_small"]
                 for s in (0, 1, 2)]
        assert entry["differences"] == pytest.approx(diffs, abs=1e-6)
        low, high = scipy_stats.t.interval(0.95, 2, loc=np.mean(diffs), scale=scipy_stats.sem(diffs))
        assert entry["t"]["ci"] == pytest.approx([low, high], abs=1e-5)
        assert entry["bootstrap"]["ci"] != res["paired"]["variants"]["yolov5-spd-n"]["AP_small"]["bootstrap"]["ci"]
    md = (plan.folder / "study.md").read_text()
    assert "Paired differences on red alone from yolov5nu" in md
    assert "Paired differences on green alone from the control, yolov5-scconv-n (control=)" in md
    assert md.count("| variant | seeds |") == 2 * 3
    entries = [e for block in (res, *res["paired_classes"].values()) for key in ("paired", "paired_control")
               for v in block[key]["variants"].values() for e in v.values()]
    assert any(e["resolved"] for e in entries) and not all(e["resolved"] for e in entries)
    bold = re.findall(r"\| \*\*[+-]\d\.\d{3}\*\* \[", md)
    assert len(bold) == sum(e["resolved"] for e in entries)
    count, filled = mean_markers(plan.folder / "study.png")
    assert count == len(entries) and filled == sum(e["resolved"] for e in entries)
    verdict = next(line for line in md.splitlines() if line.startswith("**Resolved differences**"))
    assert verdict.count(" vs ") == len(bold) and all(b[4:10] in verdict for b in bold)
    assert all(e["resolved"] == (min(e["t"]["ci"][0], e["bootstrap"]["ci"][0]) > 0
                                 or max(e["t"]["ci"][1], e["bootstrap"]["ci"][1]) < 0) for e in entries)


def test_which_classes_are_paired_alone_and_how_instances_are_counted():
    """Classes paired alone: 30+ instances of the focus range, only when more than one class has val instances, at
    most six (the most counted), names made unique; a range counts both its bounds, as COCOeval does."""
    from yolo_spd.evaluation.cocoeval import SIZE_PRESETS
    from yolo_spd.study.report import class_scopes, instance_counts, scope_names

    labels = SIZE_PRESETS["coco"].labels

    def val(*small_all):
        return {"per_class": [{"name": f"c{k}", "all": a, "small": s, "medium": a - s, "large": 0}
                              for k, (s, a) in enumerate(small_all)]}

    assert class_scopes(val((319, 362), (0, 2), (5, 5), (0, 0)), labels) == [0]
    assert class_scopes(val((319, 362), (0, 0)), labels) == []  # one class with instances: it is the whole
    assert class_scopes(val((29, 40), (30, 30)), labels) == [1]
    many = val(*[(30 + k, 40 + k) for k in range(9)])
    assert class_scopes(many, labels) == [3, 4, 5, 6, 7, 8]  # the six most counted, in class order
    twins = {"per_class": [{"name": "car"}, {"name": "car"}, {"name": "bus"}]}
    assert scope_names(twins, [0, 1, 2]) == {0: "car (class 0)", 1: "car (class 1)", 2: "bus"}

    coco = {"images": [{"id": 1}], "categories": [{"id": 7, "name": "car"}],
            "annotations": [{"id": i, "image_id": 1, "category_id": 7, "area": a, "iscrowd": 0}
                            for i, a in enumerate((1023.9, 1024.0, 1024.1))]}
    counts = instance_counts(coco, SIZE_PRESETS["coco"])
    assert counts["total"] == {"all": 3, "small": 2, "medium": 2, "large": 0}


def test_a_study_whose_runs_all_score_zero_says_so_and_claims_no_resolution(tmp_path, monkeypatch):
    """Models that detect nothing: a warning before the verdict, and "no spread" instead of intervals of width 0,
    which would read as a design that resolves any difference. The size the runs train at is the one reported."""
    plan, res, _ = fabricated_study(tmp_path, monkeypatch, ["models=yolov5nu.yaml,yolov5-spd-n.yaml", "seeds=0,1",
                                                            "resamples=100", "imgsz=100"], 6, 3, 0, miss=True)
    assert all(r["metrics"]["AP"] == 0 for r in res["runs"]) and len(res["runs"]) == 4
    md = (plan.folder / "study.md").read_text()
    assert "**Every run scored AP 0.000**: no model detects anything" in md
    assert "train on tiles at native resolution (tile=, scored with slice=)" in md  # the usual cause on aerial images
    assert "no spread (identical scores)" in md and "±0.000 / ±0.000" not in md
    assert plan.train["imgsz"] == 128 and "imgsz=128" in md and "imgsz=100" not in md.split("`")[2]  # past the command
    assert "; scored by COCO's evaluator on the val images (pycocotools, sizes coco, max_dets 100)." in md
    assert res["settings"]["train"]["imgsz"] == 128


def test_a_study_with_scores_has_no_zero_warning(tmp_path, monkeypatch):
    plan, res, _ = fabricated_study(tmp_path, monkeypatch, ["models=yolov5nu.yaml,yolov5-spd-n.yaml", "seeds=0,1",
                                                            "resamples=100"], 6, 3, 0)
    md = (plan.folder / "study.md").read_text()
    assert all(r["metrics"]["AP"] > 0 for r in res["runs"]) and "Every run scored AP 0.000" not in md
    assert "no spread" not in md and "±" in md


def test_the_tile_count_says_when_fraction_trains_on_a_part_of_them(tmp_path, monkeypatch):
    """study.md gave the full tile count as what the runs trained on, also with fraction=0.2."""
    from yolo_spd.study.report import markdown

    _, res, _ = fabricated_study(tmp_path, monkeypatch, ["models=yolov5nu.yaml,yolov5-spd-n.yaml", "seeds=0"],
                                 n_val=3, data_seed=1, rng_seed=1)
    tiles = {"tile": 320, "overlap": 0.2, "min_visible": 0.5, "train_tiles": 574}
    whole = markdown({**res, "settings": {**res["settings"], "tiles": tiles}})
    part = markdown({**res, "settings": {**res["settings"], "tiles": tiles,
                                         "train": {**res["settings"]["train"], "fraction": 0.2}}})
    assert "min_visible 0.5: 574 train tiles) with" in whole
    assert "min_visible 0.5: 574 train tiles, of which fraction=0.2 trains on a part) with" in part


def test_seeds_added_to_a_finished_study_make_it_partial_before_the_new_runs_train(tmp_path, monkeypatch):
    """A study stopped during the first added run still said "All 2 runs finished and scored." (partial: false)."""
    from yolo_spd.cli import study_plan
    from yolo_spd.study import plan as study_plan_module

    plan, res, _ = fabricated_study(tmp_path, monkeypatch, ["models=yolov5nu.yaml,yolov5-spd-n.yaml", "seeds=0"],
                                    n_val=3, data_seed=1, rng_seed=1)
    assert "All 2 runs finished and scored." in (plan.folder / "study.md").read_text() and not res["partial"]
    more = study_plan(["models=yolov5nu.yaml,yolov5-spd-n.yaml", "seeds=0,1", f"data={plan.data}",
                       f"project={tmp_path / 'runs'}"])

    def stopped(spec, folder, state=None):
        if not (folder / spec.name / "done.json").is_file():
            raise KeyboardInterrupt  # Ctrl-C during the first new run

    monkeypatch.setattr(study_plan_module.study_runs, "train_run", stopped)
    with pytest.raises(KeyboardInterrupt):
        study_plan_module.run_study(more)
    res = json.loads((plan.folder / "study.json").read_text())
    assert res["partial"] and res["planned_runs"] == 4 and res["settings"]["seeds"] == [0, 1]
    assert "**Partial**: 2 of 4 runs finished and scored; missing: yolov5nu-seed1, yolov5-spd-n-seed1." in (
        plan.folder / "study.md").read_text()


def test_the_report_gives_each_models_cost_beside_its_scores(tmp_path, monkeypatch):
    """"At what cost?": parameters and GFLOPs of one training-size image per model, built for the data's classes,
    with the multiple of the baseline's, in study.json and the means table; the GFLOPs are a direct 3-channel count."""
    import thop
    from ultralytics.nn.tasks import DetectionModel

    plan, res, _ = fabricated_study(tmp_path, monkeypatch, ["models=yolov5nu.yaml,yolov5-spd-n.yaml", "seeds=0,1",
                                                            "imgsz=128", "resamples=100"], 4, 2, 0)
    for name, cost in res["cost"].items():
        model = DetectionModel(f"{name}.yaml", nc=2, verbose=False)
        direct = thop.profile(model, inputs=[torch.empty(1, 3, 128, 128)], verbose=False)[0] * 2 / 1e9
        assert cost["imgsz"] == 128 and cost["gflops"] == pytest.approx(direct, abs=1e-4)
        assert cost["params"] == sum(p.numel() for p in model.parameters())
    spd, base = res["cost"]["yolov5-spd-n"], res["cost"]["yolov5nu"]
    assert spd["gflops"] / base["gflops"] > 1.4  # SPD-Conv's full-resolution convolutions
    md = (plan.folder / "study.md").read_text()
    assert "| params | GFLOPs @128 | train min/run |" in md
    assert f"{spd['params'] / 1e6:.2f}M ({spd['params'] / base['params']:.2f}x)" in md
    assert f"({spd['gflops'] / base['gflops']:.2f}x) |" in md and "(1.00x)" in md
    assert "**Few val images (4)**: the bootstrap interval resamples only these" in md  # 4 images: coarse
    import statistics

    for name in res["cost"]:  # training minutes per run: mean ± sd over the seeds, as the scores
        minutes = [r["train_minutes"] for r in res["runs"] if r["model"] == name]
        assert len(set(minutes)) == 2 and (f"| {statistics.fmean(minutes):.1f} ± {statistics.stdev(minutes):.1f} |"
                                           in md.split(f"| {name} | 2 |", 1)[1].splitlines()[0] + "|")


def test_a_study_that_fine_tunes_a_checkpoint_gives_its_cost_too(tmp_path, monkeypatch):
    """models= may name a .pt to fine-tune: its cost is its architecture's, built for the data's classes (the cost
    columns crashed such a study with Ultralytics' "acceptable suffix is ('.yaml', '.yml')" after its first run)."""
    import shutil

    from ultralytics.nn.tasks import DetectionModel

    checkpoint = tmp_path / "demo.pt"
    shutil.copyfile(REPO / "weights" / "yolov5-spd-n-demo.pt", checkpoint)
    before = checkpoint.read_bytes()
    _, res, _ = fabricated_study(tmp_path, monkeypatch, [f"models=yolov5nu.yaml,{checkpoint}", "seeds=0,1",
                                                         "imgsz=128", "resamples=100"], 4, 2, 0)
    same = DetectionModel("yolov5-spd-n.yaml", nc=2, verbose=False)  # the demo's architecture, for 2 classes
    assert res["cost"]["demo"]["params"] == sum(p.numel() for p in same.parameters())
    assert res["cost"]["demo"]["gflops"] > res["cost"]["yolov5nu"]["gflops"] and checkpoint.read_bytes() == before


def test_a_resolvable_width_beyond_any_score_difference_says_add_seeds():
    from yolo_spd.study.report import _resolution

    def entry(boot, t):
        return {"bootstrap": {"half_width": boot}, "t": {"half_width": t}}

    assert _resolution(entry(0.004, 1.176)) == "±0.004 / ±1.176 (none: add seeds)"  # two seeds, t multiplier 12.7
    assert _resolution(entry(0.004, 0.039)) == "±0.004 / ±0.039"
    assert _resolution(entry(0.004, None)) == "±0.004 / -"


def test_a_contrast_of_two_studies_on_the_same_val_images(tmp_path, monkeypatch):
    """yolo_spd.study.contrast: Δ(second) - Δ(first) from each study's own paired differences, Welch's interval as
    scipy computes it from the per-seed differences, and a bootstrap in which both studies are scored on the same
    draws; studies scored differently, a variant not in a study, or one seed, are one error line each."""
    from scipy import stats as scipy_stats

    from yolo_spd.study import contrast, report, stats

    args = ["seeds=0,1,2", "resamples=100", "bootstrap_seed=4"]
    first, res1, truth = fabricated_study(tmp_path / "a", monkeypatch, ["models=yolov5nu.yaml,yolov5-spd-n.yaml",
                                                                        "name=n", *args], 8, 5, 0)
    second, res2, _ = fabricated_study(tmp_path / "b", monkeypatch,
                                       ["models=yolov5su.yaml,yolov5-scconv-s.yaml,yolov5-spd-s.yaml", "name=s", *args],
                                       8, 5, 1)
    res = contrast.contrast(first, second, second_variant="yolov5-scconv-s.yaml")
    assert (res["first"]["variant"], res["second"]["variant"]) == ("yolov5-spd-n", "yolov5-scconv-s")
    entry = res["scopes"]["all classes"]["AP50"]
    d1 = res1["paired"]["variants"]["yolov5-spd-n"]["AP50"]["differences"]
    d2 = res2["paired"]["variants"]["yolov5-scconv-s"]["AP50"]["differences"]
    assert entry["first"]["differences"] == d1 and entry["second"]["differences"] == d2  # each study's own report
    assert entry["contrast"] == pytest.approx(np.mean(d2) - np.mean(d1), abs=1e-6)
    welch = scipy_stats.ttest_ind(d2, d1, equal_var=False).confidence_interval(0.95)
    assert entry["t"]["ci"] == pytest.approx(list(welch), abs=1e-5)
    paired = scipy_stats.t.interval(0.95, 2, loc=np.mean(np.subtract(d2, d1)), scale=scipy_stats.sem(np.subtract(d2, d1)))
    assert entry["seed_paired"]["ci"] == pytest.approx(list(paired), abs=1e-5)  # same seeds: shown, not in the rule

    counts = stats.bootstrap_counts(len(truth.coco["images"]), 100, seed=4)  # one set of draws for both studies
    labels, metrics = ("all", *first.evaluation.sizes.labels), report.paired_metrics(first.evaluation.sizes.labels)
    j = metrics.index("AP50")

    def draws(plan, model, seed):
        dets = json.loads((plan.folder / f"{model}-seed{seed}" / "val" / "coco_predictions.json").read_text())
        matches = stats.per_image_matches(truth.coco, dets, first.evaluation.sizes.area_ranges(), labels)
        return stats.replicate_metrics(matches, counts, metrics)[:, j]

    means = [np.mean([draws(plan, v, s) - draws(plan, b, s) for s in (0, 1, 2)], axis=0)
             for plan, b, v in ((first, "yolov5nu", "yolov5-spd-n"), (second, "yolov5su", "yolov5-scconv-s"))]
    low, high = np.percentile(means[1] - means[0], [2.5, 97.5])
    assert entry["bootstrap"]["ci"] == pytest.approx([low, high], abs=1e-5)
    assert entry["resolved"] == report.resolved(entry)
    text = contrast.markdown(res, "scale n", "scale s")
    assert "| AP50 |" in text and "contrast scale s - scale n" in text and "Resolved contrasts" in text
    assert "**Few val images (8)**" in text  # the bootstrap's caveat, as each study's report gives it
    if importlib.util.find_spec("pylatexenc"):  # contrast.tex: the same tables, cell for cell, in parsing LaTeX
        from pylatexenc.latexwalker import LatexWalker

        from yolo_spd.markdown import table_cells

        tex = contrast.latex(res, "scale n", "scale s")
        md_tables = [[headers, *body] for chunk in text.split("\n\n") if chunk.startswith("|")
                     for headers, body in [table_cells(chunk)]]
        assert len(md_tables) == len(res["scopes"])  # one per scope: all classes, then each class paired alone
        assert latex_tables(tex) == [[[c.replace("**", "") for c in row] for row in t] for t in md_tables]
        LatexWalker(tex, tolerant_parsing=False).get_latex_nodes()
        assert re.findall(r"\\label\{(.+?)\}", tex)[0] == "tab:contrast-all-classes"

    other, _, _ = fabricated_study(tmp_path / "c", monkeypatch, ["models=yolov5nu.yaml,yolov5-spd-n.yaml", "name=o",
                                                                 *args], 8, 6, 0)  # other val images
    with pytest.raises(UsageError, match=r"scored differently \(val_data differ\)"):
        contrast.contrast(first, other)
    with pytest.raises(UsageError, match=r"yolov5nu.yaml: not a variant of the second study \(.*\); give one of "
                                         "yolov5-scconv-s, yolov5-spd-s"):
        contrast.contrast(first, second, second_variant="yolov5nu.yaml")
    import dataclasses

    with pytest.raises(UsageError, match=r"scored differently \(checkpoint differ\)"):
        contrast.contrast(first, dataclasses.replace(second, checkpoint="last"))
    with pytest.raises(UsageError, match="resamples=100 and resamples=200"):
        contrast.contrast(first, dataclasses.replace(second, resamples=200))
    with pytest.raises(UsageError, match=r"1 seed\(s\) with both yolov5nu and yolov5-spd-n scored"):
        contrast.contrast(dataclasses.replace(first, seeds=(0,)), second)
