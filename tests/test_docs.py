"""The docs site builds offline, every generated block in README.md and docs/ is what its script writes now, and the
command blocks of the recipe pages run offline as written.

A generated block is the text between ``<!-- BEGIN generated: NAME -->`` and ``<!-- END generated: NAME -->``
(yolo_spd.markdown). Columns that are the same on every machine (layers, parameters, GFLOPs and their ratios) are
recomputed and compared; timings are not (they are labelled machine-dependent in the docs).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from yolo_spd import info, list_models
from yolo_spd.errors import UsageError
from yolo_spd.markdown import blocks, parse_table, read_block, replace_block, table

from .conftest import REPO, SHARED, child_env, folder_listing, load_script, ultralytics_settings_folder

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
STUDY_RESULTS = REPO / "benchmarks" / "results"


def all_blocks() -> dict[tuple[str, str], str]:
    """{(page relative to the repo, block name): text} over README.md and docs/."""
    return {(str(page.relative_to(REPO)), name): text for page in PAGES for name, text in blocks(page).items()}


# --- the site ------------------------------------------------------------------------------------------------------

BUILD = """
exec(open({guard!r}).read())
import sys
from mkdocs.__main__ import cli
cli.main(args=["build", "--strict", "--config-file", {config!r}, "--site-dir", {site!r}], prog_name="mkdocs")
"""


def test_the_site_builds_strict_offline_and_its_pages_render(tmp_path):
    """``mkdocs build --strict`` with the network blocked: no warning (broken link, missing API object, bad
    docstring), no connection attempt, and the pages hold what a reader needs."""
    pytest.importorskip("mkdocs", reason="the docs tools: pip install -e '.[docs]'")
    site, log = tmp_path / "site", tmp_path / "guard.log"
    code = BUILD.format(guard=str(REPO / "tests" / "network_guard.py"), config=str(REPO / "mkdocs.yml"), site=str(site))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=child_env(NETWORK_GUARD_LOG=str(log)),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not log.exists(), log.read_text()[:3000]  # nothing tried the network
    modules = (site / "modules" / "index.html").read_text()
    assert modules.count('class="arithmatex"') >= 10  # the equations went through arithmatex, for MathJax
    assert r"\beta_1 = \frac{e^{s_1}}{e^{s_1} + e^{s_2}}" in modules
    api = (site / "api" / "modules" / "index.html").read_text()
    for name in ("spd.SPDConv", "spd.SpaceToDepth", "scconv.SCConv", "scconv.SRU", "scconv.CRU", "ssdconv.SSDConv",
                 "blocks.C3k2_SCConv23"):
        assert f'id="yolo_spd.modules.{name}"' in api, name  # a section per class, from its docstring
    assert "Hard gate gradient" in api  # the module docstring's deviations are on the page
    models = (site / "models" / "index.html").read_text()
    assert "<td>yolov5-spd-n</td>" in models and ">GFLOPs @640</th>" in models  # the block became a table
    evidence = (site / "evidence" / "index.html").read_text()
    for plot in ("small_objects.png", "small_objects-adamw.png"):  # published by docs/hooks.py, linked by the page
        assert f'src="../results/{plot}"' in evidence
        assert (site / "results" / plot).read_bytes() == (STUDY_RESULTS / plot).read_bytes()
    for page in PAGES:  # and read on the repository, every image a page links is there
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)", page.read_text(encoding="utf-8")):
            assert "://" in target or (page.parent / target).is_file(), (page.name, target)


# --- the generated blocks ------------------------------------------------------------------------------------------

CHECKED = {"info", "info-latency", "models-speed", "modules", "ground-truth-speed", "small_objects",
           "small_objects-adamw", "exports", "small_objects_sliced", "scconv_width", "scconv_width-contrast",
           "scconv-layers", "spd_fold",
           "install-size", "space-to-depth", "targets", "before-after", "gpu", "gpu-models", "model-floor",
           "model-floor-pytorch", "model-floor-pytorch-malloc"}  # fmt: skip


def test_every_generated_block_is_checked_here_and_every_page_has_its_blocks():
    found = all_blocks()
    assert {name for _, name in found} <= CHECKED, "a new block needs a check in this file"
    assert {("README.md", "info"), ("docs/models.md", "info"), ("docs/speed.md", "info-latency"),
            ("docs/speed.md", "models-speed"), ("docs/speed.md", "modules"),
            ("docs/evaluation.md", "ground-truth-speed"), ("docs/evidence.md", "small_objects"),
            ("docs/evidence.md", "small_objects-adamw"), ("docs/export.md", "exports"),
            ("docs/evidence.md", "small_objects_sliced"), ("docs/evidence.md", "scconv_width"),
            ("docs/evidence.md", "scconv_width-contrast"),
            ("docs/evidence.md", "scconv-layers"),
            ("README.md", "install-size"), ("docs/speed.md", "space-to-depth"), ("docs/speed.md", "targets"),
            ("docs/speed.md", "before-after"), ("docs/speed.md", "gpu"), ("docs/speed.md", "gpu-models"),
            ("docs/speed.md", "model-floor"), ("docs/speed.md", "model-floor-pytorch"),
            ("docs/speed.md", "model-floor-pytorch-malloc")} <= set(found)
    assert all(text.strip() for text in found.values()), "an empty block: run its command"


def model_table_rows() -> list[tuple[str, dict[str, str]]]:
    """(where, row) for every row of every info / info-latency block."""
    return [(f"{page}:{name}", row) for (page, name), text in all_blocks().items() if name.startswith("info")
            for row in parse_table(text)]  # fmt: skip


def speed_table_rows() -> list[tuple[str, list[dict[str, str]]]]:
    """The two tables of each models-speed block: (where, per-model rows, per-pair rows)."""
    out = []
    for (page, name), text in all_blocks().items():
        if name == "models-speed":
            per_model = parse_table(text)
            per_pair = parse_table(text[text.index("| pair |"):])
            out.append((f"{page}:{name}", per_model, per_pair))
    return out


def test_the_models_speed_block_has_its_tables_columns():
    """benchmarks/models.py's shape: latency ratios next to the GFLOPs ratio per pair, a training-throughput ratio for
    each n-scale pair, and a training table of every n-scale model of the block (a stale block fails here)."""
    for where, per_model, per_pair in speed_table_rows():
        assert list(per_pair[0]) == ["pair", "GFLOPs ratio", "PyTorch latency ratio", "ONNX Runtime latency ratio",
                                     "training throughput ratio"], where
        n_pairs = [row for row in per_pair if row["pair"].split(" / ")[0].endswith("-n")]
        assert n_pairs and all(float(row["training throughput ratio"]) > 0 for row in n_pairs), where
        text = read_block(REPO / where.split(":")[0], "models-speed")
        training = parse_table(text[text.index("| model | ms per step |"):])
        n_models = {row["model"] for row in per_model if row["model"].rstrip("u").endswith("n")}
        assert {row["model"] for row in training} == n_models, where
        assert "process CPU time, 1 thread(s)" in text.splitlines()[0], where


def check_model_tables(scales: str) -> int:
    """Recompute yolo_spd.info's table for the configs of ``scales`` named in the blocks and compare every column
    that does not depend on the machine; returns how many rows were compared."""
    rows = [(where, row) for where, row in model_table_rows() if row["model"].rsplit("-", 1)[1] in scales]
    names = list(dict.fromkeys(row["model"] for _, row in rows))
    assert names, f"no {scales}-scale rows in the info blocks"
    comparisons = info.compare(names)
    expected = {row["model"]: row for row in parse_table(info.markdown_table(comparisons))}
    for where, row in rows:
        want = expected[row["model"]]
        got = {column: cell for column, cell in row.items() if column not in info.TIMING_COLUMNS}
        assert got == want, f"{where} differs from python -m yolo_spd.info; re-run the command quoted next to it"
    gflops = {stats.name: f"{stats.gflops:.1f}" for c in comparisons for stats in (c.model, c.base)}
    compared = len(rows)
    for where, per_model, per_pair in speed_table_rows():
        for row in per_model:
            if row["model"] in gflops:
                assert row["GFLOPs"] == gflops[row["model"]], f"{where}: {row['model']}"
                compared += 1
        for row in per_pair:
            model, base = row["pair"].split(" / ")
            if model in expected:
                assert row["GFLOPs ratio"] == expected[model]["GFLOPs / base"], f"{where}: {row['pair']}"
                assert base == expected[model]["baseline"]
                compared += 1
    return compared


def test_model_tables_at_n_scale_are_what_yolo_spd_info_computes():
    """The n-scale rows of every block (building the s/m/l models too takes minutes on a 2-core CPU: their rows are
    checked by re-running the command and reading ``git diff``)."""
    assert check_model_tables("n") >= 5 + 5 + 5 + 8 + 5  # README, models page, latency, speed rows, speed pairs


def test_the_model_table_check_catches_a_changed_figure(tmp_path, monkeypatch):
    """The check above fails on a block that differs in a machine-independent column, and ignores timings."""
    stats = {"yolov8-spd-n": info.ModelStats("yolov8-spd-n", 23, 300, 200, 30.0),
             "yolov8n": info.ModelStats("yolov8n", 23, 100, 90, 10.0)}  # fmt: skip
    monkeypatch.setattr(info, "compare", lambda names: [info.Comparison(stats["yolov8-spd-n"], stats["yolov8n"])])
    good = "| model | baseline | layers | params | params before Detect | GFLOPs @640 | params / base | GFLOPs / base |"
    good += " PyTorch ms |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    row = "| yolov8-spd-n | yolov8n | 23 | 300 | 200 | 30.0 | 3.00 | 3.00 | {ms} |"
    monkeypatch.setattr(sys.modules[__name__], "speed_table_rows", lambda: [])
    monkeypatch.setattr(sys.modules[__name__], "model_table_rows",
                        lambda: [("page:info", r) for r in parse_table(good + row.format(ms="123.4"))])
    assert check_model_tables("n") == 1
    monkeypatch.setattr(sys.modules[__name__], "model_table_rows",
                        lambda: [("page:info", r) for r in parse_table(good + row.format(ms="9.9"))])
    assert check_model_tables("n") == 1  # a different timing is not a difference
    changed = good + row.replace("| 300 |", "| 301 |").format(ms="123.4")
    monkeypatch.setattr(sys.modules[__name__], "model_table_rows",
                        lambda: [("page:info", r) for r in parse_table(changed)])
    with pytest.raises(AssertionError, match="page:info differs"):
        check_model_tables("n")


@pytest.mark.parametrize("stem", ["small_objects", "small_objects-adamw"])
def test_study_blocks_are_what_replot_writes_from_the_committed_results(stem):
    study = load_script("small_objects")
    saved = json.loads((STUDY_RESULTS / f"{stem}.json").read_text())
    expected = study.markdown(saved["mean_std"], saved["seeds"])
    assert read_block(REPO / "docs" / "evidence.md", stem) == expected
    assert (STUDY_RESULTS / f"{stem}.md").read_text().split("\n\n", 1)[1].strip() == expected  # the script's own .md


@pytest.mark.parametrize("stem", ["gpu", "gpu-models"])
def test_the_gpu_blocks_and_files_are_what_gpu_py_writes_from_the_committed_runs(stem):
    """benchmarks/results/gpu*.md and the docs blocks are rendered from the runs' gpu*.json (--from-json)."""
    gpu = load_script("gpu")
    results = json.loads((REPO / "benchmarks" / "results" / f"{stem}.json").read_text(encoding="utf-8"))
    assert results["device"]["type"] == "cuda" and results["device"]["name"]  # a GPU's run, never the CPU check's
    assert (REPO / "benchmarks" / "results" / f"{stem}.md").read_text(encoding="utf-8") == gpu.markdown(results)
    assert read_block(REPO / "docs" / "speed.md", stem) == gpu.docs_body(results).strip("\n")


