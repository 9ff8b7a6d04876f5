"""GPU speed of the modules and n configs in fp16/bf16 autocast, and AMP training epochs of each n config (issue 19).

    python benchmarks/gpu.py --data DATA.yaml --out DIR           # on a CUDA GPU: all parts, sized for < 10 minutes
    python benchmarks/gpu.py --device cpu --quick --data DATA.yaml --out DIR   # the CPU check tests/ runs
    python benchmarks/gpu.py --from-json benchmarks/results/gpu.json --write-docs docs/speed.md  # publish a run

Three parts (``--parts``), each written to ``DIR/gpu.json`` and ``DIR/gpu.md`` as soon as it ends, so a run cut
short keeps what it measured:

- modules: SCConv, SSDConv, SPDConv against the Ultralytics ``Conv`` each replaces and SpaceToDepth against a copy
  of the same tensor, at the shapes of ``benchmarks/modules.py`` (batch 8, NCHW). Eval: the inference forms (our
  ``fuse_modules`` / Ultralytics' conv + BN fold) and their input cast to the precision, without gradients, as
  Ultralytics runs half-precision inference (``half=True`` casts the model); train: forward under
  ``torch.autocast`` + backward (gradients of the input and every parameter, for a fixed random output gradient), as
  Ultralytics' AMP training. SpaceToDepth's input is in the
  precision's dtype (what it receives inside such a model); its train baseline copies forward and copies the
  gradient back.
- models: each packaged n config and its stock baseline (yolov5-spd/scconv/ssdconv-n vs yolov5nu, yolov8-spd-n vs
  yolov8n, yolo11-spd-n vs yolo11n) built from YAML, no weights. Eval: ``fuse()``d and cast, batch 1 at
  ``--imgsz`` (latency); train: ``--train-batch`` images under autocast, forward + backward of the mean of every
  output tensor (the model's compute without the loss's target assignment), under Ultralytics' deterministic
  training settings, in NCHW and in channels-last (Ultralytics 8.4's trainer converts the model to channels-last
  on CUDA); and the first train step of each model alone (cuDNN's first-call costs for a new input shape).
- train: ``--epochs`` epochs (default 2) of Ultralytics training with AMP on ``--data`` for each of those eight
  models (images cached in RAM and mosaic kept, so an epoch times the model and augmentation, not PNG decoding or a
  loader restart); epoch times from the trainer's epoch-start to epoch-end callbacks (validation between epochs is
  not timed): the first epoch's time, images/s and images/s after its first batch (which hold cuDNN's and the
  allocator's first-call costs of each new input shape), and the last epoch's images/s, the steady throughput.

Timing: every candidate of a comparison runs once per round, in alternating order, ``--repeats`` rounds after
``--warmup`` calls; a round times ``--inner`` back-to-back calls between two CUDA events (wall clock on the CPU) and
divides. A ratio is the median over rounds of the per-round ratio; ms are medians. Precisions: float16 and
bfloat16 (``--precisions``). Nothing here is compared with a threshold: the script measures and reports.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import importlib.util
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from _timing import REPO, Timings, add_write_docs, interleaved, non_negative_int, positive_int, setup, write_docs

PAIRS = [("yolov5-spd-n", "yolov5nu"), ("yolov5-scconv-n", "yolov5nu"), ("yolov5-ssdconv-n", "yolov5nu"),
         ("yolov8-spd-n", "yolov8n"), ("yolo11-spd-n", "yolo11n")]  # fmt: skip
MODELS = list(dict.fromkeys(name for pair in PAIRS for name in pair))
PRECISIONS = ("fp16", "bf16")
DTYPES = {}  # precision -> torch dtype, filled by main() once torch is imported
PARTS = ("modules", "models", "train")
QUICK_SHAPES = [(16, 16)]  # (channels, size) for the CPU check
PROG = "gpu.py"


def fail(message: str) -> None:
    """One clear error line on stderr, exit status 2 (as argparse's own errors)."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--data", help="YOLO data.yaml (or its folder) for the training part, e.g. a copy of "
                                       "aerial-cars; not needed without the train part")
    parser.add_argument("--out", help="folder for gpu.json and gpu.md (default benchmarks/results on a GPU; required "
                                      "with --device cpu, whose figures must not replace a GPU's)")
    parser.add_argument("--quick", action="store_true", help="small shapes and images, few rounds: the CPU check")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to run (default all)")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                        help="autocast dtypes for the modules and models parts (default both)")
    parser.add_argument("--repeats", type=positive_int, help="interleaved rounds (default 21; 2 with --quick)")
    parser.add_argument("--warmup", type=non_negative_int, help="untimed calls per candidate first (default 3; 1)")
    parser.add_argument("--inner", type=positive_int, help="calls per timed sample (default 10 for modules, 3 for "
                                                           "models; 1 with --quick)")
    parser.add_argument("--imgsz", type=positive_int, help="model and training image size (default 640; 32)")
    parser.add_argument("--train-batch", type=positive_int, help="batch of the models' train step and of the "
                                                                 "training epoch (default 16; 2 with --quick)")
    parser.add_argument("--epochs", type=positive_int, default=2,
                        help="training epochs per model (default 2: the first holds cuDNN's first-call costs of each "
                             "new input shape, the last gives the steady images/s)")
    parser.add_argument("--workers", type=non_negative_int, help="training dataloader workers (default 8; 0)")
    parser.add_argument("--budget", type=float, default=480.0,
                        help="seconds (from the start of measuring) after which the training part skips the models "
                             "not yet trained (default 480: a 10-minute command with room for one more run)")
    parser.add_argument("--from-json", metavar="FILE",
                        help="measure nothing: write FILE's Markdown beside it (FILE.md) from a gpu.json a run wrote, "
                             "and with --write-docs its docs block (named as FILE's stem: gpu, gpu-models)")
    add_write_docs(parser, "gpu")
    args = parser.parse_args(argv)
    quick = args.quick
    args.repeats = args.repeats or (2 if quick else 21)
    args.warmup = (1 if quick else 3) if args.warmup is None else args.warmup
    args.imgsz = args.imgsz or (32 if quick else 640)
    args.train_batch = args.train_batch or (2 if quick else 16)
    args.workers = (0 if quick else 8) if args.workers is None else args.workers
    args.module_batch = 2 if quick else 8
    return args


