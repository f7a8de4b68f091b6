"""Project settings: the study-tracking hooks and a config loader whose ``--params`` change only the
keys they name; everything else is Kedro's default."""

from distillation_studies.config_loader import StudyConfigLoader
from distillation_studies.hooks import StudyHooks
from distillation_studies.preflight import DataFolderHooks
from distillation_studies.progress import ProgressHooks

# Pluggy calls the last-registered hook first: DataFolderHooks checks the output folders before the
# tracking hook opens an MLflow run.
HOOKS = (StudyHooks(), ProgressHooks(), DataFolderHooks())
CONFIG_LOADER_CLASS = StudyConfigLoader

import warnings

# Kedro's own config loader calls an OmegaConf API that OmegaConf has deprecated; not actionable here.
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning)
# The comparison node reads the namespaced metrics (students.<method>.seed_<n>.metrics) by name, on purpose.
warnings.filterwarnings("ignore", message=r"One or more dataset names contain '\.'", category=UserWarning)
