"""Report datasets' kedro-viz previews, read as kedro-viz 12.5's front end shows them.

``kedro_viz_pass`` restates, step by step, the light Markdown pass kedro-viz's ``html-renderer`` runs
over a sanitised HTMLPreview (kedro_viz/html/assets/index-*.js, function applied before
``dangerouslySetInnerHTML``); the page's visible text must come out of it unchanged.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from distillation_studies.report.html import markdown_to_html
from distillation_studies.datasets.reports import HTMLReportDataset, MarkdownReportDataset, kedro_viz_preview


def kedro_viz_pass(markup: str) -> str:
    """The sanitiser's trimming of attribute values (DOMPurify), then the steps of kedro-viz 12.5's pass
    that can touch a report (tables, headings and links need Markdown syntax at a line start or
    ``[..](..)``, which the report's HTML has none of)."""
    markup = re.sub(r'="\s*([^"]*?)\s*"', r'="\1"', markup)
    markup = re.sub(r"\*\*(.*?)\*\*", r"<strong>\1</strong>", markup)
    markup = re.sub(r"__(.*?)__", r"<strong>\1</strong>", markup)
    markup = re.sub(r"\*(.*?)\*", r"<em>\1</em>", markup)
    markup = re.sub(r"_(.*?)_", r"<em>\1</em>", markup)
    markup = re.sub(r"`([^`]+)`", r"<code>\1</code>", markup)
    markup = re.sub(r"(<li>.*</li>)", r"<ul>\1</ul>", markup, flags=re.DOTALL)
    markup = re.sub(r"\n\s*\n", "</p><p>", markup)
    return markup.replace("\n", "<br>")


class _Reader(HTMLParser):
    """Visible text and element names, as a browser would build them."""

    def __init__(self) -> None:
        super().__init__()
        self.text, self.tags, self._skip = [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._skip += tag in ("style", "script")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "script")

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def read_as_kedro_viz_shows(markup: str) -> tuple[str, list[str]]:
    """Visible text and element names of an HTMLPreview after kedro-viz's pass."""
    return _read(kedro_viz_pass(markup))


def _read(markup: str) -> tuple[str, list[str]]:
    reader = _Reader()
    reader.feed(markup)
    return " ".join("".join(reader.text).split()), reader.tags


REPORT = """# Distillation study report

## Recommendation: test_accuracy (higher is better)

- **ce**: test_accuracy 68.19 ± 58.24 %; rank 1: highest mean test_accuracy
- **kd__labels_10__transfer**: a*b and `code_name`, 2 * 3

| arm | test_accuracy |
|---|---|
| ce__labels_100 | 68.19 |
"""


def test_the_old_preview_loses_underscores_to_italics_in_kedro_viz():
    """The defect, reproduced: without the guard, kedro-viz's pass eats the underscores."""
    page = markdown_to_html(REPORT, heading_offset=0)
    shown, tags = _read(kedro_viz_pass(page))
    assert "em" in tags and "test_accuracy 68.19" not in shown


@pytest.mark.parametrize("page", [markdown_to_html(REPORT, heading_offset=0), f"<html><head><style>td {{ color: #222 }}</style></head><body>{markdown_to_html(REPORT)}<figure><img src=\"data:image/png;base64,iVBO+/=\" alt=\"per_class_accuracy.png\"><figcaption>per_class_accuracy.png</figcaption></figure></body></html>"])
def test_kedro_viz_shows_the_preview_as_written(page):
    shown, tags = _read(kedro_viz_pass(kedro_viz_preview(page)))
    written, written_tags = _read(page)
    assert shown == written
    assert "test_accuracy 68.19" in shown and "kd__labels_10__transfer" in shown and "a*b" in shown
    assert [t for t in tags if t != "span"] == written_tags  # no <em>, <br> or re-wrapped list


def test_datasets_preview_through_the_guard(tmp_path):
    (tmp_path / "report.html").write_text("<p>test_accuracy and test_accuracy</p>\n<ul><li>a</li><li>b</li></ul>")
    (tmp_path / "report.md").write_text("## Recommendation: test_accuracy\n\nce: test_accuracy 1, test_accuracy 2\n")
    page = HTMLReportDataset(filepath=str(tmp_path / "report.html")).preview()
    shown, tags = _read(kedro_viz_pass(page))
    assert (shown, [t for t in tags if t != "span"]) == ("test_accuracy and test_accuracy ab", ["p", "ul", "li", "li"])
    markdown = MarkdownReportDataset(filepath=str(tmp_path / "report.md"), plots_filepath=str(tmp_path / "plots")).preview()
    shown, tags = _read(kedro_viz_pass(markdown))
    assert shown == "Recommendation: test_accuracy ce: test_accuracy 1, test_accuracy 2" and "em" not in tags