@pytest.mark.parametrize("page,stem", [("export.md", "exports"), ("evidence.md", "small_objects_sliced"),
                                       ("evidence.md", "scconv_width"), ("speed.md", "spd_fold")])
def test_blocks_copied_from_results_files_are_the_committed_files(page, stem):
    expected = (REPO / "benchmarks" / "results" / f"{stem}.md").read_text(encoding="utf-8").strip("\n")
    assert read_block(REPO / "docs" / page, stem) == expected, f"copy benchmarks/results/{stem}.md into docs/{page}"


def test_the_scale_contrast_block_is_the_committed_file_and_what_its_json_renders_to():
    """docs/evidence.md's scconv_width-contrast block: benchmarks/results/scconv_width_contrast.md, which is what
    yolo_spd.study.contrast renders from the committed JSON now; its two sides are the two published studies."""
    from yolo_spd.study import contrast

    folder = REPO / "benchmarks" / "results"
    res = json.loads((folder / "scconv_width_contrast.json").read_text(encoding="utf-8"))
    text = (folder / "scconv_width_contrast.md").read_text(encoding="utf-8")
    assert text == contrast.markdown(res, "scale n", "scale s")
    assert (folder / "scconv_width_contrast.tex").read_text(encoding="utf-8") == contrast.latex(res, "scale n",
                                                                                                  "scale s")
    assert read_block(REPO / "docs" / "evidence.md", "scconv_width-contrast") == text.strip("\n")
    assert (res["first"]["variant"], res["second"]["variant"]) == ("yolov5-scconv-n", "yolov5-scconv-s")
    for side, stem in (("first", "small_objects_sliced"), ("second", "scconv_width")):
        study = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))
        pair = study["paired_classes"]["car"]["paired"]["variants"][res[side]["variant"]]["AP_small"]
        assert res["scopes"]["car"]["AP_small"][side]["differences"] == pair["differences"]  # the studies' own


