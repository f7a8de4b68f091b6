"""The project's catalog dataset types, as ``distillation_studies.datasets.<Type>`` in ``conf/*/catalog.yml``:
files saved atomically and models saved as spec + weights (``files``), figures (``plots``), and the report
datasets kedro-viz previews (``reports``).

The figure and report types are imported on first use (module ``__getattr__``): they bring matplotlib,
pandas' plotting and SciPy (through the report's statistics), about 1.5 s of imports that a process which
only trains and logs models, such as a Dask worker, never needs; the catalog resolves them by name as usual.
"""

from importlib import import_module
from typing import Any

from distillation_studies.datasets.files import (
    AtomicSave,
    CSVDataset,
    JSONDataset,
    ParquetDataset,
    SQLiteStorageDataset,
    TensorDictDataset,
    TextDataset,
    TorchModelDataset,
    corrupt_version_message,
    model_payload,
    name_datasets,
    staging_path,
)

_LAZY = {
    "MatplotlibDataset": "plots",
    "ComparisonTableDataset": "reports",
    "HTMLReportDataset": "reports",
    "MarkdownReportDataset": "reports",
    "PlotFolderDataset": "reports",
    "kedro_viz_preview": "reports",
}

__all__ = [
    "AtomicSave", "CSVDataset", "ComparisonTableDataset", "HTMLReportDataset", "JSONDataset", "MarkdownReportDataset",
    "MatplotlibDataset", "ParquetDataset", "PlotFolderDataset", "SQLiteStorageDataset", "TensorDictDataset", "TextDataset",
    "TorchModelDataset", "corrupt_version_message", "kedro_viz_preview", "model_payload", "name_datasets", "staging_path",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
