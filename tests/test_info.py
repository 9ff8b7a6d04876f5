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
