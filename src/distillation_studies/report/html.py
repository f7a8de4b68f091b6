"""A self-contained HTML report: one file, figures inlined as base64 PNG, no external resources.

Section bodies may be a pandas DataFrame (``to_html``), a matplotlib Figure (inlined PNG), an
:class:`HTML` string (trusted markup, passed through), or plain text / light Markdown. Text is
always HTML-escaped first; the Markdown subset understood is what the study reports use: ``#``
headings, pipe tables, ``-``/``*`` bullet lists, paragraphs split on blank lines, `code` and **bold**.
"""

from __future__ import annotations

import base64
import html
import io
import re
from typing import Union

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


class HTML(str):
    """Trusted markup: a section body of this type is inserted verbatim, not escaped."""


SectionBody = Union[str, pd.DataFrame, plt.Figure]

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .15em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .85em; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
td:first-child, th:first-child { text-align: left; }
code { background: #f4f4f4; padding: 0 .25em; border-radius: 3px; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
nav ul { columns: 2; }
"""

_TABLE_SEPARATOR = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_BULLET = re.compile(r"^\s*[-*]\s+(.*)$")


def figure_to_png_bytes(figure: plt.Figure, dpi: int = 110) -> bytes:
    """The figure rendered as PNG bytes (tight bounding box); the figure is left open."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def figure_to_data_uri(figure: plt.Figure, dpi: int = 110) -> str:
    return "data:image/png;base64," + base64.b64encode(figure_to_png_bytes(figure, dpi)).decode("ascii")


def _inline(text: str) -> str:
    """Escape, then the two inline Markdown marks the reports use."""
    text = html.escape(text, quote=True)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def _cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|"):
        line = line[:-1]
    return [cell.strip() for cell in line.split("|")]


def _pipe_table(lines: list[str]) -> str:
    if len(lines) >= 2 and _TABLE_SEPARATOR.match(lines[1]):
        header, body = _cells(lines[0]), lines[2:]
    else:
        header, body = [], lines
    parts = ["<table>"]
    if header:
        parts.append("<thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in header) + "</tr></thead>")
    parts.append("<tbody>")
    for line in body:
        parts.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(line)) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _line_kind(line: str) -> str:
    if not line.strip():
        return "blank"
    if line.lstrip().startswith("|"):
        return "table"
    if _HEADING.match(line):
        return "heading"
    if _BULLET.match(line):
        return "list"
    return "text"


def markdown_to_html(text: str, heading_offset: int = 2) -> str:
    """The Markdown subset above as escaped HTML; ``#`` becomes ``h(1 + heading_offset)``."""
    blocks: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        kind = _line_kind(lines[i])
        if kind == "heading":
            hashes, heading = _HEADING.match(lines[i]).groups()  # type: ignore[union-attr]
            level = min(6, len(hashes) + heading_offset)
            blocks.append(f"<h{level}>{_inline(heading)}</h{level}>")
            i += 1
            continue
        j = i
        while j < len(lines) and _line_kind(lines[j]) == kind:
            j += 1
        group = lines[i:j]
        if kind == "table":
            blocks.append(_pipe_table(group))
        elif kind == "list":
            items = "".join(f"<li>{_inline(_BULLET.match(line).group(1))}</li>" for line in group)  # type: ignore[union-attr]
            blocks.append(f"<ul>{items}</ul>")
        elif kind == "text":
            blocks.append("<p>" + " ".join(_inline(line.strip()) for line in group) + "</p>")
        i = j
    return "\n".join(blocks)


def _figure_html(name: str, figure: plt.Figure) -> str:
    caption = html.escape(name)
    return f'<figure><img src="{figure_to_data_uri(figure)}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'


def _dataframe_html(frame: pd.DataFrame) -> str:
    return frame.to_html(
        index=not isinstance(frame.index, pd.RangeIndex),
        border=0,
        na_rep="–",
        float_format=lambda v: f"{v:.4g}",
        escape=True,
    )


def _body_html(heading: str, body: SectionBody) -> str:
    if isinstance(body, pd.DataFrame):
        return _dataframe_html(body)
    if isinstance(body, plt.Figure):
        return _figure_html(heading, body)
    if isinstance(body, HTML):
        return str(body)
    if isinstance(body, str):
        return markdown_to_html(body)
    raise TypeError(f"section {heading!r}: expected str, DataFrame or Figure, got {type(body).__name__}")


def html_report(
    title: str,
    sections: list[tuple[str, SectionBody]],
    figures: dict[str, plt.Figure] | None = None,
) -> str:
    """One self-contained HTML page: title, a contents list, each section, then ``figures`` in order.

    Nothing is fetched from outside the page: no scripts, stylesheets or images by URL; the only
    links are in-page anchors.
    """
    entries = list(sections) + ([("Figures", HTML(""))] if figures else [])
    contents = "".join(
        f'<li><a href="#section-{n}">{html.escape(heading)}</a></li>' for n, (heading, _) in enumerate(entries, 1)
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<nav><ul>{contents}</ul></nav>" if len(entries) > 1 else "",
    ]
    for n, (heading, body) in enumerate(sections, 1):
        parts.append(f'<section id="section-{n}"><h2>{html.escape(heading)}</h2>\n{_body_html(heading, body)}</section>')
    if figures:
        figure_html = "\n".join(_figure_html(name, figure) for name, figure in figures.items())
        parts.append(f'<section id="section-{len(entries)}"><h2>Figures</h2>\n{figure_html}</section>')
    parts.append("</body></html>")
    return "\n".join(part for part in parts if part)
