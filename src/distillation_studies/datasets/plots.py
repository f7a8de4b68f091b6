"""The figure dataset, apart from ``files``: it imports matplotlib's pyplot (about 0.5 s), which a process that
only trains and logs models (a Dask worker) never needs."""

from __future__ import annotations

from kedro_datasets import matplotlib as kedro_matplotlib

from distillation_studies.datasets.files import AtomicSave


class MatplotlibDataset(AtomicSave, kedro_matplotlib.MatplotlibDataset):
    """``matplotlib.MatplotlibDataset`` (one figure, or a folder of them), saved atomically."""
