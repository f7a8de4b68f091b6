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
