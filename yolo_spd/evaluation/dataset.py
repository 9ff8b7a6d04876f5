"""Resolve a dataset YAML to what evaluation needs: the split's image files, the class names and the COCO JSON.

Paths follow Ultralytics' documented rules, so a YAML means the same thing here as in ``yolo val``: the root is
``path:`` (relative to the working directory if that exists, else to Ultralytics' ``datasets_dir``) or, without a
``path:`` key, the YAML's own folder; a split is a folder of images, a ``.txt`` list of images (relative entries are
relative to the list's folder) or a list of those. Nothing is ever downloaded: a missing dataset is an error that
says what was looked for and where.

The ``coco_json:`` key (yolo_spd's, ignored by Ultralytics) names the official COCO annotation file, relative to the
root: a string for the ``val`` split, or a mapping ``{val: ..., test: ...}`` for several splits. Without it,
``annotations/instances_<name>.json`` and ``instances_<name>2017.json`` for the split's folder name and the split's own
name (``images/train`` with ``instances_train2017.json``), then ``annotations/instances_val2017.json``, are used when
they describe every image of the split (the standard COCO layout).

A split is resolved once into a :class:`DatasetSplit` and passed on as that object; the COCO JSON it names is parsed
once per process and file version (:func:`read_coco_json`), whether it was found by looking or named explicitly.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..configs import packaged_dataset
from ..errors import UsageError

IMAGE_SUFFIXES = frozenset(
    ".avif .bmp .dng .heic .heif .jp2 .jpeg .jpeg2000 .jpg .mpo .png .tif .tiff .webp".split()
)  # Ultralytics' image formats


@dataclass(frozen=True)
class DatasetSplit:
    """One split of a YOLO dataset, resolved once (:func:`resolve_split`) and passed on: its YAML, root folder, split
    name, sorted image files, class names and the COCO JSON that describes it, if any."""

    yaml_file: Path
    root: Path
    split: str
    images: tuple[Path, ...]  # sorted
    names: tuple[str, ...]
    coco_json: Path | None  # official ground truth, when the dataset has one


def load_yaml(data: str | os.PathLike) -> tuple[Path, dict]:
    """Find and read a dataset YAML: a path, or a bare name of one of the packaged ``data/`` YAMLs."""
    file = Path(data)
    if file.is_dir():  # Ultralytics takes a folder as a classification dataset; a detection one needs its YAML
        yamls = sorted(p.name for p in file.glob("*.y*ml"))
        hint = f"; it holds {', '.join(yamls[:3])}" if yamls else ""
        raise UsageError(f"data={data} is a folder; give the dataset YAML file (train:, val:, names:){hint}")
    if not file.is_file():
        packaged = packaged_dataset(str(data))
        if packaged is None:
            raise UsageError(f"data={data}: no such dataset YAML (looked for {file.resolve()} and in the packaged data/)")
        file = packaged
    from ..model_source import read_yaml

    content = read_yaml(file, f"data={data}")  # a syntax error with its line and column, a binary file, no access
    if not isinstance(content, dict):
        raise UsageError(f"data={data}: a dataset YAML must be a mapping with train/val/names keys")
    return file, content


def dataset_root(yaml_file: Path, content: dict) -> Path:
    path = content.get("path")
    if not path:
        return yaml_file.parent.resolve()
    root = Path(path)
    if not root.exists() and not root.is_absolute():
        from ultralytics.utils import DATASETS_DIR

        root = Path(DATASETS_DIR) / root
    return root.resolve()


def class_names(content: dict, where: str) -> tuple[str, ...]:
    names = content.get("names")
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise UsageError(f"{where}: names keys must be 0..{len(names) - 1}, got {sorted(names)}")
        return tuple(str(names[i]) for i in range(len(names)))
    if isinstance(names, list) and names:
        return tuple(str(n) for n in names)
    if isinstance(content.get("nc"), int):
        return tuple(f"class_{i}" for i in range(content["nc"]))
    raise UsageError(f"{where}: needs 'names:' (a list or an index: name mapping) or 'nc:'")


def _split_sources(root: Path, entry) -> list[Path]:
    entries = entry if isinstance(entry, list) else [entry]
    sources = []
    for item in entries:
        source = (root / str(item)).resolve()
        if not source.exists() and str(item).startswith("../"):
            source = (root / str(item)[3:]).resolve()
        sources.append(source)
    return sources


def list_images(source: Path) -> list[Path]:
    """Image files of one split entry: every image below a folder, or the files a ``.txt`` list names."""
    if source.is_dir():
        return [p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    lines = source.read_text(encoding="utf-8").split()
    files = [source.parent / line[2:] if line.startswith("./") else Path(line) for line in lines]
    files = [f if f.is_absolute() else source.parent / f for f in files]
    return [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]


def _coco_json(root: Path, content: dict, split: str, sources: list[Path], images: list[Path], where: str):
    explicit = content.get("coco_json")
    if isinstance(explicit, dict):
        explicit = explicit.get(split)
    elif split != "val":
        explicit = None
    if explicit:
        file = (root / str(explicit)).resolve()
        if not file.is_file():
            raise UsageError(f"{where}: coco_json={explicit} not found (looked for {file})")
        return file
    names = [*(s.stem for s in sources), split]  # images/val2017 or images/val with instances_val2017.json
    candidates = [root / "annotations" / f"instances_{name}{year}.json" for name in names for year in ("", "2017")]
    candidates.append(root / "annotations" / "instances_val2017.json")
    for file in dict.fromkeys(candidates):
        if file.is_file() and _describes_all(file, images):
            return file
    return None


def read_coco_json(file: Path) -> dict:
    """The parsed COCO JSON ``file``, read once per process while its size and modification time stay the same.
    Callers must not modify the returned dict (the ground truth builds new dicts from it)."""
    st = os.stat(file)
    return _read_json(str(Path(file).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_json(file: str, size: int, mtime_ns: int) -> dict:
    return json.loads(Path(file).read_text(encoding="utf-8"))


def _describes_all(file: Path, images: list[Path]) -> bool:
    try:
        listed = {image["file_name"] for image in read_coco_json(file)["images"]}
    except (ValueError, KeyError, TypeError):
        return False
    return all(image.name in listed for image in images)


def resolve_split(data: str | os.PathLike, split: str = "val") -> DatasetSplit:
    """Resolve ``data`` (a YAML path or packaged name) to the images, names and COCO JSON of ``split``."""
    yaml_file, content = load_yaml(data)
    where = f"data={data}"
    if not content.get(split):
        raise UsageError(f"{where}: no '{split}:' entry; the YAML has {', '.join(map(str, content)) or 'no keys'}")
    root = dataset_root(yaml_file, content)
    sources = _split_sources(root, content[split])
    missing = [s for s in sources if not s.exists()]
    if missing:
        raise UsageError(
            f"{where}: {split} images not found at {missing[0]} (dataset root {root}); "
            "yolo_spd never downloads datasets: fetch the data first or fix 'path:'/'" + split + ":'"
        )
    images = sorted({p.resolve() for s in sources for p in list_images(s)})
    if not images:
        raise UsageError(f"{where}: no images in {', '.join(map(str, sources))}")
    return DatasetSplit(
        yaml_file=yaml_file,
        root=root,
        split=split,
        images=tuple(images),
        names=class_names(content, where),
        coco_json=_coco_json(root, content, split, sources, images, where),
    )


def check_train_labels(split: DatasetSplit) -> None:
    """Refuse a split to train on where no image has a label row: Ultralytics 8.4.190 stops with "No labels found"
    once training is set up, 8.4.67 trains on nothing. Stops at the first labelled image (one file check per image
    at most). The labels themselves are Ultralytics' to check: one that refuses every image is an error line too
    (:data:`yolo_spd.cli.USER_INPUT_CHECKS`)."""
    from .ground_truth import label_path

    for image in split.images:
        label = label_path(image)
        if label.is_file() and label.stat().st_size and label.read_text(encoding="utf-8", errors="replace").strip():
            return
    raise UsageError(f"data={split.yaml_file}: the {split.split} split has no labelled image: none of its "
                     f"{plural(len(split.images), 'image')} has a label row in {label_path(split.images[0]).parent}; "
                     "there is nothing to train on")


def plural(count: int, noun: str) -> str:
    """``1 image``, ``2 images``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"