def test_every_public_name_on_the_api_pages_has_a_docstring():
    """Each module the API pages render (docs/api/*.md, ``:::``): its public functions and classes, and their public
    methods and properties, have docstrings, so no entry renders blank (``is_registered`` did). nn.Module's own
    overrides (forward, train, extra_repr) are described by their class."""
    import importlib
    import inspect

    pages = (REPO / "docs" / "api").glob("*.md")
    modules = sorted({m for page in pages for m in re.findall(r"^::: (\S+)", page.read_text(), re.M)})
    assert "yolo_spd.evaluation.compare" in modules and "yolo_spd.study.report" in modules
    inherited = {"forward", "train", "extra_repr"}
    missing = []
    for name in modules:
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if obj.__module__ != name:
                continue
            if not obj.__doc__:
                missing.append(f"{name}.{attr}")
            for member, value in (vars(obj).items() if inspect.isclass(obj) else ()):
                function = value.fget if isinstance(value, property) else value
                if not member.startswith("_") and member not in inherited and inspect.isfunction(function) \
                        and not function.__doc__:
                    missing.append(f"{name}.{attr}.{member}")
    assert missing == []


@pytest.mark.parametrize("stem", ["small_objects_sliced", "scconv_width", "scconv_width-last"])
def test_the_published_studys_tables_are_what_the_report_writes_from_its_json(stem):
    """benchmarks/results/<stem>.{md,tex,csv} and _paired.csv: each is what yolo_spd.study.report renders from the
    committed study.json now (so a report change republishes them, or this fails)."""
    from yolo_spd.study import report

    folder = REPO / "benchmarks" / "results"
    res = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))
    written = {".md": report.markdown(res) + "\n", ".tex": report.latex(res) + "\n", ".csv": report.runs_csv(res),
               "_paired.csv": report.paired_csv(res)}
    for suffix, text in written.items():
        assert (folder / f"{stem}{suffix}").read_text(encoding="utf-8") == text, suffix


