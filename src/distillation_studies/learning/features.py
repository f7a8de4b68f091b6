"""Capture intermediate outputs by module path with forward hooks, without rewriting models."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import Tensor, nn

from distillation_studies.common.errors import ConfigError


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    """The sub-module at ``path``; an unknown path names the ones that exist."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        known = [name for name, _ in model.named_modules() if name]
        raise ConfigError(f"layer {path!r} does not exist in the model; available layers: {known}") from None


@contextmanager
def capture_features(model: nn.Module, layers: list[str]) -> Iterator[dict[str, Tensor]]:
    """Yield a dict that each forward pass fills with ``{path: output}`` for the given layers."""
    captured: dict[str, Tensor] = {}
    # Resolve every path before registering any hook, so an unknown path leaves no hook behind.
    modules = {path: resolve_module(model, path) for path in dict.fromkeys(layers)}
    handles = [module.register_forward_hook(_store(captured, path)) for path, module in modules.items()]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def _store(captured: dict[str, Tensor], path: str):
    def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
        captured[path] = output

    return hook