def check_args(args) -> None:
    """Refuse bad input before any measuring: device, data and output folder (one error line each)."""
    import torch

    try:
        device = torch.device(args.device)
    except RuntimeError:
        fail(f"--device {args.device!r} is not a device; expected cuda, cuda:N or cpu")
    if device.type not in ("cuda", "cpu"):
        fail(f"--device {args.device!r}: only cuda and cpu are measured here")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            fail(f"--device {args.device}: CUDA is not available to this torch {torch.__version__} (use --device cpu "
                 "--quick --out DIR for the CPU check)")
        if (device.index or 0) >= torch.cuda.device_count():
            fail(f"--device {args.device}: only {torch.cuda.device_count()} CUDA device(s) visible")
        device = torch.device("cuda", device.index or 0)  # torch.cuda.set_device needs the index
    args.device = device
    if args.out is None:
        if device.type == "cpu":
            fail("--device cpu needs --out DIR: its figures must not replace the GPU results in benchmarks/results")
        args.out = str(REPO / "benchmarks" / "results")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        fail(f"--out {args.out}: not a folder")
    if "train" in args.parts:
        if not args.data:
            fail("the train part needs --data DATA.yaml (or leave it out: --parts modules models)")
        data = Path(args.data)
        data = data / "data.yaml" if data.is_dir() else data
        if not data.is_file():
            fail(f"--data {args.data}: no such file (expected a YOLO data.yaml or a folder holding one)")
        args.data = str(data.resolve())
    if args.budget <= 0 or math.isnan(args.budget):
        fail(f"--budget {args.budget}: expected a positive number of seconds")


# ---------------------------------------------------------------------------------------------------- environment


def device_info(device) -> dict:
    """What the results were measured on: device name, driver, CUDA/cuDNN, torch, Ultralytics and yolo_spd."""
    import torch
    import ultralytics

    import yolo_spd

    info = {"type": device.type, "torch": torch.__version__, "ultralytics": ultralytics.__version__,
            "yolo_spd": yolo_spd.__version__, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=torch.cuda.get_device_name(device), capability=f"{props.major}.{props.minor}",
                    memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), driver=driver_version())
    else:
        info.update(name=f"CPU ({info['cpu']}, {torch.get_num_threads()} torch threads)", driver=None, cuda=None)
    return info


def driver_version() -> str | None:
    """The NVIDIA driver version, from NVML (nvidia-ml-py) or nvidia-smi; None if neither answers."""
    with contextlib.suppress(Exception):
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    with contextlib.suppress(Exception):
        import subprocess

        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] or None
    return None


# ---------------------------------------------------------------------------------------------------- timing