def test_the_scconv_layer_block_is_what_the_script_prints_now(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "scconv_layers.py")], cwd=tmp_path,
                         env=child_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert read_block(REPO / "docs" / "evidence.md", "scconv-layers") == out.stdout.strip("\n")
    first = parse_table(out.stdout)[0]
    assert first["channels / GN group"] == "1" and first["GWC in / group"] == "2"  # what the page's prose says


def test_the_ground_truth_timing_block_has_the_scripts_current_columns_and_rows(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ground_truth_speed.py"), "--images", "20"],
                         cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    now, published = parse_table(out.stdout), parse_table(read_block(REPO / "docs" / "evaluation.md",
                                                                      "ground-truth-speed"))
    assert [list(row) for row in published] == [list(row) for row in now]  # same headers
    assert [row["ground truth from YOLO labels"] for row in published] == ["first build", "cached"]


def test_the_install_size_block_has_the_scripts_current_table_and_says_where_it_was_measured():
    """The figures need the package index (tests stay offline): the block's shape is checked against the script's
    table for made-up wheels, and its figures against each other."""
    script = load_script("install_size")
    block = read_block(REPO / "README.md", "install-size")
    made_up = [script.Wheel("torch", "1", "torch-1.whl", 3, 4), script.Wheel("numpy", "1", "numpy-1.whl", 1, 2)]
    published, now = parse_table(block), parse_table(script.parts_table(made_up))
    assert [list(row) for row in published] == [list(row) for row in now]  # same columns
    assert [row["part"] for row in published] == [row["part"] for row in now]  # same parts
    wheels = [int(row["wheels"]) for row in published]
    assert wheels[-1] == sum(wheels[:-1]) > 0
    gb = [float(row["download"].split()[0]) for row in published]
    assert gb[-1] == pytest.approx(sum(gb[:-1]), abs=0.011)
    assert "`pip install .` resolved by pip" in block and "Platform-dependent" in block


@pytest.mark.slow
def test_the_module_timing_block_has_the_scripts_current_tables(tmp_path):
    """benchmarks/modules.py belongs to the modules' owner; its block must follow its output's shape."""
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "modules.py"), "--quick", "--repeats", "1",
                          "--warmup", "0"], cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    header_lines = [line for line in out.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    published = read_block(REPO / "docs" / "speed.md", "modules")
    tables_now = [line for line in header_lines if line.split(" | ")[0] in ("| module @px", "| input")]
    tables_published = [line for line in published.splitlines() if line.split(" | ")[0] in ("| module @px", "| input")]
    assert tables_now == tables_published
    labels_now = [line.split(" | ")[0] for line in header_lines if line not in tables_now]
    labels_published = [line.split(" | ")[0] for line in published.splitlines() if line.startswith("| ")]
    assert set(labels_now) <= set(labels_published)  # --quick prints the first shape's rows only


def test_the_space_to_depth_block_has_the_scripts_current_table(tmp_path):
    """benchmarks/space_to_depth.py's block: the same setting line and header as the script prints now, a row per
    input and layout the script measures (--quick: the first shape's two), and ratios that parse as positive."""
    now, published = quick_speed_block("space_to_depth", "space-to-depth", tmp_path)
    now_rows, published_rows = parse_table(now), parse_table(published)
    assert [list(row) for row in published_rows] == [list(row) for row in now_rows][:1] * len(published_rows)
    shapes = [f"(8, {c}, {size}, {size})" for c, size in load_script("modules").SHAPES]
    assert [(row["input"], row["layout"]) for row in published_rows] == [
        (shape, layout) for shape in shapes for layout in ("NCHW", "channels-last")]
    assert [(row["layout"]) for row in now_rows] == ["NCHW", "channels-last"]
    for row in published_rows:
        ratios = [float(cell.strip("*×")) for column, cell in row.items() if "/" in column]
        assert len(ratios) == 3 and all(r > 0 for r in ratios), row
    assert setting_line(published) == setting_line(now)


FLOOR_BLOCK_OPTIONS = {"model-floor": (False, False), "model-floor-pytorch": (True, False),
                       "model-floor-pytorch-malloc": (True, True)}  # block: (--no-onnx, allocator set)


@pytest.mark.parametrize("block", FLOOR_BLOCK_OPTIONS)
def test_the_model_floor_blocks_have_the_scripts_tables_and_consistent_verdicts(block):
    """benchmarks/model_floor.py's blocks: its two headers, a row per packaged n config and baseline, each pair's
    'bound by' what the script's rule gives for the row's own figures, and the runtimes and allocator the block's
    name says."""
    floor = load_script("model_floor")
    no_onnx, allocator_set = FLOOR_BLOCK_OPTIONS[block]
    assert floor.block_name(no_onnx, allocator_set) == block
    published = read_block(REPO / "docs" / "speed.md", block)
    first = published.splitlines()[0]
    runtimes = "PyTorch only" if no_onnx else "PyTorch and ONNX Runtime"
    assert re.sub(r"\d+", "N", first.split(";")[0]) == f"N x N, batch N, fused, {runtimes}, N interleaved rounds"
    assert "process CPU time, 1 thread(s)" in first
    assert ("allocator: glibc's defaults." in first) == (not allocator_set)
    assert all(name in first for name in floor.MALLOC_SETTINGS) == allocator_set
    models = parse_table(published)
    assert list(models[0]) == floor.MODEL_HEADER
    packaged = list_models("*-n")
    assert {row["model"] for row in models} == set(packaged) | {"yolov5nu", "yolov8n", "yolo11n"}
    pairs = parse_table(published[published.index("| pair |"):])
    assert list(pairs[0]) == floor.PAIR_HEADER
    runtimes = ("PyTorch",) if no_onnx else ("PyTorch", "ONNX Runtime")
    assert sorted((row["pair"].split(" / ")[0], row["runtime"]) for row in pairs) == sorted(
        (name, runtime) for name in packaged for runtime in runtimes)
    for row in pairs:
        figures = {key: float(value) for key, value in row.items() if key not in ("pair", "runtime", "bound by")}
        assert row["bound by"] == floor.bound_by(figures["latency ratio"], figures["GFLOPs ratio"],
                                                 figures["the target leaves"], figures["baseline's other passes"]), row


def quick_speed_block(script: str, block: str, tmp_path: Path) -> tuple[str, str]:
    """(what ``benchmarks/SCRIPT.py --quick`` prints now, one round at batch 1; the published block of speed.md)."""
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{script}.py"), "--quick", "--repeats", "1",
                          "--warmup", "0", "--batch", "1"], cwd=tmp_path, env=child_env(), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout, read_block(REPO / "docs" / "speed.md", block)


