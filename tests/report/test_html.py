"""The HTML report is one self-contained page: inlined figures, escaped text, no external resources."""

from __future__ import annotations

import base64
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from distillation_studies.report.html import HTML, figure_to_png_bytes, html_report, markdown_to_html  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def figure():
    fig, axis = plt.subplots(figsize=(2, 1.5))
    axis.plot([0, 1], [0, 1])
    yield fig
    plt.close(fig)


def test_figure_to_png_bytes(figure):
    assert figure_to_png_bytes(figure).startswith(PNG_MAGIC)


def test_report_is_self_contained(figure):
    table = pd.DataFrame({"method": ["kd", "ce"], "test_accuracy_mean": [0.91234, 0.8]})
    page = html_report(
        "Study <results>",
        [("Summary", "First paragraph.\n\nSecond <script>alert(1)</script> paragraph & more."),
         ("Comparison", table), ("Plot inline", figure)],
        {"accuracy against cost": figure},
    )
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("data:image/png;base64,") == 2
    payload = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(payload).startswith(PNG_MAGIC)
    # No external resources: every src/href is a data URI or an in-page anchor; no scripts, no links.
    for attribute in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page, flags=re.I):
        assert attribute.startswith(("data:", "#")), attribute
    assert not re.search(r'(?:src|href)\s*=\s*["\']?\s*(?:https?:)?//', page, flags=re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    # Text escaped, paragraphs split on blank lines.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<p>First paragraph.</p>" in page
    assert "&amp; more" in page
    assert "<title>Study &lt;results&gt;</title>" in page
    # DataFrame rendered as a table, without the RangeIndex.
    assert "<table" in page and "<th>test_accuracy_mean</th>" in page and "0.9123" in page
    assert ">kd</td>" in page


def test_dataframe_cells_are_escaped():
    page = html_report("t", [("x", pd.DataFrame({"method": ["<b>bold</b>"]}))], {})
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page


def test_markdown_subset():
    text = (
        "# Comparison\n\nValues are `mean` ± CI, **paired**.\nSame paragraph.\n\n"
        "| method | acc <% |\n|:---|---:|\n| kd | 91.2 |\n| ce | 88.0 |\n\n- one\n- two <i>\n"
    )
    out = markdown_to_html(text)
    assert "<h3>Comparison</h3>" in out
    assert "<p>Values are <code>mean</code> ± CI, <strong>paired</strong>. Same paragraph.</p>" in out
    assert "<thead><tr><th>method</th><th>acc &lt;%</th></tr></thead>" in out
    assert out.count("<tr>") == 3 and "<td>91.2</td>" in out and "---" not in out
    assert "<ul><li>one</li><li>two &lt;i&gt;</li></ul>" in out


def test_trusted_html_passes_through_and_bad_body_rejected():
    page = html_report("t", [("raw", HTML("<em>kept</em>"))], {})
    assert "<em>kept</em>" in page
    with pytest.raises(TypeError, match="section 'bad'"):
        html_report("t", [("bad", 3)], {})
