"""The docs site builds offline, and every generated block in README.md and docs/ is what its script writes now.

A generated block is the text between ``<!-- BEGIN generated: NAME -->`` and ``<!-- END generated: NAME -->``
(yolo_spd.markdown). Columns that are the same on every machine (layers, parameters, GFLOPs and their ratios) are
recomputed and compared; timings are not (they are labelled machine-dependent in the docs).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from yolo_spd import info
from yolo_spd.errors import UsageError
from yolo_spd.markdown import blocks, parse_table, read_block, replace_block, table

from .conftest import REPO, child_env, load_script

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


# --- the generated blocks ------------------------------------------------------------------------------------------

CHECKED = {"info", "info-latency", "models-speed", "modules", "ground-truth-speed", "small_objects",
           "small_objects-adamw", "exports", "small_objects_sliced", "scconv-layers"}  # fmt: skip


def test_every_generated_block_is_checked_here_and_every_page_has_its_blocks():
    found = all_blocks()
    assert {name for _, name in found} <= CHECKED, "a new block needs a check in this file"
    assert {("README.md", "info"), ("docs/models.md", "info"), ("docs/speed.md", "info-latency"),
            ("docs/speed.md", "models-speed"), ("docs/speed.md", "modules"),
            ("docs/evaluation.md", "ground-truth-speed"), ("docs/evidence.md", "small_objects"),
            ("docs/evidence.md", "small_objects-adamw"), ("docs/export.md", "exports"),
            ("docs/evidence.md", "small_objects_sliced"), ("docs/evidence.md", "scconv-layers")} <= set(found)
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


@pytest.mark.parametrize("page,stem", [("export.md", "exports"), ("evidence.md", "small_objects_sliced")])
def test_blocks_copied_from_results_files_are_the_committed_files(page, stem):
    expected = (REPO / "benchmarks" / "results" / f"{stem}.md").read_text(encoding="utf-8").strip("\n")
    assert read_block(REPO / "docs" / page, stem) == expected, f"copy benchmarks/results/{stem}.md into docs/{page}"


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
                                         ("small_objects", ["--replot", "x.json"])])  # fmt: skip
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