def setting_line(text: str) -> str:
    """A timing block's first line up to the environment, numbers left out."""
    return re.sub(r"\d+", "N", text.splitlines()[0].split(";")[0])


def run_targets(page: Path, gpu: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "targets.py"), "--page", str(page), "--gpu",
                           str(gpu)], cwd=page.parent, env=child_env(), capture_output=True, text=True, timeout=120)


def test_the_targets_block_is_read_off_the_pages_current_blocks():
    """The issue-19 verdicts are what benchmarks/targets.py reads off the published blocks now: re-measuring a block
    without re-running it fails here."""
    page = REPO / "docs" / "speed.md"
    out = run_targets(page, REPO / "benchmarks" / "results" / "gpu.json")
    assert out.returncode == 0, out.stderr[-2000:]
    assert read_block(page, "targets") == out.stdout.strip("\n")


def test_the_targets_follow_the_figures_they_rest_on(tmp_path):
    """A module ratio over its bound, a latency ratio moved under its GFLOPs ratio and a GPU result each change their
    verdict; a block whose table lost its column is one error line, no traceback."""
    page = tmp_path / "speed.md"
    text = (REPO / "docs" / "speed.md").read_text(encoding="utf-8")
    modules = read_block(REPO / "docs" / "speed.md", "modules")
    first_ssd = next(line for line in modules.splitlines() if line.startswith("| SSDConv(64, 64) @80"))
    cells = first_ssd.split(" | ")
    cells[-1] = "**1.61×** |"
    models = read_block(REPO / "docs" / "speed.md", "models-speed")
    pairs = {row["pair"]: row for row in parse_table(models[models.index("| pair |"):])}
    scconv = pairs["yolov5-scconv-n / yolov5nu"]
    line = next(line for line in models.splitlines() if line.startswith("| yolov5-scconv-n / yolov5nu"))
    faster = line.replace(scconv["PyTorch latency ratio"], "0.80 (met)").replace(
        scconv["ONNX Runtime latency ratio"], "0.81 (met)")
    page.write_text(text.replace(first_ssd, " | ".join(cells)).replace(line, faster), encoding="utf-8")
    gpu = tmp_path / "gpu.json"
    gpu.write_text(json.dumps({"device": {"name": "NVIDIA Test GPU", "date": "2026-12-03"}}), encoding="utf-8")
    out = run_targets(page, gpu)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {row["target"]: row for row in parse_table(out.stdout)}
    ssd = rows["SSDConv ≤ 1.5× the `Conv`, eval and training, 64/128/256 channels"]
    assert ssd["status"] == "**not met**" and "1.61×" in ssd["figures"]
    models_row = rows["whole n models: latency ratio ≤ GFLOPs ratio, PyTorch and ONNX Runtime"]
    assert "yolov5-scconv-n 0.80/0.81 against" in models_row["figures"].split("met:")[-1]
    assert "yolov5-scconv-n" not in models_row["figures"].split(". met:")[0]
    assert rows["the GPU run (benchmarks/gpu.py)"]["status"] == "**run**"
    assert "NVIDIA Test GPU" in rows["the GPU run (benchmarks/gpu.py)"]["figures"]
    published = {row["target"]: row for row in parse_table(read_block(REPO / "docs" / "speed.md", "targets"))}
    assert published[ssd["target"]]["status"] == "**met**"  # the edit, not the page, flipped it

    page.write_text(text.replace("| inference form / Conv |", "| renamed |"), encoding="utf-8")
    out = run_targets(page, gpu)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == ["targets.py: error: no table with a column 'inference form / Conv'; "
                                               "re-generate the blocks or update this script"]
    out = run_targets(tmp_path / "missing.md", gpu)
    assert out.returncode != 0 and out.stderr.strip().splitlines() == [
        f"targets.py: error: --page {tmp_path / 'missing.md'}: no such file; expected docs/speed.md or a copy of it"]


