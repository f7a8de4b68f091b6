"""The project's catalog dataset types, as ``distillation_studies.datasets.<Type>`` in ``conf/*/catalog.yml``:
files saved atomically and models saved as spec + weights (``files``), and the report datasets kedro-viz
previews (``reports``)."""

from distillation_studies.datasets.files import (
    AtomicSave,
    CSVDataset,
    JSONDataset,
    MatplotlibDataset,
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
from distillation_studies.datasets.reports import (
    ComparisonTableDataset,
    HTMLReportDataset,
    MarkdownReportDataset,
    PlotFolderDataset,
    kedro_viz_preview,
)

__all__ = [
    "AtomicSave", "CSVDataset", "ComparisonTableDataset", "HTMLReportDataset", "JSONDataset", "MarkdownReportDataset",
    "MatplotlibDataset", "ParquetDataset", "PlotFolderDataset", "SQLiteStorageDataset", "TensorDictDataset", "TextDataset",
    "TorchModelDataset", "corrupt_version_message", "kedro_viz_preview", "model_payload", "name_datasets", "staging_path",
]
