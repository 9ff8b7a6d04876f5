"""Tiled training data: cut a YOLO dataset's train and val images into overlapping tiles at native resolution.

This is the training half of slicing-aided detection (Akyon et al., "Slicing Aided Hyper Inference and Fine-tuning
for Small Object Detection", ICIP 2022, Sec. 2: fine-tuning on patches cut from the training images, so small objects
keep their pixels instead of being shrunk to the network's input size). The windows are placed by
:func:`yolo_spd.slicing.windows.slice_windows` (SAHI's placement), the same rule sliced inference uses.

Rules, per source image:

- images and label rows are read and checked exactly as the label-derived ground truth does
  (:func:`yolo_spd.evaluation.ground_truth.read_labelled_image`): an image Ultralytics would skip (unreadable, under
  10 px, or with a label file it marks corrupt) is skipped and listed in the manifest; polygon rows become their
  bounding box; duplicate rows count once; boxes are clipped to the image;
- a box is clipped to each tile it overlaps, and kept in that tile when at least ``min_visible`` of its (image-clipped)
  area lies inside; a box of zero area is never kept;
- a tile with no kept box is *empty*; of a split's empty tiles, ``round(empty * count)`` are kept, the ones whose
  SHA-1 of ``split/tile name`` is smallest (deterministic and independent of file order);
- tiles are not padded: a border tile, or one from an image smaller than ``tile``, is the size of its window.

Deviations from SAHI's ``slice_coco`` (the public reference for this step), with reasons: (1) SAHI keeps a box whose
visible fraction exceeds ``min_area_ratio`` (default 0.1); here the default is 0.5, the threshold issue 13's planning
measurement used, so a tile does not teach "car" from a sliver of a car; (2) SAHI keeps all or no empty tiles; here a
fraction, because empty tiles teach the background but outnumber the others in sparse datasets; (3) tiles are PNG by
default, so a tile's pixels are exactly the source's (``format=jpg`` trades that for size).

Output, in one folder (``out=``, default ``<yolo_spd cache>/tiles/<dataset>-<tile>px-<hash of source and
settings>``): ``data.yaml`` (no ``path:`` key, so paths resolve beside it and the folder can move),
``images/{train,val}``, ``labels/{train,val}`` and ``manifest.json`` (settings, per-split counts, skipped images,
and for each tile its source image and offset, which also appear in its file name ``<source stem>_<x>_<y>.<format>``).
The folder is built under a temporary name and renamed into place, so it is either complete or absent; it is reused
while the cache key (the settings, the class names, and every source image and label file's path, size and
modification time) is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from ..errors import UsageError
from ..evaluation.dataset import DatasetSplit, load_yaml, resolve_split
from ..evaluation.ground_truth import fingerprint_files, label_path, pixel_box, read_labelled_image
from ..paths import cache_dir
from .windows import Window, check_overlap, slice_windows

TILE_CACHE_VERSION = 1
MIN_TILE = 32  # the smallest tile: one stride-32 cell of a YOLO detector
SPLITS = ("train", "val")
FORMATS = ("png", "jpg")
MANIFEST = "manifest.json"
DATA_YAML = "data.yaml"


@dataclass(frozen=True)
class TileSettings:
    """How a dataset is tiled.

    Attributes:
        tile (int): tile side in pixels (>= 32); the last tile of a row or column is moved back to end at the
            image's border, so every tile is full size, except where the image is smaller than ``tile``.
        overlap (float): fraction of ``tile`` that neighbouring tiles share, in [0, 1).
        min_visible (float): a box cut by a tile border is kept when at least this fraction of its area is inside,
            in (0, 1].
        empty (float): fraction of the tiles without any kept box that are written, in [0, 1].
        format (str): ``png`` (lossless: tile pixels equal the source's) or ``jpg`` (quality 95, smaller).
    """

    tile: int = 640
    overlap: float = 0.2
    min_visible: float = 0.5
    empty: float = 0.1
    format: str = "png"

    def check(self) -> None:
        """Raise :class:`UsageError` naming the first bad value and what is allowed."""
        if isinstance(self.tile, bool) or not isinstance(self.tile, int) or self.tile < MIN_TILE:
            raise UsageError(f"tile={self.tile}: the tile size must be a whole number of pixels >= {MIN_TILE}")
        check_overlap(self.overlap)  # the rule the window placement applies (slicing/windows.py)
        for key, low, high, closed in (("min_visible", 0, 1, "(0, 1]"), ("empty", 0, 1, "[0, 1]")):
            value = getattr(self, key)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and (low <= value if closed[0] == "[" else low < value)
            ok = ok and (value < high if closed[-1] == ")" else value <= high)
            if not ok:
                raise UsageError(f"{key}={value}: must be a number in {closed}")
        if self.format not in FORMATS:
            raise UsageError(f"format={self.format}: allowed values are {', '.join(FORMATS)}")


# The CLI keys of ``yolo-spd slice`` and their defaults.
CLI_KEYS = {"data": None, **asdict(TileSettings()), "out": None}


@dataclass(frozen=True)
class Tile:
    """One planned tile: where it comes from and the label rows it gets."""

    name: str  # file stem: <source stem>_<x0>_<y0>
    source: Path
    window: Window
    rows: tuple[str, ...]  # YOLO rows normalised to the tile


@dataclass
class SplitPlan:
    """The tiles one split will give (:func:`plan_split`), with the counts the manifest records."""

    split: str
    tiles: list[Tile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "<image>: <reason>"
    images: int = 0
    boxes: int = 0  # boxes in the kept source images
    empty_tiles: int = 0  # empty tiles before the ``empty`` fraction is applied
    largest: tuple[int, int] = (0, 0)  # the largest source image side along x and y


@dataclass
class TiledDataset:
    """A written tile dataset: its ``data.yaml``, its manifest, and whether an earlier run's tiles were reused."""

    data_yaml: Path
    manifest: dict
    reused: bool

    @property
    def folder(self) -> Path:
        """The tile folder (where ``data.yaml`` is)."""
        return self.data_yaml.parent


def tile_rows(labels: list[tuple[float, ...]], width: int, height: int, window: Window,
              min_visible: float) -> list[str]:
    """The YOLO rows of ``labels`` (normalised to the ``width`` x ``height`` image) that ``window`` keeps, clipped to
    the window and normalised to it; a box is kept when at least ``min_visible`` of its area lies inside."""
    rows = []
    for cls, cx, cy, w, h in labels:
        x0, y0, x1, y1 = pixel_box(cx, cy, w, h, width, height)
        area = (x1 - x0) * (y1 - y0)
        ix0, iy0 = max(x0, window.x0), max(y0, window.y0)
        ix1, iy1 = min(x1, window.x1), min(y1, window.y1)
        inside = max(ix1 - ix0, 0.0) * max(iy1 - iy0, 0.0)
        if area <= 0 or inside < min_visible * area * (1 - 1e-9):
            continue
        tw, th = window.width, window.height
        rows.append(f"{int(cls)} {((ix0 + ix1) / 2 - window.x0) / tw:.6f} {((iy0 + iy1) / 2 - window.y0) / th:.6f} "
                    f"{(ix1 - ix0) / tw:.6f} {(iy1 - iy0) / th:.6f}")
    return rows


def _unique_stems(images: tuple[Path, ...]) -> dict[Path, str]:
    """Each image's stem, made unique with a hash of its path where two images of a split share one."""
    counts: dict[str, int] = {}
    for image in images:
        counts[image.stem] = counts.get(image.stem, 0) + 1
    return {im: im.stem if counts[im.stem] == 1 else f"{im.stem}-{hashlib.sha1(str(im).encode()).hexdigest()[:8]}"
            for im in images}


def _rank(split: str, name: str) -> str:
    return hashlib.sha1(f"{split}/{name}".encode()).hexdigest()


def plan_split(split: DatasetSplit, settings: TileSettings) -> SplitPlan:
    """Every tile of ``split`` with its label rows, empty tiles thinned to ``settings.empty``; reads headers and
    labels only."""
    plan = SplitPlan(split.split)
    stems = _unique_stems(split.images)
    empty = []
    for image in split.images:
        try:
            width, height, labels = read_labelled_image(image, len(split.names))
        except Exception as e:  # noqa: BLE001 - skipped as the ground truth skips it (see its module docstring)
            plan.skipped.append(f"{image}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            continue
        plan.images += 1
        plan.boxes += len(labels)
        plan.largest = (max(plan.largest[0], width), max(plan.largest[1], height))
        for window in slice_windows(width, height, settings.tile, settings.overlap):
            tile = Tile(f"{stems[image]}_{window.x0}_{window.y0}", image, window,
                        tuple(tile_rows(labels, width, height, window, settings.min_visible)))
            (plan.tiles if tile.rows else empty).append(tile)
    plan.empty_tiles = len(empty)
    ranked = sorted(empty, key=lambda t: _rank(split.split, t.name))
    keep = {t.name for t in ranked[: round(settings.empty * len(empty))]}
    plan.tiles = sorted(plan.tiles + [t for t in empty if t.name in keep], key=lambda t: (str(t.source), t.window))
    return plan


def _read_image(image: Path, channels: int):
    """The image as Ultralytics' dataloader decodes it (OpenCV, EXIF rotation applied), or None."""
    import cv2
    import numpy as np

    flags = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
    return cv2.imdecode(np.fromfile(image, np.uint8), flags)


def _write_source(tiles: list[Tile], folder: Path, split: str, settings: TileSettings, channels: int) -> str | None:
    """Write the tiles of one source image and their label files; the reason when the image cannot be decoded."""
    import cv2

    source = tiles[0].source
    pixels = _read_image(source, channels)
    if pixels is None:
        return f"{source}: OpenCV cannot decode it"
    right, bottom = max(t.window.x1 for t in tiles), max(t.window.y1 for t in tiles)
    if pixels.shape[1] < right or pixels.shape[0] < bottom:
        return f"{source}: decoded size {pixels.shape[1]}x{pixels.shape[0]} differs from its header"
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if settings.format == "jpg" else []
    for tile in tiles:
        w = tile.window
        target = folder / "images" / split / f"{tile.name}.{settings.format}"
        if not cv2.imwrite(str(target), pixels[w.y0 : w.y1, w.x0 : w.x1], params):
            raise OSError(f"could not write {target}")
        (folder / "labels" / split / f"{tile.name}.txt").write_text("".join(f"{r}\n" for r in tile.rows))
    return None


def _write_split(plan: SplitPlan, folder: Path, settings: TileSettings, channels: int) -> list[dict]:
    """Write one split's tiles (one thread per source image; the output does not depend on their order)."""
    for kind in ("images", "labels"):
        (folder / kind / plan.split).mkdir(parents=True)
    by_source: dict[Path, list[Tile]] = {}
    for tile in plan.tiles:
        by_source.setdefault(tile.source, []).append(tile)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        failures = list(pool.map(lambda ts: _write_source(ts, folder, plan.split, settings, channels),
                                 by_source.values()))
    failed = set()
    for tiles, failure in zip(by_source.values(), failures):
        if failure:
            plan.skipped.append(failure)
            failed.add(tiles[0].source)
            plan.images -= 1
            for tile in tiles:  # a partly written source (cannot happen today: checks come first) leaves nothing
                for file in (folder / "images" / plan.split / f"{tile.name}.{settings.format}",
                             folder / "labels" / plan.split / f"{tile.name}.txt"):
                    file.unlink(missing_ok=True)
    plan.tiles = [t for t in plan.tiles if t.source not in failed]
    return [{"image": f"images/{plan.split}/{t.name}.{settings.format}", "source": str(t.source), "x": t.window.x0,
             "y": t.window.y0, "width": t.window.width, "height": t.window.height, "boxes": len(t.rows)}
            for t in plan.tiles]


def cache_key(splits: dict[str, DatasetSplit], settings: TileSettings, channels: int) -> str:
    """A hash of the settings, the class names and every source image and label file's path, size and mtime."""
    first = next(iter(splits.values()))
    digest = hashlib.sha256(json.dumps({"version": TILE_CACHE_VERSION, "settings": asdict(settings),
                                        "names": first.names, "channels": channels}).encode())
    for name, split in splits.items():
        digest.update(f"[{name}]\n".encode())
        fingerprint_files(digest, split.images)
    return digest.hexdigest()[:24]


def default_folder(yaml_file: Path, settings: TileSettings) -> Path:
    """``<cache>/tiles/<dataset>-<tile>px-<hash of the source YAML's path and the settings>``."""
    name = yaml_file.parent.name if yaml_file.stem == "data" else yaml_file.stem
    tag = hashlib.sha256(f"{yaml_file.resolve()}|{json.dumps(asdict(settings))}".encode()).hexdigest()[:10]
    return cache_dir() / "tiles" / f"{name}-{settings.tile}px-{tag}"


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a tile folder, or None where there is none (or it does not parse)."""
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _remove_stale_builds(folder: Path) -> None:
    """Temporary build folders of ``folder`` left by a process that no longer runs (killed mid-build)."""
    for stale in folder.parent.glob(f".{folder.name}.build-*"):
        pid = stale.name.rsplit("-", 2)[-2]
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(stale, ignore_errors=True)
        except PermissionError:
            pass  # another user's live process


def _note(plans: list[SplitPlan], tile: int) -> str | None:
    width, height = max(p.largest[0] for p in plans), max(p.largest[1] for p in plans)
    if tile >= max(width, height) > 0:
        return (f"tile={tile} is at least as large as every image (the largest is {width}x{height} px): "
                "each image becomes one tile")
    return None


def slice_dataset(data: str | os.PathLike, settings: TileSettings | None = None,
                  out: str | os.PathLike | None = None,
                  splits: dict[str, DatasetSplit] | None = None) -> TiledDataset:
    """Tile ``data``'s train and val splits (see the module docstring); reuse the folder while nothing changed.

    ``splits``: the train and val splits of ``data`` when the caller has resolved them already (a study has), so the
    image folders are not listed again; resolved here otherwise.
    """
    settings = settings or TileSettings()
    settings.check()
    if splits is None:
        splits = {name: resolve_split(data, name) for name in SPLITS}
    elif sorted(splits) != sorted(SPLITS) or any(split.split != name for name, split in splits.items()):
        raise ValueError(f"splits= must map {' and '.join(SPLITS)} to those splits of {data}; got "
                         f"{ {name: split.split for name, split in splits.items()} }")
    for name, split in splits.items():
        if not any(label_path(image).is_file() for image in split.images):
            raise UsageError(f"data={data}: the {name} images have no label files (looked for e.g. "
                             f"{label_path(split.images[0])}); slice needs a labelled YOLO dataset")
    yaml_file, content = load_yaml(data)
    channels = 1 if content.get("channels") == 1 else 3
    key = cache_key(splits, settings, channels)
    folder = Path(out).resolve() if out is not None else default_folder(yaml_file.resolve(), settings)
    manifest = read_manifest(folder)
    if manifest is not None and manifest.get("key") == key and (folder / DATA_YAML).is_file():
        return TiledDataset(folder / DATA_YAML, manifest, reused=True)
    if folder.exists() and manifest is None and not (folder.is_dir() and not any(folder.iterdir())):
        raise UsageError(f"out={folder} exists and is not a folder written by yolo-spd slice (no {MANIFEST}); "
                         "give a new or empty folder")
    plans = [plan_split(split, settings) for split in splits.values()]
    for plan in plans:  # a split without tiles: a data.yaml Ultralytics cannot train or validate on
        if not plan.tiles:
            total = len(plan.skipped) + plan.images
            why = (f"{len(plan.skipped)} of its {total} image{'s' * (total != 1)} skipped, e.g. {plan.skipped[0]}"
                   if plan.skipped else f"{plan.images} image{'s' * (plan.images != 1)}")
            kept = (f"; none of its {plan.empty_tiles} tiles without boxes was kept (empty={settings.empty})"
                    if plan.empty_tiles else "")
            raise UsageError(f"data={data}: the {plan.split} split gives no tiles ({why}{kept}); there would be "
                             "nothing to train or validate on")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".{folder.name}.build-{os.getpid()}-", dir=folder.parent))
    except OSError as error:  # a file in the way, no permission
        blocked = next((p for p in (folder.parent, *folder.parent.parents) if p.exists() and not p.is_dir()), None)
        reason = f"{blocked} is a file, not a folder" if blocked else error.strerror or str(error)
        place = f"out={out}" if out is not None else "the tiles' default folder"
        raise UsageError(f"{place}: cannot create {folder} ({reason}); give out= a folder you can write to") from None
    _remove_stale_builds(folder)  # after our own build exists: it skips live processes' builds
    try:
        tiles = {plan.split: _write_split(plan, build, settings, channels) for plan in plans}
        manifest = _manifest(key, yaml_file, settings, plans, tiles, _note(plans, settings.tile))
        names = dict(enumerate(splits["train"].names))
        header = (f"# Written by yolo-spd slice from {yaml_file.resolve()} ({_settings_text(settings)}).\n"
                  f"# Paths resolve beside this file; {MANIFEST} records each tile's source image and offset.\n")
        body = {"train": "images/train", "val": "images/val", "names": names}
        if channels == 1:
            body["channels"] = 1
        (build / DATA_YAML).write_text(header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True))
        (build / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        for path in (build, *(p for p in build.rglob("*") if p.is_dir())):
            path.chmod(0o755)
        _swap_into_place(build, folder, key)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return TiledDataset(folder / DATA_YAML, read_manifest(folder) or manifest, reused=False)


def _swap_into_place(build: Path, folder: Path, key: str) -> None:
    """Rename the finished ``build`` to ``folder``, replacing an outdated one; a concurrent identical build wins."""
    if folder.exists():
        current = read_manifest(folder)
        if current is not None and current.get("key") == key:
            return  # another process finished the same build first
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
        try:
            os.replace(build, folder)
        finally:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(build, folder)


def _manifest(key: str, yaml_file: Path, settings: TileSettings, plans: list[SplitPlan], tiles: dict[str, list[dict]],
              note: str | None) -> dict:
    splits = {}
    for plan in plans:
        kept = tiles[plan.split]
        splits[plan.split] = {
            "images": plan.images,
            "skipped": plan.skipped,
            "boxes": plan.boxes,
            "tiles": len(kept),
            "tile_boxes": sum(t["boxes"] for t in kept),
            "empty_tiles": plan.empty_tiles,
            "empty_tiles_kept": sum(1 for t in kept if t["boxes"] == 0),
            "files": kept,
        }
    return {"version": TILE_CACHE_VERSION, "key": key, "source": str(yaml_file.resolve()), "settings": asdict(settings),
            "note": note, "splits": splits}


def _settings_text(settings: TileSettings | dict) -> str:
    items = asdict(settings).items() if isinstance(settings, TileSettings) else settings.items()
    return ", ".join(f"{k}={v}" for k, v in items)


def summary_lines(tiled: TiledDataset) -> list[str]:
    """What ``yolo-spd slice`` prints: per split counts, the note if any, and where the data YAML is."""
    m = tiled.manifest
    lines = [f"{'Reused' if tiled.reused else 'Wrote'} tiles of {m['source']} "
             f"({_settings_text(m['settings'])})"]
    for name, s in m["splits"].items():
        lines.append(f"  {name}: {s['images']} images -> {s['tiles']} tiles ({s['empty_tiles_kept']} of "
                     f"{s['empty_tiles']} empty kept), {s['tile_boxes']} tile boxes from {s['boxes']} source boxes"
                     + (f"; {len(s['skipped'])} images skipped, e.g. {s['skipped'][0]}" if s["skipped"] else ""))
    if m.get("note"):
        lines.append(f"yolo-spd: note: {m['note']}")
    lines.append(f"data.yaml: {tiled.data_yaml}")
    return lines
