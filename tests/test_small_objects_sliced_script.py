"""benchmarks/small_objects_sliced.py: run order, paired statistics, results schema, replot, and a 1-epoch run on tiles
(the study itself runs for hours)."""

from __future__ import annotations

import json
import math

import pytest

from .conftest import load_script, make_yolo_dataset


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_SPD_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def study():
    return load_script("small_objects_sliced")


SETTINGS = {"command": "python benchmarks/small_objects_sliced.py", "data": "/x/aerial-cars/data.yaml",
            "models": ["yolov5nu.yaml", "yolov5-spd-n.yaml"], "seeds": [0, 1, 2],
            "tiles": {"tile": 320, "overlap": 0.2, "min_visible": 0.5, "empty": 0.1, "data_yaml": "/c/data.yaml",
                      "train_tiles": 574, "train_boxes": 4820},
            "train": {"epochs": 15, "imgsz": 320, "batch": 16, "optimizer": "AdamW", "lr0": 0.004, "warmup_epochs": 0.0},
            "eval": {"slice": 320, "overlap": 0.2}}


def fabricate_run(study, args, model: str, seed: int, ap_small: float, ap50: float, minutes=(10.0, 4.0)) -> None:
    """A finished run as the study leaves it: done.json, results.csv (two resume segments), sliced coco_eval.json."""
    folder = study.run_folder(model, seed, args)
    (folder / study.eval_name(args)).mkdir(parents=True)
    (folder / "done.json").write_text("{}")
    rows = "".join(f"{i},{t * 60},0\n" for i, t in enumerate((minutes[0] / 2, minutes[0], minutes[1]), 1))
    (folder / "results.csv").write_text("epoch,  time,metrics/mAP50(B)\n" + rows)
    metrics = {"AP": 0.2, "AP50": ap50, "AP75": 0.1, "AP_small": ap_small, "AP_medium": 0.3, "AP_large": -1.0,
               "AR1": 0.1, "AR10": 0.2, "AR100": 0.3, "AR_small": 0.35, "AR_medium": 0.4, "AR_large": -1.0}
    (folder / study.eval_name(args) / "coco_eval.json").write_text(json.dumps({"metrics": metrics}))


