"""Helpers several methods share, in one place so no method imports another method's file.

- Layer lists and shapes: ``check_layer_lists`` (the ``student_layers``/``teacher_layers`` keys of
  AT, NST, FSP, OFD, VID, ReviewKD), ``conv_pairs`` (per-pair conv shapes), ``as_map``/``map_shape``
  (flat features as 1x1 maps), ``make_adapter`` (a learned student -> teacher shape map) and
  ``ConvRegressor`` (RepDistiller's ``ConvReg``: FitNet's published regressor, AB's connector).
- Logits: ``soft_target_kl`` (Hinton et al.'s T^2-scaled KL, used by KD, CTKD, TAKD),
  ``standardize_logits`` and ``distillation_logits`` (Sun et al. 2024: the ``logit_standardization``
  switch of every logit method: KD, DKD, DIST, CTKD, WTTM).
- Labels: ``label_cross_entropy`` (the ``label_smoothing`` setting of every method with a
  cross-entropy term, one meaning everywhere; each config checks it with ``require_range``).
- Stages: ``check_stage_epochs`` and ``staged_terms`` (RepDistiller's "init" stage of a feature loss
  alone, then CE alone, inside the one loop: FSP's ``stage1_epochs``, AB's ``init_epochs``).
- Composites: ``parse_sub_method`` and ``LABEL_TERM`` (``combine``, ``two_stage``).
- ``LossTotals`` and ``total_loss``: an epoch's summed terms and its history row, kept the same way by
  the one loop and by ``fit``.
- ``fit``: a method's own network fitted for N epochs in ``prepare`` (FT's paraphraser, TAKD's
  assistant). Methods sit below the one training loop (``learning.training`` imports
  ``methods.base``), so a method that must fit a network before the student trains does it here, not
  through the loop. The batch order is the loop's for the same seed and size: one ``randperm`` per
  epoch from a CPU generator seeded with ``seed``, cut into batches of ``batch_size`` (the last one
  shorter). The caller reads its own data from the batch's sample indices, so tensors and Datasets
  are both fine.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distillation_studies.common.config import coerce_value
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.divergence import check_finite
from distillation_studies.learning.methods.base import MethodSetup

log = logging.getLogger(__name__)

LABEL_TERM = "ce"  # the label term's name: a composite keeps it once, unweighted


def check_layer_lists(config: Any, where: str, minimum: int = 1) -> None:
    """``student_layers`` and ``teacher_layers``: lists of >= ``minimum`` module paths, paired one-to-one.

    One check for every method that pairs layer lists, so a bad list reads the same whichever method
    it is given to; ``minimum`` is 2 where a method reads pairs of consecutive layers (FSP).
    """
    for key in ("student_layers", "teacher_layers"):
        value = getattr(config, key)
        if not isinstance(value, tuple) or len(value) < minimum:
            raise ConfigError(
                f"{where}.{key}: required, a list of at least {minimum} module path(s) "
                f"(e.g. [features.0, features.1]), got {value!r}"
            )
        if not all(isinstance(path, str) and path for path in value):
            raise ConfigError(f"{where}.{key}: every entry must be a module path string, got {list(value)}")
    if len(config.student_layers) != len(config.teacher_layers):
        raise ConfigError(
            f"{where}.teacher_layers: must pair one-to-one with student_layers, got "
            f"{len(config.student_layers)} student and {len(config.teacher_layers)} teacher layers; "
            "give one teacher layer per student layer"
        )


def conv_pairs(
    config: Any, setup: MethodSetup, where: str, same_spatial: bool
) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """(student, teacher) per-sample (C, H, W) shapes of each layer pair; non-maps or unequal H x W fail."""
    pairs = []
    for s_layer, t_layer in zip(config.student_layers, config.teacher_layers):
        s_shape, t_shape = tuple(setup.student_shapes[s_layer]), tuple(setup.teacher_shapes[t_layer])
        for key, layer, shape in (("student_layers", s_layer, s_shape), ("teacher_layers", t_layer, t_shape)):
            if len(shape) != 3:
                raise ConfigError(
                    f"{where}.{key}: layer {layer!r} outputs shape {shape}, not a conv feature map (C, H, W); "
                    "choose convolutional layers"
                )
        if same_spatial and s_shape[1:] != t_shape[1:]:
            raise ConfigError(
                f"{where}.student_layers/teacher_layers: student {s_layer!r} {s_shape} and teacher {t_layer!r} "
                f"{t_shape} have different spatial sizes (H x W {s_shape[1:]} vs {t_shape[1:]}); "
                "pair layers of equal H x W"
            )
        pairs.append((s_shape, t_shape))
    return pairs


def as_map(feature: Tensor) -> Tensor:
    """(B, C, H, W) unchanged; flat (B, D) as (B, D, 1, 1)."""
    return feature if feature.dim() == 4 else feature.flatten(1)[:, :, None, None]


def map_shape(shape: tuple[int, ...], where: str) -> tuple[int, int, int]:
    """The (C, H, W) that ``as_map`` gives a per-sample feature shape; other ranks fail."""
    if len(shape) == 3:
        return tuple(shape)
    if len(shape) == 1:
        return (shape[0], 1, 1)
    raise ConfigError(f"{where}: needs a conv map (C, H, W) or a flat feature (D,), got shape {tuple(shape)}")


def make_adapter(student_shape: tuple[int, ...], teacher_shape: tuple[int, ...], where: str) -> nn.Module:
    """A learned map from a student feature to the teacher's shape (identity when they already match).

    Conv maps (C, H, W) bridge channel counts with a 1x1 convolution when spatial sizes agree;
    anything else is flattened and mapped linearly, except conv maps whose spatial sizes differ.
    """
    if tuple(student_shape) == tuple(teacher_shape):
        return nn.Identity()
    if len(student_shape) == 3 and len(teacher_shape) == 3:
        if student_shape[1:] != teacher_shape[1:]:
            raise ConfigError(
                f"{where}: student feature {tuple(student_shape)} and teacher feature {tuple(teacher_shape)} "
                "have different spatial sizes, which a 1x1 adapter cannot bridge; choose layers of equal H x W"
            )
        return nn.Conv2d(student_shape[0], teacher_shape[0], kernel_size=1, bias=False)
    return _FlatLinear(math.prod(student_shape), teacher_shape)


class ConvRegressor(nn.Module):
    """conv -> BatchNorm [-> ReLU] from a student feature to the teacher's shape (RepDistiller and
    mdistiller ``ConvReg``: FitNet's regressor with ReLU, AB's connector without).

    The convolution follows the spatial sizes as there: 3x3 stride 2 when the student map is twice
    the teacher's, a 4x4 stride-2 transposed convolution when half, otherwise a (1 + Hs - Ht) x
    (1 + Ws - Wt) kernel (1x1 for equal sizes). Flat features (D,) are read as 1x1 maps.
    """

    def __init__(self, student_shape: tuple[int, ...], teacher_shape: tuple[int, ...], where: str, relu: bool = True) -> None:
        super().__init__()
        (s_c, s_h, s_w), (t_c, t_h, t_w) = map_shape(student_shape, where), map_shape(teacher_shape, where)
        self.out_shape = tuple(teacher_shape)
        if s_h == 2 * t_h and s_w == 2 * t_w:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=3, stride=2, padding=1)
        elif 2 * s_h == t_h and 2 * s_w == t_w:
            self.conv = nn.ConvTranspose2d(s_c, t_c, kernel_size=4, stride=2, padding=1)
        elif s_h >= t_h and s_w >= t_w:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=(1 + s_h - t_h, 1 + s_w - t_w))
        else:
            raise ConfigError(
                f"{where}: the ConvReg regressor cannot map a student map of H x W {s_h} x {s_w} to a "
                f"teacher map of {t_h} x {t_w} (it needs the student's size to be twice, half, or at least "
                "the teacher's); choose other layers"
            )
        self.bn = nn.BatchNorm2d(t_c)
        self.relu = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(as_map(x))
        if self.training and y.shape[0] * y.shape[2] * y.shape[3] == 1:
            # one value per channel (a last batch of 1 on flat features) has no batch variance:
            # normalise with the running statistics instead of failing
            bn = self.bn
            y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        else:
            y = self.bn(y)
        return self.relu(y).reshape(x.shape[0], *self.out_shape)


class _FlatLinear(nn.Module):
    """Flatten, project linearly, reshape to the teacher's per-sample shape."""

    def __init__(self, in_features: int, out_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.linear = nn.Linear(in_features, math.prod(out_shape))

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.flatten(1)).view(x.shape[0], *self.out_shape)


