"""Your own ``nn.Module``, by import path: ``{name: import, path: my_pkg.models:TinyNet, kwargs: {width: 16}}``.

``path`` is ``module:attribute`` (the attribute a class or a function returning an ``nn.Module``); the
module must be importable wherever the study runs (installed, or on ``PYTHONPATH``, Dask workers
included). The constructor receives ``kwargs`` plus, when its signature names them and ``kwargs`` does
not, ``num_classes`` and ``in_shape`` (the data's per-sample shape, e.g. ``[1, 28, 28]``), so one class
serves every dataset. It must return logits of shape (N, num_classes); :func:`check_output_shape` holds
that before any training. Feature layers are the model's module paths (``named_modules()``, e.g.
``body.0`` or ``fc1``), as for every model. The spec keeps ``path`` and ``kwargs``, so a checkpoint is
rebuilt by importing the same class again: the module must still be importable when it is loaded.
"""

from __future__ import annotations

import importlib
import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from distillation_studies.common.errors import ConfigError

PATH_FORM = "package.module:ClassName"
AUTOMATIC_ARGUMENTS = ("num_classes", "in_shape")


@dataclass(frozen=True)
class ImportConfig:
    """``path``: ``module:attribute`` of a model class or factory; ``kwargs``: its keyword arguments."""

    path: str = ""
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def check(self, where: str) -> None:
        if not isinstance(self.kwargs, Mapping) or not all(isinstance(k, str) for k in self.kwargs):
            raise ConfigError(f"{where}.kwargs: must map argument names to values, got {self.kwargs!r}")
        try:
            json.dumps(dict(self.kwargs))
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}.kwargs: values must be plain numbers, strings, lists or mappings (they are saved "
                f"with every checkpoint), got {self.kwargs!r}"
            ) from None
        constructor = resolve_constructor(self.path, where)
        signature = _signature(constructor)
        if signature is None:
            return
        try:
            signature.bind_partial(**self.kwargs)
        except TypeError as error:
            raise ConfigError(
                f"{where}.kwargs: {self.path}{signature} does not accept {dict(self.kwargs)}: {error}"
            ) from None


def resolve_constructor(path: Any, where: str) -> Callable[..., Any]:
    """The class or factory ``path`` names; a ConfigError naming ``where.path`` if it cannot be imported."""
    if not isinstance(path, str) or path.count(":") != 1 or not all(path.split(":")):
        raise ConfigError(f"{where}.path: must be '{PATH_FORM}' (a module, a colon, a class or function), got {path!r}")
    module_name, attribute = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001  (ImportError, or any error the module raises as it loads)
        raise ConfigError(
            f"{where}.path: cannot import module {module_name!r} ({type(error).__name__}: {error}); "
            "install the package or put its folder on PYTHONPATH"
        ) from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            models = sorted(n for n, v in vars(module).items() if _defined_module_class(v, module_name))
            raise ConfigError(f"{where}.path: module {module_name!r} has no attribute {attribute!r}; its nn.Module classes: {models}")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"{where}.path: {path} is not a class or function but {type(target).__name__}")
    return target


def _defined_module_class(value: Any, module_name: str) -> bool:
    return isinstance(value, type) and issubclass(value, nn.Module) and value.__module__ == module_name


def _signature(constructor: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(constructor)
    except (TypeError, ValueError):  # some built-in callables have none
        return None


def build_imported(cfg: ImportConfig, in_shape: tuple[int, ...], num_classes: int, where: str = "model") -> nn.Module:
    """Call the constructor with ``kwargs`` (plus ``num_classes``/``in_shape`` where it takes them)."""
    constructor = resolve_constructor(cfg.path, where)
    kwargs = dict(cfg.kwargs)
    signature = _signature(constructor)
    automatic = {"num_classes": int(num_classes), "in_shape": list(in_shape)}
    if signature is not None:
        kwargs.update({k: v for k, v in automatic.items() if k in signature.parameters and k not in kwargs})
    try:
        model = constructor(**kwargs)
    except Exception as error:  # noqa: BLE001  (whatever the user's constructor raises)
        raise ConfigError(f"{where}.kwargs: {cfg.path}(**{kwargs}) failed: {type(error).__name__}: {error}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{where}.path: {cfg.path}(...) returned {type(model).__name__}, not a torch.nn.Module")
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters()):
        check_output_shape(model, in_shape, num_classes, where)  # lazy modules take their shapes from one pass
    return model


def check_output_shape(model: nn.Module, in_shape: tuple[int, ...], num_classes: int, where: str) -> None:
    """One forward pass of two zero samples must give logits (2, num_classes)."""
    device = next(iter(model.parameters()), torch.zeros(0)).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(torch.zeros(2, *in_shape, device=device))
    except Exception as error:  # noqa: BLE001  (the user's forward)
        raise ConfigError(
            f"{where}: the model's forward fails on inputs of shape {[2, *in_shape]} (the data's samples): "
            f"{type(error).__name__}: {error}"
        ) from None
    finally:
        model.train(was_training)
    shape = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    if shape != [2, num_classes]:
        raise ConfigError(
            f"{where}: the model returns {shape} for inputs of shape {[2, *in_shape]}; a classifier here must "
            f"return logits of shape (N, num_classes) = (N, {num_classes})"
        )


# ---- an imported teacher's inputs: what its own training script fed it -------------------------------

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # 3 -> 1 channel, as torchvision's Grayscale (ITU-R 601-2 luma)
STUDY = "study"  # mean/std "study": the study's own normalisation (training-split statistics)


