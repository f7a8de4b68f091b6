"""Method registry: adding a method is one file plus one line here."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping

from torch import nn

from distillation_studies.common.config import parse_dataclass
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, DistillationMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.ce import CrossEntropy
from distillation_studies.learning.methods.fitnet import FitNet
from distillation_studies.learning.methods.kd import KnowledgeDistillation
from distillation_studies.learning.methods.rkd import RelationalKD
from distillation_studies.learning.methods.at import AttentionTransfer
from distillation_studies.learning.methods.fsp import FlowOfSolutionProcedure
from distillation_studies.learning.methods.nst import NeuronSelectivityTransfer
from distillation_studies.learning.methods.ofd import OverhaulFeatureDistillation
from distillation_studies.learning.methods.ctkd import CurriculumTemperatureKD
from distillation_studies.learning.methods.dist import DIST
from distillation_studies.learning.methods.dkd import DecoupledKD
from distillation_studies.learning.methods.pkt import ProbabilisticKnowledgeTransfer
from distillation_studies.learning.methods.sp import SimilarityPreserving
from distillation_studies.learning.methods.cc import CorrelationCongruence
from distillation_studies.learning.methods.crd import ContrastiveRepresentationDistillation
from distillation_studies.learning.methods.ft import FactorTransfer
from distillation_studies.learning.methods.vid import VariationalInformationDistillation
from distillation_studies.learning.methods.reviewkd import ReviewKD
from distillation_studies.learning.methods.combine import Combine
from distillation_studies.learning.methods.two_stage import TwoStage
from distillation_studies.learning.methods.dml import DeepMutualLearning
from distillation_studies.learning.methods.takd import TeacherAssistantKD
from distillation_studies.learning.methods.skd import StreamlinedKD
from distillation_studies.learning.methods.rld import RefinedLogitDistillation
from distillation_studies.learning.methods.mlkd import MultiLevelLogitDistillation
from distillation_studies.learning.methods.dist_plus import DISTPlus
from distillation_studies.learning.methods.srd import SimpleRecipeDistillation
from distillation_studies.learning.methods.ickd import InterChannelCorrelationKD
from distillation_studies.learning.methods.wttm import WeightedTransformedTeacherMatching
from distillation_studies.learning.methods.ab import ActivationBoundaries
from distillation_studies.learning.methods.kdsvd import KDSVD
from distillation_studies.learning.models import feature_shapes

METHODS: dict[str, type[DistillationMethod]] = {
    "ce": CrossEntropy,
    "kd": KnowledgeDistillation,
    "fitnet": FitNet,
    "rkd": RelationalKD,
    "at": AttentionTransfer,
    "nst": NeuronSelectivityTransfer,
    "fsp": FlowOfSolutionProcedure,
    "ofd": OverhaulFeatureDistillation,
    "dkd": DecoupledKD,
    "dist": DIST,
    "ctkd": CurriculumTemperatureKD,
    "pkt": ProbabilisticKnowledgeTransfer,
    "sp": SimilarityPreserving,
    "cc": CorrelationCongruence,
    "crd": ContrastiveRepresentationDistillation,
    "ft": FactorTransfer,
    "vid": VariationalInformationDistillation,
    "reviewkd": ReviewKD,
    "combine": Combine,
    "two_stage": TwoStage,
    "dml": DeepMutualLearning,
    "takd": TeacherAssistantKD,
    "skd": StreamlinedKD,
    "rld": RefinedLogitDistillation,
    "mlkd": MultiLevelLogitDistillation,
    "dist_plus": DISTPlus,
    "srd": SimpleRecipeDistillation,
    "ickd": InterChannelCorrelationKD,
    "wttm": WeightedTransformedTeacherMatching,
    "ab": ActivationBoundaries,
    "kdsvd": KDSVD,
}

__all__ = ["METHODS", "DistillationMethod", "MethodSetup", "ModelOutputs", "build_method", "parse_method_config"]


def method_class(name: str, where: str) -> type[DistillationMethod]:
    if name not in METHODS:
        raise ConfigError(f"{where}: unknown method {name!r}; allowed methods: {sorted(METHODS)}")
    return METHODS[name]


def parse_method_config(name: str, raw: Mapping[str, Any] | None, where: str) -> Any:
    """The method's frozen config from its settings; unknown keys and bad values name ``where.key``."""
    return parse_dataclass(method_class(name, where).Config, raw, where)


def build_method(
    name: str,
    config: Any,
    student: nn.Module,
    teacher: nn.Module | None,
    num_train: int,
    where: str = "method",
    batch_size: int | None = None,
) -> DistillationMethod:
    """Instantiate a method sized to the models' real feature shapes (layers are checked here).

    With ``batch_size``, the method's own per-batch memory is checked first (``check_batch_memory``).
    """
    cls = method_class(name, where)
    student_layers, teacher_layers = cls.layers(config)
    if cls.needs_teacher and teacher is None:
        raise ConfigError(f"{where}: method {name!r} needs a teacher model")
    student_shapes = _shapes(student, student_layers, config, where, "student")
    teacher_shapes = _shapes(teacher, teacher_layers, config, where, "teacher") if teacher is not None else {}
    setup = MethodSetup(student_shapes, teacher_shapes, student.spec["num_classes"], num_train, student_spec=dict(student.spec))
    if batch_size is not None:
        check_batch_memory(cls.batch_elements(config, setup, batch_size), where, batch_size)
    try:
        return cls(config, setup)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


# Largest per-batch tensors a method may build, in fp32 GiB (documented in docs/reliability.md).
MAX_METHOD_BATCH_GB = 64.0


def check_batch_memory(elements: int, where: str, batch_size: int) -> None:
    if elements * 4 > MAX_METHOD_BATCH_GB * 2**30:
        raise ConfigError(
            f"{where}: at student batch {batch_size} this method's own tensors need about {elements * 4 / 2**30:.3g} GiB; "
            f"at most {MAX_METHOD_BATCH_GB:g} GiB is allowed (docs/reliability.md): use a smaller "
            "student.training.batch_size (or, for crd, fewer negatives or a smaller feat_dim)"
        )


def _shapes(model: nn.Module, layers: list[str], config: Any, where: str, role: str) -> dict[str, tuple[int, ...]]:
    """Feature shapes; a missing layer is reported under the config key that names it."""
    known = {name for name, _ in model.named_modules() if name}
    for path in layers:
        if path not in known:
            key = next((f.name for f in fields(config) if _names(getattr(config, f.name), path)), "layers")
            available = [name for name, _ in model.named_modules() if name]
            raise ConfigError(f"{where}.{key}: layer {path!r} does not exist in the {role}; available layers: {available}")
    return feature_shapes(model, layers)


def _names(value: Any, path: str) -> bool:
    return value == path or (isinstance(value, (list, tuple)) and path in value)
