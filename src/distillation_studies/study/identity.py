"""Names of an arm's pipeline and datasets: built here, and nowhere else."""

from __future__ import annotations

from distillation_studies.study.grid import DEFAULT_STUDENT, TRANSFER_TOKEN, Arm, fraction_token, noise_token


def student_namespace(arm_key: str, seed: int) -> str:
    """Namespace of one (arm, seed) pair; catalog patterns spell out ``students.{arm}.{seed}``."""
    return f"students.{arm_key}.seed_{seed}"


def model_input_name(fraction: float, transfer_set: bool = False, label_noise: float = 0.0) -> str:
    """The splits a student trains on: all labels or a stratified label fraction (with the unlabelled
    rest kept as a transfer set), at a label-noise rate: ``model_input[_noise_20][_labels_10[_transfer]]``."""
    parts = ["model_input"]
    if label_noise > 0.0:
        parts.append(noise_token(label_noise))
    if fraction < 1.0:
        parts.append(fraction_token(fraction))
        if transfer_set:
            parts.append(TRANSFER_TOKEN)
    return "_".join(parts)


def student_model_param(arm: Arm) -> str:
    """The parameter holding an arm's student architecture."""
    return "params:student.model" if arm.student == DEFAULT_STUDENT else f"params:grid.students.{arm.student}"
