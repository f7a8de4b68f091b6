"""Report datasets that kedro-viz can preview in its side panel: what a reader opens, not the raw files.

They load and save exactly like the kedro-datasets classes they extend; only ``preview()`` is added
(kedro-viz calls it and picks the renderer from its return annotation: ``HTMLPreview``, ``ImagePreview``,
``TablePreview``). Previews read the latest saved version, so they show the last run's results.
"""

from __future__ import annotations

import base64
import io
import math
import os
import re
from pathlib import PurePosixPath
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from kedro.io.core import Version, get_filepath_str  # noqa: E402
from kedro_datasets._typing import HTMLPreview, ImagePreview, TablePreview  # noqa: E402

from distillation_studies.datasets.files import CSVDataset, TextDataset  # noqa: E402 - atomic saves
from distillation_studies.datasets.plots import MatplotlibDataset  # noqa: E402
from distillation_studies.common.names import PLOTS_FOLDER  # noqa: E402
from distillation_studies.report.sections import cost_rows, noise_rows  # noqa: E402
from distillation_studies.report.html import RenderedPlot, markdown_to_html  # noqa: E402

_BASELINE_COLUMN = re.compile(r"^test_accuracy_diff_vs_(.+)$")
_PLOTS_SECTION = re.compile(r"\n## Plots\n.*\Z", re.DOTALL)


_TAG = re.compile(r"(<[^>]*>)")
_MARKER = re.compile(r"[_*`]")  # what kedro-viz's preview pass pairs into <em>, <strong> and <code>
_QUOTED = re.compile(r"""("[^"]*"|'[^']*')""")
_RAW_TEXT = ("style", "script")


def kedro_viz_preview(page: str) -> str:
    """``page`` as kedro-viz 12 shows it as written.

    kedro-viz sanitises an HTMLPreview, then runs a light Markdown pass over the markup (its
    front-end's ``html-renderer``): ``_a_``/``*a*`` become italics within a line, newlines ``<br>``, and
    everything from the first ``<li>`` to the last is re-wrapped in a list. So ``test_accuracy ...
    test_accuracy`` lost its underscores to italics. Here newlines become spaces (HTML collapses them
    anyway); each ``_``, ``*`` and backtick is followed by a line break inside an inert attribute (not at
    its ends: the sanitiser trims values), which the pass cannot pair across; ``<li>`` carries an attribute the
    pass does not match. Entities would not help: the sanitiser decodes them before the pass.
    """
    tokens, raw = [], False
    for token in _TAG.split(page.replace("\r", " ").replace("\n", " ")):
        if token.startswith("<"):
            name = token[1:].lstrip("/").split(" ", 1)[0].rstrip(">").lower()
            raw = name in _RAW_TEXT and not token.startswith("</")
            token = token.replace("<li>", '<li data-item="">')
            token = _QUOTED.sub(lambda value: _MARKER.sub(lambda m: m.group(0) + "\n", value.group(0)), token)
        elif not raw:
            token = _MARKER.sub(lambda m: m.group(0) + '<span data-break="-\n-"></span>', token)
        tokens.append(token)
    return "".join(tokens)


class HTMLReportDataset(TextDataset):
    """The self-contained HTML study report; kedro-viz shows the page itself."""

    def preview(self) -> HTMLPreview:
        return HTMLPreview(kedro_viz_preview(self.load()))


class MarkdownReportDataset(TextDataset):
    """The study report's Markdown, its plot links pointed at the plots as saved beside it on disk;
    previewed rendered (its plots are previewed with ``study_plots``).

    The report links its plots as ``plots/<name>``, which is where MLflow holds them beside the report.
    On disk both files are versioned (``<filepath>/<version>/<name>``; the plots folder
    ``<plots_filepath>/<version>/<folder name>/``), so the saved copy's links are rewritten relative to
    the report's real location, with the save version every dataset of the run shares.
    """

    def __init__(self, *, filepath: str, plots_filepath: str, version: Version | None = None, **kwargs: Any) -> None:
        super().__init__(filepath=filepath, version=version, **kwargs)
        self._plots_filepath = PurePosixPath(plots_filepath)

    def plots_link(self) -> str:
        """The plots folder relative to the folder the report is saved in."""
        report = PurePosixPath(self._get_save_path())
        plots = self._plots_filepath
        if self._version is not None:
            plots = plots / self.resolve_save_version() / plots.name
        return os.path.relpath(plots, report.parent)

    def save(self, data: str) -> None:
        super().save(data.replace(f"]({PLOTS_FOLDER}/", f"]({self.plots_link()}/"))

    def preview(self) -> HTMLPreview:
        # The plots section links PNG files beside the report, which the side panel cannot reach.
        return HTMLPreview(kedro_viz_preview(markdown_to_html(_PLOTS_SECTION.sub("\n", self.load()), heading_offset=0)))


class ComparisonTableDataset(CSVDataset):
    """The comparison table (every statistic, for the analysis) previewed as the report's headline table."""

    def preview(self, nrows: int = 30) -> TablePreview:
        table = self.load()
        baselines = [m.group(1) for c in table.columns if (m := _BASELINE_COLUMN.match(c))]
        head = table.head(nrows)
        noise, costs = pd.DataFrame(noise_rows(head, baselines)), pd.DataFrame(cost_rows(head))
        return TablePreview(noise.merge(costs, on="arm", how="left").to_dict(orient="split"))


class PlotFolderDataset(MatplotlibDataset):
    """A folder of plots (a dict of figures); previewed as one contact sheet of all of them. A plot the
    report already rendered (:class:`~distillation_studies.report.html.RenderedPlot`) is written as those
    PNG bytes, not drawn again."""

    def _save_to_fs(self, full_key_path: str, plot: Any) -> None:
        if not isinstance(plot, RenderedPlot):
            return super()._save_to_fs(full_key_path, plot)
        with self._fs.open(full_key_path, **self._fs_open_args_save) as file:
            file.write(plot.png)

    def preview(self, columns: int = 2) -> ImagePreview:
        folder = get_filepath_str(self._get_load_path(), self._protocol)
        paths = sorted(self._fs.glob(f"{folder}/*.png"))
        return ImagePreview(base64.b64encode(_contact_sheet(self._fs, paths, columns)).decode("ascii"))


def _contact_sheet(fs, paths: list[str], columns: int) -> bytes:
    """The PNGs at ``paths`` on a grid, each titled with its file name, as PNG bytes."""
    rows = max(1, math.ceil(len(paths) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4.5 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, path in zip(axes.flat, paths):
        with fs.open(path, "rb") as file:
            axis.imshow(mpimg.imread(file, format="png"))
        axis.set_title(str(path).rsplit("/", 1)[-1], fontsize=11)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()
