"""The real `kedro run` on the tiny study, read back from the catalog and from MLflow.

One project copy per module: a first run, a second run with the same seeds (determinism), and a
run with a bad config (clear error, nothing lost).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
import mlflow
from mlflow import MlflowClient

from distillation_studies.study.identity import ArmRun

from tests.conftest import REGISTERED_MODEL, ROOT, copy_project, kedro_run
from tests.verdicts import cell_verdicts, markdown_table
TIMING_METRICS = {"latency_ms", "throughput_per_s", "train_time_s"}
ARMS = {f"{m}/seed_{s}" for m in ("ce", "kd", "fitnet", "rkd") for s in (0, 1)}

pytestmark = pytest.mark.e2e


def load(project: Path, name: str):
    return load_env(project, name, "tiny")


def load_env(project: Path, name: str, env: str):
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env=env) as session:
        return session.load_context().catalog.load(name)


def per_seed_accuracy(project: Path, arms: tuple[str, ...], seeds: tuple[int, ...] = (0, 1)) -> dict[str, list[float]]:
    """Each arm's saved test accuracy per seed, read from its metrics datasets in one session."""
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="tiny") as session:
        catalog = session.load_context().catalog
        return {arm: [catalog.load(ArmRun(arm, seed).dataset("metrics"))["test_accuracy"] for seed in seeds] for arm in arms}


def versions(project: Path) -> dict[str, list[str]]:
    """Every saved version of every dataset file under data/, by dataset path."""
    found: dict[str, list[str]] = {}
    for version_dir in (project / "data").glob("**/*/"):
        if version_dir.parent.suffix and version_dir.is_dir() and (version_dir / version_dir.parent.name).exists():
            found.setdefault(str(version_dir.parent.relative_to(project)), []).append(version_dir.name)
    return {k: sorted(v) for k, v in found.items()}


def mlflow_runs(project: Path):
    # Listing a run's model folder resolves its logged model through the global tracking URI.
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("distillation-studies")
    return client, client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def test_catalog_holds_the_comparison_of_every_method(project):
    table = load(project, "comparison_table")
    assert set(table["method"]) == {"ce", "kd", "fitnet", "rkd"}
    assert (table["seeds"] == 2).all()
    assert table.loc[table["method"] == "ce", "test_accuracy_p_vs_ce"].isna().all()
    assert table.loc[table["method"] == "kd", "test_accuracy_p_vs_ce"].between(0, 1).all()
    fitnet = table[table["method"] == "fitnet"].iloc[0]
    assert fitnet["training_parameters_mean"] > fitnet["parameters_mean"]  # the adapter is counted
    report = load(project, "study_report_md")
    # Each verdict of the table, recomputed from the saved per-seed metrics (scipy, Holm by hand over the 6 pairs).
    expected = cell_verdicts(per_seed_accuracy(project, ("ce", "kd", "fitnet", "rkd")))
    rows = {row["arm"]: row for row in markdown_table(report, "### Test accuracy against the baselines")}
    assert set(rows) == {"ce", "kd", "fitnet", "rkd"}
    for arm, row in rows.items():
        for baseline in ("ce", "kd"):
            verdict, p = expected.get((arm, baseline), ("baseline", None))
            assert row[f"vs {baseline}"] == (verdict if p is None else f"{verdict} (adj. p {p:.3f})"), (arm, baseline)
    assert "## Recommendation" in report and "## Capacity gap" in report and "## Protocol" in report
    html = load(project, "study_report_html")
    # Self-contained: images inlined; the only outside links are the cited runs' pages in the MLflow UI.
    links = re.findall(r'(?:src|href)="(https?://[^"]*)"', html)
    assert "data:image/png;base64," in html and links and all(link.startswith("http://127.0.0.1:5000/#/runs/") for link in links)
    recommendation = load(project, "recommendation")
    [cell] = recommendation["cells"]  # one data cell, one answer
    assert {entry["candidate"] for entry in cell["ranked"]} == {"ce", "kd", "fitnet", "rkd"}
    assert all(len(entry["run_ids"]) == 2 for entry in cell["ranked"])  # MLflow evidence per seed
    card = load(project, "protocol_card")
    assert card["dataset"] == "digits" and card["seeds"] == [0, 1] and len(card["teacher_checkpoint_sha256"]) == 64
    history = load(project, "students.kd.seed_1.history")
    assert [row["epoch"] for row in history["epochs"]] == [1, 2]
    assert {"loss_ce", "loss_kd", "val_accuracy"} <= set(history["epochs"][0])
    model = load(project, "students.fitnet.seed_0.model")
    assert model.spec["name"] == "mlp"
    assert (project / "data" / "08_reporting" / "tiny" / "comparison_plot.png").is_dir()