def timed_rounds(candidates: dict, args, inner: int, device) -> Timings:
    """Interleaved rounds as benchmarks/_timing.interleaved; on CUDA each sample is ``inner`` calls between two
    CUDA events (synchronised on the end event), elsewhere ``inner`` calls on the wall clock."""
    import torch

    if device.type != "cuda":
        repeated = {name: (lambda f=f: [f() for _ in range(inner)]) for name, f in candidates.items()}
        t = interleaved(repeated, args.repeats, args.warmup)
        return Timings({name: [s / inner for s in samples] for name, samples in t.rounds.items()})
    for run in candidates.values():
        for _ in range(args.warmup):
            run()
    torch.cuda.synchronize(device)
    rounds = {name: [] for name in candidates}
    names = list(candidates)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for index in range(args.repeats):
        for name in names if index % 2 == 0 else reversed(names):
            start.record()
            for _ in range(inner):
                candidates[name]()
            end.record()
            end.synchronize()
            rounds[name].append(start.elapsed_time(end) / 1e3 / inner)
    return Timings(rounds)


def autocast(device, precision: str):
    import torch

    return torch.autocast(device.type, dtype=DTYPES[precision])


def evaluate(model, x):
    """Inference as Ultralytics runs it in half precision: ``model`` and ``x`` already cast, no gradients."""
    import torch

    def run():
        with torch.inference_mode():
            return model(x)

    return run


def tensors(output) -> list:
    """Every tensor in a model output (tensors, or lists/tuples/dicts of them)."""
    import torch

    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in tensors(item)]
    return []


# ---------------------------------------------------------------------------------------------------- modules


def module_cases(c: int):
    """(label, module, what it replaces, label of that) at input width c: benchmarks/modules.py's cases."""
    from ultralytics.nn.modules import Conv

    from yolo_spd import SCConv, SPDConv, SSDConv

    return [
        (f"SCConv({c}, {c})", SCConv(c, c), Conv(c, c, 3, 1), f"Conv({c}, {c}, 3, 1)"),
        (f"SSDConv({c}, {c})", SSDConv(c, c), Conv(c, c, 3, 1), f"Conv({c}, {c}, 3, 1)"),
        (f"SCConv({c}, {2 * c}, s=2)", SCConv(c, 2 * c, 3, 2), Conv(c, 2 * c, 3, 2), f"Conv({c}, {2 * c}, 3, 2)"),
        (f"SSDConv({c}, {2 * c}, s=2)", SSDConv(c, 2 * c, 3, 2), Conv(c, 2 * c, 3, 2), f"Conv({c}, {2 * c}, 3, 2)"),
        (f"SPDConv({c}, {2 * c})", SPDConv(c, 2 * c), Conv(c, 2 * c, 3, 2), f"Conv({c}, {2 * c}, 3, 2)"),
    ]


def inference_form(module):
    """What Ultralytics runs after ``model.fuse()``: our fuse for SCConv/SPDConv, conv + BN folds for every Conv
    (benchmarks/modules.py's ``fused``, on the module in eval mode)."""
    from modules import fused

    return fused(module.eval())


def train_step(forward, inputs, device, precision, grad_out):
    """Forward under autocast, then the gradients of ``inputs`` for the fixed output gradient ``grad_out``."""
    import torch

    def step():
        with autocast(device, precision):
            y = forward()
        return torch.autograd.grad(y, inputs, grad_out)

    return step


def output_gradient(forward, device, precision):
    import torch

    with torch.no_grad(), autocast(device, precision):
        y = forward()
    return torch.randn_like(y)


def module_part(args, log) -> list[dict]:
    """One row per (shape, case, precision): eval and train ratios of the module to what it replaces."""
    import torch

    from modules import SHAPES

    device, rows = args.device, []
    shapes = QUICK_SHAPES if args.quick else SHAPES
    inner = args.inner or (1 if args.quick else 10)
    for c, size in shapes:
        torch.manual_seed(0)
        x = torch.randn(args.module_batch, c, size, size, device=device)
        leaf = x.clone().requires_grad_(True)
        for label, module, base, base_label in module_cases(c):
            fused = inference_form(module), inference_form(base)  # on the CPU, where the fuses check themselves
            module, base = module.to(device), base.to(device)
            params, base_params = [leaf, *module.parameters()], [leaf, *base.parameters()]
            for precision in args.precisions:
                dtype = DTYPES[precision]
                fast, plain = (copy.deepcopy(m).to(device=device, dtype=dtype) for m in fused)
                module.train()
                base.train()
                forward, base_forward = (lambda m=module, t=leaf: m(t)), (lambda m=base, t=leaf: m(t))
                grad, base_grad = (output_gradient(f, device, precision) for f in (forward, base_forward))
                candidates = {
                    "base eval": evaluate(plain, x.to(dtype)), "eval": evaluate(fast, x.to(dtype)),
                    "base train": train_step(base_forward, base_params, device, precision, base_grad),
                    "train": train_step(forward, params, device, precision, grad),
                }
                rows.append(module_row(f"{label} @{size}", base_label, precision,
                                       timed_rounds(candidates, args, inner, device)))
                log(f"modules: {rows[-1]['module']} {precision}: eval {rows[-1]['eval_ratio']:.2f}x, "
                    f"train {rows[-1]['train_ratio']:.2f}x")
        rows += space_to_depth_rows(x, size, args, inner, log)
    return rows


