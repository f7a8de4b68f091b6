"""Model registry: every model is built from a plain-dict spec saved with its checkpoint.

A spec looks like ``{"name": "cnn", "in_shape": [1, 28, 28], "num_classes": 10, "channels": [32, 64]}``;
``build_model(spec)`` alone rebuilds the architecture, so a checkpoint never needs the config that made it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, get_type_hints

import torch
from torch import nn

from distillation_studies.common.config import coerce_value
from distillation_studies.common.errors import ConfigError
from distillation_studies.learning.imported import ImportConfig, attach_input_pipeline, build_imported, check_output_shape


@dataclass(frozen=True)
class MLPConfig:
    """Fully connected net; ``hidden`` gives the width of each hidden layer (``hidden.<i>`` paths)."""

    hidden: tuple[int, ...] = (128,)

    def check(self, where: str) -> None:
        if not self.hidden or any(w <= 0 for w in self.hidden):
            raise ConfigError(f"{where}.hidden: must be a non-empty list of positive widths, got {list(self.hidden)}")


@dataclass(frozen=True)
class CNNConfig:
    """Conv blocks (conv-BN-ReLU-maxpool) then a hidden linear ``embed`` layer and a ``head``."""

    channels: tuple[int, ...] = (32, 64)
    embed: int = 128

    def check(self, where: str) -> None:
        if not self.channels or any(c <= 0 for c in self.channels):
            raise ConfigError(f"{where}.channels: must be a non-empty list of positive widths, got {list(self.channels)}")
        if self.embed <= 0:
            raise ConfigError(f"{where}.embed: must be positive, got {self.embed}")


def _build_mlp(cfg: MLPConfig, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    widths = [math.prod(in_shape), *cfg.hidden]
    hidden = nn.Sequential(
        *[nn.Sequential(nn.Linear(a, b), nn.ReLU()) for a, b in zip(widths[:-1], widths[1:])]
    )
    return nn.Sequential(
        OrderedDict(flatten=nn.Flatten(), hidden=hidden, head=nn.Linear(widths[-1], num_classes))
    )


def _build_cnn(cfg: CNNConfig, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    channels, height, width = in_shape
    blocks = []
    for out in cfg.channels:
        blocks.append(
            nn.Sequential(
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(),
                nn.MaxPool2d(2) if min(height, width) >= 2 else nn.Identity(),
            )
        )
        if min(height, width) >= 2:
            height, width = height // 2, width // 2
        channels = out
    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(*blocks),
            flatten=nn.Flatten(),
            embed=nn.Sequential(nn.Linear(channels * height * width, cfg.embed), nn.ReLU()),
            head=nn.Linear(cfg.embed, num_classes),
        )
    )



@dataclass(frozen=True)
class ModelEntry:
    config_class: type
    builder: Callable[[Any, tuple[int, ...], int], nn.Module]


MODELS: dict[str, ModelEntry] = {
    "mlp": ModelEntry(MLPConfig, _build_mlp),
    "cnn": ModelEntry(CNNConfig, _build_cnn),
    "import": ModelEntry(ImportConfig, build_imported),  # your own nn.Module: learning/imported.py
}
IMPORTED = "import"

SPEC_KEYS = ("name", "in_shape", "num_classes")


def parse_model_config(raw: dict[str, Any], where: str) -> tuple[str, Any]:
    """Check a model section (``name`` plus architecture keys) and return its typed config."""
    if not isinstance(raw, Mapping) or "name" not in raw:
        raise ConfigError(f"{where}.name: missing; allowed models: {sorted(MODELS)}")
    name = raw["name"]
    if name not in MODELS:
        raise ConfigError(f"{where}.name: unknown model {name!r}; allowed models: {sorted(MODELS)}")
    config_class = MODELS[name].config_class
    allowed = {f.name for f in fields(config_class)}
    extra = set(raw) - allowed - set(SPEC_KEYS)
    if extra:
        raise ConfigError(
            f"{where}.{sorted(extra)[0]}: unknown key for model {name!r}; allowed keys: {sorted(allowed)}"
        )
    hints = get_type_hints(config_class)
    values = {k: coerce_value(v, hints[k], f"{where}.{k}") for k, v in raw.items() if k in allowed}
    cfg = config_class(**values)
    cfg.check(where)
    return name, cfg


def make_spec(raw: dict[str, Any], in_shape: tuple[int, ...], num_classes: int, where: str = "model") -> dict:
    """A complete, JSON- and ``weights_only``-safe spec from a config section and the data's shape."""
    name, cfg = parse_model_config(raw, where)
    arch = {f.name: _plain(getattr(cfg, f.name)) for f in fields(cfg)}
    spec = {"name": name, "in_shape": [int(d) for d in in_shape], "num_classes": int(num_classes), **arch}
    if name == IMPORTED:  # the zoo's builders are known to fit; a user's class is checked once, here
        shape = tuple(spec["in_shape"])
        check_output_shape(_probe_build(name, cfg, shape, int(num_classes), where), shape, int(num_classes), where)
    return spec