def test_mlflow_has_one_study_run_with_a_nested_run_per_arm(project):
    client, runs = mlflow_runs(project)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {"git_commit", "config_hash", "version.torch", "version.kedro"} <= set(parent.data.tags)
    assert parent.data.params["teacher.model.name"] == "cnn"
    children = {r.data.tags["arm"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(children) == ARMS | {"teacher"}
    kd = children["kd/seed_0"]
    metrics = json.loads(json.dumps(load(project, "students.kd.seed_0.metrics")))
    assert kd.data.metrics["test/accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert kd.data.params["hyperparameters.temperature"] == "4.0"
    assert [m.step for m in client.get_metric_history(kd.info.run_id, "val/accuracy")] == [1, 2]
    assert {a.path for a in client.list_artifacts(kd.info.run_id, "checkpoints")} == {"checkpoints/model.pt", "checkpoints/last_model.pt"}
    assert "kd-seed_0/MLmodel" in {a.path for a in client.list_artifacts(kd.info.run_id, "kd-seed_0")}  # an MLflow model named after its arm and seed
    assert children["teacher"].data.params["method"] == children["teacher"].data.params["arm"] == "teacher"  # its own group either way
    assert kd.data.params["training.epochs"] == "2" and kd.data.tags["mlflow.source.name"] == "kedro run"
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {
        "report/study_report.md",
        "report/study_report.html",
        "report/comparison_table.csv",
        "report/comparison_plot.png",
        "report/recommendation.json",
        "report/protocol_card.json",
    } <= report
    assert parent.data.tags["protocol.dataset"] == "digits"
    # The plots in MLflow are the PNGs the catalog wrote (one rendering), not drawn a second time.
    reporting = project / "data" / "08_reporting" / "tiny"
    logged = Path(client.download_artifacts(parent.info.run_id, "report", str(project / "downloaded")))
    version = parent.data.tags["kedro_run_id"]  # this run's save version
    assert (logged / "comparison_plot.png").read_bytes() == (reporting / "comparison_plot.png" / version / "comparison_plot.png").read_bytes()
    saved = {path.name: path.read_bytes() for path in (reporting / "study_plots" / version / "study_plots").iterdir()}
    assert saved and {path.name: path.read_bytes() for path in (logged / "plots").iterdir()} == saved
    # ... and the very PNGs the HTML page inlines: each plot is rendered once, for the page and the folder.
    page = (reporting / "study_report.html" / version / "study_report.html").read_text()
    inlined = {base64.b64decode(uri) for uri in re.findall(r'src="data:image/png;base64,([^"]+)"', page)}
    assert inlined == set(saved.values())
    recommendation = load(project, "recommendation")
    children_ids = {r.info.run_id for r in children.values()}
    assert set(recommendation["cells"][0]["ranked"][0]["run_ids"]) <= children_ids


def test_every_nested_run_says_what_it_trained_on_how_and_groups_its_metrics(project):
    client, runs = mlflow_runs(project)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    saved_inputs = project / "data" / "05_model_input" / "tiny"
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    for run in children:
        name, tags, params, metrics = run.info.run_name, run.data.tags, run.data.params, run.data.metrics
        datasets = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
        assert set(datasets) == {"train", "validation", "test"}, name
        assert {d.name for d in datasets.values()} == {"digits.train", "digits.val", "digits.test"}, name
        source = Path(json.loads(datasets["train"].source)["uri"])
        assert source.is_file() and source.is_relative_to(saved_inputs), name
        assert len({d.digest for d in datasets.values()}) == 3, name
        assert tags["mlflow.source.name"] == "kedro run" and tags["mlflow.user"] and tags["mlflow.source.git.commit"] == commit
        assert {"epochs", "lr", "batch_size", "optimizer"} <= {k.split(".", 1)[1] for k in params if k.startswith("training.")}, name
        assert all(key.split("/")[0] in {"train", "val", "test", "cost", "system"} for key in metrics), (name, sorted(metrics))
        assert not set(metrics) & set(params) and not {"seed", "label_fraction", "train_size"} & set(metrics), name
        assert "role" not in params, name  # the tag role (arm/study) is the only role in the Group-by menu
        for curve in ("train/loss_total", "train/accuracy", "train/lr", "val/accuracy", "val/loss"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, curve)] == [1, 2], (name, curve)
        assert {"test/accuracy", "val/best_accuracy", "cost/parameters", "cost/train_time_s"} <= set(metrics), name
        assert {"cost/optimizer_steps", "cost/samples_seen"} <= set(metrics), name
    students = [r for r in children if r.data.tags["arm"] != "teacher"]
    assert {r.data.params["seed"] for r in students} == {"0", "1"}
    for run in students:  # the cell's budget: 2 epochs of ceil(train_size / 128) full batches of 128
        steps = 2 * -(-int(run.data.params["train_size"]) // 128)
        assert run.data.metrics["cost/optimizer_steps"] == steps, run.info.run_name
        assert run.data.metrics["cost/samples_seen"] == steps * 128, run.info.run_name
    assert {r.data.params["method"] for r in children} == {"teacher", "ce", "kd", "fitnet", "rkd"}
    for run in children:  # each logged model carries every param of its run, and its labels as tags
        model_id = client.get_run(run.info.run_id).outputs.model_outputs[-1].model_id
        logged = client.get_logged_model(model_id)
        assert logged.params == run.data.params, run.info.run_name
        labels = {key: run.data.params[key] for key in ("arm", "method", "seed") if key in run.data.params}
        assert {key: logged.tags.get(key) for key in labels} == labels and logged.tags.get("study_run") == run.data.tags["study_run"]
    # The registry: every ranked candidate a version, the first-ranked one @recommended.
    recommendation = load(project, "recommendation")
    recommended = client.get_model_version_by_alias(REGISTERED_MODEL, "recommended")
    assert recommended.run_id in recommendation["cells"][0]["ranked"][0]["run_ids"]
    versions = client.search_model_versions(f"name = '{REGISTERED_MODEL}'")
    assert len(versions) == len(recommendation["cells"][0]["ranked"])
    by_run = {r.info.run_id: r for r in students}
    for version in versions:  # each version names its arm and seed on the registry page
        run = by_run[version.run_id]
        assert {k: version.tags[k] for k in ("arm", "method", "seed")} == {k: run.data.params[k] for k in ("arm", "method", "seed")}
        assert version.description.startswith(run.info.run_name)


def test_same_seeds_give_identical_metrics(project):
    runs = (ArmRun("kd", 0), ArmRun("fitnet", 1))
    first = {run: load(project, run.dataset("metrics")) for run in runs}
    result = kedro_run(project)
    assert result.returncode == 0, result.stderr[-3000:]
    for run, metrics in first.items():
        again = load(project, run.dataset("metrics"))
        assert {k: v for k, v in again.items() if k not in TIMING_METRICS} == {
            k: v for k, v in metrics.items() if k not in TIMING_METRICS
        }


def test_bad_config_fails_before_training_and_keeps_every_version(project):
    before = versions(project)
    assert before, "the study should have written versioned datasets"
    result = kedro_run(project, "--params", "methods.kd.temperature=-1")
    assert result.returncode != 0
    assert "methods.kd.temperature: must be > 0" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr  # the message alone, as click reports a bad option
    assert versions(project) == before
    _, runs = mlflow_runs(project)
    assert all(r.info.status == "FINISHED" for r in runs)  # no half-started study run


def test_every_registered_method_runs_through_kedro(tmp_path):
    """`kedro run --env=tiny_all`: each method (and each schedule/combination) as a real pipeline arm."""
    import yaml

    from distillation_studies.learning.methods import METHODS

    copy_project(tmp_path)
    result = kedro_run(tmp_path, env_name="tiny_all")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    methods = yaml.safe_load((ROOT / "conf" / "tiny_all" / "parameters.yml").read_text())["methods"]
    used = {raw.get("method", key) if raw else key for key, raw in methods.items()}
    used |= {part["method"] for raw in methods.values() if raw for part in (raw.get("parts") or {}).values()}
    assert used == set(METHODS), f"tiny_all misses {set(METHODS) - used}"

    bootstrap_project(tmp_path)
    with KedroSession.create(project_path=tmp_path, env="tiny_all") as session:
        table = session.load_context().catalog.load("comparison_table")
    assert set(table["arm"]) == set(methods)
    assert table["test_accuracy_mean"].between(0, 1).all()
    # Listing a run's model folder resolves its logged model through the global tracking URI.
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("distillation-studies")
    arms = {r.data.tags.get("arm") for r in client.search_runs([experiment.experiment_id])}
    assert {f"{key}/seed_0" for key in methods} <= arms


def test_torchrun_trains_a_teacher_that_the_study_imports(tmp_path):
    """`torchrun --nproc_per_node=2` (gloo on CPU) writes a teacher; `teacher.checkpoint` imports it."""
    copy_project(tmp_path)
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1"}
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    command = [torchrun, "--nproc_per_node=2", "-m", "distillation_studies.ddp_teacher", "--env", "tiny", "--out", "teacher.pt"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "teacher written to teacher.pt" in result.stdout

    imported = kedro_run(tmp_path, "--to-nodes=train_teacher", "--params", "teacher.checkpoint=teacher.pt,tracking.enabled=false")
    assert imported.returncode == 0, imported.stdout[-3000:] + imported.stderr[-3000:]
    history = load_env(tmp_path, "teacher_history", "tiny")
    assert history["summary"]["imported_from"] == "teacher.pt" and history["epochs"] == []


def test_an_interrupted_study_resumes_with_only_missing_outputs(tmp_path):
    """A first run that stopped after one student (here: --to-nodes) is completed by
    `kedro run --only-missing-outputs`: nothing done is redone, and the recommendation still cites
    the MLflow run of every student, including the one trained by the first run."""
    copy_project(tmp_path)
    first = kedro_run(tmp_path, "--to-nodes=students.kd.seed_0.distil_student")
    assert first.returncode == 0, first.stderr[-3000:]
    _, runs = mlflow_runs(tmp_path)
    kd_run = next(r.info.run_id for r in runs if r.data.tags.get("arm") == "kd/seed_0")
    teacher_versions = versions(tmp_path)["data/06_models/tiny/teacher/model.pt"]

    resumed = kedro_run(tmp_path, "--only-missing-outputs")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert "Skipping 4 nodes with existing outputs" in log and "students.kd.seed_0.distil_student" in log
    assert versions(tmp_path)["data/06_models/tiny/teacher/model.pt"] == teacher_versions  # not retrained
    recommendation = load(tmp_path, "recommendation")
    cited = {run for cell in recommendation["cells"] for entry in cell["ranked"] for run in entry["run_ids"]}
    assert kd_run in cited
    assert len(cited) == len(ARMS)



def test_resuming_after_a_config_change_reports_the_current_config(tmp_path):
    """Run A completes; run B (another student lr) stops after two students; ``--only-missing-outputs``
    of B reuses B's own teacher and students only (never A's), trains the rest and reports B."""
    from distillation_studies.guards.run_guard import manifests

    copy_project(tmp_path)
    assert kedro_run(tmp_path, "--params", "tracking.enabled=false").returncode == 0
    b = ["--params", "tracking.enabled=false,student.training.lr=0.02"]
    stopped = kedro_run(tmp_path, "--to-nodes=students.ce.seed_0.distil_student,students.ce.seed_1.distil_student", *b)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    resumed = kedro_run(tmp_path, "--only-missing-outputs", *b)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert "did not match load version" not in log
    runs = manifests(tmp_path / "data" / ".runs" / "tiny")
    config = {version: record["parameters"]["student"]["training"]["lr"] for version, record in runs.items()}
    assert sorted(config.values()) == [0.01, 0.02, 0.02]
    saved = versions(tmp_path)
    # B's stopped run trained the teacher and ce's two seeds; the resume reused them and trained the rest
    stopped_b, resumed_b = sorted(v for v, lr in config.items() if lr == 0.02)
    assert saved["data/06_models/tiny/teacher/model.pt"][-1] == stopped_b
    assert saved["data/07_model_output/tiny/students/ce/seed_0/history.json"][-1] == stopped_b
    assert saved["data/07_model_output/tiny/students/kd/seed_0/metrics.json"][-1] == resumed_b
    assert "Report: " in log and (tmp_path / "data/08_reporting/tiny/study_report.md" / resumed_b / "study_report.md").is_file()
    card = load(tmp_path, "protocol_card")
    assert card["config_hash"] == runs[resumed_b]["config_hash"] != runs[min(config)]["config_hash"]


def test_a_copied_project_is_refused_in_one_message_before_any_work(tmp_path):
    """``cp -a`` of a project keeps the original's mlflow.db, whose experiment stores its artifacts in the
    original's mlruns/: the run stops with the guard's message (no traceback) and writes nothing."""
    from mlflow import MlflowClient

    copy_project(tmp_path)
    original = tmp_path.parent / f"{tmp_path.name}_original"
    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").create_experiment(
        "distillation-studies", artifact_location=(original / "mlruns").as_uri()
    )
    result = kedro_run(tmp_path)
    assert result.returncode == 1
    said = " ".join((result.stdout + result.stderr).split())
    assert f"Error: tracking: experiment 'distillation-studies' in sqlite:///{tmp_path / 'mlflow.db'} stores its artifacts in {original / 'mlruns'}" in said
    assert "this project looks copied from another" in said and "Traceback" not in said
    written = [p for p in (tmp_path / "data").rglob("*") if p.is_file() and ".runs" not in p.parts]
    assert written == []  # no dataset written (data/.runs/ holds the run guard's own records)

    verbose = kedro_run(tmp_path, "-v")
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr  # -v keeps the stack for a bug report
