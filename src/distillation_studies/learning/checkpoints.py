"""Import published or earlier-trained weights into a registered architecture, safely.

Files are read with ``torch.load(weights_only=True)``: a plain state dict, or this project's own
``{"spec", "state_dict"}`` checkpoint. Errors name the file and what did not match.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distillation_studies.common.errors import DataError


def load_weights(model: nn.Module, path: str | Path, where: str = "teacher.checkpoint") -> nn.Module:
    """Load ``path`` into ``model`` (strict: every key and shape must match) and return it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{where}: {path} not found; give the path of a state dict saved with torch.save")
    try:
        payload: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt, or pickled objects that weights_only refuses
        raise DataError(
            f"{where}: cannot read {path} as tensors ({load_failure(error)}); give a plain state dict, "
            "saved with torch.save(model.state_dict(), path)"
        ) from None
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise DataError(f"{where}: {path} holds {type(payload).__name__}, not a state dict")
    state, expected = _strip_prefix(state), model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        raise DataError(
            f"{where}: {path} does not fit model {model.spec['name']!r}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, shape mismatches {mismatched[:5]}"
        )
    model.load_state_dict(state)
    return model


def load_failure(error: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in this project's words.

    torch's own message for a refused pickle advises rerunning with ``weights_only=False``, which would
    run whatever code the file holds: it is never passed on, only the refusal's reason."""
    text = str(error)
    if not isinstance(error, pickle.UnpicklingError) and "weights_only" not in text:
        return f"{type(error).__name__}: {text.rstrip('.')}"
    reason = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n\n|$)", text, re.DOTALL)
    detail = f" ({' '.join(reason.group(1).split())})" if reason else ""
    return (
        f"not plain tensors: the safe loader refused it{detail}. The file may be unsafe (unpickling it could run "
        "arbitrary code) or corrupt, and is never unpickled here"
    )


def _strip_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """Accept checkpoints saved from DataParallel/DDP (``module.`` prefix) as well."""
    if state and all(key.startswith("module.") for key in state):
        return {key[len("module.") :]: value for key, value in state.items()}
    return state