def _plain(value: Any) -> Any:
    """Tuples as lists and mappings as dicts: a spec is JSON- and ``weights_only``-safe."""
    if isinstance(value, tuple):
        return list(value)
    return dict(value) if isinstance(value, Mapping) else value


def _probe_build(name: str, cfg: Any, in_shape: tuple[int, ...], num_classes: int, where: str) -> nn.Module:
    """The model on PyTorch's ``meta`` device (no weight allocated) when its forward runs there, else on the CPU.

    A user's model may use operations the meta device cannot run (data-dependent ones); the CPU fallback
    is for those only, after the meta build has shown the constructor works.
    """
    builder = MODELS[name].builder
    extra = {"where": where} if name == IMPORTED else {}
    with torch.device("meta"):
        model = builder(cfg, in_shape, num_classes, **extra)
    if name != IMPORTED:
        return model
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *in_shape, device="meta"))
        return model.train()
    except Exception:  # noqa: BLE001  (the meta device lacks an operation the model uses)
        return builder(cfg, in_shape, num_classes, **extra)


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Build an untrained model from a spec; the spec is attached as ``model.spec``."""
    name, cfg = parse_model_config({k: v for k, v in spec.items() if k != "input_pipeline"}, "model")
    model = MODELS[name].builder(cfg, tuple(spec["in_shape"]), int(spec["num_classes"]))
    model.spec = dict(spec)
    if spec.get("input_pipeline"):  # an imported teacher, fed what its own training script fed it
        attach_input_pipeline(model, spec["input_pipeline"])
    return model


def module_paths(model: nn.Module) -> list[str]:
    """Every named sub-module path, the vocabulary of feature-layer settings."""
    return [name for name, _ in model.named_modules() if name]


def feature_shapes(model: nn.Module, layers: list[str]) -> dict[str, tuple[int, ...]]:
    """Per-sample output shape of each named layer, from one dummy forward pass per new layer set.

    Shapes are remembered on the model (they depend only on the architecture), so validating many
    methods against one big teacher costs one forward pass, not one per method.
    """
    from distillation_studies.learning.features import capture_features

    known: dict[str, tuple[int, ...]] = model.__dict__.setdefault("_feature_shape_cache", {})
    missing = [layer for layer in dict.fromkeys(layers) if layer not in known]
    if missing:
        was_training = model.training
        model.eval()
        with torch.no_grad(), capture_features(model, missing) as feats:
            model(torch.zeros(1, *model.spec["in_shape"], device=next(model.parameters()).device))
        model.train(was_training)
        known.update({name: tuple(t.shape[1:]) for name, t in feats.items()})
    return {layer: known[layer] for layer in layers}


from distillation_studies.learning.zoo import ZOO_MODELS  # noqa: E402  (the zoo never imports this module)

MODELS.update({name: ModelEntry(*entry) for name, entry in ZOO_MODELS.items()})


# Up to these sizes a model's shapes are found on the CPU, for real (a few milliseconds, tens of MB at most).
SMALL_PROBE_PARAMETERS, SMALL_PROBE_INPUT = 5_000_000, 300_000  # weights; input values per sample


def model_footprint(spec: dict[str, Any]) -> tuple[int, int]:
    """(parameters, activation values per sample) of a spec, without allocating a single weight.

    The model is built and run on PyTorch's ``meta`` device (an imported model whose forward cannot run
    there: on the CPU), which computes shapes only, so a width of
    10^9 is measured in microseconds instead of asking the allocator for terabytes. Activations are the
    outputs of every leaf module for one sample: what a training step keeps for the backward pass.
    """
    name, cfg = parse_model_config(spec, "model")
    in_shape, num_classes = tuple(spec["in_shape"]), int(spec["num_classes"])
    model = _probe_build(name, cfg, in_shape, num_classes, "model")
    parameters = sum(p.numel() for p in model.parameters())
    if name != IMPORTED and parameters <= SMALL_PROBE_PARAMETERS and math.prod(in_shape) <= SMALL_PROBE_INPUT:
        # Small enough to build for real: the meta device's first forward in a process costs about 1.4 s
        # (loading its kernels), more than this whole check on the CPU. The global RNG is left as it was.
        with torch.random.fork_rng(devices=[]):
            model = MODELS[name].builder(cfg, in_shape, num_classes)
    device = next(iter(model.parameters()), torch.zeros(0, device="meta")).device
    outputs: list[int] = []

    def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            outputs.append(output.numel())

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(record) for m in leaves]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *spec["in_shape"], device=device))
    finally:
        for handle in handles:
            handle.remove()
    return parameters, sum(outputs)
