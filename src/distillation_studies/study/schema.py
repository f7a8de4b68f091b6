"""The whole study configuration, validated in full before any training starts.

``validate_study(params)`` reads the Kedro parameters tree (plain dicts), checks every key and
value, builds the teacher and student once to check feature layers and adapter shapes, and returns
a frozen ``StudyConfig``. Every error is a ``ConfigError`` naming the key and what is allowed.
``StudyConfig.section(key)`` is the validated object of one parameter key: what a node receives for
its ``params:<key>`` input, so no node parses config again.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from distillation_studies.common.config import parse_dataclass, require_choice, require_non_negative, require_positive
from distillation_studies.learning.data import (
    DATASETS,
    NOISE_MODELS,
    NORMALISATIONS,
    SplitConfig,
    dataset_shape,
    expected_train_size,
    is_vision,
)
from distillation_studies.common.errors import ConfigError
from distillation_studies.study import limits
from distillation_studies.study.search import SearchConfig, parse_search
from distillation_studies.common.records import DataCell
from distillation_studies.study.grid import Arm, expand_arms, sweep_settings
from distillation_studies.learning.methods import build_method, method_class, parse_method_config
from distillation_studies.learning.imported import TeacherInputs
from distillation_studies.learning.models import build_model, make_spec
from distillation_studies.analysis.recommend import Constraints
from distillation_studies.analysis.stats import Statistics
from distillation_studies.common.names import DEFAULT_STUDENT
from distillation_studies.learning.training import DEVICES, TrainConfig
from distillation_studies.learning.vision_data import VisionDataConfig, check_image_channels

TOP_LEVEL_KEYS = [
    "data", "teacher", "student", "methods", "seeds", "grid", "evaluation", "comparison", "recommendation", "tracking",
    "search",
]
GRID_KEYS = ["students", *DataCell.GRID_KEYS.values()]
TEACHER_LABELS = ["clean", "noisy"]
METHOD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, how it is split and normalised.

    Embedded datasets (``mnist5k``, ``digits``) are split three ways by ``val_fraction`` / ``test_fraction``
    and always normalised with training-split statistics. Torchvision datasets (``mnist``,
    ``fashion_mnist``, ``cifar10``, ``cifar100``, ``image_folder``) are read from ``root``; their official
    test split is the test split, validation is a stratified ``val_fraction`` of the official training
    split, and ``test_fraction`` is ignored. ``image_size`` and ``image_channels`` (1, 3, or null: as
    the first training image, so grayscale stays one channel) are for ``image_folder`` only.
    """

    dataset: str = "mnist5k"
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    root: str = "data/01_raw"
    download: bool = False
    image_size: int | None = None
    image_channels: int | None = None
    normalisation: str = "standard"
    in_memory: bool = True
    label_noise_model: str = "symmetric"  # grid.label_noise: symmetric (uniform other class) or pair (c -> c+1)
    teacher_labels: str = "clean"  # grid.label_noise: the teacher trains on clean labels, or on the noisy ones

    def check(self, where: str) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(f"{where}.dataset: unknown dataset {self.dataset!r}; allowed datasets: {DATASETS}")
        require_choice(self, where, "normalisation", NORMALISATIONS)
        limits.check_seed_value(self.split_seed, f"{where}.split_seed")
        require_choice(self, where, "label_noise_model", NOISE_MODELS)
        require_choice(self, where, "teacher_labels", TEACHER_LABELS)
        if not is_vision(self.dataset):
            if not self.in_memory:
                raise ConfigError(
                    f"{where}.in_memory: false only applies to the torchvision datasets; {self.dataset} is small "
                    "and always held in memory"
                )
            self.split().check(where)
            if self.download:
                raise ConfigError(
                    f"{where}.download: only applies to the torchvision datasets; {self.dataset} ships with the project"
                )
            for key in ("image_size", "image_channels"):
                if getattr(self, key) is not None:
                    raise ConfigError(f"{where}.{key}: only applies to dataset: image_folder, got {getattr(self, key)!r}")
            return
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"{where}.val_fraction: must be in (0, 1), got {self.val_fraction}")
        size = self.image_size
        if self.dataset == "image_folder":
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                raise ConfigError(
                    f"{where}.image_size: required for dataset: image_folder, a positive integer "
                    f"(images are resized to image_size x image_size), got {size!r}"
                )
            if size > limits.MAX_IMAGE_SIZE:
                raise ConfigError(
                    f"{where}.image_size: {size}; at most {limits.MAX_IMAGE_SIZE} pixels a side (docs/reliability.md)"
                )
        elif size is not None or self.image_channels is not None:
            key = "image_size" if size is not None else "image_channels"
            raise ConfigError(
                f"{where}.{key}: only applies to dataset: image_folder; remove it for {self.dataset} "
                f"(its images keep their published size and channels), got {getattr(self, key)!r}"
            )
        VisionDataConfig(self.dataset, self.root, self.download, self.image_size).check(where)
        check_image_channels(self.image_channels, f"{where}.image_channels")

    def split(self) -> SplitConfig:
        return SplitConfig(self.val_fraction, self.test_fraction, self.split_seed)

    def vision(self) -> VisionDataConfig:
        """The torchvision reader's config (torchvision datasets only)."""
        return VisionDataConfig(self.dataset, self.root, self.download, self.image_size, self.image_channels)

    def shape(self, where: str = "data") -> tuple[tuple[int, ...], int]:
        """(per-sample shape, classes) without loading images; image folders count ``root/train/<class>``."""
        return dataset_shape(self.dataset, self.root, self.image_size, where, self.image_channels)

    def train_size(self) -> int:
        """Training-split size used to size methods at validation (CRD's memory bank).

        Image folders are not listed file by file at validation time, so a nominal size stands in;
        training builds every method again with the real size.
        """
        size = expected_train_size(self.dataset, self.val_fraction, self.test_fraction)
        return size if size is not None else max(2, self.shape()[1])


