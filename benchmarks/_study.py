"""The default study (conf/base) and its data, prepared exactly as the pipeline's own nodes do."""

from __future__ import annotations

from pathlib import Path

import yaml

from distillation_studies.study.schema import StudyConfig, validate_study
from distillation_studies.pipelines.data_processing.nodes import load_images, split_images

CONF = Path(__file__).resolve().parents[1] / "conf" / "base"


def default_study() -> tuple[StudyConfig, dict]:
    """The validated base study and its normalised train/val/test splits."""
    params: dict = {}
    for path in sorted(CONF.glob("parameters_*.yml")):
        params.update(yaml.safe_load(path.read_text()))
    study = validate_study(params)
    model_input, _ = split_images(load_images(study.data), study.data)
    return study, model_input
