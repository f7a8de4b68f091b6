"""Project settings: the study-tracking hooks, a config loader whose ``--params`` change only the keys
they name, and ``runner.yml`` (the Dask runner's settings) as a config file of its own, so that changing
the workers never changes the study's config hash, and a context that keeps kedro-viz's state per
environment; everything else is Kedro's default."""

from distillation_studies.config_loader import StudyConfigLoader
from distillation_studies.guards.preflight import DataFolderHooks
from distillation_studies.guards.run_guard import RunGuardHooks
from distillation_studies.progress import ProgressHooks
from distillation_studies.tracking.hooks import StudyHooks
from distillation_studies.viz_state import StudyContext

# Pluggy calls the last-registered hook first: RunGuardHooks refuses ParallelRunner, takes the environment's lock and pins the
# versions every dataset loads, then DataFolderHooks checks the output folders, before the tracking hook
# opens an MLflow run.
HOOKS = (StudyHooks(), ProgressHooks(), DataFolderHooks(), RunGuardHooks())
CONFIG_LOADER_CLASS = StudyConfigLoader
CONTEXT_CLASS = StudyContext  # kedro-viz's state (.viz/<study>/) per environment: viz_state.py
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {"runner": ["runner*", "runner*/**"]},
}

import os
import warnings

# A logged model is as trusted as the store it comes from: every project session (kedro run, kedro jupyter,
# the notebooks) refuses to unpickle MLflow models unless the user chose otherwise. The project's own
# models (torch.export programs, checkpoints read with weights_only=True) need no unpickling.
os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")

# Kedro's own config loader calls an OmegaConf API that OmegaConf has deprecated; not actionable here.
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning)
# The comparison node reads the namespaced metrics (students.<method>.seed_<n>.metrics) by name, on purpose.
warnings.filterwarnings("ignore", message=r"One or more dataset names contain '\.'", category=UserWarning)