def test_the_whole_model_target_names_what_bounds_each_missed_pair(tmp_path):
    """The model_floor blocks' 'bound by' reaches the targets table: a missed pair names it (both settings where they
    differ), and a pair met in the whole-model block but not in a floor run is named as such."""
    page = tmp_path / "speed.md"
    text = (REPO / "docs" / "speed.md").read_text(encoding="utf-8")
    floor = read_block(REPO / "docs" / "speed.md", "model-floor")
    line = next(line for line in floor.splitlines() if line.startswith("| yolov5-scconv-n / yolov5nu | PyTorch |"))
    assert line.endswith("| compute |")
    other = line.replace("| compute |", "| other passes |")
    page.write_text(text.replace(line, other, 1), encoding="utf-8")
    out = run_targets(page, REPO / "benchmarks" / "results" / "gpu.json")
    assert out.returncode == 0, out.stderr[-2000:]
    row = next(row for row in parse_table(out.stdout) if row["target"].startswith("whole n models"))
    missed = row["figures"].split(". met:")[0]
    assert "yolov5-scconv-n " in missed  # the whole-model block has it missed; the edit gave it two bounds
    assert ", bound by other passes (PyTorch, ONNX export in the process); compute (" in missed
    published = next(row for row in parse_table(read_block(REPO / "docs" / "speed.md", "targets"))
                     if row["target"].startswith("whole n models"))
    alone = read_block(REPO / "docs" / "speed.md", "model-floor-pytorch")
    pairs = {r["pair"].split(" / ")[0]: r for r in parse_table(alone[alone.index("| pair |"):])}
    models = read_block(REPO / "docs" / "speed.md", "models-speed")
    named = 0
    for r in parse_table(models[models.index("| pair |"):]):
        model = r["pair"].split(" / ")[0]
        met_here = "(not met)" not in r["PyTorch latency ratio"] + r["ONNX Runtime latency ratio"]
        if model in pairs and met_here and pairs[model]["bound by"] != "— (met)":
            assert f"{model} (PyTorch-only process {pairs[model]['latency ratio']}" in published["figures"]
            named += 1
    assert ("Met here but not in the runs of" in published["figures"]) == (named > 0)


def has_revision(revision: str) -> bool:
    found = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{revision}^{{commit}}"], capture_output=True)
    return found.returncode == 0


def test_the_before_after_block_has_the_scripts_current_table(tmp_path):
    """benchmarks/before_after.py's block: the header and setting line the script prints now, its rows for every
    shape of benchmarks/modules.py, ratios that parse as positive; the old modules really are the old ones (their
    SSDConv has no fuse)."""
    script = load_script("before_after")
    if not has_revision(script.BEFORE):
        pytest.skip(f"no git history with {script.BEFORE} (a shallow clone or an unpacked archive)")
    now, published = quick_speed_block("before_after", "before-after", tmp_path)
    now_rows, published_rows = parse_table(now), parse_table(published)
    assert list(published_rows[0]) == list(now_rows[0]) == script.HEADER
    labels = [f"{label} @{size}" for c, size in load_script("modules").SHAPES
              for label in (f"SSDConv({c}, {c})", f"SCConv({c}, {2 * c}, s=2)", f"SSDConv({c}, {2 * c}, s=2)")]
    assert [row["module @px"] for row in published_rows] == labels
    assert [row["module @px"] for row in now_rows] == labels[:3]
    for row in published_rows:
        assert all(float(cell.strip("*×")) > 0 for column, cell in row.items() if column != "module @px"), row
    assert setting_line(published) == setting_line(now) and f"at {script.BEFORE}" in published
    before = script.load_modules(script.BEFORE, tmp_path / "before")
    assert not hasattr(before.SSDConv, "fuse") and hasattr(before.SCConv, "fuse")
    now = script.load_modules("HEAD", tmp_path / "head")  # a second load replaces the first, submodules included
    assert hasattr(now.SSDConv, "fuse") and hasattr(now, "FUSABLE")
    assert sys.modules[f"{script.PACKAGE}.ssdconv"].SSDConv is now.SSDConv


def test_before_after_names_a_revision_git_does_not_have_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "before_after.py"), "--quick", "--before",
                          "no-such-rev"], cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("before_after.py: error: --before no-such-rev: cannot read yolo_spd/modules from git")


