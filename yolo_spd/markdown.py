"""The one Markdown-table writer, and the generated blocks of the README and the docs.

:func:`table` renders every Markdown table yolo_spd and its benchmark scripts print. A *generated block* is the part
of a Markdown file between two marker comments, which a script rewrites with its own output::

    <!-- BEGIN generated: info -->
    | model | ... |
    <!-- END generated: info -->

:func:`replace_block` rewrites one (atomically, through :func:`yolo_spd.paths.write_atomic`); :func:`read_block`
and :func:`parse_table` read one back, which is how ``tests/test_docs.py`` checks a block against what its script
would write now. A script that only prints Markdown gets its output into a block with::

    python -m yolo_spd.markdown docs/speed.md modules -- python benchmarks/modules.py

which runs the command and, only if it exits with status 0 and printed something, replaces the block ``modules``
in ``docs/speed.md`` with its standard output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import UsageError
from .paths import write_atomic

_RULES = {"l": "---", "r": "---:", "c": ":---:"}


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], align: str | None = None) -> str:
    """A Markdown table: one header line, the alignment line, then one line per row (no trailing newline).

    Args:
        headers (Sequence[str]): Column titles.
        rows (Iterable[Sequence[object]]): Cells, one sequence per row, as many as there are headers; each cell is
            written with ``str()``, so format numbers before passing them.
        align (str, optional): One letter per column, ``l`` (left), ``r`` (right) or ``c`` (centre). The default,
            ``"l" + "r" * (len(headers) - 1)``, suits the usual table of a label column followed by numbers.

    Raises:
        ValueError: ``align`` or a row does not have one entry per column, or ``align`` has a letter other than
            l, r and c.
    """
    headers = [str(h) for h in headers]
    align = "l" + "r" * (len(headers) - 1) if align is None else align
    if len(align) != len(headers) or set(align) - set(_RULES):
        raise ValueError(f"align={align!r} is not allowed; expected one of l, r, c per column ({len(headers)})")
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(_RULES[a] for a in align) + "|"]
    for row in rows:
        cells = [str(cell) for cell in row]
        if len(cells) != len(headers):
            raise ValueError(f"row {cells} has {len(cells)} cells; expected {len(headers)} (one per column)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_cells(text: str) -> tuple[list[str], list[list[str]]]:
    """(header cells, body rows of cells) of the first Markdown table in ``text`` (cells stripped of spaces), by
    position, so a table that repeats a column name keeps both columns; ``([], [])`` where there is none."""
    lines = [line.strip() for line in text.splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        return [], []
    block = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        block.append([cell.strip() for cell in line.strip("|").split("|")])
    return block[0], block[2:]  # block[1] is the alignment line


def parse_table(text: str) -> list[dict[str, str]]:
    """The rows of the first Markdown table in ``text``, as {header: cell} dicts (cells stripped of spaces)."""
    headers, body = table_cells(text)
    return [dict(zip(headers, cells)) for cells in body]


def markers(name: str) -> tuple[str, str]:
    """The begin and end comment lines of the generated block ``name``."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise UsageError(f"block name {name!r} is not allowed; expected letters, digits, '.', '_' or '-'")
    return f"<!-- BEGIN generated: {name} -->", f"<!-- END generated: {name} -->"


def _span(text: str, name: str, file: Path) -> tuple[int, int]:
    """Start and end offsets of the content between the markers of block ``name`` in ``text`` (exactly one pair)."""
    begin, end = markers(name)
    starts = [m.end() for m in re.finditer(re.escape(begin), text)]
    ends = [m.start() for m in re.finditer(re.escape(end), text)]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        found = f"{len(starts)} begin and {len(ends)} end marker(s)"
        raise UsageError(f"{file}: block {name!r} needs exactly one '{begin}' followed by one '{end}'; found {found}")
    return starts[0], ends[0]


def read_block(file: str | Path, name: str) -> str:
    """The text of the generated block ``name`` in ``file``, without its markers and the blank lines around it."""
    file = Path(file)
    text = file.read_text(encoding="utf-8")
    start, end = _span(text, name, file)
    return text[start:end].strip("\n")


def blocks(file: str | Path) -> dict[str, str]:
    """Every generated block of ``file``: {name: text}."""
    file = Path(file)
    names = re.findall(r"<!-- BEGIN generated: ([A-Za-z0-9_.-]+) -->", file.read_text(encoding="utf-8"))
    return {name: read_block(file, name) for name in names}


def replace_block(file: str | Path, name: str, content: str) -> bool:
    """Replace the text between the markers of block ``name`` in ``file`` by ``content``; True if the file changed.

    The markers must already be in the file (exactly one pair): a block is placed by hand once, then only its
    content is rewritten. The file is written through a temporary file and a rename, and keeps its permissions.

    Raises:
        UsageError: ``file`` does not exist, or does not have exactly one pair of markers for ``name``.
    """
    file = Path(file)
    if not file.is_file():
        raise UsageError(f"{file}: no such file; expected a Markdown file holding block {name!r}")
    text = file.read_text(encoding="utf-8")
    start, end = _span(text, name, file)
    # blank lines around the content, so that every Markdown renderer sees a table there, not part of an HTML block
    new = text[:start] + "\n\n" + content.strip("\n") + "\n\n" + text[end:]
    if new == text:
        return False
    mode = file.stat().st_mode & 0o777
    write_atomic(file, new)
    os.chmod(file, mode)
    return True


def write_blocks(files: Iterable[str | Path], name: str, content: str) -> None:
    """:func:`replace_block` in each of ``files``, saying on stderr which files changed."""
    for file in files:
        changed = replace_block(file, name, content)
        print(f"{file}: block {name!r} {'updated' if changed else 'unchanged'}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """``python -m yolo_spd.markdown FILE BLOCK -- COMMAND ...``: COMMAND's standard output into the block."""
    argv = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m yolo_spd.markdown FILE BLOCK -- COMMAND [ARG ...]"
    if len(argv) < 4 or argv[2] != "--":
        print(f"yolo_spd.markdown: error: {usage}", file=sys.stderr)
        return 2
    file, name, command = Path(argv[0]), argv[1], argv[3:]
    try:
        read_block(file, name)  # fail before running a long command
    except (UsageError, FileNotFoundError) as e:
        print(f"yolo_spd.markdown: error: {e}", file=sys.stderr)
        return 2
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0 or not result.stdout.strip():
        why = f"exited with status {result.returncode}" if result.returncode else "printed nothing"
        print(f"yolo_spd.markdown: error: {' '.join(command)} {why}; {file} left unchanged", file=sys.stderr)
        return result.returncode or 1
    write_blocks([file], name, result.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
