"""MkDocs hook: publish the study plots from benchmarks/results/ (where benchmarks/small_objects.py writes them) under
results/ in the site, so the pages show the files the script wrote, not copies that could drift. The pages link them
as ``../benchmarks/results/NAME.png``, which shows them when the Markdown is read on the repository too; the site
reads those links as ``results/NAME.png``."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def on_files(files, config):
    for plot in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"results/{plot.name}", abs_src_path=str(plot)))
    return files


def on_page_markdown(markdown, page, config, files):
    return markdown.replace("](../benchmarks/results/", "](results/")
