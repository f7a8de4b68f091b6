"""Where a result came from: git commit, package versions, a hash of the configuration."""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ["torch", "torchvision", "kedro", "kedro-datasets", "mlflow", "pandas", "scikit-learn", "scipy", "numpy"]


def config_hash(params: Any) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def git_commit(project_path: Path | None = None) -> str:
    """HEAD's commit, suffixed ``-dirty`` when tracked files have uncommitted changes; ``unknown`` outside git."""
    cwd = project_path or Path.cwd()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """Nested config as dotted keys, values as strings (MLflow params are strings)."""
    if isinstance(tree, dict):
        items: dict[str, str] = {}
        for key, value in tree.items():
            items.update(flatten(value, f"{prefix}{key}."))
        return items
    return {prefix[:-1]: json.dumps(tree) if isinstance(tree, (list, tuple)) else str(tree)}
