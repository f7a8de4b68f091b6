"""Shared fixtures: one tiny study, run once per test session through the real `kedro run`."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))
REGISTERED_MODEL = "tiny_students"
TERMINAL_OUTPUT = "kedro_run_output.txt"  # the session's tiny run, as printed


def copy_project(path: Path) -> Path:
    """The project's config in ``path`` (the package itself comes from the installed, editable project)."""
    shutil.copy(ROOT / "pyproject.toml", path)
    shutil.copy(ROOT / ".telemetry", path)
    shutil.copytree(ROOT / "conf", path / "conf", ignore=shutil.ignore_patterns("local"))
    shutil.copytree(ROOT / "notebooks", path / "notebooks")
    (path / "conf" / "local").mkdir()
    (path / "src").mkdir()
    return path


def kedro_run(project: Path, *args: str, env_name: str = "tiny") -> subprocess.CompletedProcess:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg"}
    env.pop("DISTILLATION_STUDIES_VERBOSE", None)  # terse output unless the command passes -v
    return subprocess.run([KEDRO, "run", f"--env={env_name}", *args], cwd=project, env=env, capture_output=True, text=True)


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Path:
    """A copy of the project with one completed `tiny` study."""
    path = copy_project(tmp_path_factory.mktemp("study"))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "study"]):  # MLflow's git tags need a commit
        subprocess.run([*git, *command], cwd=path, check=True, capture_output=True)
    # The recommended student is registered (tracking.register) so the registry and its alias can be read back.
    result = kedro_run(path, "--params", f"tracking.register={REGISTERED_MODEL}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (path / TERMINAL_OUTPUT).write_text(result.stdout + result.stderr)  # what the user saw (tests/test_progress.py)
    return path


@pytest.fixture
def no_cifar_md5(monkeypatch):
    """Hand-written CIFAR files go through torchvision's real reader with only its MD5 comparison skipped."""
    from tests.cifar_files import skip_cifar_md5

    skip_cifar_md5(monkeypatch)