@dataclass(frozen=True)
class EvaluationConfig:
    ece_bins: int = 15
    latency_repeats: int = 50
    throughput_batch: int = 256
    device: str = "auto"  # where test predictions run; latency and throughput are always measured on the CPU
    workers: int = 0  # DataLoader workers for a test split read from disk (data.in_memory: false)

    def check(self, where: str) -> None:
        require_positive(self, where, "ece_bins", "latency_repeats", "throughput_batch")
        require_choice(self, where, "device", DEVICES)
        require_non_negative(self, where, "workers")


CORRECTIONS = ["holm", "bh", "none"]


@dataclass(frozen=True)
class ComparisonConfig(Statistics):
    """``comparison:``: the analysis's :class:`Statistics` (its fields and defaults, stated once there), checked."""

    smallest_difference: float = 0.005  # a study's default: half a point of accuracy (the analysis's is 0)

    def check(self, where: str) -> None:
        for key in ("confidence", "significance"):
            if not 0.0 < getattr(self, key) < 1.0:
                raise ConfigError(f"{where}.{key}: must be in (0, 1), got {getattr(self, key)}")
        value = self.smallest_difference
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < float("inf"):
            raise ConfigError(f"{where}.smallest_difference: expected a finite number >= 0 in the ranked metric's units "
                              f"(0.005 = half a point of accuracy; 0 = every difference matters), got {value!r}")
        if not self.baselines:
            raise ConfigError(f"{where}.baselines: at least one baseline method is required")
        require_choice(self, where, "correction", CORRECTIONS)

    def statistics(self) -> Statistics:
        """The section as the analysis reads it."""
        return Statistics(tuple(self.baselines), self.confidence, self.significance, self.correction, float(self.smallest_difference))


@dataclass(frozen=True)
class TrackingConfig:
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "distillation-studies"
    enabled: bool = True
    register: str | None = None  # registered model name: candidates become versions, the pick gets @recommended
    system_metrics: bool | None = None  # CPU/GPU/memory use per arm run; null: on where a CUDA GPU is visible
    system_metrics_interval_s: float = 10.0  # seconds between samples

    def check(self, where: str) -> None:
        require_positive(self, where, "system_metrics_interval_s")
        if self.register is None:
            return
        if not isinstance(self.register, str) or not self.register.strip():
            raise ConfigError(f"{where}.register: expected a registered model name (a non-empty string), got {self.register!r}")
        if any(c in self.register for c in "/:") or self.register.strip() != self.register:
            raise ConfigError(
                f"{where}.register: {self.register!r} is not a valid MLflow registered model name "
                "(no '/', ':' or surrounding spaces)"
            )


