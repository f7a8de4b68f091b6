"""notebooks/compare_methods.ipynb runs top to bottom against a finished study and shows its table."""

import os

import nbformat
import pytest
from nbclient import NotebookClient


@pytest.mark.e2e
def test_notebook_reproduces_the_headline_table(project):
    notebook = nbformat.read(project / "notebooks" / "compare_methods.ipynb", as_version=4)
    os.environ["KEDRO_ENV"] = "tiny"
    try:
        NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(project / "notebooks")}}).execute()
    finally:
        del os.environ["KEDRO_ENV"]
    table_html = "".join(out.get("data", {}).get("text/html", "") for out in notebook.cells[2].outputs)
    for arm in ("ce", "kd", "fitnet", "rkd"):
        assert f">{arm}<" in table_html
    assert any("image/png" in out.get("data", {}) for out in notebook.cells[3].outputs)  # the plot
    rendered = "".join(out.get("data", {}).get("text/markdown", "") for out in notebook.cells[4].outputs)
    assert "Recommendation" in rendered  # shown as Markdown, not printed as raw text
