"""Teacher-assistant knowledge distillation: distil teacher -> assistant, then assistant -> student.

Mirzadeh, Farajtabar, Li, Levine, Matsukawa, Ghasemzadeh, "Improved Knowledge Distillation via
Teacher Assistant", AAAI 2020 (arXiv:1902.03393): when the teacher-student gap is large, first distil
the teacher into an intermediate-size "teacher assistant" (TA), then distil the TA into the student,
each step the KD loss of Hinton et al. 2015:
    L = (1 - alpha) * CE(y, softmax(z)) + alpha * T^2 * KL(softmax(z_target / T) || softmax(z / T))
with z_target the teacher's logits for the TA and the TA's logits for the student (terms "ce", "kd").

Settings: ``assistant`` is a model section like the student's (``{name: cnn, channels: [...], embed:
...}``); its ``in_shape`` and ``num_classes`` come from the student's spec. The TA is trained in
``prepare`` by ``methods.shared.fit`` for ``assistant_epochs`` with Adam at ``assistant_lr``, cosine
schedule stepped per batch, batches of ``assistant_batch_size``, on the same KD loss (same
``temperature`` and ``alpha``) against the teacher's logits on the training set, which the loop hands
to ``prepare`` with the training data (un-augmented inputs, ``{"x", "y"}`` tensors or a Dataset read
by index). It keeps its last epoch's weights: ``prepare`` gets no validation data. This is what the
one training loop did with these settings until the method stopped importing it (same batch order,
steps and schedule, so the same weights on the CPU; pinned by a test). It trains on the device of the
teacher's logits, i.e. the student's, under bf16 autocast on CUDA as the loop's default precision
did. The TA's initialisation and its seed are drawn from the global torch RNG, which the loop seeds
before building the student and the method, so a run repeats given its seed.

Afterwards the TA is frozen (``requires_grad`` False, eval mode) and kept outside the module tree,
so it is neither optimised nor part of ``method.parameters()`` / ``training_parameters``; its size
is reported as ``assistant_parameters``. Its targets are computed on ``batch.inputs`` under no-grad
each step, so they follow any augmentation of the student's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import default_collate

from distillation_studies.common.config import require_positive, require_range
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.methods.base import Batch, DistillationMethod, MethodSetup, ModelOutputs
from distillation_studies.learning.methods.shared import fit, soft_target_kl
from distillation_studies.learning.models import SPEC_KEYS, build_model, make_spec, parse_model_config


@dataclass(frozen=True)
class TAKDConfig:
    assistant: Any = field(default=None, hash=False)  # a model section (a dict)
    assistant_epochs: int = 10
    assistant_lr: float = 1e-3
    assistant_batch_size: int = 64
    temperature: float = 4.0
    alpha: float = 0.9

    def check(self, where: str) -> None:
        if self.assistant is None:
            raise ConfigError(f"{where}.assistant.name: required, a model section such as {{name: cnn, channels: [24, 48]}}")
        if not isinstance(self.assistant, Mapping):
            raise ConfigError(f"{where}.assistant: must be a model section (a mapping), got {type(self.assistant).__name__}")
        object.__setattr__(self, "assistant", dict(self.assistant))  # frozen: a plain dict for the model registry
        for key in SPEC_KEYS[1:]:
            if key in self.assistant:
                raise ConfigError(f"{where}.assistant.{key}: set from the student's spec (the data), not here")
        parse_model_config(self.assistant, f"{where}.assistant")
        require_positive(self, where, "assistant_epochs", "assistant_lr", "assistant_batch_size", "temperature")
        require_range(self, where, "alpha", 0.0, 1.0)


def batch_reader(train_data: Any, device: torch.device) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """indices -> (inputs, labels) on ``device``: ``{"x", "y"}`` tensors are moved there once (a copy
    per batch would wait for the GPU), a Dataset of ``(x, y, ...)`` is read item by item."""
    if isinstance(train_data, Mapping):
        x, y = train_data["x"].to(device), train_data["y"].to(device)
        return lambda indices: (x[indices], y[indices])

    def read(indices: Tensor) -> tuple[Tensor, Tensor]:
        inputs, labels = default_collate([tuple(train_data[i][:2]) for i in indices.tolist()])
        return inputs.to(device), torch.as_tensor(labels).to(device)

    return read


def kd_terms(logits: Tensor, target_logits: Tensor, labels: Tensor, alpha: float, temperature: float) -> dict[str, Tensor]:
    return {
        "ce": (1.0 - alpha) * F.cross_entropy(logits, labels),
        "kd": alpha * soft_target_kl(logits, target_logits.detach(), temperature),
    }


class TeacherAssistantKD(DistillationMethod):
    Config = TAKDConfig
    label_terms = frozenset({"ce"})
    unlabelled = "refuse"
    unlabelled_reason = "its assistant is trained in prepare() on the labels of every training sample"
    needs_teacher_train = True  # prepare() fits to the teacher's training-set outputs

    def __init__(self, config: TAKDConfig, setup: MethodSetup) -> None:
        super().__init__(config, setup)
        if setup.student_spec is None:
            raise ConfigError("takd: needs the student's model spec to size the assistant")
        spec = setup.student_spec
        self.assistant_spec = make_spec(dict(config.assistant), spec["in_shape"], spec["num_classes"], "takd.assistant")
        self._assistant: list[nn.Module] = []  # a list, so the frozen TA stays out of parameters()/state_dict()
        self.assistant_parameters = sum(p.numel() for p in build_model(self.assistant_spec).parameters())
        self.assistant_history: list[dict[str, float]] = []

    @property
    def assistant(self) -> nn.Module:
        if not self._assistant:
            raise RuntimeError("takd: the assistant is trained in prepare(); call it first")
        return self._assistant[0]

    def prepare(self, teacher_train: ModelOutputs | None, train_data: Any) -> None:
        if teacher_train is None:
            raise ConfigError("takd: needs the teacher's outputs on the training set to train the assistant")
        config = self.config
        assistant = build_model(self.assistant_spec)
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        targets = teacher_train.logits.detach()
        device = targets.device
        read = batch_reader(train_data, device)
        assistant.to(device)

        def batch_terms(indices: Tensor) -> dict[str, Tensor]:
            inputs, labels = read(indices)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                return kd_terms(assistant(inputs), targets[indices], labels, config.alpha, config.temperature)

        optimizer = torch.optim.Adam(assistant.parameters(), lr=config.assistant_lr)
        self.assistant_history = fit(
            assistant, batch_terms, len(targets), optimizer, epochs=config.assistant_epochs,
            batch_size=config.assistant_batch_size, seed=seed, label="takd/assistant", cosine=True,
        )
        assistant.to("cpu").zero_grad(set_to_none=True)  # drop the last training step's gradients
        assistant.eval().requires_grad_(False)
        self._assistant = [assistant]

    def forward(self, student: ModelOutputs, teacher: ModelOutputs | None, batch: Batch) -> dict[str, Tensor]:
        assistant = self.assistant
        with torch.no_grad():
            assistant.eval()
            target = assistant.to(batch.inputs.device)(batch.inputs)
        return kd_terms(student.logits, target, batch.labels, self.config.alpha, self.config.temperature)