@dataclass(frozen=True)
class TeacherInputs:
    """``teacher.checkpoint.inputs``: the input pipeline of the script that trained an imported teacher.

    The study's images (normalised with the study's statistics) are turned back into pixels in [0, 1],
    resized to ``size`` (bilinear; null keeps the study's), brought to ``channels`` (1 -> 3 repeats the
    gray channel, 3 -> 1 takes torchvision's luma; null keeps the study's), multiplied by ``scale`` (1 for
    ``ToTensor``, 255 for raw bytes) and normalised with ``mean``/``std`` (one value per channel, or
    ``study``: the study's own statistics, what a teacher trained by this project gets).
    """

    size: tuple[int, int] | None = None
    channels: int | None = None
    scale: float = 1.0
    mean: Any = STUDY
    std: Any = STUDY

    def check(self, where: str) -> None:
        if self.size is not None and (len(self.size) != 2 or not all(isinstance(d, int) and d > 0 for d in self.size)):
            raise ConfigError(f"{where}.size: must be [height, width] in pixels or null, got {list(self.size)!r}")
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"{where}.channels: 1, 3 or null (the study's), got {self.channels!r}")
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not self.scale > 0:
            raise ConfigError(f"{where}.scale: must be a number > 0 (1 for ToTensor, 255 for raw bytes), got {self.scale!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if (value == STUDY) != (getattr(self, "std" if name == "mean" else "mean") == STUDY):
                raise ConfigError(f"{where}: mean and std are both 'study' or both lists, got mean={self.mean!r}, std={self.std!r}")
            if value != STUDY and (
                not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            ):
                raise ConfigError(f"{where}.{name}: one number per channel, or 'study', got {value!r}")
        if self.std != STUDY and any(v <= 0 for v in self.std):
            raise ConfigError(f"{where}.std: every value must be > 0, got {list(self.std)!r}")
        if self.mean != STUDY and self.channels is not None and len(self.mean) not in (1, self.channels):
            raise ConfigError(f"{where}.mean: {len(self.mean)} values for {self.channels} channels")

    def teacher_shape(self, study_shape: tuple[int, ...], where: str = "teacher.checkpoint.inputs") -> tuple[int, ...]:
        """The per-sample shape the teacher reads, from the study's (C, H, W)."""
        if len(study_shape) != 3:
            if self.size is not None or self.channels is not None:
                raise ConfigError(f"{where}: size and channels apply to images (C, H, W); the study's samples have shape {list(study_shape)}")
            return tuple(study_shape)
        channels = self.channels or study_shape[0]
        size = tuple(self.size) if self.size is not None else tuple(study_shape[1:])
        return (channels, *size)

    def pipeline(self, study_shape: tuple[int, ...], study_normalisation: Mapping[str, list[float]]) -> dict[str, Any]:
        """The plain record kept in the teacher's spec (so a saved teacher is rebuilt with its inputs)."""
        own = self.mean == STUDY
        return {
            "study_shape": [int(d) for d in study_shape],
            "study_mean": list(study_normalisation["mean"]),
            "study_std": list(study_normalisation["std"]),
            "size": list(self.size) if self.size is not None else None,
            "channels": self.channels,
            "scale": float(self.scale),
            "mean": list(study_normalisation["mean"] if own else self.mean),
            "std": list(study_normalisation["std"] if own else self.std),
        }


def describe_inputs(pipeline: Mapping[str, Any]) -> str:
    """One line: what an imported teacher is fed."""
    size = "x".join(str(d) for d in (pipeline["size"] or pipeline["study_shape"][1:]))
    channels = pipeline["channels"] or pipeline["study_shape"][0]
    mean = ", ".join(f"{v:g}" for v in pipeline["mean"])
    std = ", ".join(f"{v:g}" for v in pipeline["std"])
    return f"{channels} channel(s) of {size} pixels in [0, {pipeline['scale']:g}], normalised with mean [{mean}] and std [{std}]"


class InputPipeline(nn.Module):
    """A forward pre-hook turning the study's normalised images into what an imported teacher was trained
    on (see :class:`TeacherInputs`). A hook, not a wrapper: the teacher's module paths (its feature layers)
    stay the same. Inputs not of the study's shape (a probe already shaped for the teacher) pass as they are."""

    def __init__(self, pipeline: Mapping[str, Any]) -> None:
        super().__init__()
        self.study_shape = tuple(pipeline["study_shape"])
        channel_view = (1, -1, *([1] * (len(self.study_shape) - 1)))
        self.size = tuple(pipeline["size"]) if pipeline["size"] else None
        self.channels = pipeline["channels"]
        self.scale = float(pipeline["scale"])
        for name in ("study_mean", "study_std", "mean", "std"):
            self.register_buffer(name, torch.tensor(pipeline[name], dtype=torch.float32).view(channel_view), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device
        pixels = x.float() * self.study_std.to(device) + self.study_mean.to(device)  # the study's pixels, in [0, 1]
        if self.size is not None and tuple(pixels.shape[-2:]) != self.size:
            pixels = torch.nn.functional.interpolate(pixels, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        if self.channels == 3 and pixels.shape[1] == 1:
            pixels = pixels.repeat(1, 3, 1, 1)
        elif self.channels == 1 and pixels.shape[1] == 3:
            pixels = (pixels * torch.tensor(GRAY_WEIGHTS, device=device).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        return (pixels * self.scale - self.mean.to(device)) / self.std.to(device)

    def __call__(self, module: nn.Module, args: tuple) -> tuple | None:  # the pre-hook signature
        x = args[0]
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.study_shape:
            return None
        return (self.forward(x), *args[1:])


def attach_input_pipeline(model: nn.Module, pipeline: Mapping[str, Any]) -> nn.Module:
    """Feed ``model`` the inputs ``pipeline`` describes, from the study's; recorded in ``model.spec``."""
    model.register_forward_pre_hook(InputPipeline(pipeline))
    model.spec = {**getattr(model, "spec", {}), "input_pipeline": dict(pipeline)}
    return model
