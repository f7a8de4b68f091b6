"""kedro-viz's run state per environment: ``.viz/<study>/`` instead of one ``.viz/`` for every study.

A ``kedro run`` leaves kedro-viz two files: ``stats.json`` (dataset statistics, written by its
``DatasetStatsHook``) and ``kedro_pipeline_events.json`` (the workflow panel's last run, written by its
``PipelineRunStatusHook``); ``kedro viz run`` and ``kedro viz build`` read them back whatever environment
they draw. In one shared folder, a ``--env=tiny`` run showed in the default study's view (every default
student "Skipped"). kedro-viz 12.5 has no setting for that folder, only module-level paths, so the
project's context sets them when it is created: ``kedro run --env=X`` and ``kedro viz run --env=X`` both
create one, so the run writes and the view reads ``.viz/X/`` (``.viz/default/`` for base/local).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

from kedro.framework.context import KedroContext

VIZ_FOLDER = ".viz"
RUN_EVENTS_MODULE = "kedro_viz.api.rest.responses.run_events"


def state_folder(study: str) -> str:
    """The folder of one study's kedro-viz state, relative to the project: ``.viz/tiny``."""
    return f"{VIZ_FOLDER}/{study}"


def use_study_state(project_path: Path, study: str) -> None:
    """Point this process's kedro-viz (its run hooks and its server) at ``study``'s state folder."""
    try:
        from kedro_viz import constants
        from kedro_viz.integrations.kedro import hooks_utils, run_hooks
    except ImportError:  # kedro-viz is not installed: nothing to point
        return
    folder = state_folder(study)
    constants.VIZ_METADATA_ARGS["path"] = folder  # stats.json and styles.json: read and written at call time
    events = Path(project_path) / folder / constants.PIPELINE_EVENTS_FILENAME
    constants.PIPELINE_EVENT_FULL_PATH = events  # the workflow panel's API imports it by name...
    if RUN_EVENTS_MODULE in sys.modules:  # ...or has already
        sys.modules[RUN_EVENTS_MODULE].PIPELINE_EVENT_FULL_PATH = events
    run_hooks.write_events = functools.partial(hooks_utils.write_events, events_dir=folder)


class StudyContext(KedroContext):
    """Kedro's context, with kedro-viz's state folder set to this environment's study."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        use_study_state(self.project_path, self.config_loader.study_name())
