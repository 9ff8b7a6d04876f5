"""yolo_spd.evaluation.compare's table and plot helpers (the end-to-end command is tested in test_cli.py)."""

from __future__ import annotations

from pathlib import Path

from yolo_spd.evaluation.compare import (ModelScore, markdown_table, model_folders, model_labels, plot_ap_by_size,
                                         size_groups)
from yolo_spd.evaluation import size_ranges


def scores_without_tiny_objects() -> list[ModelScore]:
    """Two models scored under AI-TOD ranges on data with no object under 16 px: COCOeval says -1 there."""
    metrics = {"AP": 0.2, "AP50": 0.4, "AP75": 0.1, "AP_verytiny": -1.0, "AP_tiny": -1.0, "AP_small": 0.0,
               "AP_medium": 0.3, "AR_verytiny": -1.0, "AR_small": 0.05}
    return [ModelScore("base", Path("base.pt"), 10, metrics), ModelScore("spd", Path("spd.pt"), 12, dict(metrics))]


def test_size_ranges_without_objects_are_labelled_not_drawn_as_zero():
    keys, groups = size_groups(scores_without_tiny_objects(), size_ranges("aitod"))
    assert keys == ["AP", "AP_verytiny", "AP_tiny", "AP_small", "AP_medium"]
    assert groups[1] == "verytiny\n2-8 px\n(no objects)" and groups[2].endswith("(no objects)")
    assert groups[3] == "small\n16-32 px" and groups[4] == "medium\n>= 32 px"  # a real 0.0 stays a score


def test_table_marks_empty_ranges_and_plot_is_written_atomically(tmp_path):
    scores = scores_without_tiny_objects()
    table = markdown_table(scores, ["AP", "AP_verytiny", "AP_small"])
    assert "| base | 10 | 0.200 | - | 0.000 |" in table
    png = plot_ap_by_size(scores, size_ranges("aitod"), tmp_path / "plot.png", title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_model_labels_are_short_and_unique():
    exports = [Path(f"/t/best{suffix}") for suffix in (".pt", ".torchscript", ".onnx", "_openvino_model")]
    assert model_labels(exports) == ["best.pt", "best.torchscript", "best.onnx", "best_openvino_model"]
    runs = [Path("/r/train/weights/best.pt"), Path("/r/train3/weights/best.pt"), Path("/x/a.pt")]
    assert model_labels(runs) == ["train/best", "train3/best", "a"]
    same = [Path("/r/train/weights/best.pt"), Path("/q/train/weights/best.pt")]
    assert model_labels(same) == ["train/best.pt#1", "train/best.pt#2"]


def test_model_folders_stay_unique_where_a_label_with_a_slash_meets_a_file_named_with_an_underscore():
    labels = model_labels([Path("runs/train3/weights/best.pt"), Path("x/best.pt"), Path("y/train3_best.pt")])
    assert labels == ["train3/best", "x/best", "train3_best"]
    assert model_folders(labels) == ["train3_best#1", "x_best", "train3_best#3"]
    assert model_folders(["a", "b/c"]) == ["a", "b_c"]