@dataclass(frozen=True)
class MethodEntry:
    """One study arm: a registered method (``method``) with its typed hyperparameters."""

    key: str
    method: str
    config: Any
    raw: dict[str, Any]
    settings: tuple[dict[str, Any], ...] = ({},)
    configs: tuple[Any, ...] = ()  # the typed config of each setting, parsed once by parse_method_entry
    search: Mapping[str, Any] | None = None  # the method's `search:` as written; study.search parses it

    def config_for(self, setting: Mapping[str, Any]) -> Any:
        """The typed config with one of ``settings`` applied."""
        for known, config in zip(self.settings, self.configs):
            if known == dict(setting):
                return config
        raise ConfigError(f"methods.{self.key}: {dict(setting)} is not one of its settings {list(self.settings)}")


@dataclass(frozen=True)
class ModelSection:
    """A validated ``teacher:`` or ``student:`` section: the model spec sized to the data, how it trains,
    its seed, and (teacher only) the checkpoint its weights are imported from."""

    spec: dict[str, Any]
    training: TrainConfig
    seed: int = 0
    checkpoint: str | None = None
    checkpoint_inputs: TeacherInputs | None = None  # teacher.checkpoint.inputs: what it was trained on
    min_val_accuracy: float = 0.0  # teacher.checkpoint.min_val_accuracy: below it the report flags the teacher


@dataclass(frozen=True)
class CheckpointConfig:
    """``teacher.checkpoint`` as a mapping: the file, the inputs its training script fed the teacher
    (:class:`~distillation_studies.learning.imported.TeacherInputs`; none: the study's own inputs), and
    the validation accuracy below which the report flags it. A plain path is ``{path: ...}``."""

    path: str = ""
    inputs: Mapping[str, Any] | None = None
    min_val_accuracy: float = 0.0

    def check(self, where: str) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ConfigError(f"{where}.path: the teacher's weights file, got {self.path!r}")
        if not 0.0 <= self.min_val_accuracy <= 1.0:
            raise ConfigError(f"{where}.min_val_accuracy: an accuracy in [0, 1], got {self.min_val_accuracy!r}")


@dataclass(frozen=True)
class GridConfig:
    """The validated ``grid:`` section. ``students`` holds the swept architectures' sized specs, empty
    when the study trains ``student.model`` alone."""

    students: dict[str, dict[str, Any]]
    cells: tuple[DataCell, ...] = (DataCell(),)  # the data cells, in grid order


@dataclass(frozen=True)
class StudyConfig:
    data: DataConfig
    teacher: ModelSection
    student: ModelSection
    methods: tuple[MethodEntry, ...]
    seeds: tuple[int, ...]
    grid: GridConfig
    arms: tuple[Arm, ...]
    evaluation: EvaluationConfig
    comparison: ComparisonConfig
    constraints: Constraints
    tracking: TrackingConfig
    search: SearchConfig | None = None  # the budgeted search; None: a study without search: trains its grid
    params: dict[str, Any] = field(default_factory=dict, compare=False)  # the parameters as validated

    def section(self, key: str) -> Any:
        """The validated value of parameter ``key`` (``data``, ``student.training``, ``methods.kd``,
        ``grid.students.<name>`` ...): what a node's ``params:<key>`` input stands for."""
        sections = {
            "data": self.data,
            "teacher": self.teacher,
            "student": self.student,
            "student.model": self.student.spec,
            "student.training": self.student.training,
            "methods": self.methods,
            **{f"methods.{entry.key}": entry for entry in self.methods},
            "seeds": self.seeds,
            "grid": self.grid,
            **{f"grid.students.{name}": spec for name, spec in self.grid.students.items()},
            "evaluation": self.evaluation,
            "comparison": self.comparison,
            "recommendation": self.constraints,
            "tracking": self.tracking,
            "search": self.search,
        }
        if key not in sections:
            raise ConfigError(f"{key}: no validated section of that name; known: {sorted(sections)}")
        return sections[key]

    def raw(self, key: str) -> Any:
        """Parameter ``key`` as written (None when absent), e.g. ``raw("methods.kd")``."""
        value: Any = self.params
        for part in key.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        return value