def space_to_depth_rows(x, size, args, inner, log) -> list[dict]:
    """SpaceToDepth on the autocast dtype's tensor against ``clone()`` (eval) and a copy both ways (train)."""
    import torch

    from yolo_spd import SpaceToDepth

    from space_to_depth import copy_both_ways

    copy_both = copy_both_ways()
    layer, rows = SpaceToDepth(), []
    for precision in args.precisions:
        t = x.to(DTYPES[precision])
        leaf = t.clone().requires_grad_(True)
        grad, grad_in = torch.randn_like(layer(t)), torch.randn_like(t)
        candidates = {
            "base eval": t.clone, "eval": lambda t=t: layer(t),
            "base train": lambda leaf=leaf, g=grad_in: torch.autograd.grad(copy_both(leaf), leaf, g),
            "train": lambda leaf=leaf, g=grad: torch.autograd.grad(layer(leaf), leaf, g),
        }
        rows.append(module_row(f"SpaceToDepth({x.shape[1]}) @{size}", "clone() / copy both ways", precision,
                               timed_rounds(candidates, args, inner, args.device)))
        log(f"modules: {rows[-1]['module']} {precision}: eval {rows[-1]['eval_ratio']:.2f}x, "
            f"train {rows[-1]['train_ratio']:.2f}x")
    return rows


def module_row(label, base_label, precision, t: Timings) -> dict:
    return {"module": label, "replaces": base_label, "precision": precision,
            "eval_base_ms": t.ms("base eval"), "eval_ms": t.ms("eval"), "eval_ratio": t.ratio("eval", "base eval"),
            "train_base_ms": t.ms("base train"), "train_ms": t.ms("train"),
            "train_ratio": t.ratio("train", "base train")}


# ---------------------------------------------------------------------------------------------------- models


def build_model(name: str):
    """The DetectionModel of config ``name`` (yolo_spd's packaged YAMLs or Ultralytics'), float32, no weights."""
    from ultralytics import YOLO

    from yolo_spd.info import quiet_ultralytics

    with quiet_ultralytics():
        return YOLO(f"{name}.yaml").model.float()


