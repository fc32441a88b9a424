"""The HTML the tables are written as: one self-contained page (its own style sheet, no script, no
external file), tables whose every cell is escaped unless it is built markup, numbers formatted
the same way in every table.

Why not pandas' ``Styler``: it escapes, formats per column, highlights a column's best and writes
two header rows from column MultiIndexes, but the pages need two things it cannot write: a
full-width group heading row inside the table body (the methods' families) and a class on a whole
row (an unhealthy model, styled and flagged across its cells); its markup also carries generated
ids and a ``<style>`` per table, and it needs Jinja2, which the library does not otherwise use.
What is written here by hand is the table builder (:func:`html_table`, about 50 lines), the page
around it and the style sheet; escaping is the standard library's ``html.escape``.
"""

from __future__ import annotations

import html
import math
import os
from typing import Sequence


from smug.utils import atomic_path

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; font-size: 14px;
       color: #1f2328; margin: 16px; line-height: 1.4; }
h1 { font-size: 20px; margin: 0 0 6px 0; }
h2 { font-size: 16px; margin: 22px 0 4px 0; }
p.note { color: #57606a; margin: 2px 0 8px 0; }
p.summary { font-weight: 600; margin: 6px 0 10px 0; }
p.summary.bad { color: #a40e26; }
nav { margin: 6px 0 10px 0; color: #57606a; }
nav a { margin-right: 10px; }
table { border-collapse: collapse; margin: 4px 0 14px 0; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; }
thead th { background: #f6f8fa; font-weight: 600; text-align: center; }
tbody th { text-align: left; font-weight: 600; white-space: nowrap; }
td { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.text { text-align: left; white-space: normal; }
td.best { font-weight: 700; }
tr.group th { background: #eaeef2; text-align: left; font-style: italic; font-weight: 600; }
tr.unhealthy { background: #ffebe9; }
tr.unhealthy th { color: #a40e26; }
td.bad { color: #a40e26; font-weight: 700; }
td.good { color: #1a7f37; }
span.name { display: block; color: #57606a; font-size: 11px; font-weight: 400;
            font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
span.flag { color: #a40e26; font-weight: 700; }
ul.checks { margin: 0; padding-left: 16px; }
"""


class Markup(str):
    """HTML built here from escaped parts; :func:`_cell` passes it through instead of escaping it."""


def _cell(value: object) -> str:
    return value if isinstance(value, Markup) else html.escape(str(value))


def is_finite(value: object) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def format_number(value: object, digits: int) -> str:
    """``value`` to ``digits`` decimals, with a proper minus sign; an en dash for a missing value."""
    if not is_finite(value):
        return "–"
    return f"{float(value):.{digits}f}".replace("-", "−")


def format_percent(value: object) -> str:
    """A fraction as a whole percentage (``0.5`` -> ``50 %``); an en dash for a missing value."""
    if not is_finite(value):
        return "–"
    return f"{100 * float(value):.0f} %".replace("-", "−")


def html_table(
    header: Sequence[str | tuple[str, str]],
    rows: Sequence[Sequence[object]],
    *,
    row_classes: Sequence[str | None] | None = None,
    cell_classes: Sequence[Sequence[str | None]] | None = None,
    groups: Sequence[tuple[int, str]] = (),
) -> str:
    """An escaped ``<table>``. The first column is the row header.

    Args:
        header: one title per column; ``(group, title)`` pairs give two header rows, consecutive
            equal groups sharing one cell (a plain string spans both rows).
        rows: one cell per column; strings are escaped, numbers should come formatted.
        row_classes: a CSS class per row (``unhealthy``), or None.
        cell_classes: per row, a CSS class per cell (``best``, ``text``), or None.
        groups: ``(row index, title)``: a full-width group heading before that row.
    """
    width = len(header)
    for row in rows:
        if len(row) != width:
            raise ValueError(f"a row has {len(row)} cells for {width} columns")
    two_rows = any(isinstance(h, tuple) for h in header)
    lines = ["<table>", "<thead>"]
    if two_rows:
        top, bottom, i = [], [], 0
        while i < width:
            cell = header[i]
            if not isinstance(cell, tuple):
                top.append(f'<th rowspan="2">{_cell(cell)}</th>')
                i += 1
                continue
            span = 1
            while i + span < width and isinstance(header[i + span], tuple) and header[i + span][0] == cell[0]:
                span += 1
            top.append(
                f'<th colspan="{span}">{_cell(cell[0])}</th>' if span > 1 else f"<th>{_cell(cell[0])}</th>"
            )
            bottom += [f"<th>{_cell(header[j][1])}</th>" for j in range(i, i + span)]
            i += span
        lines += ["<tr>" + "".join(top) + "</tr>", "<tr>" + "".join(bottom) + "</tr>"]
    else:
        lines.append("<tr>" + "".join(f"<th>{_cell(h)}</th>" for h in header) + "</tr>")
    lines += ["</thead>", "<tbody>"]
    headings = dict(groups)
    for r, row in enumerate(rows):
        if r in headings:
            lines.append(f'<tr class="group"><th colspan="{width}">{_cell(headings[r])}</th></tr>')
        row_class = row_classes[r] if row_classes else None
        classes = cell_classes[r] if cell_classes else [None] * width
        cells = [f'<th scope="row">{_cell(row[0])}</th>']
        for value, cls in zip(row[1:], classes[1:]):
            cells.append(f'<td class="{cls}">{_cell(value)}</td>' if cls else f"<td>{_cell(value)}</td>")
        attr = f' class="{row_class}"' if row_class else ""
        lines.append(f"<tr{attr}>" + "".join(cells) + "</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def html_page(title: str, body: Sequence[str]) -> str:
    """A complete HTML document with its own style: the report shows it in a frame."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            f"<h1>{html.escape(title)}</h1>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )


def write_html(page: str, path: str | os.PathLike) -> None:
    """Write one page atomically (a killed job leaves no finished-looking file)."""
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
