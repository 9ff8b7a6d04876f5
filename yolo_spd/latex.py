"""LaTeX tables to paste into a paper: the cells of yolo_spd's Markdown tables, set with booktabs rules.

:func:`table` takes the same headers and rows as :func:`yolo_spd.markdown.table`, so one set of cells feeds both
(``study.md`` and ``study.tex``). Each cell goes through :func:`cell`: LaTeX's special characters are escaped, the
Markdown bold a resolved difference gets becomes ``\\textbf``, and the symbols the tables use are written in math mode
(``±``, ``Δ``, ``†`` and a minus sign before a number). The document needs ``\\usepackage{booktabs}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
            ">": r"\textgreater{}", "|": r"\textbar{}"}  # < > | print as other glyphs in pdflatex's default OT1
_SYMBOLS = {"±": r"$\pm$", "Δ": r"$\Delta$", "†": r"$^\dagger$", "≥": r"$\geq$", "≤": r"$\leq$"}
_ALIGN = set("lrc")


def escape(text: str) -> str:
    """``text`` with every character LaTeX treats specially written so that it prints as itself."""
    return "".join(_SPECIAL.get(ch, ch) for ch in text)


def cell(text: object) -> str:
    """One Markdown table cell as LaTeX: escaped, ``**bold**`` as ``\\textbf{bold}``, the table symbols in math mode,
    and a minus sign (not a hyphen) before a number that starts a word (``-0.065``, ``[-0.002,``; the hyphens of
    ``yolov5-spd-n`` stay)."""
    text = escape(str(text))
    text = re.sub(r"\*\*(.+?)\*\*", r"\\textbf{\1}", text)
    text = re.sub(r"(^|[\s\[({])-(?=\d)", r"\1$-$", text)
    text = re.sub(r"(^|[\s\[({])\+(?=\d)", r"\1$+$", text)
    return "".join(_SYMBOLS.get(ch, ch) for ch in text)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], align: str | None = None,
          caption: str | None = None, label: str | None = None) -> str:
    """A booktabs ``tabular`` of ``headers`` and ``rows`` (each cell through :func:`cell`), inside a ``table``
    environment with ``caption`` and ``label`` when either is given (no trailing newline).

    Args:
        headers (Sequence[str]): Column titles.
        rows (Iterable[Sequence[object]]): Cells, one sequence per row, as many as there are headers.
        align (str, optional): One letter per column, ``l``, ``r`` or ``c``; default a left column, then right ones.
        caption (str, optional): The table's caption (Markdown bold and the table symbols are converted too).
        label (str, optional): The ``\\label`` key, written as given (letters, digits and ``:-_.`` only).

    Raises:
        ValueError: ``align`` or a row does not have one entry per column, ``align`` has a letter other than l, r and
            c, or ``label`` has another character.
    """
    headers = [str(h) for h in headers]
    align = "l" + "r" * (len(headers) - 1) if align is None else align
    if len(align) != len(headers) or set(align) - _ALIGN:
        raise ValueError(f"align={align!r} is not allowed; expected one of l, r, c per column ({len(headers)})")
    if label is not None and not re.fullmatch(r"[A-Za-z0-9:_.-]+", label):
        raise ValueError(f"label={label!r} is not allowed; expected letters, digits, ':', '_', '.' or '-'")
    lines = [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(cell(h) for h in headers) + r" \\",
             r"\midrule"]
    for row in rows:
        cells = [cell(c) for c in row]
        if len(cells) != len(headers):
            raise ValueError(f"row {list(row)} has {len(cells)} cells; expected {len(headers)} (one per column)")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption is None and label is None:
        return "\n".join(lines)
    head = [r"\begin{table}[t]", r"\centering"]
    if caption is not None:
        head.append(rf"\caption{{{cell(caption)}}}")
    if label is not None:
        head.append(rf"\label{{{label}}}")
    return "\n".join([*head, *lines, r"\end{table}"])
