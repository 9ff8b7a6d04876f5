"""benchmarks/small_objects.py: resume logic and mean +- std aggregation (the study itself runs for hours)."""

from __future__ import annotations

import json

import pytest

from .conftest import load_script


@pytest.fixture(scope="module")
def study():
    return load_script("small_objects")


class RecordingYOLO:
    calls: list = []

    def __init__(self, model):
        self.model = model

    def train(self, **kwargs):
        RecordingYOLO.calls.append((self.model, kwargs))


def test_runs_resume_or_skip_instead_of_starting_over(study, tmp_path, monkeypatch):
    import ultralytics

    monkeypatch.setattr(ultralytics, "YOLO", RecordingYOLO)
    RecordingYOLO.calls = []
    args = study.parse_args(["--runs", str(tmp_path), "--epochs", "3"])
    fresh = tmp_path / "yolov5nu-seed0"
    interrupted = tmp_path / "yolov5-spd-n-seed1" / "weights"
    interrupted.mkdir(parents=True)
    (interrupted / "last.pt").write_bytes(b"")
    finished = tmp_path / "yolov5-spd-n-seed2"
    finished.mkdir()
    (finished / "done.json").write_text("{}")

    study.train_one("yolov5nu.yaml", 0, args)
    study.train_one("yolov5-spd-n.yaml", 1, args)
    study.train_one("yolov5-spd-n.yaml", 2, args)
    (first_model, first), (second_model, second) = RecordingYOLO.calls
    assert first_model == "yolov5nu.yaml" and first["seed"] == 0 and first["epochs"] == 3 and first["name"] == fresh.name
    assert second_model == str(interrupted / "last.pt") and second == {"resume": True}
    assert json.loads((fresh / "done.json").read_text())["seed"] == 0  # marked finished only after train returned


def test_mean_and_std_over_seeds(study):
    per_seed = {s: {"a": {c: v for c in study.COLUMNS}, "b": {c: -1.0 for c in study.COLUMNS}}
                for s, v in ((0, 0.1), (1, 0.3))}
    summary = study.aggregate(per_seed)
    mean, std = summary["a"]["AP_small"]
    assert mean == pytest.approx(0.2) and std == pytest.approx(0.1414, abs=1e-4)  # sample std
    table = study.markdown(summary, [0, 1])
    assert "| a | 0.200 ± 0.141 |" in table and "| b | - |" in table  # -1: no objects in that range


def test_training_minutes_add_up_the_segments_of_a_resumed_run(study, tmp_path):
    rows = [(1, 60.0), (2, 120.0), (3, 30.0), (4, 90.0)]  # Ultralytics restarts the time column when a run resumes
    (tmp_path / "results.csv").write_text("epoch,  time,metrics/mAP50(B)\n" + "".join(f"{e},{t},0\n" for e, t in rows))
    assert study.training_minutes(tmp_path) == pytest.approx((120 + 90) / 60)


def test_a_tagged_variant_passes_its_optimiser_and_keeps_its_own_runs(study, tmp_path, monkeypatch):
    import ultralytics

    monkeypatch.setattr(ultralytics, "YOLO", RecordingYOLO)
    RecordingYOLO.calls = []
    args = study.parse_args(["--runs", str(tmp_path), "--optimizer", "AdamW", "--lr0", "0.004", "--warmup-epochs", "0",
                             "--tag", "adamw"])
    (tmp_path / "yolov5nu-seed0" / "weights").mkdir(parents=True)  # the untagged study's run is not resumed
    (tmp_path / "yolov5nu-seed0" / "weights" / "last.pt").write_bytes(b"")

    study.train_one("yolov5nu.yaml", 0, args)
    ((model, kwargs),) = RecordingYOLO.calls
    assert model == "yolov5nu.yaml" and kwargs["name"] == "yolov5nu-seed0-adamw"
    assert (kwargs["optimizer"], kwargs["lr0"], kwargs["warmup_epochs"]) == ("AdamW", 0.004, 0.0)
    assert study.result_stem(args) == "small_objects-adamw"
    untagged = study.parse_args(["--runs", str(tmp_path)])
    assert study.optimiser_args(untagged) == {} and study.result_stem(untagged) == "small_objects"


def test_replot_rewrites_table_json_and_plot_from_a_results_file(study, tmp_path):
    metrics = {c: 0.1 for c in study.COLUMNS} | {"aitod:AP_verytiny": -1.0, "aitod:AP_medium": 0.2}
    per_seed = {0: {"yolov5nu": metrics, "yolov5-spd-n": metrics}, 1: {"yolov5nu": metrics, "yolov5-spd-n": metrics}}
    args = study.parse_args(["--out", str(tmp_path), "--tag", "adamw", "--optimizer", "AdamW", "--lr0", "0.004",
                             "--epochs", "7", "--batch", "2"])
    study.write_results(study.aggregate(per_seed), per_seed, args, "python benchmarks/small_objects.py --tag adamw")
    first = json.loads((tmp_path / "small_objects-adamw.json").read_text())
    (tmp_path / "small_objects-adamw.png").unlink()

    study.main(["--replot", str(tmp_path / "small_objects-adamw.json")])  # writes beside the JSON
    again = json.loads((tmp_path / "small_objects-adamw.json").read_text())
    assert again == first and again["optimiser"] == {"optimizer": "AdamW", "lr0": 0.004} and again["batch"] == 2
    assert (tmp_path / "small_objects-adamw.png").is_file()
    assert (tmp_path / "small_objects-adamw.md").read_text().startswith("`python benchmarks/small_objects.py --tag")


def test_replot_writes_the_table_into_the_docs_block_named_after_the_results(study, tmp_path):
    from yolo_spd.markdown import read_block

    metrics = {c: 0.25 for c in study.COLUMNS} | {"aitod:AP_medium": 0.5}  # the plot's AI-TOD ranges
    per_seed = {0: {"yolov5nu": metrics}, 1: {"yolov5nu": metrics}}
    args = study.parse_args(["--out", str(tmp_path), "--tag", "adamw"])
    study.write_results(study.aggregate(per_seed), per_seed, args, "python benchmarks/small_objects.py --tag adamw")
    page = tmp_path / "page.md"
    markers = "<!-- BEGIN generated: small_objects-adamw -->\n<!-- END generated: small_objects-adamw -->\n"
    page.write_text("before\n" + markers)

    study.main(["--replot", str(tmp_path / "small_objects-adamw.json"), "--write-docs", str(page)])
    table = read_block(page, "small_objects-adamw")
    assert table == study.markdown(study.aggregate(per_seed), [0, 1]) and "| yolov5nu | 0.250 ± 0.000 |" in table
    assert page.read_text().startswith("before\n") and (tmp_path / "small_objects-adamw.md").read_text().endswith(
        table + "\n")
