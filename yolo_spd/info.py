"""Model statistics for the packaged configs: ``python -m yolo_spd.info [pattern] [--latency]`` prints a Markdown table
(``--model FILE [--baseline FILE]``: the same row for any model YAML or checkpoint).

Every config is compared with its Ultralytics baseline at the same scale (:func:`yolo_spd.configs.baseline`):
yolov5-* with yolov5{n,s,m,l}u, yolov8-* with yolov8{n,s,m,l}, yolo11-* with yolo11{n,s,m,l}. Parameters are
counted from the built model; GFLOPs come from Ultralytics' own counter (ultralytics-thop, with the same
stride-aware proxy call Ultralytics makes) at 640. ``--latency`` adds CPU latency at batch 1 in PyTorch eager mode
and in ONNX Runtime, each next to its ratio to the baseline measured in the same run (latencies from different
runs or machines are not comparable; ratios are more stable). ``--write-docs FILE`` also writes the table into the
file's generated block (:mod:`yolo_spd.markdown`): the docs' tables come from ``--write-docs docs/models.md`` and
``"*-n" --write-docs README.md``, and ``tests/test_docs.py`` checks them against this module.

Building a model (Ultralytics' stride probe) and counting its GFLOPs are forward passes, about half the time each:
seconds per model on a 2-core CPU, 32 models (20 configs and 12 baselines) for the whole table. The command therefore
shows a progress bar on stderr while it builds, and keeps each model's row in the yolo_spd cache folder (``info/``),
keyed by everything the row depends on: the model's YAML (content and name), yolo_spd's own source, and the Ultralytics,
torch and ultralytics-thop versions (:func:`stats_key`). A second run with nothing changed prints the same table without
building anything; ``--no-cache`` recomputes. Latencies are never cached.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import logging
import statistics
import sys
import tempfile
import time
from copy import deepcopy
from dataclasses import asdict, dataclass
from pathlib import Path

from .configs import baseline, list_models
from .errors import UsageError
from .markdown import read_block, table, write_blocks
from .paths import cache_dir, write_atomic


@dataclass(frozen=True)
class ModelStats:
    name: str
    layers: int
    params: int  # whole model
    params_before_detect: int  # the figure comparable with the SPD-Conv authors' backbone + neck
    gflops: float  # at imgsz x imgsz, batch 1


@dataclass(frozen=True)
class Latency:
    """Times of one batch-1 forward pass, in milliseconds, one per round (:func:`measure_latency`)."""

    torch_rounds: tuple[float, ...]  # PyTorch eager, inference mode
    onnx_rounds: tuple[float, ...]  # ONNX Runtime, CPU execution provider

    @property
    def torch_ms(self) -> float:
        """Median PyTorch latency over the rounds, in ms."""
        return statistics.median(self.torch_rounds)

    @property
    def onnx_ms(self) -> float:
        """Median ONNX Runtime latency over the rounds, in ms."""
        return statistics.median(self.onnx_rounds)

    def ratios_to(self, base: Latency) -> tuple[float, float]:
        """(PyTorch, ONNX Runtime) ratios to ``base``, timed in the same rounds: the median of the per-round ratios,
        so that a change in machine load during the run hits both sides of each ratio alike."""
        return tuple(statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
                     for ours, theirs in ((self.torch_rounds, base.torch_rounds),
                                          (self.onnx_rounds, base.onnx_rounds)))


@dataclass(frozen=True)
class Comparison:
    """A model next to its baseline (None: a ``model=`` without one); the latencies are None unless measured."""

    model: ModelStats
    base: ModelStats | None
    latency: Latency | None = None
    base_latency: Latency | None = None


def build(name: str):
    """``ultralytics.YOLO`` for a packaged config or an Ultralytics model name (``"yolov8n"``), from its YAML."""
    from ultralytics import YOLO

    return YOLO(f"{name}.yaml")


def model_stats(name: str, imgsz: int = 640, yolo=None) -> ModelStats:
    """Build ``name`` (e.g. ``"yolov5-spd-n"`` or the baseline ``"yolov5nu"``) and measure it."""
    model = (build(name) if yolo is None else yolo).model
    layers = model.model
    return ModelStats(
        name=name,
        layers=len(layers),
        params=sum(p.numel() for p in model.parameters()),
        params_before_detect=sum(p.numel() for layer in layers[:-1] for p in layer.parameters()),
        gflops=gflops(model, imgsz),
    )


def gflops(model, imgsz: int = 640) -> float:
    """GFLOPs of ``model`` at ``imgsz`` x ``imgsz``, batch 1, counted by ultralytics-thop.

    Ultralytics' ``get_flops`` sizes its probe image from the first weight's input channels, which for a Focus stem
    is 4x the image channels, so it fails and returns 0.0 for these models. This makes the same ``thop.profile``
    call with the model's real input channels.
    """
    import thop
    import torch

    stride = max(int(model.stride.max()), 32)
    image = torch.empty(1, model.yaml.get("channels", 3), imgsz, imgsz)
    return thop.profile(model, inputs=[image], stride=stride, min_cells=1, verbose=False)[0] / 1e9 * 2


@contextlib.contextmanager
def quiet_ultralytics():
    """Silence Ultralytics' INFO log (the exporter's progress lines) so the table is the only output."""
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def _time_ms(run, clock) -> float:
    start = clock()
    run()
    return (clock() - start) * 1e3


def measure_latency(
    yolos: dict, imgsz: int = 640, repeats: int = 10, warmup: int = 2, threads: int = 1, wall_time: bool = False
) -> dict[str, Latency]:
    """CPU latency of a batch-1 ``imgsz`` x ``imgsz`` forward pass of each model in ``yolos`` (name -> YOLO), in
    PyTorch eager mode and in ONNX Runtime, per round.

    The models are timed round-robin: each of the ``repeats`` rounds runs every model once in each runtime, so a
    change in machine load during the run affects all of them alike, and :meth:`Latency.ratios_to` pairs them round
    by round. The clock is this process's CPU time (``time.process_time``; at one thread the latency on an idle
    machine, and far steadier than wall time while other jobs run), or wall time with ``wall_time``. Both runtimes
    use ``threads`` intra-op threads (torch's setting is restored afterwards). The PyTorch model is a
    fused (Conv + BatchNorm folded) copy in eval mode, as Ultralytics runs inference; the ONNX file is Ultralytics'
    own export (which fuses the same way), written to a temporary folder and deleted afterwards.
    """
    import onnxruntime as ort
    import torch

    clock = time.perf_counter if wall_time else time.process_time
    x = torch.rand(1, 3, imgsz, imgsz)
    feed = x.numpy()
    threads_before = torch.get_num_threads()  # restored at the end: the exporter changes it too
    torch.set_num_threads(threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    runners: dict[str, tuple] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp, quiet_ultralytics():
            for i, (name, yolo) in enumerate(yolos.items()):
                model = deepcopy(yolo.model).float().eval().fuse(verbose=False)
                exporter = deepcopy(yolo)
                exporter.model.pt_path = str(Path(tmp) / f"{i}.pt")  # the exporter writes <pt_path stem>.onnx there
                onnx_file = exporter.export(format="onnx", imgsz=imgsz, device="cpu", verbose=False)
                session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
                input_name = session.get_inputs()[0].name
                runners[name] = (lambda m=model: m(x), lambda s=session, n=input_name: s.run(None, {n: feed}))
            times = {name: ([], []) for name in runners}
            torch.set_num_threads(threads)  # again: the export may have changed it
            with torch.inference_mode():
                for round_ in range(warmup + repeats):
                    for name, (run_torch, run_onnx) in runners.items():
                        torch_ms, onnx_ms = _time_ms(run_torch, clock), _time_ms(run_onnx, clock)
                        if round_ >= warmup:
                            times[name][0].append(torch_ms)
                            times[name][1].append(onnx_ms)
    finally:
        torch.set_num_threads(threads_before)
    return {name: Latency(tuple(t), tuple(o)) for name, (t, o) in times.items()}


#: Bump when what a cached row holds, or how it is computed, changes without a change to the inputs of stats_key.
STATS_CACHE_VERSION = 1


@functools.lru_cache(maxsize=1)
def _source_digest() -> str:
    """sha256 of yolo_spd's own Python source: any change to the modules or to how models are built and counted."""
    package = Path(__file__).resolve().parent
    sha = hashlib.sha256()
    for file in sorted(package.rglob("*.py")):
        sha.update(str(file.relative_to(package)).encode() + b"\0" + file.read_bytes() + b"\0")
    return sha.hexdigest()


def stats_key(name: str, imgsz: int) -> str | None:
    """The cache key of ``name``'s row at ``imgsz``: a digest of the model's YAML file (its content and the name it
    is built under, which sets the scale), yolo_spd's source, and the Ultralytics, torch and ultralytics-thop
    versions; None when the YAML file cannot be found (the row is then always computed)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch
    import ultralytics

    from .model_source import model_file

    file = model_file(f"{name}.yaml")
    if file is None or not Path(file).is_file():
        return None
    try:
        thop = version("ultralytics-thop")
    except PackageNotFoundError:
        thop = "?"
    inputs = {
        "version": STATS_CACHE_VERSION, "name": name, "imgsz": imgsz,
        "yaml_sha256": hashlib.sha256(Path(file).read_bytes()).hexdigest(), "yolo_spd_source": _source_digest(),
        "ultralytics": ultralytics.__version__, "torch": torch.__version__, "thop": thop,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


def _cache_file(key: str) -> Path:
    return cache_dir() / "info" / f"{key}.json"


def cached_stats(name: str, imgsz: int) -> ModelStats | None:
    """``name``'s row from the cache, or None (not cached, or an unreadable entry, which is then recomputed)."""
    key = stats_key(name, imgsz)
    if key is None:
        return None
    try:
        stats = ModelStats(**json.loads(_cache_file(key).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    return stats if stats.name == name else None


def store_stats(stats: ModelStats, imgsz: int) -> None:
    """Cache ``stats`` on disk (for :func:`model_stats`), keyed by the config's content and ``imgsz``."""
    key = stats_key(stats.name, imgsz)
    if key is not None:
        write_atomic(_cache_file(key), json.dumps(asdict(stats)))


def compare(
    names: list[str], imgsz: int = 640, latency: bool = False, cache: bool = False, progress: bool = False,
    **latency_args,
) -> list[Comparison]:
    """Measure each config and its baseline. Configs sharing a baseline form a group whose models are built, and
    with ``latency`` timed round-robin, together; each baseline is built and timed once, and a group's models are
    released before the next group is built.

    With ``cache``, rows found in the cache (:func:`cached_stats`) are not rebuilt, and measured rows are stored; a
    latency measurement builds every model of its groups all the same. With ``progress``, a progress bar over the
    models to build goes to stderr.
    """
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(baseline(name), []).append(name)
    stats: dict[str, ModelStats] = {}
    if cache and not latency:
        found = {name: cached_stats(name, imgsz) for base, members in groups.items() for name in (base, *members)}
        stats = {name: row for name, row in found.items() if row is not None}
    todo = {base: [name for name in dict.fromkeys([base, *members]) if name not in stats]
            for base, members in groups.items()}
    latencies: dict[str, Latency] = {}
    bar = _progress(sum(map(len, todo.values())), progress)
    try:
        for base, to_build in todo.items():
            if not to_build:
                continue
            yolos = {}
            for name in to_build:
                bar.set_description(f"yolo-spd info: building {name}")
                yolos[name] = build(name)
                stats[name] = model_stats(name, imgsz, yolos[name])
                if cache:
                    store_stats(stats[name], imgsz)
                bar.update()
            if latency:
                bar.set_description(f"yolo-spd info: timing the {base} group")
                latencies.update(measure_latency(yolos, imgsz, **latency_args))
            del yolos
    finally:
        bar.close()
    return [
        Comparison(stats[name], stats[baseline(name)], latencies.get(name), latencies.get(baseline(name)))
        for name in names
    ]


def compare_sources(request: InfoRequest, progress: bool = False, **latency_args) -> Comparison:
    """``model=`` (a model YAML path or name, or a ``.pt`` checkpoint) next to ``baseline=`` (the same forms; unset:
    the packaged config's baseline where ``model=`` names one, else none). Where one side is a checkpoint and the
    other a YAML, the YAML is built for the checkpoint's classes, so that the ratios compare like with like (the
    Detect head's size follows the class count). Never cached: a file's rows would be keyed by what it builds, which
    is what is measured here."""
    from .model_source import load_model, model_format

    sources = {"model": request.model, "baseline": request.baseline_source()}
    sources = {key: source for key, source in sources.items() if source}
    bar = _progress(len(sources), progress)
    yolos, stats = {}, {}
    try:
        for key, source in sources.items():
            bar.set_description(f"yolo-spd info: building {source}")
            yolos[key] = load_model(source, key, exports=False)
            bar.update()
        checkpoints = [key for key, source in sources.items() if model_format(Path(source)) == "pt"]
        if len(checkpoints) == 1 and len(sources) == 2:
            nc = len(yolos[checkpoints[0]].model.names)
            other = next(key for key in sources if key not in checkpoints)
            yolos[other].model = with_classes(yolos[other].model, nc)
        for key, source in sources.items():
            stats[key] = model_stats(Path(source).name, request.imgsz, yolos[key])
        latencies = {}
        if request.latency:
            bar.set_description("yolo-spd info: timing")
            latencies = measure_latency(yolos, request.imgsz, **latency_args)
    finally:
        bar.close()
    return Comparison(stats["model"], stats.get("baseline"), latencies.get("model"), latencies.get("baseline"))


def with_classes(model, nc: int):
    """``model`` (built from a YAML) built again for ``nc`` classes; itself if it has them already."""
    from ultralytics.nn.tasks import DetectionModel

    if len(model.names) == nc:
        return model
    with quiet_ultralytics():
        return DetectionModel(deepcopy(model.yaml), nc=nc, verbose=False)


class _NoBar:
    def set_description(self, text):
        pass

    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(total: int, show: bool):
    """Ultralytics' progress bar over ``total`` models on stderr, or a stand-in that shows nothing."""
    if not (show and total):
        return _NoBar()
    from ultralytics.utils import TQDM

    return TQDM(total=total, desc="yolo-spd info", unit="model", file=sys.stderr)


#: The columns of :func:`markdown_table` that depend on the machine (``--latency``); the others are the same on every
#: machine with the same Ultralytics and torch, which ``tests/test_docs.py`` checks against the docs.
TIMING_COLUMNS = ("PyTorch ms", "PyTorch / base", "ONNX RT ms", "ONNX RT / base")


def gflops_cell(gflops: float) -> str:
    """GFLOPs as the table shows them: one decimal, or three significant digits below 1 (a small ``imgsz``: 0.0 beside
    a ratio of 1.56 said nothing)."""
    return f"{gflops:.1f}" if gflops >= 1 else f"{gflops:.3g}"


def markdown_table(rows: list[Comparison], imgsz: int = 640) -> str:
    """The comparison as a Markdown table; ratio columns are this model's figure divided by its baseline's."""
    header = [
        "model", "baseline", "layers", "params", "params before Detect", f"GFLOPs @{imgsz}", "params / base",
        "GFLOPs / base",
    ]  # fmt: skip
    with_latency = any(row.latency for row in rows)
    if with_latency:
        header += TIMING_COLUMNS
    cells = []
    for row in rows:
        m, b = row.model, row.base
        line = [
            m.name, b.name if b else "—", str(m.layers), f"{m.params:,}", f"{m.params_before_detect:,}",
            gflops_cell(m.gflops), f"{m.params / b.params:.2f}" if b else "—", f"{m.gflops / b.gflops:.2f}" if b else "—",
        ]  # fmt: skip
        if with_latency:
            lat = row.latency
            ratios = [f"{r:.2f}" for r in lat.ratios_to(row.base_latency)] if row.base_latency else ["—", "—"]
            line += [f"{lat.torch_ms:.1f}", ratios[0], f"{lat.onnx_ms:.1f}", ratios[1]]
        cells.append(line)
    return table(header, cells, align="ll" + "r" * (len(header) - 2))


def block_name(latency: bool) -> str:
    """The generated block ``--write-docs`` fills: ``info``, or ``info-latency`` for a table with timings."""
    return "info-latency" if latency else "info"


def docs_block(table_text: str, latency: bool, threads: int = 1, wall_time: bool = False) -> str:
    """The text ``--write-docs`` puts in a block: the table, plus where the timings were measured."""
    if not latency:
        return table_text
    import platform

    import torch

    machine = platform.processor() or platform.machine()
    return (
        f"{table_text}\n\nMachine-dependent: the ms columns (and so their ratios) are "
        f"{'wall time' if wall_time else 'process CPU time'} with torch {torch.__version__}, {threads} thread(s), on "
        f"{machine}, medians over rounds (ratios: of the per-round ratios); re-run the command for your machine."
    )


@dataclass(frozen=True)
class InfoRequest:
    """What one ``yolo-spd info`` (or ``python -m yolo_spd.info``) call asks for; both entry points build one and
    :meth:`check` it, so their limits and error lines are the same.

    Args:
        pattern (str): Shell-style filter on the packaged config names (``yolov5-spd-*``); ``*`` is every config.
        model (str): Instead of the packaged configs, this model: a model YAML (path, or a packaged or Ultralytics
            name) or a ``.pt`` checkpoint.
        baseline (str): What ``model`` is compared with (the same forms); unset, a packaged config's own baseline,
            else no comparison.
        latency (bool): Add PyTorch eager and ONNX Runtime CPU latency at batch 1 (never cached).
        imgsz (int): Square input size for GFLOPs and latency, a multiple of 32 (the models' largest stride).
        repeats (int): Timed runs per model and runtime; the table shows medians.
        threads (int): Intra-op threads for PyTorch and ONNX Runtime while timing.
        wall_time (bool): Time wall-clock time instead of this process's CPU time (for a quiet machine).
        cache (bool): Reuse rows an earlier run measured (:func:`cached_stats`); False measures every model again.
        verbose (bool): Show the progress bar on stderr while models are built.
    """

    pattern: str = "*"
    model: str = ""
    baseline: str = ""
    latency: bool = False
    imgsz: int = 640
    repeats: int = 10
    threads: int = 1
    wall_time: bool = False
    cache: bool = True
    verbose: bool = True

    def check(self) -> list[str]:
        """The packaged config names the pattern matches; a :class:`~yolo_spd.errors.UsageError` naming the bad
        value and what is allowed otherwise."""
        for key in ("latency", "wall_time", "cache", "verbose"):
            if not isinstance(getattr(self, key), bool):
                raise UsageError(f"{key}={getattr(self, key)}: expected True or False")
        for key in ("imgsz", "repeats", "threads"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{key}={value} is not allowed; expected an integer >= 1")
        if self.imgsz % 32:
            raise UsageError(f"imgsz={self.imgsz} is not allowed; expected a multiple of 32 (the models' largest "
                             "stride)")
        if self.model or self.baseline:
            return self._check_sources()
        names = list_models(str(self.pattern))
        if not names:
            raise UsageError(f"no packaged config matches {self.pattern!r}; available: {', '.join(list_models())}")
        return names

    def _check_sources(self) -> list[str]:
        """``model=`` / ``baseline=``: both accepted model forms (not exports: they have no model to count), and
        without a pattern; returns no packaged names."""
        from .model_source import resolve_model

        if not self.model:
            raise UsageError(f"baseline={self.baseline} needs model=: the packaged configs have their own baselines")
        if str(self.pattern) != "*":
            raise UsageError(f"give a pattern ({self.pattern}) or model={self.model}, not both")
        for key, value in (("model", self.model), ("baseline", self.baseline)):
            if value:
                resolve_model(value, key, exports=False)
        return []

    def baseline_source(self) -> str:
        """``baseline=``, or for a ``model=`` that names a packaged config (``yolov5-spd-n.yaml``, a path to a file of
        that name too) its baseline's YAML name, else ""."""
        if self.baseline:
            return self.baseline
        name = Path(self.model).name
        stem = name.rsplit(".", 1)[0] if name.lower().endswith((".yaml", ".yml")) else ""
        return f"{baseline(stem)}.yaml" if stem in list_models() else ""


def run(request: InfoRequest, write_docs: list[Path] = ()) -> str:
    """Check ``request``, measure (or read from the cache) its rows, print the table to stdout and return it; with
    ``write_docs``, also write it into each file's generated block (checked before measuring, which can take
    minutes)."""
    names = request.check()
    for file in write_docs:
        try:
            read_block(file, block_name(request.latency))
        except OSError as e:
            raise UsageError(f"{file}: {e.strerror or e}; expected a Markdown file with the block to write") from None
    latency_args = ({"repeats": request.repeats, "threads": request.threads, "wall_time": request.wall_time}
                    if request.latency else {})
    if request.model:
        rows = [compare_sources(request, progress=request.verbose, **latency_args)]
    else:
        rows = compare(names, request.imgsz, request.latency, cache=request.cache, progress=request.verbose,
                       **latency_args)
    text = markdown_table(rows, request.imgsz)
    print(text)
    if write_docs:
        block = docs_block(text, request.latency, request.threads, request.wall_time)
        write_blocks(write_docs, block_name(request.latency), block)
    return text


def main(argv: list[str] | None = None) -> None:
    """``python -m yolo_spd.info [pattern] [--latency] [--imgsz N] [--repeats N] [--threads N] [--write-docs FILE]``:
    the developers' form, which also writes the docs' blocks; ``yolo-spd info`` takes the same options as
    ``key=value`` (:func:`yolo_spd.cli.run_info`)."""
    defaults = InfoRequest()
    parser = argparse.ArgumentParser(prog="python -m yolo_spd.info", description=__doc__.splitlines()[0])
    parser.add_argument("pattern", nargs="?", default=defaults.pattern,
                        help="shell-style filter on config names (default: all)")
    parser.add_argument("--model", default="", help="instead of the packaged configs: this model YAML or .pt")
    parser.add_argument("--baseline", default="", help="what --model is compared with (default: a packaged config's "
                                                       "own baseline, else none)")
    parser.add_argument("--latency", action="store_true", help="add PyTorch eager and ONNX Runtime CPU latency")
    parser.add_argument("--imgsz", type=int, default=defaults.imgsz, help="square input size for GFLOPs and latency")
    parser.add_argument("--repeats", type=int, default=defaults.repeats,
                        help="timed runs per model and runtime (median)")
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help="intra-op threads for PyTorch and ONNX Runtime")
    parser.add_argument("--wall-time", action="store_true",
                        help="time wall-clock time instead of this process's CPU time (for a quiet machine)")
    parser.add_argument("--no-cache", action="store_true",
                        help="measure every model again instead of reusing rows cached by an earlier run")
    parser.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--write-docs", nargs="+", type=Path, metavar="FILE", default=[],
                        help="also write the table into the generated block 'info' ('info-latency' with --latency) "
                             "of each Markdown FILE, e.g. docs/models.md")
    args = parser.parse_args(argv)
    request = InfoRequest(args.pattern, args.model, args.baseline, args.latency, args.imgsz, args.repeats,
                          args.threads, args.wall_time, cache=not args.no_cache, verbose=not args.quiet)
    try:
        run(request, args.write_docs)
    except UsageError as e:
        parser.error(str(e))


if __name__ == "__main__":
    main()
