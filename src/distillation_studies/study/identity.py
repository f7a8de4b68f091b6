"""Names of an arm's pipeline and datasets: built here, and nowhere else."""

from __future__ import annotations

from distillation_studies.study.grid import DEFAULT_STUDENT, Arm, fraction_token


def student_namespace(arm_key: str, seed: int) -> str:
    """Namespace of one (arm, seed) pair; catalog patterns spell out ``students.{arm}.{seed}``."""
    return f"students.{arm_key}.seed_{seed}"


def model_input_name(fraction: float) -> str:
    """The splits a student trains on: all labels, or a stratified label fraction."""
    return "model_input" if fraction >= 1.0 else f"model_input_{fraction_token(fraction)}"


def student_model_param(arm: Arm) -> str:
    """The parameter holding an arm's student architecture."""
    return "params:student.model" if arm.student == DEFAULT_STUDENT else f"params:grid.students.{arm.student}"