# --- the recipe pages' command blocks ---------------------------------------------------------------------------
#
# Every fenced block of these pages either runs offline as written, or is marked as not run by the comment
# ``<!-- not run: REASON -->`` on the line before it, and the page says so in words (it needs the reader's data, or
# a download). The runnable blocks of a page run in order, in one fresh empty folder, with the network blocked
# (every Python process they start loads tests/network_guard.py) and Ultralytics' runs folder in ``runs/`` there, as on
# a machine where Ultralytics never ran. Three documented substitutions shorten or place them:
#
# - training runs one epoch on a tenth of the images: ``epochs=N`` becomes ``epochs=1 fraction=0.1`` (in Python,
#   ``epochs=1, fraction=0.1``), and ``yolo-spd train`` without data (the demo) gets ``YOLO_SPD_DEMO_EPOCHS=1``;
# - ``../shared/`` (the project's shared data beside the clone, where the pages' commands are run from the clone's
#   root) becomes the shared folder's real path; a page that uses it is skipped when it is absent;
# - ``yolo-spd`` and ``yolo`` are this interpreter's ``python -m yolo_spd`` and Ultralytics' entry point.

RECIPE_PAGES = ("getting-started.md", "cli.md", "small-objects.md")
RUNNABLE = ("bash", "python")
NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<reason>\S.*?)\s*-->")
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
DOCS_RUN_TIMEOUT = 1800  # per block, seconds


@dataclass(frozen=True)
class CodeBlock:
    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    not_run: str | None  # the reason given by the marker before it, or None: the block runs


def code_blocks(page: Path) -> list[CodeBlock]:
    """The fenced blocks of ``page`` in order, each with the not-run reason of the marker line just before it."""
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").splitlines()
        marker = NOT_RUN.fullmatch(before[-1].strip()) if before else None
        body = textwrap.dedent(match["body"])  # a block inside an admonition is indented with it
        found.append(CodeBlock(page.name, text[: match.start()].count("\n") + 1, match["lang"], body,
                               marker["reason"] if marker else None))
    return found


def shortened(block: CodeBlock) -> str:
    """The block's text after the documented substitutions (see above)."""
    epochs = "epochs=1, fraction=0.1" if block.lang == "python" else "epochs=1 fraction=0.1"
    return re.sub(r"\bepochs=\d+", epochs, block.text).replace("../shared/", f"{SHARED}/")


def test_every_block_of_the_recipe_pages_runs_or_says_why_not():
    pages = [REPO / "docs" / name for name in RECIPE_PAGES]
    blocks = [block for page in pages for block in code_blocks(page)]
    for page in pages:
        fences = sum(1 for line in page.read_text().splitlines() if line.strip().startswith("```")) // 2
        assert len([b for b in blocks if b.page == page.name]) == fences, f"{page.name}: a fence the parser missed"
        assert page.read_text().count("<!-- not run:") == sum(b.not_run is not None for b in blocks
                                                              if b.page == page.name), f"{page.name}: a stray marker"
    unknown = [f"{b.page}:{b.line} ({b.lang or 'no language'})" for b in blocks
               if b.not_run is None and b.lang not in RUNNABLE]
    assert not unknown, f"blocks that neither run nor say why not: {unknown}"
    for page in RECIPE_PAGES:
        assert any(b.not_run is None for b in blocks if b.page == page), f"{page}: no block runs"
    assert "data=demo_data_yaml()" in "".join(b.text for b in blocks if b.lang == "python")  # nothing downloaded
    mentions = [b for b in blocks if b.not_run is None and "coco8" in b.text]
    assert not mentions, "coco8.yaml is downloaded by Ultralytics; the recipes run offline"
    assert shortened(CodeBlock("p", 1, "bash", "train epochs=15 data=../shared/x.yaml", None)) == (
        f"train epochs=1 fraction=0.1 data={SHARED}/x.yaml")


def _command_folder(tmp_path: Path) -> Path:
    """``yolo-spd`` and ``yolo`` for this interpreter (and this checkout's yolo_spd), and a sitecustomize that loads
    the network guard into every Python process."""
    folder = tmp_path / "bin"
    folder.mkdir()
    commands = {"yolo-spd": f'exec "{sys.executable}" -m yolo_spd "$@"',
                "yolo": f'exec "{sys.executable}" -c "from ultralytics.cfg import entrypoint; entrypoint()" "$@"'}
    for name, line in commands.items():
        (folder / name).write_text(f"#!/bin/sh\n{line}\n")
        (folder / name).chmod(0o755)
    (folder / "sitecustomize.py").write_text(f"exec(open({str(REPO / 'tests' / 'network_guard.py')!r}).read())\n")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("name", RECIPE_PAGES)