def trainer_uses_channels_last(device) -> bool:
    """Whether the installed Ultralytics trainer converts the model to channels-last on this device: from 8.4.x its
    ``channels_last`` setting (default None: on for CUDA outside Windows); older versions have no such setting."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    setting = DEFAULT_CFG_DICT.get("channels_last", False)
    return device.type == "cuda" and (setting is True or (setting is None and platform.system() != "Windows"))


@contextlib.contextmanager
def deterministic_as_the_trainer():
    """Ultralytics' training setup (``deterministic=True``, its default): deterministic algorithms and cuDNN, undone
    after."""
    from ultralytics.utils.torch_utils import init_seeds, unset_deterministic

    init_seeds(0, deterministic=True)
    try:
        yield
    finally:
        unset_deterministic()


def model_part(args, log) -> list[dict]:
    """One row per (pair, precision): eval latency and train-step ratios of the config to its baseline, all eight
    models interleaved in one run per precision and mode. The train step is timed in both memory formats (NCHW, and
    channels-last as Ultralytics' trainer runs on CUDA) under the trainer's deterministic settings; the first step of
    each model (channels-last, first precision), with cuDNN's first-call costs for its shapes, is timed alone."""
    import torch

    device, inner = args.device, args.inner or (1 if args.quick else 3)
    fused, train_models = {}, {"nchw": {}, "channels_last": {}}
    for name in MODELS:
        model = build_model(name)
        fused[name] = copy.deepcopy(model).eval().fuse(verbose=False)
        train_models["nchw"][name] = model.train().to(device)
        train_models["channels_last"][name] = copy.deepcopy(model).to(memory_format=torch.channels_last)
    image = torch.rand(1, 3, args.imgsz, args.imgsz, device=device)
    batch = torch.rand(args.train_batch, 3, args.imgsz, args.imgsz, device=device)
    rows, first_steps = [], {}
    for precision in args.precisions:
        dtype = DTYPES[precision]
        eval_models = {name: copy.deepcopy(m).to(device=device, dtype=dtype) for name, m in fused.items()}

        def train(model, precision=precision):
            def run():
                model.zero_grad(set_to_none=True)
                with autocast(device, precision):
                    outputs = tensors(model(batch))
                    loss = sum(t.float().mean() for t in outputs)
                loss.backward()

            return run

        eval_t = timed_rounds({n: evaluate(m, image.to(dtype)) for n, m in eval_models.items()}, args, inner, device)
        with deterministic_as_the_trainer():
            if not first_steps:
                first_steps = first_steps_ms(train_models["channels_last"], train, device)
            train_t = {fmt: timed_rounds({n: train(m) for n, m in models.items()}, args, inner, device)
                       for fmt, models in train_models.items()}
        for name, base in PAIRS:
            nchw, last = train_t["nchw"], train_t["channels_last"]
            rows.append({"model": name, "baseline": base, "precision": precision,
                         "eval_ms": eval_t.ms(name), "eval_base_ms": eval_t.ms(base),
                         "eval_ratio": eval_t.ratio(name, base), "train_ms": nchw.ms(name),
                         "train_base_ms": nchw.ms(base), "train_ratio": nchw.ratio(name, base),
                         "train_cl_ms": last.ms(name), "train_cl_base_ms": last.ms(base),
                         "train_cl_ratio": last.ratio(name, base),
                         "first_step_ms": first_steps[name], "first_step_base_ms": first_steps[base]})
            log(f"models: {name} / {base} {precision}: eval {rows[-1]['eval_ratio']:.2f}x, "
                f"train {rows[-1]['train_ratio']:.2f}x (channels-last {rows[-1]['train_cl_ratio']:.2f}x)")
    return rows


#: How the first steps are ordered (settings.first_steps in gpu.json; a run without it timed them in MODELS order,
#: yolov5-spd-n first, whose step then also held the process's own first-call costs).
FIRST_STEPS = "after one step of a small net, baselines first"


def first_steps_ms(models: dict, train, device) -> dict[str, float]:
    """Each model's first train step alone, in ms: after one untimed step of a small convolution net (so the
    process's own first-call costs, CUDA context, cuBLAS/cuDNN handles and the allocator, fall on none of them), the
    baselines first, so that a config's first step holds what its own layer shapes add to its baseline's."""
    import torch

    warm = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.BatchNorm2d(8), torch.nn.SiLU(),
                               torch.nn.Conv2d(8, 8, 3, 1, 1)).to(device).to(memory_format=torch.channels_last)
    train(warm)()
    baselines = {base for _, base in PAIRS}
    order = sorted(models, key=lambda name: name not in baselines)  # stable: baselines, then configs, as listed
    return {name: first_call_ms(train(models[name]), device) for name in order}


def first_call_ms(run, device) -> float:
    """The wall time of one call, synchronised on both sides (ms)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1e3


# ---------------------------------------------------------------------------------------------------- training


def amp_check_without_download(model) -> bool:
    """Stand-in for Ultralytics' ``check_amp``, which downloads yolo26n.pt to compare AMP with float32 inference
    (curl with retries: minutes on a machine with no network, then AMP on anyway): AMP as asked on CUDA, off on the
    CPU, as ``check_amp`` returns for a GPU it has no complaint about."""
    return next(model.parameters()).device.type == "cuda"


def results_csv_without_polars(trainer) -> dict:
    """Ultralytics' ``BaseTrainer.read_results_csv`` with the csv module, for a machine without polars (the lent GPU
    machine has none, and its wheel does not fit beside the data): {column: [values]}, numbers as floats."""
    import csv

    try:
        rows = list(csv.DictReader(Path(trainer.csv).read_text(encoding="utf-8").splitlines()))
    except OSError:
        return {}
    columns = {key.strip(): [] for key in (rows[0] if rows else {})}
    for row in rows:
        for key, value in row.items():
            with contextlib.suppress(ValueError):
                value = float(value)
            columns[key.strip()].append(value)
    return columns


@contextlib.contextmanager
def offline_trainer():
    """Ultralytics' trainer without its network-bound AMP self-check, and without polars where it is missing."""
    from ultralytics.engine import trainer

    saved = trainer.check_amp, trainer.BaseTrainer.read_results_csv
    trainer.check_amp = amp_check_without_download
    if importlib.util.find_spec("polars") is None:
        trainer.BaseTrainer.read_results_csv = results_csv_without_polars
    try:
        yield
    finally:
        trainer.check_amp, trainer.BaseTrainer.read_results_csv = saved


