"""The study report as one self-contained HTML page, rendered from its Markdown by markdown-it-py.

The page is the Markdown report itself (CommonMark with GitHub tables), plus what a browser page can
do that Markdown cannot: a contents list linking each section's anchor, tables that scroll sideways
instead of being cut, figures inlined as base64 PNG with their captions (an image alone at the start
of a paragraph, its caption the rest of that paragraph), and run ids as links to the MLflow UI. No
scripts, stylesheets or images by URL: the only links go to in-page anchors and the MLflow UI.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from markdown_it import MarkdownIt  # noqa: E402
from markdown_it.rules_core import StateCore  # noqa: E402
from markdown_it.token import Token  # noqa: E402

MLFLOW_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local (sqlite, file) store by default
TOC_LEVELS = (2, 3)

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .15em; margin-top: 1.8em; }
.table-scroll { overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-size: .85em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; white-space: nowrap; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f4f4f4; padding: 0 .25em; border-radius: 3px; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: .9em; margin-top: .3em; }
nav { background: #f7f7f7; padding: .3em 1em; border-radius: 4px; }
nav ul { margin: .2em 0; padding-left: 1.2em; }
li { margin: .15em 0; }
"""


def figure_to_png_bytes(figure: plt.Figure, dpi: int = 110) -> bytes:
    """The figure rendered as PNG bytes (tight bounding box); the figure is left open."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass(frozen=True)
class RenderedPlot:
    """A report figure with its PNG, rendered once: the HTML report inlines these bytes, the catalog
    writes them to the plots folder and MLflow logs that file (drawing a figure costs ~0.15 s)."""

    figure: plt.Figure
    png: bytes


def render_plots(figures: Mapping[str, plt.Figure], dpi: int = 110) -> dict[str, RenderedPlot]:
    return {name: RenderedPlot(figure, figure_to_png_bytes(figure, dpi)) for name, figure in figures.items()}


# ------------------------------------------------------------------------------------------ links


def mlflow_ui_url(tracking_uri: str) -> str:
    """The MLflow UI serving ``tracking_uri``: a tracking server serves its own; a local store is shown
    by ``mlflow ui --backend-store-uri <uri>``, at :data:`MLFLOW_UI` by default."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return MLFLOW_UI


def link_run_ids(markdown: str, run_ids: Iterable[str], ui_url: str) -> str:
    """Each of ``run_ids`` in ``markdown`` as a link to its run page in the MLflow UI, shown by its first
    8 characters (the whole id is in the link)."""
    ids = sorted({run_id for run_id in run_ids if run_id}, key=len, reverse=True)
    if not ids:
        return markdown
    pattern = re.compile(r"(?<![\w/\[])(" + "|".join(map(re.escape, ids)) + r")(?![\w\]])")
    return pattern.sub(lambda m: f"[{m.group(1)[:8]}]({ui_url}/#/runs/{m.group(1)})", markdown)


def recommendation_run_ids(record: Mapping[str, Any]) -> list[str]:
    """Every MLflow run id a recommendation record cites (ranked and excluded candidates, every cell)."""
    cells = record.get("cells", [record])
    return [run_id for cell in cells for entry in (*cell.get("ranked", []), *cell.get("excluded", [])) for run_id in entry.get("run_ids", [])]


# ------------------------------------------------------------------------------------ Markdown rules


def _slug(text: str, taken: set[str]) -> str:
    """A heading's anchor: lower case words joined by '-', made unique with '-2', '-3'..."""
    base = re.sub(r"[^\w]+", "-", text.lower()).strip("-") or "section"
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    taken.add(slug)
    return slug


def _anchors(state: StateCore) -> None:
    """Shift heading levels by ``env['heading_offset']``, give each heading an id, and list the
    ``TOC_LEVELS`` ones in ``env['toc']`` as (level, id, text)."""
    taken: set[str] = set()
    offset = state.env.get("heading_offset", 0)
    for i, token in enumerate(state.tokens):
        if token.type != "heading_open":
            continue
        level = int(token.tag[1])
        text = "".join(child.content for child in state.tokens[i + 1].children or [] if child.type in ("text", "code_inline"))
        slug = _slug(text, taken)
        token.attrSet("id", slug)
        token.tag = state.tokens[i + 2].tag = f"h{min(6, level + offset)}"
        if level in TOC_LEVELS:
            state.env.setdefault("toc", []).append((level, slug, text))