def standardize_logits(logits: Tensor, eps: float = 1e-7) -> Tensor:
    """Z-score each sample's logits over classes: (z - mean) / (std + eps) (Sun et al., CVPR 2024).

    std is Bessel-corrected (1/(K-1)), as in the authors' code (``torch.std``, eps 1e-7 added to it)
    and torchdistill's; the paper's equation writes 1/K, a factor sqrt(K/(K-1)) on every z-score.
    """
    mean = logits.mean(dim=1, keepdim=True)
    std = logits.std(dim=1, keepdim=True)
    return (logits - mean) / (std + eps)


def distillation_logits(student: Tensor, teacher: Tensor, standardize: bool) -> tuple[Tensor, Tensor]:
    """(student, teacher) logits as a logit method's teacher terms read them: z-scored per sample
    when its ``logit_standardization`` switch is on, unchanged otherwise (label terms keep raw logits)."""
    if standardize:
        return standardize_logits(student), standardize_logits(teacher)
    return student, teacher


def label_cross_entropy(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """CE(y, softmax(z)) with labels smoothed by ``label_smoothing`` (Szegedy et al., CVPR 2016):
    the target is (1 - eps) * one_hot(y) + eps / K. Averaged over labelled samples (``UNLABELLED``
    samples are ignored), the label term of every method that has one."""
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def soft_target_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float | Tensor) -> Tensor:
    """T^2 * KL(p_t || p_s) at temperature T, averaged over the batch."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def check_stage_epochs(name: str, key: str, stage_epochs: int, epochs: int) -> None:
    """A first stage must leave the main task at least one of the loop's ``epochs``."""
    if stage_epochs >= epochs:
        raise ConfigError(
            f"{name}.{key}: {stage_epochs} {name.upper()}-only epochs leave none of the {epochs} "
            "training epochs for the main task; use fewer"
        )