def test_paired_differences_and_the_results_schema_from_fabricated_runs(study, tmp_path):
    args = study.parse_args(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    values = {0: (0.27, 0.46, 0.28, 0.50), 1: (0.25, 0.44, 0.28, 0.45), 2: (0.30, 0.48, 0.32, 0.47)}
    for seed, (base_s, base_50, spd_s, spd_50) in values.items():
        fabricate_run(study, args, "yolov5nu.yaml", seed, base_s, base_50)
        fabricate_run(study, args, "yolov5-spd-n.yaml", seed, spd_s, spd_50)
    runs = [study.run_entry(m, s, args) for s in (0, 1, 2) for m in args.models]
    results = study.results_dict(runs, SETTINGS)
    study.write_results(results, args.out)

    saved = json.loads((args.out / "small_objects_sliced.json").read_text())
    assert saved["partial"] is False and saved["planned_runs"] == 6 and saved["settings"] == SETTINGS
    assert [(r["model"], r["seed"]) for r in saved["runs"]] == [(m, s) for s in (0, 1, 2)
                                                                 for m in ("yolov5nu", "yolov5-spd-n")]
    assert set(saved["runs"][0]) >= {"model", "seed", "AP", "AP50", "AP_small", "AP_medium", "AR_small", "train_minutes"}
    assert saved["runs"][0]["train_minutes"] == pytest.approx(14.0)  # 10 + 4: two segments of a resumed run
    spd = saved["paired"]["variants"]["yolov5-spd-n"]
    assert saved["paired"]["baseline"] == "yolov5nu" and "Student t" in saved["paired"]["method"]
    # AP_S differences 0.01, 0.03, 0.02: mean 0.02, sd 0.01, t(0.975, 2) = 4.3027
    half = 4.302653 * 0.01 / math.sqrt(3)
    assert spd["AP_small"]["differences"] == pytest.approx([0.01, 0.03, 0.02])
    assert spd["AP_small"]["mean_diff"] == pytest.approx(0.02)
    assert spd["AP_small"]["ci95"] == pytest.approx([0.02 - half, 0.02 + half], abs=1e-5)
    assert spd["AP50"]["mean_diff"] == pytest.approx((0.04 + 0.01 - 0.01) / 3, abs=1e-6) and spd["AP50"]["n"] == 3

    table = (args.out / "small_objects_sliced.md").read_text()
    assert "All 6 runs finished" in table and "| yolov5nu | 3 | 0.200 ± 0.000 | 0.460 ± 0.020 |" in table
    assert "| yolov5-spd-n | 3 | +0.020 [-0.005, +0.045] | +0.013 [" in table
    assert (args.out / "small_objects_sliced.png").read_bytes()[:4] == b"\x89PNG"


def test_partial_results_are_marked_and_one_pair_gives_no_interval(study, tmp_path):
    args = study.parse_args(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    fabricate_run(study, args, "yolov5nu.yaml", 0, 0.27, 0.46)
    fabricate_run(study, args, "yolov5-spd-n.yaml", 0, 0.29, 0.45)
    fabricate_run(study, args, "yolov5nu.yaml", 1, 0.25, 0.44)  # seed 1 of spd-n not finished
    unscored = study.run_folder("yolov5-spd-n.yaml", 1, args)
    unscored.mkdir(parents=True)
    (unscored / "done.json").write_text("{}")  # trained, not yet scored: not a result
    runs = [e for s in (0, 1) for m in args.models if (e := study.run_entry(m, s, args))]
    assert len(runs) == 3
    results = study.results_dict(runs, SETTINGS)
    assert results["partial"] is True
    ap_s = results["paired"]["variants"]["yolov5-spd-n"]["AP_small"]
    assert ap_s["n"] == 1 and ap_s["seeds"] == [0] and ap_s["ci95"] is None and "no interval" in ap_s["note"]
    assert ap_s["mean_diff"] == pytest.approx(0.02)
    study.write_results(results, args.out)
    table = (args.out / "small_objects_sliced.md").read_text()
    assert "**Partial**: 3 of 6 runs" in table and "+0.020 (n<2: no interval)" in table


def test_replot_rewrites_the_files_from_a_results_json(study, tmp_path):
    args = study.parse_args(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    for seed in (0, 1):
        fabricate_run(study, args, "yolov5nu.yaml", seed, 0.27 + seed / 100, 0.46)
        fabricate_run(study, args, "yolov5-spd-n.yaml", seed, 0.29, 0.45 + seed / 100)
    runs = [study.run_entry(m, s, args) for s in (0, 1) for m in args.models]
    study.write_results(study.results_dict(runs, SETTINGS), args.out)
    first = (args.out / "small_objects_sliced.json").read_text()
    md = (args.out / "small_objects_sliced.md").read_text()
    (args.out / "small_objects_sliced.png").unlink()
    (args.out / "small_objects_sliced.md").unlink()

    study.main(["--replot", str(args.out / "small_objects_sliced.json")])
    assert (args.out / "small_objects_sliced.json").read_text() == first
    assert (args.out / "small_objects_sliced.md").read_text() == md
    assert (args.out / "small_objects_sliced.png").is_file()


def test_runs_go_seed_by_seed_on_the_tiles_and_train_only_scores_nothing(study, tmp_path, monkeypatch):
    data = make_yolo_dataset(tmp_path / "src", n_train=2, n_val=1, size=64)
    calls = []
    monkeypatch.setattr(study.small_objects, "train_one", lambda model, seed, a: calls.append((model, seed, a)))
    monkeypatch.setattr(study, "evaluate", lambda *a: pytest.fail("--train-only must not score"))
    study.main(["--data", str(data), "--slice", "32", "--seeds", "0", "1", "--runs", str(tmp_path / "runs"),
                "--out", str(tmp_path / "out"), "--train-only"])
    assert [(m, s) for m, s, _ in calls] == [("yolov5nu.yaml", 0), ("yolov5-spd-n.yaml", 0),
                                             ("yolov5nu.yaml", 1), ("yolov5-spd-n.yaml", 1)]
    a = calls[0][2]
    assert (a.epochs, a.imgsz, a.batch, a.optimizer, a.lr0, a.warmup_epochs) == (15, 320, 16, "AdamW", 0.004, 0.0)
    assert a.data.parent.parent == tmp_path / "cache" / "tiles" and "32px" in a.data.parent.name
    assert all(c[2] == a for c in calls)  # the same hyper-parameters and tiles for every model and seed
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_one_epoch_on_tiles_then_sliced_scoring(study, tmp_path, capsys):
    data = make_yolo_dataset(tmp_path / "src", n_train=4, n_val=2, size=96)
    argv = ["--data", str(data), "--models", "yolov5nu.yaml", "--seeds", "0", "--slice", "64", "--imgsz", "64",
            "--batch", "4", "--epochs", "1", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    study.main([*argv, "--train-only"])
    run = tmp_path / "runs" / "yolov5nu-seed0"
    assert (run / "weights" / "best.pt").is_file() and json.loads((run / "done.json").read_text())["epochs"] == 1
    trained_on = (run / "args.yaml").read_text()
    assert "64px" in trained_on and str(tmp_path / "cache" / "tiles") in trained_on  # the tiled dataset
    capsys.readouterr()

    study.main(argv)  # the finished run is skipped, then scored by sliced val on the full images
    assert "[skip] yolov5nu-seed0" in capsys.readouterr().out
    saved = json.loads((tmp_path / "out" / "small_objects_sliced.json").read_text())
    assert saved["partial"] is False and [r["model"] for r in saved["runs"]] == ["yolov5nu"]
    assert (run / "sliced-val-64" / "coco_eval.json").is_file()
    assert saved["paired"]["variants"] == {}


def test_score_only_scores_finished_runs_trains_nothing_and_records_the_study_command(study, tmp_path, monkeypatch):
    data = make_yolo_dataset(tmp_path / "src", n_train=2, n_val=1, size=64)
    argv = ["--data", str(data), "--slice", "32", "--seeds", "0", "1", "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "out")]
    args = study.parse_args(argv)
    fabricate_run(study, args, "yolov5nu.yaml", 0, 0.27, 0.46)
    fabricate_run(study, args, "yolov5-spd-n.yaml", 0, 0.29, 0.45)
    study.run_folder("yolov5nu.yaml", 1, args).mkdir(parents=True)  # interrupted: no done.json
    scored = []
    monkeypatch.setattr(study.small_objects, "train_one", lambda *a: pytest.fail("--score-only must not train"))
    monkeypatch.setattr(study, "evaluate", lambda model, seed, a: scored.append((model, seed)))
    study.main([*argv, "--score-only"])
    assert scored == [("yolov5nu.yaml", 0), ("yolov5-spd-n.yaml", 0)]
    saved = json.loads((tmp_path / "out" / "small_objects_sliced.json").read_text())
    assert saved["partial"] is True and len(saved["runs"]) == 2
    assert saved["settings"]["command"] == f"python benchmarks/small_objects_sliced.py --data {data} --slice 32 --seeds 0 1"
    with pytest.raises(SystemExit):
        study.parse_args([*argv, "--score-only", "--train-only"])