def test_the_recipe_pages_run_offline_as_written(name, tmp_path):
    blocks = [block for block in code_blocks(REPO / "docs" / name) if block.not_run is None]
    if any("../shared/" in block.text for block in blocks) and folder_listing(SHARED / "data") is None:
        pytest.skip(f"{name} runs on ../shared/data, which is absent")
    work, log = tmp_path / "work", tmp_path / "network.log"
    work.mkdir()
    tools = _command_folder(tmp_path)
    settings = ultralytics_settings_folder(tmp_path / "ultralytics-settings", runs=work / "runs")
    env = child_env(YOLO_SPD_DEMO_EPOCHS="1", YOLO_CONFIG_DIR=str(settings), NETWORK_GUARD_LOG=str(log))
    env["PATH"] = os.pathsep.join([str(tools), env["PATH"]])
    env["PYTHONPATH"] = os.pathsep.join([str(tools), env["PYTHONPATH"]])
    for block in blocks:
        if block.lang == "python":
            script = tmp_path / f"block-{block.line}.py"
            script.write_text(shortened(block))
            command = [sys.executable, str(script)]
        else:
            command = ["bash", "-euo", "pipefail", "-c", shortened(block)]
        out = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=DOCS_RUN_TIMEOUT)
        where = f"docs/{name}:{block.line}"
        assert out.returncode == 0, f"{where} failed:\n{shortened(block)}\n{(out.stdout + out.stderr)[-4000:]}"
        assert "Traceback" not in out.stderr, f"{where}:\n{out.stderr[-4000:]}"
        assert not log.exists(), f"{where} tried the network:\n{log.read_text()[:3000]}"
    assert (work / "runs" / "detect" / "train" / "weights" / "best.pt").is_file()  # each page trains, into ./runs


# --- yolo_spd.markdown ---------------------------------------------------------------------------------------------


def test_table_aligns_label_left_and_numbers_right_by_default():
    assert table(["model", "AP", "ms"], [["a", "0.5", 1], ["b", "-", 2.5]]) == (
        "| model | AP | ms |\n|---|---:|---:|\n| a | 0.5 | 1 |\n| b | - | 2.5 |"
    )
    assert table(["a", "b", "c"], [], align="lcr").splitlines()[1] == "|---|:---:|---:|"
    with pytest.raises(ValueError, match="align='lx'"):
        table(["a", "b"], [], align="lx")
    with pytest.raises(ValueError, match="has 1 cells; expected 2"):
        table(["a", "b"], [["only one"]])


def test_replace_block_rewrites_only_the_block_atomically_and_keeps_the_file_mode(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("intro\n\n<!-- BEGIN generated: t -->\nold\n<!-- END generated: t -->\n\nafter\n")
    os.chmod(page, 0o644)
    assert replace_block(page, "t", "| a |\n|---|\n| 1 |\n")
    block = "<!-- BEGIN generated: t -->\n\n| a |\n|---|\n| 1 |\n\n<!-- END generated: t -->"
    assert page.read_text() == f"intro\n\n{block}\n\nafter\n"
    assert stat.S_IMODE(page.stat().st_mode) == 0o644 and [p.name for p in tmp_path.iterdir()] == ["page.md"]
    assert not replace_block(page, "t", "| a |\n|---|\n| 1 |")  # unchanged content: no rewrite
    assert read_block(page, "t") == "| a |\n|---|\n| 1 |" and parse_table(read_block(page, "t")) == [{"a": "1"}]
    with pytest.raises(UsageError, match="block 'other' needs exactly one"):
        replace_block(page, "other", "x")
    page.write_text(page.read_text() * 2)
    with pytest.raises(UsageError, match="found 2 begin and 2 end marker"):
        replace_block(page, "t", "x")


def test_the_block_runner_writes_a_commands_output_only_when_it_succeeds(tmp_path):
    page = tmp_path / "page.md"
    original = "<!-- BEGIN generated: b -->\nkept\n<!-- END generated: b -->\n"
    page.write_text(original)
    run = [sys.executable, "-m", "yolo_spd.markdown", str(page), "b", "--"]
    failing = subprocess.run([*run, sys.executable, "-c", "print('| half |'); raise SystemExit(3)"],
                             env=child_env(), capture_output=True, text=True, timeout=120)
    assert failing.returncode == 3 and "left unchanged" in failing.stderr and page.read_text() == original
    missing = subprocess.run([sys.executable, "-m", "yolo_spd.markdown", str(page), "nope", "--", "true"],
                             env=child_env(), capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "block 'nope' needs exactly one" in missing.stderr
    ok = subprocess.run([*run, sys.executable, "-c", "print('| new |')"], env=child_env(), capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 0 and read_block(page, "b") == "| new |"


@pytest.mark.parametrize("script,args", [("models", []), ("ground_truth_speed", []),
                                         ("small_objects", ["--replot", "x.json"]), ("space_to_depth", [])])  # fmt: skip
def test_scripts_refuse_a_write_docs_file_without_their_block_before_measuring(script, args, tmp_path):
    page = tmp_path / "page.md"
    page.write_text("no markers here\n")
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{script}.py"), *args, "--write-docs", str(page)],
                         cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and out.stderr.strip().splitlines()[-1].startswith(f"{script}.py: error: --write-docs")
    assert "Traceback" not in out.stderr and page.read_text() == "no markers here\n"


def test_info_write_docs_refuses_a_file_without_the_block(tmp_path, capsys):
    page = tmp_path / "page.md"
    page.write_text("no markers\n")
    with pytest.raises(SystemExit):
        info.main(["yolov8-spd-n", "--write-docs", str(page)])
    assert "block 'info' needs exactly one" in capsys.readouterr().err