def staged_terms(ce: Tensor, name: str, term: Tensor, epoch: int | None, stage_epochs: int) -> dict[str, Tensor]:
    """``{ce, name: term}`` jointly when ``stage_epochs`` is 0; else epochs 1..stage_epochs train the
    term alone and later epochs CE alone (the other term kept at 0 so every epoch logs both)."""
    if stage_epochs == 0:
        return {"ce": ce, name: term}
    if (epoch or 1) <= stage_epochs:
        return {"ce": 0.0 * ce, name: term}
    return {"ce": ce, name: 0.0 * term}


def parse_sub_method(raw: Any, where: str, refuse: tuple[str, ...], weighted: bool) -> tuple[str, float, Any]:
    """``(method name, weight, parsed config)`` from ``{method: name, [weight: w,] ...settings}``.

    The registry is imported here, not at module level, because the registry imports this module.
    With ``weighted``, ``weight`` is the part multiplier unless the method has its own ``weight``
    hyperparameter, in which case it is passed to the method and the multiplier is 1.
    """
    from distillation_studies.learning.methods import METHODS, method_class, parse_method_config

    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{where}: must be a mapping with a 'method' key and that method's settings, got {type(raw).__name__}"
        )
    settings = dict(raw)
    if "method" not in settings:
        raise ConfigError(f"{where}.method: required; allowed methods: {sorted(set(METHODS) - set(refuse))}")
    name = settings.pop("method")
    if not isinstance(name, str):
        raise ConfigError(f"{where}.method: expected a method name, got {name!r}")
    if name in refuse:
        raise ConfigError(f"{where}.method: {name!r} cannot be used here; allowed methods: {sorted(set(METHODS) - set(refuse))}")
    cls = method_class(name, f"{where}.method")
    weight = 1.0
    own_weight = any(f.name == "weight" for f in dataclasses.fields(cls.Config))
    if weighted and not own_weight and "weight" in settings:
        weight = coerce_value(settings.pop("weight"), float, f"{where}.weight")  # a finite number
        if weight < 0:
            raise ConfigError(f"{where}.weight: must be >= 0, got {weight}")
    return name, float(weight), parse_method_config(name, settings, where)


BatchTerms = Callable[[Tensor], dict[str, Tensor]]  # sample indices -> named loss terms, batch means


def total_loss(terms: Mapping[str, Tensor]) -> Tensor:
    """The loss a step minimises: the sum of the named terms, in fp32.

    One or two terms are summed directly (the same fp32 value and gradients as stacking them, two
    tensor operations fewer per step, which a small model notices)."""
    values = [t.float() for t in terms.values()]
    if len(values) <= 2:
        return values[0] if len(values) == 1 else values[0] + values[1]
    return torch.stack(values).sum()