def _section(params: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = params.get(key)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: missing or not a mapping (check conf/base/parameters_*.yml)")
    return value


MODEL_SECTION_KEYS = ["model", "training", "seed", "checkpoint"]


def parse_checkpoint(raw: Any, role: str) -> CheckpointConfig | None:
    """``teacher.checkpoint``: null, a file path, or ``{path, inputs, min_val_accuracy}``."""
    if raw is None:
        return None
    if role != "teacher" or not isinstance(raw, (str, Mapping)) or not raw:
        raise ConfigError(f"{role}.checkpoint: only the teacher can be imported, from a file path or {{path, inputs, min_val_accuracy}} (got {raw!r})")
    config = parse_dataclass(CheckpointConfig, {"path": raw} if isinstance(raw, str) else raw, f"{role}.checkpoint")
    if config.inputs is not None:
        parse_dataclass(TeacherInputs, config.inputs, f"{role}.checkpoint.inputs")
    return config


def parse_model_section(section: Mapping[str, Any], role: str, data_summary: Mapping[str, Any]) -> ModelSection:
    """A teacher/student section: model spec (sized to the data), training config, seed and checkpoint."""
    if not isinstance(section, Mapping):
        raise ConfigError(f"{role}: missing or not a mapping (check conf/base/parameters_*.yml)")
    unknown = sorted(set(section) - set(MODEL_SECTION_KEYS))
    if unknown:
        raise ConfigError(f"{role}.{unknown[0]}: unknown key; allowed keys: {MODEL_SECTION_KEYS}")
    in_shape, classes = tuple(data_summary["input_shape"]), int(data_summary["num_classes"])
    checkpoint = parse_checkpoint(section.get("checkpoint"), role)
    inputs = None
    if checkpoint is not None and checkpoint.inputs is not None:
        inputs = parse_dataclass(TeacherInputs, checkpoint.inputs, f"{role}.checkpoint.inputs")
        in_shape = inputs.teacher_shape(in_shape)  # the teacher is built for the inputs it was trained on
    spec = make_spec(section.get("model") or {}, in_shape, classes, where=f"{role}.model")
    training = parse_dataclass(TrainConfig, section.get("training"), f"{role}.training")
    seed = limits.check_seed_value(section.get("seed", 0), f"{role}.seed")
    if checkpoint is None:
        return ModelSection(spec, training, seed)
    return ModelSection(spec, training, seed, checkpoint.path, inputs, checkpoint.min_val_accuracy)


def parse_method_entry(key: str, raw: Mapping[str, Any] | None) -> MethodEntry:
    where = f"methods.{key}"
    if not METHOD_NAME.match(str(key)):
        raise ConfigError(f"{where}: method keys must be identifiers (letters, digits, underscores)")
    if raw is not None and not isinstance(raw, Mapping):
        raise ConfigError(
            f"{where}: must be a mapping of the method's settings (e.g. {{}} for its defaults), got {raw!r}"
        )
    raw = dict(raw or {})
    name = raw.pop("method", key)
    sweep = raw.pop("sweep", None)
    search = raw.pop("search", None)
    method_class(name, f"{where}.method" if name != key else where)
    if search is not None and sweep is not None:
        raise ConfigError(f"{where}.search: a method is either swept (sweep:) or searched (search:), not both")
    settings = tuple(sweep_settings(sweep, f"{where}.sweep"))
    # every swept value is checked as the method's own config
    configs = tuple(parse_method_config(name, {**raw, **setting}, where) for setting in settings)
    return MethodEntry(key, name, parse_method_config(name, raw, where), raw, settings, configs, search)


def _seeds(raw: Any) -> tuple[int, ...]:
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ConfigError(f"seeds: must be a non-empty list of integers, got {raw!r}")
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= limits.MAX_SEED_VALUE for s in raw):
        bad = next(s for s in raw if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= limits.MAX_SEED_VALUE)
        raise ConfigError(f"seeds: every seed must be an integer in [0, {limits.MAX_SEED_VALUE}], got {bad!r}")
    if len(set(raw)) != len(raw):
        raise ConfigError(f"seeds: seeds must be distinct, got {list(raw)}")
    return tuple(raw)