def train_part(args, log, started: float, save) -> list[dict]:
    """``--epochs`` epochs of AMP training per model on ``--data``; a model left when ``--budget`` has passed is
    skipped.
    ``save(rows)`` runs after each model, so a run stopped from outside keeps the models trained so far."""
    rows = []
    with tempfile.TemporaryDirectory() as runs, offline_trainer():
        for name in MODELS:
            if time.monotonic() - started > args.budget:
                rows.append({"model": name, "status": f"skipped: the {args.budget:.0f} s budget had passed"})
                log(f"train: {name} skipped (budget)")
                continue
            try:
                rows.append(train_one_epoch(name, args, runs, args.workers))
            except Exception as e:  # noqa: BLE001 - one failing config must not cost the others' results
                rows.append(retry_without_workers(name, args, runs, e, log))
            log(f"train: {name}: {rows[-1].get('images_per_s', rows[-1]['status'])}")
            save(rows)
    return rows


def retry_without_workers(name: str, args, runs: str, error: Exception, log) -> dict:
    """A failed run once more with the data loaded in the main process (dataloader workers need shared memory a
    sandbox may not grant); the row says why. Without workers to drop, the failure itself."""
    why = f"{type(error).__name__}: {str(error)[:300]}"
    if args.workers == 0:
        return {"model": name, "status": f"failed: {why}"}
    log(f"train: {name} failed with {args.workers} workers ({why}); once more with 0")
    try:
        row = train_one_epoch(name, args, runs, 0)
    except Exception as e:  # noqa: BLE001 - see train_part
        return {"model": name, "status": f"failed: {type(e).__name__}: {str(e)[:300]} (first, with workers: {why})"}
    row["status"] = f"ok with workers=0 (with {args.workers}: {why})"
    return row


def train_one_epoch(name: str, args, runs: str, workers: int) -> dict:
    """``--epochs`` epochs of AMP training of ``name``. The first epoch's figures (epoch time, images/s, images/s
    after its first batch) hold the first-call costs of every new input shape (cuDNN's setup: seconds for some
    models on the H200); the last epoch's images/s, its shapes all seen before, is the steady training throughput."""
    import torch
    from ultralytics import YOLO

    device = args.device
    marks: dict[str, float] = {}
    starts, ends, batches = [], [], []  # per epoch; batches: the first epoch's batch-end times

    def now():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    def epoch_start(trainer):
        starts.append(now())
        marks.setdefault("images", len(trainer.train_loader.dataset))
        marks.setdefault("batch", trainer.batch_size)

    def batch_end(trainer):
        if len(starts) == 1:
            batches.append(now())

    yolo = YOLO(f"{name}.yaml")
    yolo.add_callback("on_train_epoch_start", epoch_start)
    yolo.add_callback("on_train_batch_end", batch_end)
    yolo.add_callback("on_train_epoch_end", lambda trainer: ends.append(now()))
    device_arg = "cpu" if device.type == "cpu" else str(device.index or 0)
    with log_to_stderr():
        yolo.train(data=args.data, epochs=args.epochs, imgsz=args.imgsz, batch=args.train_batch, device=device_arg,
                   amp=True, workers=workers, cache="ram", close_mosaic=0, plots=False, project=runs, name=name,
                   exist_ok=True, verbose=False, seed=0)
    images, batch = int(marks["images"]), int(marks["batch"])
    epoch = ends[0] - starts[0]
    after_first = (images - min(batch, images)) / (ends[0] - batches[0]) if len(batches) > 1 else None
    return {"model": name, "status": "ok", "images": images, "batch": batch, "batches": len(batches),
            "workers": workers, "imgsz": args.imgsz, "amp": bool(yolo.trainer.amp), "epoch_s": epoch,
            "images_per_s": images / epoch, "images_per_s_after_first_batch": after_first, "epochs": len(ends),
            "last_epoch_s": ends[-1] - starts[-1], "images_per_s_last_epoch": images / (ends[-1] - starts[-1])}


# ---------------------------------------------------------------------------------------------------- report


def markdown(results: dict) -> str:
    """gpu.md: a title naming the device, then :func:`docs_body`."""
    return f"# benchmarks/gpu.py on {results['device']['name']}\n\n" + docs_body(results, "##")


