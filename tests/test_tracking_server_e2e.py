"""The tiny study logged to a real `mlflow server` (SQLite backend, local --artifacts-destination, a
loopback port): every model, report, plot and history is found through the server's API and lies in
the server's artifact store, none in the project; a second clone of the project logs to the same server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import copy_project
from tests.test_runner_e2e import run

pytestmark = pytest.mark.e2e

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """The README's `mlflow server` command, on SQLite and a local artifact folder; yields (url, artifacts)."""
    port, store = free_port(), tmp_path / "server"
    store.mkdir()
    command = [
        MLFLOW, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination", str(store / "artifacts"),
        "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}",
    ]
    process = subprocess.Popen(command, cwd=store, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                if answer.status == 200:
                    break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                raise AssertionError(f"mlflow server did not start: {command}")
            time.sleep(1)
    yield url, store / "artifacts"
    process.terminate()
    process.wait(timeout=60)


def new_folder(path: Path) -> Path:
    path.mkdir()
    return path


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


def test_a_study_against_a_tracking_server_puts_every_artifact_in_its_store(tmp_path, server):
    url, artifacts = server
    project = copy_project(new_folder(tmp_path / "project"))
    result = run(project, "--params", f"tracking.uri={url}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    client = MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name("distillation-studies")
    assert experiment.artifact_location.startswith("mlflow-artifacts:/")  # the server's store, not a local path
    found = client.search_runs([experiment.experiment_id])
    (study,) = [r for r in found if r.data.tags.get("role") == "study"]
    assert study.info.status == "FINISHED"
    report = {a.path for a in client.list_artifacts(study.info.run_id, "report")}
    assert {"report/study_report.md", "report/study_report.html", "report/comparison_table.csv", "report/plots"} <= report
    assert client.list_artifacts(study.info.run_id, "report/plots")  # the plots, one file each
    downloaded = Path(client.download_artifacts(study.info.run_id, "report/study_report.md", str(tmp_path)))
    assert downloaded.read_text().startswith("#")

    arms = [r for r in found if r.data.tags.get("role") == "arm" and r.data.tags.get("arm") == "kd/seed_0"]
    (kd,) = arms
    assert {"history.json", "checkpoints"} <= {a.path for a in client.list_artifacts(kd.info.run_id)}
    models = client.search_logged_models(experiment_ids=[experiment.experiment_id])
    kd_models = [m for m in models if m.source_run_id == kd.info.run_id]
    assert [m.name for m in kd_models] == ["kd-seed_0"]  # named after its arm and seed in the Models tab
    assert kd_models and all(m.artifact_location.startswith("mlflow-artifacts:/") for m in kd_models)
    assert "MLmodel" in {a.path for a in client.list_logged_model_artifacts(kd_models[0].model_id)}
    linked = {m.key: m.value for m in kd_models[0].metrics}  # the Models tab's columns, through the server
    assert linked["test/accuracy"] == kd.data.metrics["test/accuracy"] and kd_models[0].tags["seed"] == "0"

    served = files_under(artifacts)
    assert any(p.name == "study_report.md" for p in served) and any(p.name == "MLmodel" for p in served)
    assert files_under(project / "mlruns") == []  # nothing logged lands on the project's disk

    clone = copy_project(new_folder(tmp_path / "clone"))  # another team member's checkout, the same server
    second = run(clone, "--params", f"tracking.uri={url}", "--pipeline", "data_processing")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "looks copied from another" not in second.stdout + second.stderr
    studies = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("role") == "study"]
    assert len(studies) == 2 and all(r.info.status == "FINISHED" for r in studies)