def _grid_students(students: Mapping[str, Any] | None, data_summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Student architectures swept for capacity (``grid.students``), by name; empty when none are."""
    if not students:
        return {}
    if not isinstance(students, Mapping):
        raise ConfigError("grid.students: must map student names to model sections")
    in_shape, classes = tuple(data_summary["input_shape"]), int(data_summary["num_classes"])
    specs = {}
    for name, model in students.items():
        if not METHOD_NAME.match(str(name)):
            raise ConfigError(f"grid.students.{name}: names must be identifiers (letters, digits, underscores)")
        specs[name] = make_spec(model or {}, in_shape, classes, where=f"grid.students.{name}")
    return specs


def _check_sizes(
    data: DataConfig,
    teacher: ModelSection,
    student_training: TrainConfig,
    student_specs: dict[str, dict[str, Any]],
    evaluation: EvaluationConfig,
) -> None:
    """Every model, batch and epoch count against the data's size and the documented limits,
    before any model is built for real (a width of 10^9 must not reach the allocator)."""
    train_size = expected_train_size(data.dataset, data.val_fraction, data.test_fraction)
    teacher_spec, teacher_training = teacher.spec, teacher.training
    teacher_size = limits.check_model_size(teacher_spec, "teacher.model")
    limits.check_host_memory(teacher_size[0], "teacher.model")
    limits.check_training(teacher_training, "teacher.training", train_size, teacher_size)
    footprints = {"teacher": teacher_size}
    for name, spec in student_specs.items():
        where = "student.model" if name == DEFAULT_STUDENT else f"grid.students.{name}"
        footprints[name] = limits.check_model_size(spec, where)
        limits.check_host_memory(footprints[name][0], where, teacher_size[0])
        limits.check_training(student_training, "student.training", train_size, footprints[name], teacher_size)
    limits.check_evaluation(evaluation, footprints)


def check_data_factors(data: DataConfig, cells: tuple[DataCell, ...]) -> None:
    """Label noise relabels in-memory splits, and one teacher per study trains on one set of labels."""
    noise = list(dict.fromkeys(cell.label_noise for cell in cells))
    noisy_rates = [rate for rate in noise if rate > 0.0]
    if noisy_rates and not data.in_memory:
        raise ConfigError("grid.label_noise: needs data.in_memory: true (streamed splits read their labels from disk)")
    if data.teacher_labels == "noisy" and len(noisy_rates) != 1:
        raise ConfigError(
            "data.teacher_labels: noisy trains the study's one teacher on one noisy label set, so grid.label_noise "
            f"must hold exactly one rate above 0 (got {noise}); use teacher_labels: clean to sweep several"
        )


def teacher_label_noise(study: StudyConfig) -> float:
    """The noise rate of the labels the teacher trains on (0 unless ``data.teacher_labels: noisy``)."""
    return max(arm.cell.label_noise for arm in study.arms) if study.data.teacher_labels == "noisy" else 0.0


def check_transfer_methods(arms: list[Arm], methods: tuple[MethodEntry, ...]) -> None:
    """A transfer-set cell refuses methods that need a label on every sample (e.g. DKD), naming them."""
    entries = {e.key: e for e in methods}
    for arm in arms:
        if not arm.cell.transfer_set:
            continue
        entry = entries[arm.method_key]
        use, reason = method_class(entry.method, f"methods.{entry.key}").unlabelled_use(entry.config_for(arm.setting))
        if use == "refuse":
            raise ConfigError(
                f"grid.transfer_set: method {entry.key!r} (methods.{entry.key}) cannot train on unlabelled samples: "
                f"{reason}; drop it from the study or set grid.transfer_set: [false]"
            )


def validate_study(params: Mapping[str, Any]) -> StudyConfig:
    """Check the whole study, including feature layers against the real models, and freeze it."""
    if not isinstance(params, Mapping):
        raise ConfigError(f"parameters: must be a mapping of sections, got {type(params).__name__}")
    unknown = sorted(set(params) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown top-level parameter; allowed keys: {TOP_LEVEL_KEYS}")
    data = parse_dataclass(DataConfig, _section(params, "data"), "data")
    in_shape, classes = data.shape()
    data_summary = {"input_shape": in_shape, "num_classes": classes}
    teacher = parse_model_section(params.get("teacher"), "teacher", data_summary)
    student = parse_model_section(params.get("student"), "student", data_summary)
    methods_raw = _section(params, "methods")
    if not methods_raw:
        raise ConfigError("methods: at least one method is required")
    methods = tuple(parse_method_entry(key, raw) for key, raw in methods_raw.items())
    seeds = _seeds(params.get("seeds"))
    comparison = parse_dataclass(ComparisonConfig, params.get("comparison"), "comparison")
    for baseline in comparison.baselines:
        if baseline not in methods_raw:
            raise ConfigError(
                f"comparison.baselines: {baseline!r} is not one of the study's methods {list(methods_raw)}"
            )
    constraints = parse_dataclass(Constraints, params.get("recommendation"), "recommendation")
    grid = _grid(params.get("grid"), data, data_summary)
    student_specs = grid.students or {DEFAULT_STUDENT: student.spec}
    arms = expand_arms(
        {e.key: list(e.settings) for e in methods}, list(student_specs), grid.cells
    )
    check_transfer_methods(arms, methods)
    limits.check_seed_count(seeds, len(arms))
    evaluation = parse_dataclass(EvaluationConfig, params.get("evaluation"), "evaluation")
    _check_sizes(data, teacher, student.training, student_specs, evaluation)
    _check_methods(data, teacher.spec, student_specs, student.training, methods, arms)
    search = parse_search(params.get("search"), methods, student.training.epochs)
    if search is not None:
        check_search_study(search, methods, grid, student.training)
    return StudyConfig(
        data=data,
        teacher=teacher,
        student=student,
        methods=methods,
        seeds=seeds,
        grid=grid,
        arms=tuple(arms),
        evaluation=evaluation,
        comparison=comparison,
        constraints=constraints,
        tracking=parse_dataclass(TrackingConfig, params.get("tracking"), "tracking"),
        search=search,
        params=copy.deepcopy(dict(params)),
    )


def _grid(raw: Any, data: DataConfig, data_summary: Mapping[str, Any]) -> GridConfig:
    grid = raw or {}
    if not isinstance(grid, Mapping):
        raise ConfigError(f"grid: must be a mapping with keys {GRID_KEYS}, got {grid!r}")
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(f"grid.{unknown[0]}: unknown key; allowed keys: {GRID_KEYS}")
    students = _grid_students(grid.get("students"), data_summary)
    cells = DataCell.grid_cells(grid)
    check_data_factors(data, cells)
    return GridConfig(students, cells)


def _check_methods(
    data: DataConfig,
    teacher_spec: dict[str, Any],
    student_specs: dict[str, dict[str, Any]],
    student_training: TrainConfig,
    methods: tuple[MethodEntry, ...],
    arms: list[Arm],
) -> None:
    """Build every arm's method on the real teacher and student: feature layers and adapter shapes."""
    teacher = build_model(teacher_spec)
    num_train = data.train_size()
    known_size = expected_train_size(data.dataset, data.val_fraction, data.test_fraction)
    batch = student_training.batch_size if known_size is None else min(student_training.batch_size, known_size)
    entries = {e.key: e for e in methods}
    for arm in arms:
        entry, student = entries[arm.method_key], build_model(student_specs[arm.student])
        build_method(
            entry.method, entry.config_for(arm.setting), student, teacher, num_train, f"methods.{entry.key}", batch
        )


def check_search_study(
    search: SearchConfig, methods: tuple[MethodEntry, ...], grid: GridConfig, training: TrainConfig
) -> None:
    """What a search study does not support yet, and every rung's length as the student's training accepts it."""
    if grid.students or len(grid.cells) > 1:
        raise ConfigError(
            "grid: a search study tunes one student on one data cell for now; keep one value per grid key "
            "(no grid.students, one label fraction, transfer set and noise rate)"
        )
    swept = next((entry for entry in methods if len(entry.settings) > 1), None)
    if swept is not None:
        raise ConfigError(
            f"methods.{swept.key}.sweep: a search study tunes methods with search:, not sweep: (a sweep's values "
            "would not share the search's budget); write them as search: {name: {choices: [...]}}"
        )
    for epochs in search.rungs():
        try:
            dataclasses.replace(training, epochs=epochs).check("student.training")
        except ConfigError as error:
            raise ConfigError(f"search.min_epochs: a rung of {epochs} epochs is refused by student.training: {error}") from None
