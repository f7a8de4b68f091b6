"""The HTML report: the Markdown report rendered by markdown-it-py into one self-contained page."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from distillation_studies.report.html import (  # noqa: E402
    figure_to_png_bytes,
    html_report,
    render_plots,
    link_run_ids,
    markdown_to_html,
    mlflow_ui_url,
    recommendation_run_ids,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RUN = "0123456789abcdef0123456789abcdef"
REPORT = f"""# Study <results>

## Recommendation: test_accuracy

### all labels

1. **kd**: test_accuracy 95.9 ± 0.5 %; evidence: MLflow runs {RUN}, a*b and test_accuracy_mean
   - nested detail with `code_name`

Second <script>alert(1)</script> paragraph & more.

## Comparison

| arm | test_accuracy, % |
|:---|---:|
| kd__labels_100 | 95.90 |

## Plots

![Accuracy against cost](plots/pareto_flops.png)
*Figure 1. Test accuracy against FLOPs, with **ringed** points on the front.*

Not plotted, because every arm has the same value: FLOPs is 4.74k.
"""


class _Page(HTMLParser):
    """Elements (with their attributes) and the visible text per element, as a browser builds them."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.stack: list[str] = []
        self.text: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag not in ("img", "meta", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop() != tag:
            pass

    def handle_data(self, data):
        for tag in self.stack:
            self.text.setdefault(tag, []).append(data)

    def texts(self, tag: str) -> str:
        return " ".join(" ".join(self.text.get(tag, [])).split())


@pytest.fixture
def figure():
    fig, axis = plt.subplots(figsize=(2, 1.5))
    axis.plot([0, 1], [0, 1])
    yield fig
    plt.close(fig)


def _page(markdown: str, figures) -> _Page:
    page = _Page()
    page.feed(html_report("Study <results>", markdown, figures))
    return page


def test_figure_to_png_bytes(figure):
    assert figure_to_png_bytes(figure).startswith(PNG_MAGIC)


def test_page_is_self_contained_and_keeps_the_structure(figure):
    markdown = link_run_ids(REPORT, [RUN], mlflow_ui_url("sqlite:///mlflow.db"))
    source = html_report("Study <results>", markdown, render_plots({"pareto_flops.png": figure}))
    page = _Page()
    page.feed(source)
    tags = [tag for tag, _ in page.elements]
    # Nested list kept nested; emphasis rendered, not raw asterisks; raw HTML escaped, never executed.
    assert tags.count("ol") == 1 and tags.count("ul") >= 2 and "strong" in tags
    assert "nested detail with code_name" in page.texts("li") and "a*b and test_accuracy_mean" in page.texts("li")
    assert "<script" not in source.lower() and "Second <script>alert(1)</script> paragraph & more." in page.texts("p")
    # Every src is an inlined PNG; every link an in-page anchor or the run's page in the MLflow UI.
    sources = [attrs["src"] for tag, attrs in page.elements if tag == "img"]
    assert len(sources) == 1 and base64.b64decode(sources[0].split(",", 1)[1]).startswith(PNG_MAGIC)
    links = [attrs["href"] for tag, attrs in page.elements if tag == "a"]
    assert f"http://127.0.0.1:5000/#/runs/{RUN}" in links
    assert all(link.startswith("#") or link == f"http://127.0.0.1:5000/#/runs/{RUN}" for link in links)
    assert "<link" not in source.lower()
    assert "<title>Study &lt;results&gt;</title>" in source


def test_contents_list_links_every_section_and_nests_subsections(figure):
    page = _page(REPORT, render_plots({"pareto_flops.png": figure}))
    ids = {attrs["id"] for tag, attrs in page.elements if "id" in attrs}
    anchors = [attrs["href"] for tag, attrs in page.elements if tag == "a" and attrs["href"].startswith("#")]
    assert anchors == ["#recommendation-test_accuracy", "#all-labels", "#comparison", "#plots"]
    assert {a[1:] for a in anchors} <= ids
    assert page.texts("nav") == "Recommendation: test_accuracy all labels Comparison Plots"


def test_tables_scroll_and_figures_carry_their_captions(figure):
    page = _page(REPORT, render_plots({"pareto_flops.png": figure}))
    wrappers = [attrs.get("class") for tag, attrs in page.elements if tag == "div"]
    assert wrappers == ["table-scroll"]
    assert page.texts("th") == "arm test_accuracy, %" and page.texts("td") == "kd__labels_100 95.90"
    assert page.texts("figcaption") == "Figure 1. Test accuracy against FLOPs, with ringed points on the front."
    (image,) = [attrs for tag, attrs in page.elements if tag == "img"]
    assert image["alt"] == "Accuracy against cost"
    # The line after the figures is a paragraph, not a caption.
    assert "Not plotted, because every arm has the same value: FLOPs is 4.74k." in page.texts("p")


def test_run_ids_link_to_the_mlflow_ui_of_the_tracking_uri():
    assert mlflow_ui_url("http://head:5000/") == "http://head:5000"
    assert mlflow_ui_url("sqlite:////abs/mlflow.db") == "http://127.0.0.1:5000"
    other = "f" * 32
    text = f"runs {RUN}, {other}; hash {'e' * 32}; already [{RUN[:8]}](x)"
    linked = link_run_ids(text, [RUN, other], "http://head:5000")
    assert linked == (
        f"runs [{RUN[:8]}](http://head:5000/#/runs/{RUN}), [{other[:8]}](http://head:5000/#/runs/{other}); "
        f"hash {'e' * 32}; already [{RUN[:8]}](x)"
    )
    assert link_run_ids(text, [], "http://head:5000") == text


def test_recommendation_run_ids_of_every_cell():
    record = {"cells": [{"ranked": [{"run_ids": ["a", "b"]}], "excluded": [{"run_ids": ["c"]}]}, {"ranked": [], "excluded": []}]}
    assert recommendation_run_ids(record) == ["a", "b", "c"]
    assert recommendation_run_ids({"ranked": [{"run_ids": ["x"]}], "excluded": []}) == ["x"]


def test_markdown_headings_shift_by_the_offset():
    assert re.search(r'<h3 id="comparison">Comparison</h3>', markdown_to_html("# Comparison", heading_offset=2))
    assert "<h1" in markdown_to_html("# Comparison")