class LossTotals:
    """One epoch's loss terms, each summed over the samples it averaged, turned into a history row at
    the epoch's end. The sums stay on the device (no host sync per step). The one loop and ``fit``
    both keep their epochs with it, so their rows mean the same thing.

    ``label_terms`` (terms averaged over labelled samples only, in a transfer set) are weighted and
    divided by the ``labelled`` counts; every other term by the ``samples`` counts.
    """

    def __init__(self, label_terms: frozenset[str] | set[str] = frozenset()) -> None:
        self.label_terms = label_terms
        self._values: dict[str, list[Tensor]] = {}
        self._weights: dict[str, list[int]] = {}

    def add(self, terms: Mapping[str, Tensor], samples: int, labelled: int | None = None) -> None:
        """Keep one batch's terms (batch means) and the samples each averaged over. They are weighted
        and summed once, at the epoch's end (:attr:`sums`): two tensor operations per term and step
        cost a small model more than its step's arithmetic."""
        for name, value in terms.items():
            self._values.setdefault(name, []).append(value.detach())
            self._weights.setdefault(name, []).append(labelled if labelled is not None and name in self.label_terms else samples)

    @functools.cached_property
    def sums(self) -> dict[str, Tensor]:
        """Each term summed over the epoch: batch mean x the samples it averaged, on the device (read once
        the epoch's batches are all added)."""
        sums = {}
        for name, values in self._values.items():
            means = torch.stack(values).float().reshape(len(values))
            sums[name] = means.dot(torch.tensor(self._weights[name], dtype=torch.float32, device=means.device))
        return sums

    def row(self, epoch: int, samples: int, labelled: int | None, label: str, seed: int, history: list[dict]) -> dict[str, float]:
        """``epoch``, ``loss_<term>`` averaged over its samples and ``loss_total``; a non-finite term raises
        :class:`~distillation_studies.learning.divergence.DivergenceError` naming ``label`` and ``seed``."""
        row: dict[str, float] = {"epoch": epoch}
        for name, value in self.sums.items():
            row[f"loss_{name}"] = value.item() / (labelled if labelled is not None and name in self.label_terms else samples)
        row["loss_total"] = sum(v for k, v in row.items() if k.startswith("loss_"))
        check_finite(row, label, seed, history)
        return row


def fit(
    module: nn.Module,
    batch_terms: BatchTerms,
    size: int,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    label: str,
    cosine: bool = False,
) -> list[dict[str, float]]:
    """Minimise the sum of ``batch_terms(indices)`` over ``epochs`` shuffled passes of ``range(size)``.

    One ``optimizer`` step per batch; ``cosine`` anneals its learning rate to 0 over all steps, stepped
    per batch as the loop does. Returns one row per epoch like the loop's history (``epoch``,
    ``loss_<term>`` averaged over samples, ``loss_total``; :class:`LossTotals`); a non-finite term stops
    the fit with :class:`~distillation_studies.learning.divergence.DivergenceError` naming ``label`` and
    ``seed``. Indices are on the device of ``module``'s first parameter.
    """
    generator = torch.Generator().manual_seed(seed)
    device = next(module.parameters()).device
    steps = epochs * math.ceil(size / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps) if cosine else None
    history: list[dict[str, float]] = []
    module.train()
    with torch.enable_grad():  # prepare may be called under no_grad
        for epoch in range(1, epochs + 1):
            totals = LossTotals()
            for indices in torch.randperm(size, generator=generator).to(device).split(batch_size):
                terms = batch_terms(indices)
                optimizer.zero_grad(set_to_none=True)
                total_loss(terms).backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                totals.add(terms, len(indices))
            history.append(totals.row(epoch, size, None, label, seed, history))
            log.debug("%s epoch %d %s", label, epoch, " ".join(f"{k[5:]}={v:.6f}" for k, v in history[-1].items() if k.startswith("loss_")))
    return history


def share_at_or_below_median(values: Tensor, dtype: torch.dtype) -> Tensor:
    """Fraction of ``values`` (1-D) at or below their median (linear interpolation, numpy's default): the
    teacher-confidence share SKD and MLKD weight their batch-level terms by."""
    values = values if values.dtype in (torch.float32, torch.float64) else values.float()  # quantile's dtypes
    return (values <= torch.quantile(values, 0.5)).to(dtype).mean()
