"""yolo-spd slice: tiled YOLO datasets (clipping, offsets, caching, empty tiles, bad input) and stock Ultralytics on them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from yolo_spd.errors import UsageError
from yolo_spd.evaluation import build_ground_truth, resolve_split
from yolo_spd.slicing import Window
from yolo_spd.slicing.tiles import TileSettings, plan_split, slice_dataset, tile_rows

from .conftest import SHARED, child_env, make_yolo_dataset


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_SPD_CACHE", str(tmp_path / "cache"))


def boxes(rows: list[str]) -> np.ndarray:
    return np.array([[float(v) for v in row.split()] for row in rows]).reshape(-1, 5)


def test_a_box_cut_by_the_border_is_clipped_and_kept_only_when_enough_of_it_is_inside():
    # 200 x 100 image, the tile is its left half [0, 100) x [0, 100).
    window = Window(0, 0, 100, 100)
    inside = (0, 50 / 200, 50 / 100, 20 / 200, 10 / 100)  # x 40..60, y 45..55: whole box inside
    half = (1, 100 / 200, 20 / 100, 40 / 200, 10 / 100)  # x 80..120: exactly half inside
    sliver = (0, 110 / 200, 80 / 100, 40 / 200, 10 / 100)  # x 90..130: a quarter inside
    outside = (1, 150 / 200, 50 / 100, 10 / 200, 10 / 100)
    flat = (0, 20 / 200, 20 / 100, 10 / 200, 0.0)  # zero area
    rows = boxes(tile_rows([inside, half, sliver, outside, flat], 200, 100, window, min_visible=0.5))
    np.testing.assert_allclose(rows, [[0, 0.50, 0.50, 0.20, 0.10],  # pixels kept, normalised to the 100-px tile
                                      [1, 0.90, 0.20, 0.20, 0.10]], atol=1e-6)  # clipped to x 80..100
    rows = boxes(tile_rows([sliver], 200, 100, window, min_visible=0.25))
    np.testing.assert_allclose(rows, [[0, 0.95, 0.80, 0.10, 0.10]], atol=1e-6)  # x 90..100
    assert tile_rows([half], 200, 100, window, min_visible=0.51) == []

    # A box sticking out of the image is first clipped to the image, as the ground truth clips it.
    off_image = (0, 0.0, 0.5, 20 / 200, 10 / 100)  # x -10..10: its on-image half is all inside the tile
    assert boxes(tile_rows([off_image], 200, 100, window, min_visible=1.0))[0, 1:3] == pytest.approx([0.05, 0.5])
    # An offset tile: coordinates are relative to the tile's corner.
    np.testing.assert_allclose(boxes(tile_rows([inside], 200, 100, Window(30, 40, 80, 90), 0.5)),
                               [[0, 0.4, 0.2, 0.4, 0.2]], atol=1e-6)


def test_offsets_in_the_manifest_reproduce_the_source_pixels_and_boxes(tmp_path):
    data = make_yolo_dataset(tmp_path / "src", n_train=3, n_val=2, size=96)
    # Boxes are whole pixels, so one that crosses a tile border has at most (w - 1) / w <= 27/28 of it inside.
    tiled = slice_dataset(data, TileSettings(tile=48, overlap=0.25, min_visible=0.99, empty=1.0), out=tmp_path / "t")
    manifest = json.loads((tiled.folder / "manifest.json").read_text())
    assert manifest == tiled.manifest and manifest["source"] == str(data)
    files = manifest["splits"]["train"]["files"]
    assert len(files) == 3 * 9  # 96 px, 48-px tiles every 36 px: starts 0, 36, 48 along each axis
    for entry in files:
        tile = cv2.imread(str(tiled.folder / entry["image"]))
        source = cv2.imread(entry["source"])
        x, y = entry["x"], entry["y"]
        assert entry["image"].endswith(f"_{x}_{y}.png") and tile.shape == (48, 48, 3)
        np.testing.assert_array_equal(tile, source[y : y + 48, x : x + 48])
        # min_visible=0.99: the tile's boxes are exactly the source boxes that lie inside it, in source pixels
        label = tiled.folder / entry["image"].replace("images/", "labels/").replace(".png", ".txt")
        got = boxes(label.read_text().splitlines())
        want = boxes(open(entry["source"].replace("/images/", "/labels/").replace(".jpg", ".txt")).read().splitlines())
        want_px = np.c_[want[:, :1], want[:, 1:] * 96]
        x0, y0 = want_px[:, 1] - want_px[:, 3] / 2, want_px[:, 2] - want_px[:, 4] / 2
        x1, y1 = x0 + want_px[:, 3], y0 + want_px[:, 4]
        want_px = want_px[(x0 > x - 0.01) & (x1 < x + 48.01) & (y0 > y - 0.01) & (y1 < y + 48.01)]
        got_px = np.c_[got[:, :1], got[:, 1:3] * 48 + [x, y], got[:, 3:] * 48]
        np.testing.assert_allclose(sorted(map(tuple, got_px)), sorted(map(tuple, want_px)), atol=1e-3)
        assert entry["boxes"] == len(got)
    assert {e["source"] for e in manifest["splits"]["val"]["files"]} == {str(p) for p in resolve_split(data).images}


def test_a_second_run_reuses_the_tiles_and_a_changed_label_rebuilds_them(tmp_path):
    data = make_yolo_dataset(tmp_path / "src", n_train=2, n_val=1, size=64)
    settings = TileSettings(tile=32, overlap=0.0, empty=1.0)
    first = slice_dataset(data, settings)
    assert not first.reused and first.folder.parent == tmp_path / "cache" / "tiles"
    stamp = (first.folder / "manifest.json").stat().st_mtime_ns
    again = slice_dataset(data, settings)
    assert again.reused and again.data_yaml == first.data_yaml
    assert (first.folder / "manifest.json").stat().st_mtime_ns == stamp  # nothing rewritten

    label = tmp_path / "src" / "labels" / "train" / "000.txt"
    label.write_text("0 0.25 0.25 0.2 0.2\n")  # one box, in the top-left tile
    rebuilt = slice_dataset(data, settings)
    assert not rebuilt.reused and rebuilt.folder == first.folder and rebuilt.manifest["key"] != first.manifest["key"]
    tiles = {e["image"]: e["boxes"] for e in rebuilt.manifest["splits"]["train"]["files"] if "000_" in e["image"]}
    assert tiles == {"images/train/000_0_0.png": 1, "images/train/000_32_0.png": 0,
                     "images/train/000_0_32.png": 0, "images/train/000_32_32.png": 0}
    assert (rebuilt.folder / "labels" / "train" / "000_0_0.txt").read_text() == "0 0.500000 0.500000 0.400000 0.400000\n"
    assert sorted(p.name for p in rebuilt.folder.parent.iterdir()) == [rebuilt.folder.name]  # no build leftovers
    assert oct((rebuilt.folder / "data.yaml").stat().st_mode & 0o777) == "0o644"
    assert oct(rebuilt.folder.stat().st_mode & 0o777) == "0o755"

    other = slice_dataset(data, TileSettings(tile=48, overlap=0.0, empty=1.0))  # other settings: another folder
    assert other.folder != first.folder and not other.reused


def test_splits_resolved_by_the_caller_are_used_as_they_are_and_must_be_train_and_val(tmp_path, monkeypatch):
    """A study resolves the splits once and hands them over: the tiles are the same, and no folder is listed again."""
    from yolo_spd.slicing import tiles as tiles_module

    data = make_yolo_dataset(tmp_path / "src", n_train=2, n_val=1, size=64)
    splits = {name: resolve_split(data, name) for name in ("train", "val")}
    settings = TileSettings(tile=32, overlap=0.0, empty=1.0)
    built = slice_dataset(data, settings, out=tmp_path / "a")

    def listed_again(*args, **kwargs):
        raise AssertionError("resolve_split called although the splits were given")

    monkeypatch.setattr(tiles_module, "resolve_split", listed_again)
    given = slice_dataset(data, settings, out=tmp_path / "b", splits=splits)
    assert given.manifest["key"] == built.manifest["key"]
    assert given.manifest["splits"] == built.manifest["splits"]
    with pytest.raises(ValueError, match="splits= must map train and val"):
        slice_dataset(data, settings, out=tmp_path / "c", splits={"train": splits["val"], "val": splits["val"]})


def test_the_empty_option_keeps_that_fraction_of_tiles_without_boxes_deterministically(tmp_path):
    data = make_yolo_dataset(tmp_path / "src", n_train=6, n_val=2, size=128)
    split = resolve_split(data, "train")
    counts, chosen, labelled = {}, {}, set()
    for empty in (0.0, 0.5, 1.0):
        plan = plan_split(split, TileSettings(tile=32, overlap=0.0, empty=empty))
        counts[empty] = sum(1 for t in plan.tiles if not t.rows)
        chosen[empty] = {t.name for t in plan.tiles if not t.rows}
        labelled.add(frozenset(t.name for t in plan.tiles if t.rows))
        assert plan.empty_tiles + len(next(iter(labelled))) == 6 * 16  # 128 px in 32-px tiles
    assert len(labelled) == 1 and len(next(iter(labelled))) > 0  # tiles with boxes are always kept
    assert counts[0.0] == 0 and counts[1.0] > 40 and counts[0.5] == round(0.5 * counts[1.0])
    assert chosen[0.5] < chosen[1.0]
    again = plan_split(resolve_split(data, "train"), TileSettings(tile=32, overlap=0.0, empty=0.5))
    assert {t.name for t in again.tiles if not t.rows} == chosen[0.5]  # same choice every run

    tiled = slice_dataset(data, TileSettings(tile=32, overlap=0.0, empty=0.5), out=tmp_path / "t")
    train = tiled.manifest["splits"]["train"]
    assert train["empty_tiles_kept"] == counts[0.5] and train["empty_tiles"] == counts[1.0]
    written = sorted((tiled.folder / "images" / "train").iterdir())
    assert len(written) == train["tiles"] == len(train["files"])
    empty_labels = [f for f in (tiled.folder / "labels" / "train").iterdir() if f.read_text() == ""]
    assert {f.stem for f in empty_labels} == chosen[0.5]


def test_corrupt_images_and_malformed_rows_are_skipped_as_the_ground_truth_skips_them(tmp_path):
    data = make_yolo_dataset(tmp_path / "src", n_train=4, n_val=1, size=64)
    images, labels = tmp_path / "src" / "images" / "train", tmp_path / "src" / "labels" / "train"
    (images / "000.jpg").write_bytes(b"not an image at all")
    (labels / "001.txt").write_text("7 0.5 0.5 0.1 0.1\n")  # class out of range for 2 classes
    (labels / "002.txt").write_text("1 0.1 0.1 0.4 0.1 0.4 0.3 0.1 0.3\n")  # a polygon: its box
    tiled = slice_dataset(data, TileSettings(tile=64, empty=1.0), out=tmp_path / "t")
    train = tiled.manifest["splits"]["train"]
    truth = build_ground_truth(resolve_split(data, "train"), gt="labels")
    assert train["skipped"] == truth.skipped and len(train["skipped"]) == 2
    assert train["images"] == len(truth.coco["images"]) == 2
    assert {e["source"].rsplit("/", 1)[1] for e in train["files"]} == {"002.jpg", "003.jpg"}
    polygon = (tiled.folder / "labels" / "train" / "002_0_0.txt").read_text()
    assert polygon == "1 0.250000 0.200000 0.300000 0.200000\n"


@pytest.mark.skipif(not (SHARED / "data" / "aerial-cars" / "data.yaml").is_file(), reason="../shared/data absent")
def test_aerial_cars_at_320_px_gives_the_tiles_the_study_was_planned_on(tmp_path):
    tiled = slice_dataset(SHARED / "data" / "aerial-cars" / "data.yaml", TileSettings(tile=320, overlap=0.2))
    train, val = tiled.manifest["splits"]["train"], tiled.manifest["splits"]["val"]
    # issue 13's planning measurement: 574 train tiles, 4,820 boxes (stride 256, box kept at >= 50% inside)
    assert (train["images"], train["tiles"], train["tile_boxes"], train["empty_tiles"]) == (55, 574, 4820, 0)
    assert val["images"] == 10 and val["tiles"] == 96 and not train["skipped"]
    sizes = {(e["width"], e["height"]) for e in train["files"]}
    assert sizes == {(320, 320)}  # every image is at least 320 px on each side: no short border tiles


def slice_cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = child_env(YOLO_SPD_CACHE=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, "-m", "yolo_spd", "slice", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_slice_command_writes_a_dataset_and_says_where(tmp_path):
    data = make_yolo_dataset(tmp_path / "src", n_train=2, n_val=1, size=64)
    out = slice_cli(tmp_path, f"data={data}", "tile=32", "overlap=0.2", "empty=1")
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("data.yaml: ") and "note:" not in out.stdout
    data_yaml = last.removeprefix("data.yaml: ")
    assert data_yaml.startswith(str(tmp_path / "cache" / "tiles" / "src-32px-"))
    assert "Wrote tiles" in out.stdout and "train: 2 images -> 18 tiles" in out.stdout  # starts 0, 26, 32 per axis
    again = slice_cli(tmp_path, f"data={data}", "tile=32", "overlap=0.2", "empty=1")
    assert "Reused tiles" in again.stdout and again.stdout.strip().splitlines()[-1] == last

    big = slice_cli(tmp_path, f"data={data}", "tile=100", f"out={tmp_path / 'big'}")
    assert big.returncode == 0, big.stderr
    notes = [line for line in big.stdout.splitlines() if "note:" in line]
    assert notes == ["yolo-spd: note: tile=100 is at least as large as every image (the largest is 64x64 px): "
                     "each image becomes one tile"]
    manifest = json.loads((tmp_path / "big" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["tiles"] == 2 and manifest["splits"]["val"]["tiles"] == 1


@pytest.mark.parametrize("args, message", [
    (["tile=16"], "tile=16: the tile size must be a whole number of pixels >= 32"),
    (["overlap=1"], "overlap=1: the overlap must be a fraction in [0, 1)"),
    (["overlap=-0.1"], "overlap=-0.1: the overlap must be a fraction in [0, 1)"),
    (["unlabelled"], "the train images have no label files"),
    (["min_visible=0"], "min_visible=0: must be a number in (0, 1]"),
    (["tiles=64"], "'tiles' is not a valid yolo-spd argument; similar keys: tile"),
    # a split without tiles wrote a data.yaml that training then refused ("no images in .../images/val"), exit 0
    (["unreadable val"], "the val split gives no tiles (1 of its 1 image skipped, e.g. "),
    (["no val boxes", "empty=0"], "the val split gives no tiles (1 image; none of its 9 tiles without boxes was kept "
                                  "(empty=0)); there would be nothing to train or validate on"),
])
def test_bad_input_gets_one_error_line(tmp_path, args, message):
    data = make_yolo_dataset(tmp_path / "src", n_train=1, n_val=1, size=64)
    if args == ["unlabelled"]:
        for label in (tmp_path / "src" / "labels").rglob("*.txt"):
            label.unlink()
        args = []
    if args[:1] == ["unreadable val"]:
        next((tmp_path / "src" / "images" / "val").iterdir()).write_bytes(b"not an image")
        args = ["tile=32"]
    if args[:1] == ["no val boxes"]:
        next((tmp_path / "src" / "labels" / "val").iterdir()).write_text("")
        args = ["tile=32", *args[1:]]
    out = slice_cli(tmp_path, f"data={data}", *args)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and out.stderr.startswith("yolo-spd: error: ")
    assert message in out.stderr
    assert not (tmp_path / "cache" / "tiles").exists() or not any((tmp_path / "cache" / "tiles").iterdir())


def test_an_out_folder_that_cannot_be_created_gets_one_error_line(tmp_path):
    """A file where a parent folder should be (out=/dev/null/x) ended in a FileExistsError traceback."""
    data = make_yolo_dataset(tmp_path / "src", n_train=1, n_val=1, size=64)
    (tmp_path / "a-file").write_text("")
    out = slice_cli(tmp_path, f"data={data}", "tile=32", f"out={tmp_path / 'a-file' / 'tiles'}")
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr == (f"yolo-spd: error: out={tmp_path / 'a-file' / 'tiles'}: cannot create "
                          f"{tmp_path / 'a-file' / 'tiles'} ({tmp_path / 'a-file'} is a file, not a folder); give out= "
                          "a folder you can write to\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "src"]


def test_out_refuses_a_folder_it_did_not_write(tmp_path):
    data = make_yolo_dataset(tmp_path / "src", n_train=1, n_val=1, size=64)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="is not a folder written by yolo-spd slice"):
        slice_dataset(data, TileSettings(tile=32), out=tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_stock_ultralytics_accepts_the_written_yaml(tmp_path):
    from ultralytics.data.utils import check_det_dataset

    data = make_yolo_dataset(tmp_path / "src", n_train=2, n_val=1, size=64)
    tiled = slice_dataset(data, TileSettings(tile=32, empty=1.0), out=tmp_path / "t")
    checked = check_det_dataset(str(tiled.data_yaml), autodownload=False)
    assert checked["nc"] == 2 and checked["names"] == {0: "red", 1: "green"}
    assert checked["train"] == str(tmp_path / "t" / "images" / "train")
    assert resolve_split(tiled.data_yaml, "val").images == tuple(sorted((tmp_path / "t" / "images" / "val").iterdir()))


@pytest.mark.slow
def test_stock_yolo_train_runs_one_epoch_on_the_tiles(tmp_path):
    data = make_yolo_dataset(tmp_path / "src", n_train=4, n_val=2, size=96)
    tiled = slice_dataset(data, TileSettings(tile=64, overlap=0.2, empty=0.0), out=tmp_path / "t")
    yolo = os.path.join(os.path.dirname(sys.executable), "yolo")
    out = subprocess.run([yolo, "train", "model=yolov5nu.yaml", f"data={tiled.data_yaml}", "epochs=1", "imgsz=64",
                          "batch=4", "workers=0", "device=cpu", "amp=False", "plots=False", f"project={tmp_path / 'runs'}",
                          "name=t"], cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    results = (tmp_path / "runs" / "t" / "results.csv").read_text().splitlines()
    assert len(results) == 2  # header + the one epoch
    n_tiles = tiled.manifest["splits"]["train"]["tiles"]
    assert f"{n_tiles} images, 0 backgrounds, 0 corrupt" in out.stdout + out.stderr