def _figures(state: StateCore) -> None:
    """A paragraph that starts with an image becomes a figure; the rest of the paragraph, its caption."""
    tokens = state.tokens
    for i, token in enumerate(tokens[:-2]):
        inline = tokens[i + 1]
        if token.type != "paragraph_open" or not inline.children or inline.children[0].type != "image":
            continue
        if len(inline.children) > 1 and inline.children[1].type not in ("softbreak", "hardbreak"):
            continue
        token.tag = tokens[i + 2].tag = "figure"
        caption = inline.children[2:]
        if caption:
            inline.children = [
                inline.children[0], _raw("<figcaption>"), *caption, _raw("</figcaption>"),
            ]


def _raw(markup: str) -> Token:
    token = Token("html_inline", "", 0)
    token.content = markup
    return token


def _renderer(images: Mapping[str, str]) -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.core.ruler.push("anchors", _anchors)
    md.core.ruler.push("figures", _figures)

    def image(self, tokens, idx, options, env):
        token = tokens[idx]
        token.attrSet("src", images.get(str(token.attrGet("src")), str(token.attrGet("src"))))
        return self.image(tokens, idx, options, env)

    def table_open(self, tokens, idx, options, env):
        return '<div class="table-scroll">' + self.renderToken(tokens, idx, options, env)

    def table_close(self, tokens, idx, options, env):
        return self.renderToken(tokens, idx, options, env) + "</div>\n"

    md.add_render_rule("image", image)
    md.add_render_rule("table_open", table_open)
    md.add_render_rule("table_close", table_close)
    return md


def markdown_to_html(text: str, heading_offset: int = 0, images: Mapping[str, str] | None = None, env: dict | None = None) -> str:
    """``text`` (CommonMark with tables) as HTML: escaped raw HTML, anchored headings (``#`` becomes
    ``h(1 + heading_offset)``), scrolling tables, captioned figures with each image's src looked up in
    ``images`` (e.g. ``plots/x.png`` -> a data URI). ``env`` receives the contents list under ``toc``."""
    env = {} if env is None else env
    env["heading_offset"] = heading_offset
    return _renderer(images or {}).render(text, env)


def _toc(entries: list[tuple[int, str, str]]) -> str:
    """The contents list: the ``##`` sections, each with its ``###`` subsections nested."""
    sections: list[tuple[str, list[str]]] = []
    for level, slug, text in entries:
        link = f'<a href="#{slug}">{html.escape(text)}</a>'
        if level == TOC_LEVELS[0] or not sections:
            sections.append((link, []))
        else:
            sections[-1][1].append(f"<li>{link}</li>")
    items = "".join(f"<li>{link}{'<ul>' + ''.join(subs) + '</ul>' if subs else ''}</li>" for link, subs in sections)
    return f"<nav><ul>{items}</ul></nav>" if items else ""


def html_report(title: str, markdown: str, plots: Mapping[str, RenderedPlot] | None = None, plots_folder: str = "plots") -> str:
    """One self-contained HTML page of the Markdown report: a contents list after its ``#`` title, and
    each image ``<plots_folder>/<name>`` inlined from the PNG of ``plots[name]``."""
    images = {f"{plots_folder}/{name}": png_data_uri(plot.png) for name, plot in (plots or {}).items()}
    env: dict[str, Any] = {}
    body = markdown_to_html(markdown, images=images, env=env)
    toc = _toc(env.get("toc", []))
    heading_end = body.find("</h1>")
    body = body[: heading_end + 5] + toc + body[heading_end + 5 :] if heading_end >= 0 else toc + body
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        body,
        "</body></html>",
    ])