def docs_body(results: dict, section: str = "###") -> str:
    """The device and the command, then one table per part that ran, under ``section`` headings (the docs page
    holds them inside its own "On a GPU" section)."""
    from yolo_spd.markdown import table

    d, s = results["device"], results["settings"]
    versions = ", ".join(f"{key} {d[key]}" for key in ("driver", "cuda", "cudnn", "torch", "ultralytics", "yolo_spd")
                         if d.get(key) is not None)
    lines = [f"{d['name']} ({versions}; Python {d['python']}, {d['cpu_count']} CPU cores), {d['date']}. "
             f"`python benchmarks/gpu.py {s['command']}`; {s['repeats']} interleaved rounds, medians; a ratio above 1 "
             "is slower than the baseline."]
    if results.get("modules"):
        lines += ["", f"{section} Modules (batch {s['module_batch']}, NCHW)", "",
                  "Eval: inference forms cast to the precision, no gradients; train: forward under autocast + "
                  "backward (input and parameter gradients). SpaceToDepth: eval against `clone()`, train against "
                  "a copy both ways.", ""]
        lines.append(table(["module @px", "precision", "replaces", "eval: baseline ms", "eval ratio",
                            "train: baseline ms", "train ratio"],
                           [[r["module"], r["precision"], r["replaces"], f"{r['eval_base_ms']:.3f}",
                             f"**{r['eval_ratio']:.2f}×**", f"{r['train_base_ms']:.3f}", f"**{r['train_ratio']:.2f}×**"]
                            for r in results["modules"]], align="lllrrrr"))
    if results.get("models"):
        lines += ["", f"{section} n configs against their baselines (eval: fused and cast, batch 1 at {s['imgsz']}; "
                      f"train: autocast, batch {s['train_batch']} at {s['imgsz']}, forward + backward)", ""]
        if "trainer_channels_last" in s:
            trainer_format = "channels-last" if s["trainer_channels_last"] else "NCHW"
            order = (f"timed {s['first_steps']}" if s.get("first_steps") else
                     f"timed in the order {', '.join(MODELS)}, so the first also holds the process's own first-call "
                     "costs and a baseline's reuses what its config set up for shared shapes")
            lines += ["Train steps under Ultralytics' deterministic training settings, in NCHW and in channels-last "
                      f"(the installed Ultralytics trainer uses {trainer_format} on this device). First step: one step "
                      "of a new model at a new input shape (channels-last, first precision), which holds cuDNN's "
                      "first-call costs; Ultralytics pays it once per input shape (the epoch's last, smaller batch "
                      f"and each rectangular val shape are new shapes); {order}.", ""]
        else:
            lines += ["Train steps in NCHW only: the script of this run timed no channels-last step and no first "
                      "step (columns —).", ""]
        lines.append(table(["pair", "precision", "eval: baseline ms", "eval latency ratio", "train NCHW: baseline ms",
                            "train NCHW ratio", "train channels-last: baseline ms", "train channels-last ratio",
                            "first step ms (model / baseline)"],
                           [[f"{r['model']} / {r['baseline']}", r["precision"], f"{r['eval_base_ms']:.2f}",
                             f"**{r['eval_ratio']:.2f}×**", f"{r['train_base_ms']:.2f}", f"**{r['train_ratio']:.2f}×**",
                             *cl_cells(r), first_step_cell(r)]
                            for r in results["models"]], align="llrrrrrrr"))
    if results.get("training"):
        data = Path(s["data"]).parent.name if s.get("data") else "?"
        epochs = s.get("epochs", 1)
        lines += ["", f"{section} {'One training epoch' if epochs == 1 else f'{epochs} training epochs'} with AMP on "
                      f"{data} (batch {s['train_batch']}, imgsz {s['imgsz']}, images cached in RAM)", ""]
        if epochs > 1:
            lines += ["The first epoch holds the first-call costs of every new input shape; the last epoch's images/s "
                      "is the steady training throughput.", ""]
        rows = []
        for r in results["training"]:
            if not r["status"].startswith("ok"):
                rows.append([r["model"], "—", "—", "—", "—", *(["—"] if epochs > 1 else []), r["status"]])
                continue
            after = r["images_per_s_after_first_batch"]
            status = r["status"] + ("" if r["amp"] else ", AMP off")
            last = [f"{r['images_per_s_last_epoch']:.1f}"] if epochs > 1 else []
            rows.append([r["model"], str(r["images"]), f"{r['epoch_s']:.2f}", f"{r['images_per_s']:.1f}",
                         "—" if after is None else f"{after:.1f}", *last, status])
        header = ["model", "images", "first epoch s" if epochs > 1 else "epoch s",
                  "images/s, first epoch" if epochs > 1 else "images/s", "images/s after the first batch",
                  *([f"images/s, epoch {epochs}"] if epochs > 1 else []), "status"]
        lines.append(table(header, rows, align="l" + "r" * (len(header) - 2) + "l"))
    errors = [f"- {key.removesuffix('_error')}: {value}" for key, value in results.items() if key.endswith("_error")]
    if errors:
        lines += ["", f"{section} Parts that failed", "", *errors]
    return "\n".join(lines) + "\n"


