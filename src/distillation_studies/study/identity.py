"""An arm's identity: its run key, namespace, dataset and catalog names are built and parsed here only.

One (arm, seed) student is ``ArmRun("kd", 0)``: run key ``kd/seed_0`` (MLflow nested run and history
keys), logged model ``kd-seed_0``, namespace ``students.kd.seed_0`` (its Kedro pipelines), datasets
``students.kd.seed_0.<kind>`` (``model``, ``last_model``, ``history``, ``metrics``), which the catalog
patterns of :data:`STUDENT_PATTERN` declare. The teacher is ``ArmRun.teacher()``: key ``teacher``,
datasets ``teacher_<kind>``. Arm keys never contain a dot or a slash (grid tokens replace them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from distillation_studies.study.grid import DEFAULT_STUDENT, Arm

TEACHER = "teacher"
STUDENTS = "students"
# The catalog's factory patterns for student datasets, spelled out (``{arm}`` never holds a dot).
STUDENT_PATTERN = STUDENTS + ".{arm}.seed_{seed}.{kind}"
_STUDENT_DATASET = re.compile(rf"^{STUDENTS}\.(?P<arm>[^./]+)\.seed_(?P<seed>\d+)\.(?P<kind>[A-Za-z_]+)$")
_RUN_KEY = re.compile(r"^(?P<arm>[^./]+)/seed_(?P<seed>\d+)$")


@dataclass(frozen=True)
class ArmRun:
    """One trained model of the study: an arm and a seed, or the teacher (``seed`` None)."""

    arm: str
    seed: int | None = None

    @classmethod
    def teacher(cls) -> "ArmRun":
        return cls(TEACHER, None)

    @property
    def is_teacher(self) -> bool:
        return self.arm == TEACHER and self.seed is None

    @property
    def key(self) -> str:
        """Run key: ``kd/seed_0`` or ``teacher`` (MLflow run names, history and detail keys)."""
        return TEACHER if self.is_teacher else f"{self.arm}/seed_{self.seed}"

    @property
    def model_name(self) -> str:
        """Name of its logged MLflow model: ``kd-seed_0`` or ``teacher`` (MLflow refuses a slash in it), what
        the experiment's Models page lists and ``runs:/<run_id>/<model name>`` loads."""
        return TEACHER if self.is_teacher else f"{self.arm}-seed_{self.seed}"

    @property
    def namespace(self) -> str:
        """Kedro namespace of the student's pipelines: ``students.kd.seed_0``."""
        if self.is_teacher:
            raise ValueError("the teacher's pipelines are not namespaced")
        return f"{STUDENTS}.{self.arm}.seed_{self.seed}"

    def dataset(self, kind: str) -> str:
        """Dataset name: ``students.kd.seed_0.metrics`` or ``teacher_metrics``."""
        return f"{TEACHER}_{kind}" if self.is_teacher else f"{self.namespace}.{kind}"

    @classmethod
    def from_key(cls, key: str) -> "ArmRun":
        """The inverse of :attr:`key`; ValueError for anything else."""
        if key == TEACHER:
            return cls.teacher()
        match = _RUN_KEY.match(key)
        if not match:
            raise ValueError(f"not a run key (expected '<arm>/seed_<n>' or 'teacher'): {key!r}")
        return cls(match["arm"], int(match["seed"]))

    @classmethod
    def parse(cls, dataset_name: str) -> tuple["ArmRun", str] | None:
        """(run, kind) of a dataset that belongs to one model, else None:
        ``students.kd.seed_0.metrics`` -> (ArmRun("kd", 0), "metrics"); ``teacher_model`` -> (teacher, "model")."""
        if dataset_name.startswith(f"{TEACHER}_"):
            return cls.teacher(), dataset_name[len(TEACHER) + 1 :]
        match = _STUDENT_DATASET.match(dataset_name)
        if not match:
            return None
        return cls(match["arm"], int(match["seed"])), match["kind"]


def arm_namespace(arm: str) -> str:
    """Kedro namespace of one arm, holding its seeds: ``students.kd`` (kedro-viz's level below ``students``)."""
    return f"{STUDENTS}.{arm}"


def arm_seeds_dataset(arm: str) -> str:
    """The in-memory dataset of one arm's per-seed metrics and histories: ``students.kd.seeds``."""
    return f"{arm_namespace(arm)}.seeds"


def student_runs(arms: tuple[Arm, ...] | list[Arm], seeds: tuple[int, ...] | list[int]) -> list[ArmRun]:
    """Every (arm, seed) student of a study, arm by arm."""
    return [ArmRun(arm.key, seed) for arm in arms for seed in seeds]


def student_model_key(student: str) -> str:
    """The parameter key of a student architecture: ``student.model`` or ``grid.students.<name>``."""
    return "student.model" if student == DEFAULT_STUDENT else f"grid.students.{student}"


def student_model_param(arm: Arm) -> str:
    """The parameter holding an arm's student architecture."""
    return f"params:{student_model_key(arm.student)}"
