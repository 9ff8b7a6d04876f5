"""MkDocs hook: publish the study plots from benchmarks/results/ (where benchmarks/small_objects.py writes them) under
results/ in the site, so the pages show the files the script wrote, not copies that could drift."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def on_files(files, config):
    for plot in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"results/{plot.name}", abs_src_path=str(plot)))
    return files
