"""`yolo-spd info` keeps each measured row in the cache, keyed by what the row depends on, and shows progress."""

from __future__ import annotations

import pytest

from yolo_spd import info

from .conftest import REPO


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private yolo_spd cache folder, and a record of the models info builds."""
    monkeypatch.setenv("YOLO_SPD_CACHE", str(tmp_path / "cache"))
    built = []
    real_build = info.build

    def recording_build(name):
        built.append(name)
        return real_build(name)

    monkeypatch.setattr(info, "build", recording_build)
    return tmp_path / "cache" / "info", built


def test_a_second_run_prints_the_same_table_from_the_cache_without_building(cache, capsys):
    folder, built = cache
    info.main(["yolov8-spd-n"])
    first = capsys.readouterr()
    assert built == ["yolov8n", "yolov8-spd-n"] and len(list(folder.glob("*.json"))) == 2
    assert "yolo-spd info" in first.err and "2/2" in first.err  # the progress bar, on stderr
    info.main(["yolov8-spd-n"])
    second = capsys.readouterr()
    assert built == ["yolov8n", "yolov8-spd-n"]  # nothing built again
    assert second.out == first.out and "| yolov8-spd-n | yolov8n | 23 |" in second.out
    assert second.err == ""  # nothing to build, no bar
    info.main(["yolov8-spd-n", "--no-cache", "--quiet"])
    third = capsys.readouterr()
    assert built[2:] == ["yolov8n", "yolov8-spd-n"] and third.out == first.out and third.err == ""


def test_a_changed_config_or_library_version_or_a_damaged_entry_is_measured_again(cache, capsys, tmp_path,
                                                                                    monkeypatch):
    folder, built = cache
    info.main(["yolov8-spd-n", "--quiet"])
    first = capsys.readouterr().out
    # The same name, read from a changed YAML (a file in the working directory comes first, as for Ultralytics).
    monkeypatch.chdir(tmp_path)
    wider = (REPO / "cfg" / "yolov8-spd-n.yaml").read_text().replace("width_multiple: 0.25", "width_multiple: 0.5")
    (tmp_path / "yolov8-spd-n.yaml").write_text(wider)
    info.main(["yolov8-spd-n", "--quiet"])
    changed = capsys.readouterr().out
    assert built == ["yolov8n", "yolov8-spd-n", "yolov8-spd-n"]  # only the changed config
    assert changed != first and changed.splitlines()[:2] == first.splitlines()[:2]  # other params, same table
    (tmp_path / "yolov8-spd-n.yaml").unlink()
    key = info.stats_key("yolov8-spd-n", 640)
    assert info.stats_key("yolov8-spd-n", 320) != key
    import torch

    real_version = torch.__version__
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert info.stats_key("yolov8-spd-n", 640) != key  # another torch: other rows
    monkeypatch.setattr(torch, "__version__", real_version)
    assert info.stats_key("yolov8-spd-n", 640) == key
    (folder / f"{key}.json").write_text("{half a file")
    assert info.cached_stats("yolov8-spd-n", 640) is None  # unreadable: measured again, and rewritten
    info.main(["yolov8-spd-n", "--quiet"])
    assert capsys.readouterr().out == first and built[3:] == ["yolov8-spd-n"]
    assert info.cached_stats("yolov8-spd-n", 640) is not None


def test_info_takes_your_model_and_baseline_from_the_command_line(tmp_path):
    """``yolo-spd info model=FILE baseline=FILE`` as a user types it: a model YAML of their own (here the packaged
    yolov5-spd-n under another name) gets the packaged config's row, named by its file; a .pt checkpoint is counted as
    it was built (its classes), and a YAML baseline is built for those classes; without baseline= the ratio cells say
    none."""
    import shutil
    import subprocess
    import sys

    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    from yolo_spd.markdown import parse_table

    from .conftest import child_env

    mine = tmp_path / "my-spd.yaml"
    shutil.copy(REPO / "cfg" / "yolov5-spd-n.yaml", mine)
    env = {**child_env(), "YOLO_SPD_CACHE": str(tmp_path / "cache")}

    def table(*args):
        done = subprocess.run([sys.executable, "-m", "yolo_spd", "info", *args, "imgsz=320", "verbose=False"],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return parse_table(done.stdout)

    [row] = table(f"model={mine}", "baseline=yolov5nu.yaml")
    [packaged] = parse_table(info.markdown_table(info.compare(["yolov5-spd-n"], 320), 320))
    assert row["model"] == "my-spd.yaml" and row["baseline"] == "yolov5nu.yaml"
    assert {k: v for k, v in row.items() if k not in ("model", "baseline")} == \
        {k: v for k, v in packaged.items() if k not in ("model", "baseline")}

    yolo = YOLO(str(mine))  # a 5-class checkpoint, as training on aerial-cars leaves
    yolo.model = DetectionModel(str(mine), nc=5, verbose=False)
    checkpoint = tmp_path / "best.pt"
    yolo.save(checkpoint)
    five = {name: sum(p.numel() for p in DetectionModel(f"{name}.yaml", nc=5, verbose=False).parameters())
            for name in ("yolov5-spd-n", "yolov5nu")}
    [row] = table(f"model={checkpoint}")
    assert row["model"] == "best.pt" and row["baseline"] == row["params / base"] == row["GFLOPs / base"] == "—"
    assert row["params"] == f"{five['yolov5-spd-n']:,}"
    [row] = table(f"model={checkpoint}", "baseline=yolov5nu.yaml")  # the baseline YAML built for its 5 classes
    assert row["params / base"] == f"{five['yolov5-spd-n'] / five['yolov5nu']:.2f}" != packaged["params / base"]
    [row] = table("model=yolov5-spd-n.yaml")  # a packaged config's name: its own baseline
    assert row["baseline"] == "yolov5nu.yaml" and row["GFLOPs / base"] == packaged["GFLOPs / base"]
    assert not (tmp_path / "cache").exists()  # rows of files are never cached
