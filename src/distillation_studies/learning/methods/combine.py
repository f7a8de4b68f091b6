"""Combine registered methods, each as a weighted part: e.g. CRD + KD, the way papers report them.

Tian et al. ("Contrastive Representation Distillation", ICLR 2020, Table 1 / RepDistiller) and most
later papers report a feature or relation method "+KD": the loss is the sum of both methods' terms,

    L = CE-term of the first part + sum_p w_p * (non-label terms of part p)

Settings: ``parts`` maps a part name (an identifier) to ``{method: <registered name>, weight: <float,
default 1.0>, ...that method's hyperparameters}``; each part is parsed by that method's own config, so
errors name ``methods.<key>.parts.<part>.<hyperparameter>``. Every term a part returns is logged as
``<part>.<term>`` and multiplied by the part's weight, except the label term: **the first part owns
the label loss** - the term named ``ce`` is kept once, unprefixed and unweighted, from the first part
(in the order written) that returns one, and the other parts' ``ce`` terms are dropped. So
``parts: {kd: {method: kd}, crd: {method: crd, ...}}`` gives ``(1 - alpha) CE + alpha T^2 KL + beta L_CRD``,
and putting ``crd`` first gives the plain CE weight of 1 that RepDistiller's ``-r 1`` uses.

``weight`` and a method's own ``weight`` hyperparameter: where a method's config already has a field
named ``weight`` (fitnet, ofd, pkt, cc, vid, reviewkd: each multiplies that method's one non-label
term), ``weight`` in the part is that hyperparameter and the part multiplier stays 1, so a method's
settings mean the same inside ``combine`` as alone (``{method: pkt, weight: 2}`` is 2 * pkt, not
2 * 30000 * pkt).

The parts share one setup (the union of their feature layers), are trained with the student in the
same step, and are sub-modules (``nn.ModuleDict``), so their adapters are optimised and counted;
``prepare`` and ``start_epoch`` are forwarded to every part. Parts cannot be ``combine`` themselves.
``needs_teacher`` is True on the class (the registry's check, before any config is known) and, per
instance, True when any part needs a teacher.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from torch import Tensor, nn

from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, DistillationMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import LABEL_TERM, parse_sub_method

LABEL_TERM = "ce"
PART_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class CombineConfig:
    """``parts`` is written as a mapping; ``check`` replaces it by ``((part, method, weight, config), ...)``."""

    parts: Any = None

    def check(self, where: str) -> None:
        raw = self.parts
        if isinstance(raw, tuple) and all(isinstance(p, tuple) and len(p) == 4 for p in raw) and raw:
            return  # already parsed (e.g. built directly from parsed parts)
        if not isinstance(raw, Mapping) or not raw:
            raise ConfigError(
                f"{where}.parts: required, a non-empty mapping of part name -> "
                "{method: <registered name>, weight: <float>, ...that method's settings}"
            )
        parsed = []
        for part, settings in raw.items():
            if not isinstance(part, str) or not PART_NAME.match(part):
                raise ConfigError(f"{where}.parts.{part}: part names must be identifiers (letters, digits, underscores)")
            name, weight, config = parse_sub_method(settings, f"{where}.parts.{part}", ("combine",), weighted=True)
            parsed.append((part, name, weight, config))
        object.__setattr__(self, "parts", tuple(parsed))  # frozen: the parsed parts replace the raw mapping


class Combine(DistillationMethod):
    Config = CombineConfig

    def __init__(self, config: CombineConfig, setup: MethodSetup) -> None:
        from distillation_studies.learning.methods import method_class

        super().__init__(config, setup)
        self.weights: dict[str, float] = {}
        self.parts = nn.ModuleDict()
        for part, name, weight, part_config in config.parts:
            try:
                self.parts[part] = method_class(name, f"parts.{part}.method")(part_config, setup)
            except ConfigError as error:
                raise ConfigError(f"parts.{part}: {error}") from None
            self.weights[part] = weight
        self.needs_teacher = any(m.needs_teacher for m in self.parts.values())
        self.label_terms = frozenset(
            {LABEL_TERM} | {f"{part}.{term}" for part, m in self.parts.items() for term in m.label_terms if term != LABEL_TERM}
        )
        self.needs_teacher_train = any(m.needs_teacher_train for m in self.parts.values())

    @classmethod
    def layers(cls, config: CombineConfig) -> tuple[list[str], list[str]]:
        from distillation_studies.learning.methods import method_class

        student: list[str] = []
        teacher: list[str] = []
        for _part, name, _weight, part_config in config.parts:
            s, t = method_class(name, "combine.parts").layers(part_config)
            student += [layer for layer in s if layer not in student]
            teacher += [layer for layer in t if layer not in teacher]
        return student, teacher

    @classmethod
    def batch_elements(cls, config: CombineConfig, setup: MethodSetup, batch_size: int) -> int:
        from distillation_studies.learning.methods import method_class

        return sum(method_class(name, "combine.parts").batch_elements(c, setup, batch_size) for _p, name, _w, c in config.parts)

    @classmethod
    def unlabelled_use(cls, config: CombineConfig) -> tuple[str, str]:
        """``refuse`` if a part refuses, ``learn`` if a part learns from unlabelled samples, else ``skip``."""
        from distillation_studies.learning.methods import method_class

        uses = {part: method_class(name, "combine.parts").unlabelled_use(c) for part, name, _w, c in config.parts}
        for part, (use, reason) in uses.items():
            if use == "refuse":
                return "refuse", f"part {part!r}: {reason}"
        return ("learn", "") if any(use == "learn" for use, _ in uses.values()) else ("skip", "")

    def prepare(self, teacher_train: ModelOutputs | None, train_data: Any) -> None:
        for method in self.parts.values():
            method.prepare(teacher_train, train_data)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        super().start_epoch(epoch, epochs)
        for method in self.parts.values():
            method.start_epoch(epoch, epochs)

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        terms: dict[str, Tensor] = {}
        for part, method in self.parts.items():
            for term, value in method(student, teacher, batch).items():
                if term == LABEL_TERM:
                    terms.setdefault(LABEL_TERM, value)  # the first part owns the label loss
                else:
                    terms[f"{part}.{term}"] = self.weights[part] * value
        return terms