def cl_cells(row: dict) -> list[str]:
    """The channels-last train cells (a gpu.json written before they were measured has none)."""
    if "train_cl_ratio" not in row:
        return ["—", "—"]
    return [f"{row['train_cl_base_ms']:.2f}", f"**{row['train_cl_ratio']:.2f}×**"]


def first_step_cell(row: dict) -> str:
    if "first_step_ms" not in row:
        return "—"
    return f"{row['first_step_ms']:.0f} / {row['first_step_base_ms']:.0f}"


@contextlib.contextmanager
def log_to_stderr():
    """Ultralytics' log and progress bars on stderr (its handler keeps the stdout it was created with), so stdout
    carries only the report."""
    import logging

    from ultralytics.utils import LOGGER

    handlers = [h for h in LOGGER.handlers if isinstance(h, logging.StreamHandler) and h.stream is sys.stdout]
    for handler in handlers:
        handler.setStream(sys.stderr)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for handler in handlers:
            handler.setStream(sys.stdout)


def write_results(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    from yolo_spd.paths import write_atomic

    write_atomic(out / "gpu.json", json.dumps(results, indent=1) + "\n")
    write_atomic(out / "gpu.md", markdown(results))


def publish(results_file: str, pages: list[str]) -> int:
    """``--from-json``: the Markdown of a run's results, beside them and in the docs block named as their stem;
    everything is rendered and every page checked before the first file is written."""
    from yolo_spd.errors import UsageError
    from yolo_spd.markdown import read_block

    path = Path(results_file)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        fail(f"--from-json {results_file}: {e}")
    if not isinstance(results, dict) or not all(isinstance(results.get(k), dict) for k in ("device", "settings")):
        fail(f"--from-json {results_file}: not a gpu.json of benchmarks/gpu.py (no device and settings)")
    try:
        text, body = markdown(results), docs_body(results)
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # a field missing or of another type
        fail(f"--from-json {results_file}: not a complete gpu.json of benchmarks/gpu.py ({type(e).__name__}: {e})")
    for page in pages:  # every page has the block before anything is written
        try:
            read_block(page, path.stem)
        except (UsageError, OSError) as e:
            fail(f"--write-docs {page}: {e}")
    from yolo_spd.paths import write_atomic

    write_atomic(path.with_suffix(".md"), text)
    write_docs(pages, path.stem, body)
    print(text)
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.from_json:
        setup(1)
        return publish(args.from_json, args.write_docs)
    if args.write_docs:
        fail("--write-docs goes with --from-json: a run's figures reach the docs once they are committed")
    setup(1 if args.device == "cpu" else os.cpu_count())  # the CPU check: one thread, as the other CPU benchmarks
    check_args(args)
    import torch

    import yolo_spd  # noqa: F401 - registers the modules and the packaged configs

    DTYPES.update(fp16=torch.float16, bf16=torch.bfloat16)

    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    if args.device.type == "cuda":
        torch.cuda.set_device(args.device)
    settings = {key: value for key, value in vars(args).items() if key != "device"}
    settings.update(device=str(args.device), command=" ".join(argv),
                    trainer_channels_last=trainer_uses_channels_last(args.device), first_steps=FIRST_STEPS)
    results = {"device": device_info(args.device), "settings": settings}
    out = Path(args.out)
    write_results(results, out)  # the device is named even if a part fails
    failed = False
    for part in PARTS:
        if part not in args.parts:
            continue
        try:
            with log_to_stderr():
                if part == "modules":
                    results["modules"] = module_part(args, log)
                elif part == "models":
                    results["models"] = model_part(args, log)
                else:
                    results["training"] = train_part(args, log, started,
                                                     lambda rows: write_results({**results, "training": rows}, out))
                    failed |= any(r["status"].startswith("failed") for r in results["training"])
        except Exception as e:  # noqa: BLE001 - keep the other parts' results; the exit status says it failed
            results[f"{part}_error"] = f"{type(e).__name__}: {e}"
            log(f"{part} failed: {type(e).__name__}: {e}")
            failed = True
        results["elapsed_s"] = time.monotonic() - started
        write_results(results, out)
    log(f"wrote {out / 'gpu.json'} and {out / 'gpu.md'}")
    print(markdown(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
