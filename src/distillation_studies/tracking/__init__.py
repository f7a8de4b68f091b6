"""MLflow tracking of a study: the study run and one nested run per arm (``runs``), the Kedro hooks that
open and fill them (``hooks``), arms as MLflow models and the registry (``models``), and the splits each
arm trains on as MLflow datasets (``inputs``). Nothing here is imported by a pipeline."""
